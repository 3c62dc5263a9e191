"""ONNX Runtime embedder: a sentence-transformers model exported once to ONNX (fp32, or int8 per channel).

The export runs at first use (torch's exporter, then ONNX Runtime's dynamic quantisation with one scale per
output channel: one scale per tensor costs MiniLM a mean cosine of 0.94 to fp32, per channel 0.994) and is
cached under the model cache (``RAGTUNE_MODEL_CACHE``) in a directory named by a hash of the model's weight
files, so a model trained again in place is exported again. Encoding then needs neither torch nor
sentence-transformers: the tokenizer is the model's own ``tokenizer.json`` run by ``tokenizers``, and texts
are batched by token length so no batch computes much padding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.embed.base import normalise, prefixes_for
from ragtune.errors import ConfigError
from ragtune.paths import default_cache_dir
from ragtune.tokens import HFTokenCounter, TokenCounter

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: Bumped when the export recipe changes, so exports made by an older recipe are made again.
EXPORT_VERSION = 1
_STALE_PARTIAL_S = 3600
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# int8 is chosen automatically only when its vectors stay this close to fp32's on the calibration texts below.
# The bundled MiniLM scores 0.994 mean / 0.990 min there and keeps SciFact nDCG@10 within 0.005 of fp32
# (bench/results/onnx_parity.json); one scale per tensor (0.94 mean) would fail.
INT8_MIN_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.98

# Questions and passages of the kinds a knowledge base holds (English and Chinese, short and long).
CALIBRATION_TEXTS = (
    "How often must API keys be rotated?",
    "API keys must be rotated every 90 days; the security team audits key age each quarter.",
    "What is the refund window for enterprise plans?",
    "Enterprise customers may request a full refund within 30 days of the invoice date.",
    "Who approves travel expenses above 5,000 dollars?",
    "Expenses above the limit need written approval from the department head and the finance office.",
    "Does vitamin D supplementation reduce the risk of fractures in older adults?",
    "In a randomised trial of 2,686 people aged 65 to 85, four-monthly vitamin D supplementation reduced "
    "fractures by 22 percent over five years without adverse effects.",
    "The mitochondrial electron transport chain couples redox reactions to proton pumping across the inner "
    "membrane, and the resulting gradient drives ATP synthase.",
    "def rotate_keys(client, max_age_days=90):\n    for key in client.list_keys():\n        if key.age > max_age_days:"
    "\n            client.revoke(key)",
    "| region | revenue | growth |\n| --- | --- | --- |\n| EMEA | 4.2M | 12% |\n| APAC | 3.1M | 18% |",
    "Article 12. The employer shall provide written notice at least thirty days before terminating a contract.",
    "Q3 results: operating margin improved to 14 percent, driven by lower cloud costs and higher renewals.",
    "The canteen on the second floor serves lunch from noon until two o'clock on weekdays.",
    "Restart the ingestion service after changing the configuration file; running jobs resume from their "
    "last checkpoint.",
    "Li Hua met his trainer at the gym on Saturday morning and they planned a new running schedule.",
    "年假有多少天？",
    "全职员工每年享有二十天带薪年假，入职满五年后增加到二十五天。",
    "报销差旅费需要哪些材料？",
    "差旅报销须提交发票原件、行程单和部门经理签字的审批表，三十日内有效。",
    "数据库每天凌晨两点自动备份，备份文件保留三十天。",
    "The patient presented with fever, cough and shortness of breath; chest imaging showed bilateral "
    "ground-glass opacities consistent with viral pneumonia.",
    "Regular expressions match patterns in text: the pattern \\d{4}-\\d{2}-\\d{2} matches ISO dates.",
    "Password resets are self-service through the account page; locked accounts need the help desk.",
)


@dataclass(frozen=True)
class OnnxExport:
    """One cached export: where it is, what it came from, and how closely its int8 copy follows fp32."""

    directory: str
    source: str
    checkpoint: str
    dim: int
    max_seq_length: int
    do_lower_case: bool
    inputs: tuple[str, ...]
    pad_id: int
    int8_mean_cosine: float
    int8_min_cosine: float
    fp32_max_abs_diff: float
    export_version: int = EXPORT_VERSION

    @property
    def int8_ok(self) -> bool:
        """Whether int8 keeps quality on the calibration texts (the automatic choice)."""
        return self.int8_mean_cosine >= INT8_MIN_MEAN_COSINE and self.int8_min_cosine >= INT8_MIN_COSINE

    def model_file(self, precision: str) -> Path:
        return Path(self.directory) / ("model.int8.onnx" if precision == "int8" else "model.onnx")


def onnx_available() -> bool:
    """Whether ONNX Runtime and the onnx package (needed to export and quantise) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_directory(model_path: str | Path, checkpoint: str, cache_dir: str | Path | None = None) -> Path:
    """Where the export of the model at ``model_path`` with weights ``checkpoint`` is cached."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = hashlib.sha256(f"{EXPORT_VERSION}|{checkpoint}".encode()).hexdigest()[:12]
    return cache / "onnx" / f"{Path(model_path).name}-{key}"


def export_onnx(model_path: str | Path, checkpoint: str, *, cache_dir: str | Path | None = None) -> OnnxExport:
    """The cached ONNX export of the sentence-transformers directory ``model_path`` whose weight files hash to
    ``checkpoint`` (see ``ragtune.embed.checkpoint_hash``), made on first use (~10 s for MiniLM)."""
    if not checkpoint:
        raise ConfigError(f"embedder '{model_path}' has no weight files to export — give a sentence-transformers "
                          "directory, or set embed_backend = \"torch\"")
    target = export_directory(model_path, checkpoint, cache_dir)
    manifest = target / "export.json"
    if manifest.is_file():
        return _read_manifest(manifest)
    cache = target.parent
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model cache {cache} ({exc}) — set RAGTUNE_MODEL_CACHE") from exc
    _remove_stale_partials(cache)
    log.warning("exporting %s once to ONNX (fp32 and int8) at %s", model_path, target)
    started = time.monotonic()
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache))
    try:
        export = _export(Path(model_path), checkpoint, partial)
        (partial / "export.json").write_text(json.dumps(asdict(export), indent=2) + "\n")
        try:
            # Atomic: readers see no export or a complete one, never a half-written model.
            partial.rename(target)
        except OSError:
            if not manifest.is_file():
                raise
            log.info("another process exported %s meanwhile; using its copy", model_path)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"exporting embedder '{model_path}' to ONNX failed ({exc}) — set embed_backend = "
                          "\"torch\" to use it without ONNX") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("exported %s in %.0f s", model_path, time.monotonic() - started)
    return _read_manifest(manifest)


def _read_manifest(path: Path) -> OnnxExport:
    data = json.loads(path.read_text())
    data["inputs"] = tuple(data["inputs"])
    data["directory"] = str(path.parent)
    return OnnxExport(**data)


def _remove_stale_partials(cache: Path) -> None:
    now = time.time()
    for partial in cache.glob(".*.partial-*"):
        try:
            if now - partial.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError:
            continue


def _export(model_path: Path, checkpoint: str, out: Path) -> OnnxExport:
    """Trace the whole sentence-transformers pipeline (transformer, pooling, dense layers, normalisation) into
    model.onnx, quantise it into model.int8.onnx, and measure both against torch on the calibration texts."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    # Eager attention traces into plain MatMul/Softmax nodes that every ONNX Runtime build runs and quantises.
    st = SentenceTransformer(str(model_path), device="cpu", model_kwargs={"attn_implementation": "eager"})
    st.eval()
    tokenizer = st.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(f"embedder '{model_path}' has no fast tokenizer (tokenizer.json) — set embed_backend = "
                          "\"torch\"")
    inputs = tuple(name for name in _INPUTS if name in tokenizer.model_input_names)
    dim = int(st.get_embedding_dimension() or 0)
    max_seq_length = int(st.max_seq_length or 512)
    first = st[0]
    do_lower_case = bool(getattr(first, "do_lower_case", False))

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    sample = st.preprocess(["a short text", "a somewhat longer text to trace the model with"])
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices are not the user's concern
        torch.onnx.export(
            Pipeline(), tuple(sample[name] for name in inputs), str(out / "model.onnx"), input_names=list(inputs),
            output_names=["sentence_embedding"], dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    # quantize_dynamic advises pre-processing through the root logger; that advice is for static quantisation.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(out / "model.onnx"), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    backend.save(str(out / "tokenizer.json"))
    reference = st.encode(list(CALIBRATION_TEXTS), convert_to_numpy=True, normalize_embeddings=True,
                          show_progress_bar=False)
    pad_id = int(tokenizer.pad_token_id or 0)
    vectors = {}
    for precision in PRECISIONS:
        runner = _OnnxRunner(out / ("model.int8.onnx" if precision == "int8" else "model.onnx"), out / "tokenizer.json",
                             inputs=inputs, pad_id=pad_id, max_seq_length=max_seq_length, do_lower_case=do_lower_case)
        vectors[precision] = runner.encode(list(CALIBRATION_TEXTS), batch_size=_batch_size(precision, 8))
    cosines = np.sum(vectors["int8"] * vectors["fp32"], axis=1)
    return OnnxExport(
        directory=str(out), source=str(model_path), checkpoint=checkpoint, dim=dim, max_seq_length=max_seq_length,
        do_lower_case=do_lower_case, inputs=inputs, pad_id=pad_id,
        int8_mean_cosine=round(float(cosines.mean()), 5), int8_min_cosine=round(float(cosines.min()), 5),
        fp32_max_abs_diff=float(np.abs(vectors["fp32"] - reference).max()),
    )


def _batch_size(precision: str, batch_size: int) -> int:
    """int8 encodes one text at a time. Dynamic quantisation scales activations per tensor, so in a batch a
    text's vector would depend on its neighbours (cosine 0.991 to its own vector alone) and the same chunk
    would get other vectors at ingest, re-embed and query time; alone, it pads nothing and runs as fast."""
    return 1 if precision == "int8" else batch_size


class _OnnxRunner:
    """Tokenise, batch by length, run one ONNX session, normalise."""

    def __init__(
        self, model_file: Path, tokenizer_file: Path, *, inputs: Sequence[str], pad_id: int, max_seq_length: int,
        do_lower_case: bool, num_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.inputs = tuple(inputs)
        self.pad_id = pad_id
        self.do_lower_case = do_lower_case

    def encode(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
        # sentence-transformers strips (and, for some models, lowercases) every text before tokenising.
        prepared = [t.strip().lower() if self.do_lower_case else t.strip() for t in texts]
        encodings = self.tokenizer.encode_batch(prepared)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        # Longest first: the first batch shows the peak memory at once, and each batch pads only to its own
        # longest text, so sorting by length wastes almost no compute on padding.
        order = np.argsort(-lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                encoding = encodings[row]
                n = len(encoding.ids)
                ids[i, :n] = encoding.ids
                mask[i, :n] = 1
                types[i, :n] = encoding.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            result = self.session.run(None, {name: feeds[name] for name in self.inputs})[0]
            if out is None:
                out = np.zeros((len(texts), result.shape[1]), dtype=np.float32)
            out[rows] = result
        return normalise(out) if out is not None else np.zeros((0, 0), dtype=np.float32)

    def token_counter(self) -> TokenCounter:
        return HFTokenCounter(self.tokenizer)


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime, in fp32 (same vectors as torch, to ~1e-6) or int8."""

    def __init__(
        self, model: str, path: str, checkpoint: str, *, precision: str = "int8", batch_size: int = 64,
        num_threads: int | None = None, cache_dir: str | Path | None = None, export: OnnxExport | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"embed_precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        if batch_size <= 0:
            raise ConfigError("embed_batch_size must be greater than 0.")
        self.export = export or export_onnx(path, checkpoint, cache_dir=cache_dir)
        self.name = model
        self.path = path
        self.backend = "onnx"
        self.precision = precision
        self.dim = self.export.dim
        self.batch_size = batch_size
        self.max_seq_length = self.export.max_seq_length
        self._query_prefix, self._passage_prefix = prefixes_for(f"{model} {path}")
        directory = Path(self.export.directory)
        self._runner = _OnnxRunner(
            self.export.model_file(precision), directory / "tokenizer.json", inputs=self.export.inputs,
            pad_id=self.export.pad_id, max_seq_length=self.max_seq_length, do_lower_case=self.export.do_lower_case,
            num_threads=num_threads,
        )

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._runner.encode([prefix + t for t in texts], batch_size=_batch_size(self.precision, self.batch_size))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._passage_prefix)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prefix)

    def token_counter(self) -> TokenCounter:
        return self._runner.token_counter()

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision and the export's agreement with torch."""
        return {"backend": self.backend, "precision": self.precision, "export": self.export.directory,
                "int8_mean_cosine": self.export.int8_mean_cosine, "int8_min_cosine": self.export.int8_min_cosine}
