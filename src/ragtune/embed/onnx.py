"""ONNX Runtime embedder: a sentence-transformers model exported once to ONNX (fp32, or int8 per channel).

The export runs at first use (torch's exporter, then ONNX Runtime's dynamic quantisation with one scale per
output channel: one scale per tensor costs MiniLM a mean cosine of 0.94 to fp32, per channel 0.993) and is
cached under the model cache (``RAGTUNE_MODEL_CACHE``) in a directory named by a hash of the model's weight
files, so a model trained again in place is exported again. Encoding then needs neither torch nor
sentence-transformers: the tokenizer is the model's own ``tokenizer.json`` run by ``tokenizers``, and texts
are batched by token length so no batch computes much padding. Cross-encoders (rerankers) are exported the
same way (``kind="cross-encoder"``).
"""

from __future__ import annotations

import hashlib
import importlib.util
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
from ragtune.embed.bf16 import Bf16DocumentEncoder, bf16_agreement, bf16_ok
from ragtune.embed.cpu import cpu_has_fast_int8
from ragtune.errors import ConfigError
from ragtune.paths import default_cache_dir
from ragtune.tokens import HFTokenCounter, TokenCounter

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: Bumped when the export recipe changes, so exports made by an older recipe are made again.
EXPORT_VERSION = 1
_STALE_PARTIAL_S = 3600
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

KINDS = ("embedder", "cross-encoder")
# int8 is chosen automatically only when it follows fp32 this closely on the calibration texts below: for an
# embedder the cosine of its vectors to fp32's (mean, min), for a cross-encoder the Spearman correlation of its
# scores with fp32's per calibration query (mean, min). The bundled MiniLM scores 0.993 mean / 0.984 min here and
# 0.995 / 0.992 on SciFact abstracts (bench/results/embed_speed.json); one scale per tensor (0.94) would fail. Its
# SciFact nDCG@10 parity with fp32 is measured by bench/default_pipeline.py (the "parity" entry).
# No reranker's int8 quality could be measured on SciFact here, so a cross-encoder must order the calibration
# passages almost exactly as fp32 does (a small trained one at 0.985 mean flipped one test pair of six).
INT8_MIN_AGREEMENT = {"embedder": (0.99, 0.98), "cross-encoder": (0.99, 0.95)}

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
    """One cached export: where it is, what it came from, and how closely its int8 copy follows fp32
    (``int8_mean_agreement``/``int8_min_agreement``, see INT8_MIN_AGREEMENT)."""

    directory: str
    source: str
    checkpoint: str
    dim: int
    max_seq_length: int
    do_lower_case: bool
    inputs: tuple[str, ...]
    pad_id: int
    int8_mean_agreement: float
    int8_min_agreement: float
    fp32_max_abs_diff: float
    kind: str = "embedder"
    activation: str = "identity"  # cross-encoders: applied to the scores, as sentence-transformers' predict does
    export_version: int = EXPORT_VERSION

    @property
    def int8_ok(self) -> bool:
        """Whether int8 keeps quality on the calibration texts (the automatic choice)."""
        mean, low = INT8_MIN_AGREEMENT[self.kind]
        return self.int8_mean_agreement >= mean and self.int8_min_agreement >= low

    def model_file(self, precision: str) -> Path:
        return Path(self.directory) / ("model.int8.onnx" if precision == "int8" else "model.onnx")


def onnx_available() -> bool:
    """Whether ONNX Runtime and the onnx package (needed to export and quantise) are installed. The onnx package is
    only looked for, not imported: importing it takes 1.6 s on a 2-core CPU, which every CLI command that embeds
    would pay, and only an export (once per model) uses it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec("onnx") is not None


def export_directory(model_path: str | Path, checkpoint: str, cache_dir: str | Path | None = None,
                     kind: str = "embedder") -> Path:
    """Where the export of the model at ``model_path`` with weights ``checkpoint`` is cached."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = hashlib.sha256(f"{EXPORT_VERSION}|{kind}|{checkpoint}".encode()).hexdigest()[:12]
    return cache / "onnx" / f"{Path(model_path).name}-{key}"


def export_onnx(model_path: str | Path, checkpoint: str, *, cache_dir: str | Path | None = None,
                kind: str = "embedder") -> OnnxExport:
    """The cached ONNX export of the sentence-transformers directory ``model_path`` (an embedder, or with ``kind``
    'cross-encoder' a reranker) whose weight files hash to ``checkpoint`` (see ``ragtune.embed.checkpoint_hash``),
    made on first use (~10 s for MiniLM)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind '{kind}' — one of {', '.join(KINDS)}")
    if not checkpoint:
        raise ConfigError(f"{kind} '{model_path}' has no weight files to export — give a sentence-transformers "
                          "directory, or run it on torch")
    target = export_directory(model_path, checkpoint, cache_dir, kind)
    manifest = target / "export.json"
    if manifest.is_file():
        return _read_manifest(manifest)
    cache = target.parent
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model cache {cache} ({exc}) — set RAGTUNE_MODEL_CACHE") from exc
    _remove_stale_partials(cache)
    _remove_stale_exports(cache, Path(model_path))
    log.warning("exporting %s %s once to ONNX (fp32 and int8) at %s", kind, model_path, target)
    started = time.monotonic()
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache))
    try:
        exporter = _export_cross_encoder if kind == "cross-encoder" else _export_embedder
        export = exporter(Path(model_path), checkpoint, partial)
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
        raise ConfigError(f"exporting {kind} '{model_path}' to ONNX failed ({exc}) — run it on torch (embed_backend "
                          "or rerank_backend = \"torch\")") from exc
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


def _trace(module: Any, sample: dict[str, Any], inputs: Sequence[str], output: str, out: Path) -> None:
    """Trace ``module`` (called with the tensors named ``inputs``) into out/model.onnx, then quantise it into
    out/model.int8.onnx with one int8 scale per weight column."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices are not the user's concern
        torch.onnx.export(
            module, tuple(sample[name] for name in inputs), str(out / "model.onnx"), input_names=list(inputs),
            output_names=[output], dynamic_axes={**axes, output: {0: "batch"}}, opset_version=17, dynamo=False,
        )
    # quantize_dynamic advises pre-processing through the root logger; that advice is for static quantisation.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(out / "model.onnx"), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
    finally:
        logging.disable(logging.NOTSET)


def _tokenizer_facts(tokenizer: Any, model_path: Path, out: Path) -> tuple[tuple[str, ...], int]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(f"'{model_path}' has no fast tokenizer (tokenizer.json) — run it on torch")
    backend.save(str(out / "tokenizer.json"))
    return tuple(name for name in _INPUTS if name in tokenizer.model_input_names), int(tokenizer.pad_token_id or 0)


def _runners(out: Path, inputs: tuple[str, ...], pad_id: int, max_seq_length: int, do_lower_case: bool
             ) -> dict[str, OnnxRunner]:
    return {precision: OnnxRunner(out / ("model.int8.onnx" if precision == "int8" else "model.onnx"),
                                   out / "tokenizer.json", inputs=inputs, pad_id=pad_id, max_seq_length=max_seq_length,
                                   do_lower_case=do_lower_case) for precision in PRECISIONS}


def _remove_stale_exports(cache: Path, source: Path) -> None:
    """Exports of models that are gone (a deleted run directory) or were replaced (``source`` trained again in
    place) serve no one: one export per existing model keeps the cache from growing."""
    for manifest in cache.glob("*/export.json"):
        try:
            made_from = Path(json.loads(manifest.read_text())["source"])
            if not made_from.exists() or made_from.resolve() == source.resolve():
                shutil.rmtree(manifest.parent, ignore_errors=True)
        except (OSError, ValueError, KeyError):
            continue


def _export_embedder(model_path: Path, checkpoint: str, out: Path) -> OnnxExport:
    """Trace the whole sentence-transformers pipeline (transformer, pooling, dense layers, normalisation) and
    measure fp32 against torch and int8 against fp32 on the calibration texts."""
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention traces into plain MatMul/Softmax nodes that every ONNX Runtime build runs and quantises.
    st = SentenceTransformer(str(model_path), device="cpu", model_kwargs={"attn_implementation": "eager"})
    st.eval()
    inputs, pad_id = _tokenizer_facts(st.tokenizer, model_path, out)
    max_seq_length = int(st.max_seq_length or 512)
    do_lower_case = bool(getattr(st[0], "do_lower_case", False))

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    _trace(Pipeline(), st.preprocess(["a short text", "a somewhat longer text to trace the model with"]), inputs,
           "sentence_embedding", out)
    reference = st.encode(list(CALIBRATION_TEXTS), convert_to_numpy=True, normalize_embeddings=True,
                          show_progress_bar=False)
    runners = _runners(out, inputs, pad_id, max_seq_length, do_lower_case)
    vectors = {p: normalise(r.run(list(CALIBRATION_TEXTS), batch_size=batch_size_for(p, 8)))
               for p, r in runners.items()}
    cosines = np.sum(vectors["int8"] * vectors["fp32"], axis=1)
    return OnnxExport(
        directory=str(out), source=str(model_path), checkpoint=checkpoint,
        dim=int(st.get_embedding_dimension() or 0), max_seq_length=max_seq_length, do_lower_case=do_lower_case,
        inputs=inputs, pad_id=pad_id, int8_mean_agreement=round(float(cosines.mean()), 5),
        int8_min_agreement=round(float(cosines.min()), 5),
        fp32_max_abs_diff=float(np.abs(vectors["fp32"] - reference).max()),
    )


_ACTIVATIONS = {"Identity": "identity", "Sigmoid": "sigmoid"}


def _export_cross_encoder(model_path: Path, checkpoint: str, out: Path) -> OnnxExport:
    """Trace a sentence-transformers CrossEncoder to its raw scores (the activation is applied after ONNX) and
    measure fp32 against torch and int8 against fp32 on calibration (question, passage) pairs."""
    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(model_path), device="cpu", model_kwargs={"attn_implementation": "eager"})
    ce.eval()
    activation = _ACTIVATIONS.get(type(ce.activation_fn).__name__)
    if activation is None:
        raise ConfigError(f"cross-encoder '{model_path}' uses the activation {type(ce.activation_fn).__name__}, "
                          "which ragtune's ONNX path does not apply — run it on torch")
    inputs, pad_id = _tokenizer_facts(ce.tokenizer, model_path, out)
    max_seq_length = int(ce.max_seq_length or 512)

    class Scores(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ce = ce

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.ce(dict(zip(inputs, tensors, strict=True)))["scores"]

    _trace(Scores(), ce.preprocess([("a question", "a passage"), ("another question", "a longer passage to trace")]),
           inputs, "scores", out)
    questions = [t for t in CALIBRATION_TEXTS if t.endswith(("?", "？"))]
    passages = [t for t in CALIBRATION_TEXTS if t not in questions]
    pairs = [(q, p) for q in questions for p in passages]
    reference = np.asarray(ce.predict(pairs, activation_fn=torch.nn.Identity(), show_progress_bar=False))
    runners = _runners(out, inputs, pad_id, max_seq_length, False)
    scores = {p: r.run(pairs, batch_size=batch_size_for(p, 8))[:, 0] for p, r in runners.items()}
    shape = (len(questions), len(passages))
    correlations = [float(spearmanr(a, b).statistic) for a, b in
                    zip(scores["int8"].reshape(shape), scores["fp32"].reshape(shape), strict=True)]
    return OnnxExport(
        directory=str(out), source=str(model_path), checkpoint=checkpoint, dim=1, max_seq_length=max_seq_length,
        do_lower_case=False, inputs=inputs, pad_id=pad_id,
        int8_mean_agreement=round(float(np.nan_to_num(np.mean(correlations))), 5),
        int8_min_agreement=round(float(np.nan_to_num(np.min(correlations))), 5),
        fp32_max_abs_diff=float(np.abs(scores["fp32"] - reference.reshape(-1)).max()), kind="cross-encoder",
        activation=activation,
    )


def choose_precision(export: OnnxExport, precision: str) -> str:
    """``precision``, or for 'auto': int8 where its outputs follow fp32 closely (``OnnxExport.int8_ok``) and the
    CPU has int8 dot-product instructions (``embed.cpu.cpu_has_fast_int8``: elsewhere int8 is no faster and less
    exact), else fp32."""
    if precision != "auto":
        return precision
    if not export.int8_ok:
        log.info("%s %s: int8 outputs differ too much from fp32 (mean agreement %.4f, min %.4f); using fp32",
                 export.kind, export.source, export.int8_mean_agreement, export.int8_min_agreement)
        return "fp32"
    if not cpu_has_fast_int8():
        log.info("%s %s: this CPU has no int8 dot-product instructions (VNNI, AMX, dotprod), where int8 is no "
                 "faster than fp32; using fp32 (RAGTUNE_CPU_INT8=1 or the precision setting overrides)",
                 export.kind, export.source)
        return "fp32"
    return "int8"


#: Most padded tokens per ONNX call. On one thread (AMD EPYC, AVX2), MiniLM in fp32 took 62 ms per 196-token
#: chunk in batches of 1-4 against 80 ms in batches of 64, and 6.4 ms per query in batches of 16 against 9.5 alone
#: and 7.5 in batches of 64: about 256-1,024 tokens per call is fastest, whatever the texts' length.
BATCH_TOKENS = 512


def batch_size_for(precision: str, batch_size: int) -> int:
    """Texts per ONNX call at ``precision``: int8 encodes one text at a time. Dynamic quantisation scales
    activations per tensor, so in a batch a text's vector would depend on its neighbours (cosine 0.991 to its
    own vector alone) and the same chunk would get other vectors at ingest, re-embed and query time; alone, it
    pads nothing and runs as fast."""
    return 1 if precision == "int8" else batch_size


class OnnxRunner:
    """One exported model in an ONNX Runtime session: tokenises texts or (question, passage) pairs with the model's
    own tokenizer, batches them by length and returns the model's output rows in input order."""

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

    def run(self, texts: Sequence[str | tuple[str, str]], *, batch_size: int) -> np.ndarray:
        """The model's output row for each text (or (question, passage) pair), in order."""
        # sentence-transformers strips (and, for some models, lowercases) every text before tokenising.
        prepared = [self._prepare(t) if isinstance(t, str) else (self._prepare(t[0]), self._prepare(t[1]))
                    for t in texts]
        encodings = self.tokenizer.encode_batch(prepared)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        # Longest first: the first batch shows the peak memory at once, and each batch pads only to its own
        # longest text, so sorting by length wastes almost no compute on padding.
        order = np.argsort(-lengths, kind="stable")
        out: np.ndarray | None = None
        start = 0
        while start < len(order):
            # Up to batch_size texts, and no more padded tokens than BATCH_TOKENS: wider batches spill the
            # activations out of the CPU's caches and cost more per text, not less.
            width = int(lengths[order[start]])
            take = max(1, min(batch_size, BATCH_TOKENS // max(width, 1)))
            rows = order[start : start + take]
            start += take
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
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def _prepare(self, text: str) -> str:
        return text.strip().lower() if self.do_lower_case else text.strip()

    def token_counter(self) -> TokenCounter:
        return HFTokenCounter(self.tokenizer)


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime, in fp32 (same vectors as torch, to ~1e-6) or int8."""

    def __init__(
        self, model: str, path: str, checkpoint: str, *, precision: str = "int8", batch_size: int = 64,
        num_threads: int | None = None, cache_dir: str | Path | None = None, export: OnnxExport | None = None,
        documents_bf16: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"embed_precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        if documents_bf16 and precision != "fp32":  # True asks for bf16 documents where they keep fp32's vectors
            raise ConfigError("bf16 document encoding stands in for fp32 only (int8 vectors are int8's own)")
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
        self._runner = OnnxRunner(
            self.export.model_file(precision), directory / "tokenizer.json", inputs=self.export.inputs,
            pad_id=self.export.pad_id, max_seq_length=self.max_seq_length, do_lower_case=self.export.do_lower_case,
            num_threads=num_threads,
        )
        # At fp32 on AMX CPUs documents (the bulk of the work) are encoded in bf16 by torch: fp32's vectors to
        # within rounding, 4x faster (see embed.bf16). Queries stay on ONNX: no torch in a query process.
        self._bf16: Bf16DocumentEncoder | None = (
            Bf16DocumentEncoder(path, batch_size=batch_size, num_threads=num_threads)
            if documents_bf16 and self._bf16_keeps_vectors() else None)

    def _bf16_keeps_vectors(self) -> bool:
        """Whether bf16 vectors of this model follow this (fp32) runner's on the calibration texts: measured once
        per export and cached beside it (``embed.bf16``)."""
        try:
            agreement = bf16_agreement(
                self.export.directory, self.path,
                lambda: self._runner.run(list(CALIBRATION_TEXTS), batch_size=8), CALIBRATION_TEXTS)
        except (ImportError, RuntimeError, OSError, ValueError):
            log.warning("embedder at %s: bf16 encoding could not be checked; documents stay on ONNX", self.path,
                        exc_info=True)
            return False
        if not bf16_ok(agreement):
            log.info("embedder at %s: bf16 vectors differ from fp32 (mean cosine %.5f, min %.5f); not used",
                     self.path, agreement["mean"], agreement["min"])
            return False
        return True

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self._runner.run([prefix + t for t in texts],
                                          batch_size=batch_size_for(self.precision, self.batch_size)))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self._bf16 is not None and self._bf16.worth_it(len(texts)):
            return self._bf16.encode([self._passage_prefix + t for t in texts])
        return self._encode(texts, self._passage_prefix)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prefix)

    def token_counter(self) -> TokenCounter:
        return self._runner.token_counter()

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision and the export's agreement with torch."""
        described = {"backend": self.backend, "precision": self.precision, "export": self.export.directory,
                     "int8_mean_cosine": self.export.int8_mean_agreement,
                     "int8_min_cosine": self.export.int8_min_agreement}
        if self._bf16 is not None:
            described["documents"] = "bf16 (torch on AMX)"
        return described
