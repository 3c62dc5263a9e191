"""In-process LLM on transformers: the bundled SmolLM2 (converted once from its GGUF) or any causal-LM directory."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, LLMError
from ragtune.llm.base import GenerationParams, truncate_at_stop, validate_messages
from ragtune.llm.bundled import BUNDLED_SMOLLM2, bundled_gguf_path
from ragtune.paths import default_cache_dir

log = logging.getLogger(__name__)

# A crash mid-conversion leaves a temporary directory; one untouched this long is surely abandoned.
_STALE_PARTIAL_S = 3600
#: Written into each conversion: the GGUF file it was made from, so a replaced one can be recognised.
_SOURCE_FILE = "ragtune-source.json"
# Spellings of the answer tokens; which of them are single tokens depends on the vocabulary.
_YES = ("yes", "Yes", "YES", " yes", " Yes", " YES")
_NO = ("no", "No", "NO", " no", " No", " NO")


# SmolLM2's own chat template (ChatML with a default system prompt) and the same template with
# {% generation %} markers around what the assistant writes, which transformers needs to return the
# assistant-token mask for training. The two render identical text (tests check it token by token), so
# the marked one is used everywhere: a fine-tuned model sees exactly the prompt format it is served with.
_SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SMOLLM2_TEMPLATE_MARKED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MARKED_CHAT_TEMPLATES: dict[str, str] = {_SMOLLM2_TEMPLATE: _SMOLLM2_TEMPLATE_MARKED}
GENERATION_MARKER = "{% generation %}"


def chat_template(tokenizer: Any) -> str:
    """The chat template ragtune renders conversations with, for inference and training alike.

    The tokenizer's own template, or — for the model families in ``MARKED_CHAT_TEMPLATES`` — its
    equivalent with ``{% generation %}`` markers, so assistant-only loss works. A template without
    markers still serves; training then masks by rendering prefixes (see ``ragtune.train.data``).
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template or not isinstance(template, str):
        raise LLMError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'this model')!r} has no chat template — "
            "use an instruct/chat model"
        )
    return MARKED_CHAT_TEMPLATES.get(template.strip(), template)


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """``messages`` rendered with :func:`chat_template`; with ``add_generation_prompt`` it ends where a reply begins."""
    checked = validate_messages(messages)
    return str(
        tokenizer.apply_chat_template(
            checked, chat_template=chat_template(tokenizer), add_generation_prompt=add_generation_prompt, tokenize=False
        )
    )


def format_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The model's chat template applied to ``messages``, ending where the assistant's reply begins.

    Shared with training so that a fine-tuned model sees exactly the prompt format it is served with.
    """
    return render_chat(tokenizer, messages, add_generation_prompt=True)


def converted_gguf_dir(gguf_path: Path, cache_dir: str | Path | None = None) -> Path:
    """A plain Hugging Face directory holding ``gguf_path``'s model, converted on first use.

    transformers reads GGUF (dequantizing to float32) but takes tens of seconds to do so and will not
    ``save_pretrained`` a GGUF-loaded model; so the weights are copied once into a fresh model built
    from the same config and saved, and later loads take a second or two. The directory name carries
    a fingerprint of the file's content (:func:`gguf_fingerprint`), so the same model installed into
    another environment reuses the conversion, and a changed file is converted again. A new
    conversion removes the ones it replaces (:func:`_remove_replaced`): each is half a gigabyte.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = cache / f"{gguf_path.stem}-{gguf_fingerprint(gguf_path)}"
    if target.is_dir():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LLMError(f"cannot create the model cache {cache} ({exc}) — set cache_dir or RAGTUNE_MODEL_CACHE") from exc
    _remove_stale_partials(cache)
    log.warning("converting %s once into a transformers model at %s (~30 s)", gguf_path.name, target)
    started = time.monotonic()
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache))
    try:
        _convert(gguf_path, partial)
        (partial / _SOURCE_FILE).write_text(json.dumps({"source": str(gguf_path.resolve())}), encoding="utf-8")
        try:
            # Atomic: readers see either no directory or a complete one, never a half-written model.
            partial.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            log.info("another process converted %s meanwhile; using its copy", gguf_path.name)
    except Exception as exc:
        if isinstance(exc, LLMError):
            raise
        raise LLMError(f"converting {gguf_path} into {cache} failed: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("converted %s in %.0f s", gguf_path.name, time.monotonic() - started)
    _remove_replaced(cache, gguf_path.stem, keep=target)
    return target


def gguf_fingerprint(gguf_path: Path) -> str:
    """12 hex digits of the file's SHA-256: a tenth of a second for the bundled 98 MB model, a few seconds for a
    multi-gigabyte one, which then takes far longer to load."""
    digest = hashlib.sha256()
    with gguf_path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:12]


def _remove_replaced(cache: Path, stem: str, keep: Path) -> None:
    """Removes the conversions of ``stem`` that nothing can use any more: those whose source file is gone or has
    changed since, and those named by earlier releases after the file's path and mtime (one per install)."""
    for entry in cache.glob(f"{stem}-*"):
        if entry == keep or not entry.is_dir() or not re.fullmatch(re.escape(stem) + r"-[0-9a-f]{12}", entry.name):
            continue
        try:
            source = Path(json.loads((entry / _SOURCE_FILE).read_text(encoding="utf-8"))["source"])
            live = source.is_file() and entry.name == f"{stem}-{gguf_fingerprint(source)}"
        except FileNotFoundError:
            live = False  # the old naming, never looked up again
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: leave it to the user rather than guess
        if not live:
            log.info("removing the conversion %s, which no installed model file uses any more", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = copy.deepcopy(gguf_model.config)
    # Left in place it would make the saved directory look like a GGUF file to load again.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _remove_stale_partials(cache: Path) -> None:
    now = time.time()
    for partial in cache.glob(".*.partial-*"):
        try:
            if now - partial.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError:
            continue


def resolve_model(model: str, cache_dir: str | Path | None = None) -> str:
    """A loadable directory or hub id for ``model``: the bundled name and .gguf files are converted first."""
    if model == BUNDLED_SMOLLM2:
        return str(converted_gguf_dir(bundled_gguf_path(), cache_dir))
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LLMError(f"LLM {model}: no such GGUF file")
        return str(converted_gguf_dir(path, cache_dir))
    if path.exists() and not path.is_dir():
        raise LLMError(
            f"LLM {model}: is a file — give a model directory (config.json, weights, tokenizer) or a .gguf file"
        )
    return str(path) if path.exists() else model


class LocalLLM:
    """A chat model run in this process with transformers; greedy and deterministic unless temperature > 0.

    ``model`` is the bundled 'SmolLM2-135M-Instruct' (converted once from its GGUF into ``cache_dir``),
    a .gguf file (converted the same way), a model directory, or a hub id this machine can reach.
    ``path`` is what was loaded; ``model`` and ``tokenizer`` are the transformers objects, for code
    (training, evaluation) that needs more than chat.

    A model directory on this machine (the bundled model's included) is checked here but loaded when it is
    first needed: importing torch and transformers and reading the weights take seconds, and an answer that
    is refused or quoted never needs them. Until then ``context_window`` comes from the directory's
    config.json and ``count_tokens`` from its tokenizer.json (the ``tokenizers`` library, the same encoder
    transformers wraps). A hub id, a directory without those files, or a device other than the CPU loads at
    once, and so does a directory without weights, so a model that cannot be loaded still fails here.
    """

    #: Runs in this process: ragtune's answer pipeline sends it its repetition controls by default.
    in_process = True

    def __init__(
        self,
        model: str = BUNDLED_SMOLLM2,
        *,
        adapter: str | None = None,
        cache_dir: str | Path | None = None,
        num_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        if not model:
            raise ConfigError(f"model must name the bundled '{BUNDLED_SMOLLM2}', a directory or a hub id.")
        if num_threads is not None and num_threads <= 0:
            raise ConfigError(f"num_threads must be greater than 0, got {num_threads}.")
        if adapter is not None:
            _check_adapter(adapter)
        self.name = model
        self.adapter = adapter
        self._device_name = device
        self._num_threads = num_threads
        self._loaded: tuple[Any, Any, Any] | None = None  # (tokenizer, model, device) once loaded
        self._loading = threading.Lock()
        self.path = resolve_model(model, cache_dir)
        self._answer_ids: tuple[list[int], list[int]] | None = None
        self._filler: Any = None
        self._counter: Any = None
        directory = Path(self.path)
        window = _configured_context_window(directory) if device == "cpu" and _has_weights(directory) else None
        counter = _token_counter(directory) if window is not None else None
        if window is None or counter is None:
            self._ensure_loaded()
        else:
            self.context_window = window
            self._counter = counter

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (they load on first generation, or on first use of ``model``)."""
        return self._loaded is not None

    @property
    def tokenizer(self) -> Any:
        return self._ensure_loaded()[0]

    @property
    def model(self) -> Any:
        return self._ensure_loaded()[1]

    @property
    def device(self) -> Any:
        return self._ensure_loaded()[2]

    def _ensure_loaded(self) -> tuple[Any, Any, Any]:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        # Server threads may ask at once: the weights are read once.
        with self._loading:
            if self._loaded is None:
                self._loaded = self._load_now()
            return self._loaded

    def _load_now(self) -> tuple[Any, Any, Any]:
        import torch

        try:
            device = torch.device(self._device_name)
        except RuntimeError as exc:
            raise ConfigError(
                f"device {self._device_name!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')"
            ) from exc
        if self._num_threads:
            torch.set_num_threads(self._num_threads)
        from transformers.utils import logging as hf_logging

        # Per-load progress bars would interleave with ragtune's own output (as in the embedder).
        hf_logging.disable_progress_bar()
        started = time.monotonic()
        tokenizer, model = self._load(self.name, self.path)
        if self.adapter is not None:
            peft_model = _peft_model_class(self.adapter)
            try:
                # Merged once here, so generation runs at the base model's speed.
                model = peft_model.from_pretrained(model, self.adapter).merge_and_unload()
            except Exception as exc:
                raise LLMError(f"LoRA adapter {self.adapter} could not be applied to {self.name}: {exc}") from exc
        model.to(device).eval()
        window = _context_window(model.config, tokenizer)
        if getattr(self, "context_window", window) != window:
            log.warning("LLM %s: config.json read as a context window of %d tokens, transformers says %d",
                        self.name, self.context_window, window)
        self.context_window = window
        log.info("loaded LLM %s in %.1f s", self.name, time.monotonic() - started)
        return tokenizer, model, device

    @staticmethod
    def _load(name: str, path: str) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for a bad path or id
            if Path(path).is_dir():
                hint = f"{path} is not a Hugging Face causal-LM directory (config.json, weights, tokenizer)"
            else:
                offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") else ""
                hint = (
                    f"'{path}' is neither an existing directory nor a Hugging Face hub id this machine can "
                    f"reach{offline} — give a local model directory or the bundled '{BUNDLED_SMOLLM2}'"
                )
            raise LLMError(f"LLM '{name}' could not be loaded: {hint} ({type(exc).__name__}: {exc})") from exc
        if tokenizer.pad_token_id is None:
            # Batched scoring pads; the end-of-text token is the customary filler for decoder-only models.
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer, model

    def count_tokens(self, text: str) -> int:
        if self._loaded is None and self._counter is not None:
            # Before the weights are needed: the same tokenizer.json, without importing transformers.
            return len(self._counter.encode(text, add_special_tokens=False).ids)
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        return "".join(self.stream(messages, **params))

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        # Checked here, not inside the generator, so a bad request fails at the call, not at first next().
        settings = GenerationParams.from_kwargs(params)
        inputs = self._encode_chat(messages)
        return self._generate(inputs, settings)

    def _encode_chat(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        text = format_chat(self.tokenizer, messages)
        # The template already wrote the special tokens the model expects; adding them again doubles BOS.
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        self._check_fits(int(inputs["input_ids"].shape[1]), "the conversation")
        return {key: value.to(self.device) for key, value in inputs.items()}

    def _check_fits(self, length: int, what: str) -> None:
        if length >= self.context_window:
            raise LLMError(f"LLM '{self.name}': {what} is {length} tokens, which fills the context window of "
                           f"{self.context_window} — shorten it")

    def _generation_config(self, settings: GenerationParams, prompt_length: int) -> Any:
        config = copy.deepcopy(self.model.generation_config)
        sample = settings.temperature > 0
        config.update(
            max_new_tokens=min(settings.max_tokens, self.context_window - prompt_length),
            do_sample=sample,
            temperature=settings.temperature if sample else None,
            top_p=settings.top_p if sample else None,
            # OpenAI-style sampling has no top-k cut; transformers would apply 50 by default.
            top_k=0 if sample else None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return config

    def _generate(self, inputs: dict[str, Any], settings: GenerationParams) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()
        failures: list[BaseException] = []
        prompt_length = int(inputs["input_ids"].shape[1])
        criteria: list[Any] = [_Cancelled(cancelled)]
        if settings.stop:
            criteria.append(_StopStrings(self.tokenizer, settings.stop, prompt_length))
        kwargs = {
            **inputs,
            "generation_config": self._generation_config(settings, prompt_length),
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList(criteria),
            "logits_processor": _repetition_controls(settings, prompt_length),
        }

        def run() -> None:
            try:
                with _seeded(settings.seed):
                    self.model.generate(**kwargs)
            except Exception as exc:
                failures.append(exc)
                streamer.end()  # unblocks the reader below

        thread = threading.Thread(target=run, name="ragtune-generate", daemon=True)
        thread.start()
        try:
            # generate stops at a stop string; the text still has to be cut right before it.
            yield from truncate_at_stop((piece for piece in streamer if piece), settings.stop)
        finally:
            # The reader may stop early (stop string, closed generator): the thread must not run on.
            cancelled.set()
            thread.join()
        if failures:
            raise LLMError(f"LLM '{self.name}' failed while generating: {failures[0]}") from failures[0]

    def chat_many(
        self, conversations: Sequence[list[dict[str, str]]], *, batch_size: int = 16, **params: Any
    ) -> list[str]:
        """Replies to many independent conversations, generated in left-padded batches of ``batch_size``.

        The throughput path for writing training data: on this project's 2-core CPU, batches of 16 write
        a SmolLM2 reply in about a third of the time one-by-one generation takes. Conversations of similar
        length share a batch (less padding); replies come back in the order given. Greedy batched replies
        can differ from unbatched ones in the last bits of the logits, so rarely in a token.
        """
        settings = GenerationParams.from_kwargs(params)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch_size must be an integer greater than 0, got {batch_size!r}.")
        import torch
        from transformers import StoppingCriteriaList

        # Encoded once: the lengths order the batches, the ids are padded into them.
        encoded = [self.tokenizer(format_chat(self.tokenizer, messages), add_special_tokens=False)["input_ids"]
                   for messages in conversations]
        for n, ids in enumerate(encoded):
            self._check_fits(len(ids), f"conversation {n + 1}")
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        replies = [""] * len(encoded)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, padding=True,
                                       padding_side="left", return_tensors="pt").to(self.device)
            prompt_length = int(batch["input_ids"].shape[1])
            criteria = [_StopStrings(self.tokenizer, settings.stop, prompt_length)] if settings.stop else []
            try:
                with torch.inference_mode(), _seeded(settings.seed):
                    config = self._generation_config(settings, prompt_length)
                    out = self.model.generate(**batch, generation_config=config,
                                              stopping_criteria=StoppingCriteriaList(criteria),
                                              logits_processor=_repetition_controls(settings, prompt_length))
            except Exception as exc:
                raise LLMError(f"LLM '{self.name}' failed while generating: {exc}") from exc
            for i, tokens in zip(rows, out[:, prompt_length:], strict=True):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                replies[i] = "".join(truncate_at_stop([text], settings.stop)) if settings.stop else text
        return replies

    def chat_json(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str | None:
        """A reply that is JSON of ``schema``'s shape, written with constrained decoding: ragtune writes the
        structure, the model (greedy) only the values (see ``ragtune.llm.constrained``). None when the schema
        uses keywords that decoding cannot follow; the caller then prompts for the JSON instead."""
        from ragtune.llm.constrained import JsonFiller, constrainable

        if not constrainable(schema):
            return None
        inputs = self._encode_chat(messages)
        if self._filler is None:
            self._filler = JsonFiller(self.model, self.tokenizer, self.device)
        try:
            text: str = self._filler.fill(inputs["input_ids"][0].tolist(), schema,
                                          grounding="\n".join(m.get("content", "") for m in messages))
        except RuntimeError as exc:  # torch errors (out of memory, a context overrun)
            raise LLMError(f"LLM '{self.name}' failed while writing JSON: {exc}") from exc
        return text

    def score_yes_no(self, prompts: list[str], *, batch_size: int = 8) -> list[float]:
        """How much more the model wants to answer "yes" than "no" to each prompt (a log-odds, > 0 = yes).

        Each prompt is sent as one user message; the score is logsumexp of the next-token logits over
        the single-token spellings of "yes" (yes, Yes, " yes", ...) minus the same over "no". Summing the
        spellings' probabilities makes the score independent of which casing or leading space the
        model happens to prefer after the assistant prefix.
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ConfigError("prompts must be a list of strings.")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be greater than 0, got {batch_size}.")
        import torch

        yes, no = self._yes_no_token_ids()
        texts = [format_chat(self.tokenizer, [{"role": "user", "content": p}]) for p in prompts]
        scores: list[float] = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size], return_tensors="pt", padding=True, padding_side="left",
                add_special_tokens=False,
            ).to(self.device)
            mask = batch["attention_mask"]
            # Left padding shifts positions; counting only real tokens keeps each score equal to its unbatched one.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, logits_to_keep=1
                ).logits[:, -1, :].float()
            diff = torch.logsumexp(logits[:, yes], dim=-1) - torch.logsumexp(logits[:, no], dim=-1)
            scores.extend(diff.tolist())
        return scores

    def _yes_no_token_ids(self) -> tuple[list[int], list[int]]:
        if self._answer_ids is None:
            found = []
            for spellings in (_YES, _NO):
                ids = {tuple(self.tokenizer.encode(s, add_special_tokens=False)) for s in spellings}
                singles = sorted(i[0] for i in ids if len(i) == 1)
                if not singles:
                    raise LLMError(f"LLM '{self.name}': its vocabulary has no single token for {spellings[0]!r}")
                found.append(singles)
            self._answer_ids = (found[0], found[1])
        return self._answer_ids


def _check_adapter(adapter: str) -> None:
    """A LoRA adapter directory, checked without importing peft (which imports torch)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("peft") is not None
    except (ValueError, AttributeError):  # a module entry without a spec (e.g. blocked with None)
        found = False
    if not found:
        raise LLMError(
            f"LoRA adapter {adapter} needs peft — install the 'train' extra: pip install 'ragtune[train]'"
        )
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        if (path / "config.json").is_file():
            raise ConfigError(f"adapter {adapter} is a whole model (full fine-tune or merge) — pass it as the model")
        raise ConfigError(f"adapter {adapter}: no adapter_config.json there — give a directory saved by PEFT")


def _peft_model_class(adapter: str) -> Any:
    _check_adapter(adapter)
    from peft import PeftModel

    return PeftModel


_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def _configured_context_window(directory: Path) -> int | None:
    """The context window a model directory's config.json states, read as :func:`_context_window` reads the
    loaded config (the text model's part first); None when the directory or the number is not there."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    text_config = config.get("text_config")
    for part in (text_config, config) if isinstance(text_config, dict) else (config,):
        for key in _WINDOW_KEYS:
            value = part.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def _has_weights(directory: Path) -> bool:
    """Whether a model directory holds weights under a name transformers loads (else it loads, and fails, at once)."""
    return any((directory / name).is_file() for name in _WEIGHT_FILES)


def _token_counter(directory: Path) -> Any:
    """The directory's tokenizer.json as a ``tokenizers`` encoder (imports in a tenth of a second, without torch),
    counting every token as transformers does (no truncation or padding the file may configure, as in
    ``ragtune.tokens.HFTokenCounter``); None when it has none or it cannot be read."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    except Exception:  # a file tokenizers cannot read: transformers decides at load
        return None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _context_window(config: Any, tokenizer: Any) -> int:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attribute in _WINDOW_KEYS:
        value = getattr(text_config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    # Tokenizers without a limit report a huge sentinel (1e30); only a plausible length is trusted.
    limit = getattr(tokenizer, "model_max_length", 0)
    return int(limit) if 0 < limit < 10_000_000 else 2048


# The stopping criteria below are duck-typed rather than subclasses of transformers' StoppingCriteria,
# so that importing ragtune.llm does not import transformers.
class _Cancelled:
    """Stops generate once the reader has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device)


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed sampling without disturbing the caller's global random state."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def _repetition_controls(settings: GenerationParams, prompt_length: int) -> Any:
    """Logits processors for the repetition controls, over the generated tokens only.

    transformers' own repetition_penalty and no_repeat_ngram_size also count the prompt, so they would
    penalise copying a number or name from the sources — exactly what an answer should do.
    """
    from transformers import LogitsProcessorList

    processors: list[Any] = []
    if settings.repetition_penalty != 1.0 or settings.no_repeat_ngram_size:
        processors.append(_GeneratedRepetition(prompt_length, settings.repetition_penalty,
                                               settings.no_repeat_ngram_size))
    return LogitsProcessorList(processors)


class _GeneratedRepetition:
    """Penalises tokens already generated and bans repeating a generated n-gram (prompt tokens excluded)."""

    def __init__(self, prompt_length: int, penalty: float, ngram: int) -> None:
        self._start = prompt_length
        self._penalty = penalty
        self._ngram = ngram

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self._start :]
        if generated.shape[1] == 0:
            return scores
        if self._penalty != 1.0:
            picked = torch.gather(scores, 1, generated)
            # As in CTRL: a positive logit is divided, a negative one multiplied, so either becomes less likely.
            picked = torch.where(picked > 0, picked / self._penalty, picked * self._penalty)
            scores = scores.scatter(1, generated, picked)
        n = self._ngram
        if n and generated.shape[1] >= n:
            for row, tokens in enumerate(generated.tolist()):
                prefix = tuple(tokens[-(n - 1):]) if n > 1 else ()
                banned = [tokens[i + n - 1] for i in range(len(tokens) - n + 1)
                          if tuple(tokens[i : i + n - 1]) == prefix]
                if banned:
                    scores[row, banned] = -float("inf")
        return scores


class _StopStrings:
    """Stops generate once the new text contains a stop string.

    transformers' own StopStringCriteria preprocesses the whole vocabulary on every generate call
    (about a second for SmolLM2's 49k tokens); decoding the last few tokens each step costs microseconds.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_length: int) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._start = prompt_length
        # A character takes at most 4 byte-level tokens, so this many tokens cover any stop string.
        self._window = 4 * max(len(s) for s in stop) + 4

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = []
        for row in input_ids:
            tail = row[max(self._start, len(row) - self._window) :]
            text = self._tokenizer.decode(tail, skip_special_tokens=True)
            done.append(any(s in text for s in self._stop))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
