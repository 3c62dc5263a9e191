"""jieba's dictionary from ragtune's own copy (text + numpy, 0.3 s) instead of jieba's marshal cache (1.5 s): the same
words and counts, hence the same segmentation; made on first use; a damaged copy falls back to jieba and is remade."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TEXT = "全职员工每年享有二十天带薪年假。中华人民共和国的病假超过三天需要医院证明。"

# A fresh interpreter each time, as a command would be: jieba's state starts empty.
PROBE = """
import json, sys
import jieba
from ragtune.store.text import jieba_dictionary_cache, tokenize

cached = (jieba_dictionary_cache(jieba) / "counts.npy").is_file()
tokens = tokenize(sys.argv[1])
seen = {"cached_before": cached, "tokens": tokens, "words": len(jieba.dt.FREQ)}
if sys.argv[2] == "compare":
    own = jieba.Tokenizer()  # jieba loading its dictionary its own way
    own.initialize()
    seen |= {"same_words": own.FREQ == jieba.dt.FREQ, "same_total": own.total == jieba.dt.total}
print(json.dumps(seen))
"""


def probe(cache: Path, *, compare: bool = False) -> dict:
    """Tokenise TEXT in a fresh process; ``compare``: also load jieba's dictionary its own way and compare."""
    env = {**os.environ, "RAGTUNE_MODEL_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", PROBE, TEXT, "compare" if compare else "tokens"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_copy_holds_jiebas_dictionary_and_segments_alike(tmp_path: Path) -> None:
    first = probe(tmp_path, compare=True)
    assert first["cached_before"] is False and first["same_words"] and first["same_total"]
    assert first["words"] > 300_000 and {"二十天", "带薪", "中华人民共和国", "医院"} <= set(first["tokens"])
    [copy] = list(tmp_path.glob("jieba-*"))
    assert {p.name for p in copy.iterdir()} == {"words.txt", "counts.npy"}

    second = probe(tmp_path, compare=True)  # read from the copy
    assert second["cached_before"] is True and second["same_words"] and second["same_total"]
    assert second["tokens"] == first["tokens"]

    (copy / "counts.npy").write_bytes(b"not numpy")  # damaged: jieba's own loading, and the copy is made again
    third = probe(tmp_path)
    assert third["tokens"] == first["tokens"] and third["words"] == first["words"]
    assert (copy / "counts.npy").read_bytes()[:6] == b"\x93NUMPY"
    (copy / "words.txt").write_text("只有\n几个词", encoding="utf-8")  # lengths that disagree: not used
    assert probe(tmp_path)["tokens"] == first["tokens"]
    (copy / "counts.npy").write_bytes(b"")  # empty, as a crash can leave a file
    assert probe(tmp_path)["tokens"] == first["tokens"] and (copy / "counts.npy").stat().st_size > 0
    assert sorted(p.name for p in copy.iterdir()) == ["counts.npy", "words.txt"]  # no temporary file left
