"""An exact, incremental BM25 index over numpy postings segments, persisted to a directory."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import shutil
import threading
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from ragtune.errors import StoreError

__all__ = ["BM25Index", "BM25IndexError", "BM25Variant", "VARIANTS"]

logger = logging.getLogger(__name__)

_FORMAT = "ragtune-bm25/1"
_MANIFEST = "manifest.json"
# save() only ever deletes names it could have written, in case the directory is shared.
_OWNED_PREFIXES = ("seg-", "state-", "vocab-", f"{_MANIFEST}.tmp-")
# The arrays of one immutable segment on disk; `alive` is mutable and lives in the state file.
_SEGMENT_ARRAYS = ("ids", "order", "lengths", "terms", "indptr", "docs", "tfs", "doc_indptr", "doc_terms")
_EMPTY = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


class BM25IndexError(StoreError):
    """The BM25 index directory is missing or unreadable; rebuild it from the knowledge base."""


def _lucene_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def _robertson_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    return np.log(n_docs - df + 0.5) - np.log(df + 0.5)


def _okapi_floor(df: np.ndarray, n_docs: int) -> float:
    # rank_bm25's BM25Okapi: negative idfs become 0.25 * the mean idf over the corpus vocabulary. fsum makes
    # the mean independent of vocabulary order, so an incrementally updated index equals a fresh build.
    return 0.25 * math.fsum(_robertson_idf(df, n_docs).tolist()) / max(len(df), 1)


class BM25Variant(NamedTuple):
    """A BM25 flavour: score = idf(df, N) * tf * tf_scale(k1) / (tf + k1 * (1 - b + b * dl / avgdl))."""

    idf: Callable[[np.ndarray, int], np.ndarray]
    """Element-wise: document frequencies and the live document count to idf values."""
    tf_scale: Callable[[float], float]
    """The constant numerator factor of the tf saturation."""
    negative_idf_floor: Callable[[np.ndarray, int], float] | None = None
    """From the df of every live term: the value that replaces negative idfs (None keeps them)."""


VARIANTS: dict[str, BM25Variant] = {
    # Lucene >= 8 and bm25s method="lucene": idf is never negative, and there is no (k1 + 1) factor.
    "lucene": BM25Variant(idf=_lucene_idf, tf_scale=lambda k1: 1.0),
    # rank_bm25.BM25Okapi, score for score.
    "robertson": BM25Variant(idf=_robertson_idf, tf_scale=lambda k1: k1 + 1.0, negative_idf_floor=_okapi_floor),
}


class _Vocabulary(dict[str, int]):
    """Term -> global term id; looking up a new term assigns it the next id."""

    def __missing__(self, term: str) -> int:
        term_id = len(self)
        self[term] = term_id
        return term_id


class _Segment:
    """Postings for a batch of documents. Everything but `alive` is immutable (and may be memory-mapped).

    Postings are term-major over the segment's own sorted term list, so a small segment costs memory in
    proportion to its own postings, not to the whole vocabulary.
    """

    def __init__(self, arrays: dict[str, np.ndarray], alive: np.ndarray, name: str | None = None) -> None:
        self.name = name or f"seg-{uuid.uuid4().hex}"
        self.ids: np.ndarray = arrays["ids"]  # int64 external id per slot
        self.order: np.ndarray = arrays["order"]  # slots sorted by id, for id lookups
        self.lengths: np.ndarray = arrays["lengths"]  # float32 token count per slot
        self.terms: np.ndarray = arrays["terms"]  # sorted global ids of the terms present here
        self.indptr: np.ndarray = arrays["indptr"]  # position in `terms` -> range of docs/tfs
        self.docs: np.ndarray = arrays["docs"]  # int32 slot per posting, ascending within a term
        self.tfs: np.ndarray = arrays["tfs"]  # float32 term frequency per posting
        # The doc-major view (slot -> its global term ids) lets a removal update df in O(document length).
        self.doc_indptr: np.ndarray = arrays["doc_indptr"]
        self.doc_terms: np.ndarray = arrays["doc_terms"]
        self.sorted_ids: np.ndarray = self.ids[self.order]
        self.alive = alive
        self.n_alive = int(alive.sum())
        self._scores: np.ndarray | None = None
        self._norm_key: tuple[float, float] | None = None
        self._norm = np.empty(0, dtype=np.float32)

    @classmethod
    def from_tokens(cls, ids: np.ndarray, lengths: np.ndarray, terms: np.ndarray, n_terms: int) -> _Segment:
        """Builds a segment from every document's token term ids, concatenated (`lengths` per document)."""
        rows = np.repeat(np.arange(len(ids), dtype=np.int32), lengths)
        ones = np.ones(len(terms), dtype=np.float32)
        compact = len(terms) * 8 < n_terms
        if compact:
            # Few tokens against a large vocabulary: number the columns by the terms present, so the
            # segment costs memory in proportion to its own postings.
            present, columns = np.unique(terms, return_inverse=True)
            by_term = sp.csc_matrix((ones, (rows, columns)), shape=(len(ids), len(present)))
        else:
            by_term = sp.csc_matrix((ones, (rows, terms)), shape=(len(ids), n_terms))
        by_term.sum_duplicates()
        by_doc = by_term.tocsr()
        indptr, doc_terms = by_term.indptr, by_doc.indices
        if compact:
            doc_terms = present[doc_terms]
        else:
            present = np.flatnonzero(np.diff(indptr))
            indptr = np.append(indptr[present], indptr[-1])
        arrays = {
            "ids": ids,
            "order": np.argsort(ids, kind="stable"),
            "lengths": lengths.astype(np.float32),
            "terms": present.astype(np.int32, copy=False),
            "indptr": indptr.astype(np.int64, copy=False),
            "docs": by_term.indices.astype(np.int32, copy=False),
            "tfs": by_term.data,
            "doc_indptr": by_doc.indptr.astype(np.int64, copy=False),
            "doc_terms": doc_terms.astype(np.int32, copy=False),
        }
        return cls(arrays, np.ones(len(ids), dtype=bool))

    @classmethod
    def merge(cls, segments: list[_Segment]) -> _Segment:
        """One segment holding the live documents of `segments`, in order, without their dead ones.

        Works on the term-major arrays directly: each input's postings for a term land as one run after
        the previous inputs' runs, so slots stay ascending within every term and nothing needs sorting.
        """
        terms = functools.reduce(np.union1d, [segment.terms for segment in segments])
        counts = np.zeros(len(terms), dtype=np.int64)
        parts = []
        first_slot = 0
        for segment in segments:
            positions = np.searchsorted(terms, segment.terms)
            if segment.n_alive == segment.size:
                docs, tfs, term_counts = segment.docs + first_slot, segment.tfs, np.diff(segment.indptr)
            else:
                keep = segment.alive[segment.docs]
                slots = np.cumsum(segment.alive, dtype=np.int32) - 1 + first_slot
                docs, tfs = slots[segment.docs[keep]], segment.tfs[keep]
                kept_before = np.concatenate(([0], np.cumsum(keep)))
                term_counts = kept_before[segment.indptr[1:]] - kept_before[segment.indptr[:-1]]
            counts[positions] += term_counts
            parts.append((positions, term_counts, docs, tfs))
            first_slot += segment.n_alive
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        out_docs = np.empty(indptr[-1], dtype=np.int32)
        out_tfs = np.empty(indptr[-1], dtype=np.float32)
        fill = indptr[:-1].copy()
        for positions, term_counts, docs, tfs in parts:
            run_starts = np.cumsum(term_counts) - term_counts
            destination = np.repeat(fill[positions] - run_starts, term_counts) + np.arange(len(docs))
            out_docs[destination] = docs
            out_tfs[destination] = tfs
            fill[positions] += term_counts
        if not counts.all():  # terms whose every document was dead
            terms, counts = terms[counts > 0], counts[counts > 0]
            indptr = np.zeros(len(terms) + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
        live = [segment.alive if segment.n_alive < segment.size else slice(None) for segment in segments]
        doc_lengths = np.concatenate([np.diff(s.doc_indptr)[alive] for s, alive in zip(segments, live, strict=True)])
        doc_indptr = np.zeros(len(doc_lengths) + 1, dtype=np.int64)
        np.cumsum(doc_lengths, out=doc_indptr[1:])
        ids = np.concatenate([s.ids[alive] for s, alive in zip(segments, live, strict=True)])
        arrays = {
            "ids": ids,
            "order": np.argsort(ids, kind="stable"),
            "lengths": np.concatenate([s.lengths[alive] for s, alive in zip(segments, live, strict=True)]),
            "terms": np.array(terms, dtype=np.int32),
            "indptr": indptr,
            "docs": out_docs,
            "tfs": out_tfs,
            "doc_indptr": doc_indptr,
            "doc_terms": np.concatenate(
                [s.doc_terms if s.n_alive == s.size else s.doc_terms_of(np.flatnonzero(s.alive)) for s in segments]
            ),
        }
        return cls(arrays, np.ones(len(ids), dtype=bool))

    @property
    def size(self) -> int:
        return len(self.ids)

    def locate(self, ids: np.ndarray) -> np.ndarray:
        """Slots of the live documents among `ids` (ids absent or dead here are skipped)."""
        if self.n_alive == 0 or len(ids) == 0:
            return np.empty(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_ids, ids), self.size - 1)
        slots = self.order[pos[self.sorted_ids[pos] == ids]]
        return slots[self.alive[slots]]

    def doc_terms_of(self, slots: np.ndarray) -> np.ndarray:
        """The global term ids of the documents at `slots`, concatenated."""
        starts, ends = self.doc_indptr[slots], self.doc_indptr[slots + 1]
        lengths = ends - starts
        # Offsets relative to each run's start, so all runs are gathered in one vectorised step.
        run_starts = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        return self.doc_terms[run_starts + np.arange(int(lengths.sum()))]

    def top_k(
        self, query: list[tuple[int, float]], c1: float, c2: float, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best k (ids, scores) here for query terms given as (global term id, weight)."""
        if self._scores is None:
            self._scores = np.zeros(self.size, dtype=np.float32)
        scores = self._scores
        norm = self._norm_for(c1, c2)
        term_ids = np.fromiter((term for term, _ in query), dtype=np.int64, count=len(query))
        positions = np.minimum(np.searchsorted(self.terms, term_ids), len(self.terms) - 1)
        found = (self.terms[positions] == term_ids).tolist() if len(self.terms) else [False] * len(query)
        touched = []
        probe = None
        n_postings = 0
        for (_, weight), position, hit in zip(query, positions.tolist(), found, strict=True):
            if not hit:
                continue
            start, end = int(self.indptr[position]), int(self.indptr[position + 1])
            docs, tfs = self.docs[start:end], self.tfs[start:end]
            # weight * tf / (tf + k1 * (1 - b + b * dl / avgdl)), in place to spare allocations.
            part = norm[docs]
            part += tfs
            np.divide(tfs, part, out=part)
            part *= weight
            np.add.at(scores, docs, part)
            touched.append(docs)
            n_postings += end - start
            if end - start >= k and (probe is None or end - start < len(probe)):
                probe = docs
        if not touched:
            return _EMPTY
        threshold = self._lower_bound(probe, k, allowed)
        if 4 * n_postings >= self.size:
            # Most documents were touched: one pass over the dense scores beats gathering every posting.
            slots = np.flatnonzero(scores >= threshold) if threshold > 0 else np.flatnonzero(scores > 0)
            values = scores[slots]
            scores.fill(0.0)
        else:
            candidates = touched[0] if len(touched) == 1 else np.concatenate(touched)
            values = scores[candidates]
            scores[candidates] = 0.0
            selected = values >= threshold if threshold > 0 else values > 0
            slots, values = candidates[selected], values[selected]
            if len(touched) > 1:
                slots, first = np.unique(slots, return_index=True)
                values = values[first]
        keep = self._valid(slots, allowed)
        return _best(self.ids[slots[keep]], values[keep], k)

    def _norm_for(self, c1: float, c2: float) -> np.ndarray:
        # k1 * (1 - b + b * dl / avgdl) per document changes with avgdl, so it is cached per (c1, c2).
        if self._norm_key != (c1, c2):
            self._norm = (self.lengths * c2 + c1).astype(np.float32)
            self._norm_key = (c1, c2)
        return self._norm

    def _lower_bound(self, probe: np.ndarray | None, k: int, allowed: np.ndarray | None) -> float:
        # The k-th best score among any k valid documents bounds the true k-th best from below, so only
        # documents at or above it need sorting. The rarest term's documents tend to score highest.
        if probe is None or self._scores is None:
            return 0.0
        values = self._scores[probe]
        values = values[self._valid(probe, allowed) & (values > 0)]
        if len(values) < k:
            return 0.0
        return float(np.partition(values, len(values) - k)[len(values) - k])

    def _valid(self, slots: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
        """Which `slots` hold live documents whose ids are in `allowed` (when given)."""
        keep = self.alive[slots] if self.n_alive < self.size else np.ones(len(slots), dtype=bool)
        if allowed is not None:
            ids = self.ids[slots]
            pos = np.minimum(np.searchsorted(allowed, ids), len(allowed) - 1)
            keep &= allowed[pos] == ids
        return keep


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k by score, ties broken by smaller id, so results do not depend on how the index was built."""
    if len(ids) > k:
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        # Everything tied with the k-th score stays in, so the tie-break below sees all of them.
        top = scores >= threshold
        ids, scores = ids[top], scores[top]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


class BM25Index:
    """Exact BM25 over integer-labelled documents; add and remove without rebuilding.

    Documents live in immutable segments (term-major CSR postings) plus an alive mask. Each `add` builds a
    segment; neighbours are merged while the older is no larger than the newer (a binary counter: O(log n)
    segments, O(log n) rewrites per document) and mostly-dead segments are compacted. Collection statistics
    (N, avgdl, df) always cover exactly the live documents, so scores equal those of a fresh build.
    Queries accumulate per-term contributions into a dense per-segment buffer and select the top k
    against a lower bound taken from the rarest term's documents.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, variant: str = "lucene") -> None:
        if not (isinstance(k1, int | float) and math.isfinite(k1) and k1 >= 0):
            raise ValueError(f"k1 must be >= 0, got {k1!r}")
        if not (isinstance(b, int | float) and 0 <= b <= 1):
            raise ValueError(f"b must be between 0 and 1, got {b!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self.variant = variant
        self._lock = threading.RLock()
        self._vocab = _Vocabulary()
        self._df = np.zeros(0, dtype=np.int64)
        self._segments: list[_Segment] = []
        self._n_docs = 0
        self._total_length = 0.0
        self._idf_floor: float | None = None

    def __repr__(self) -> str:
        return f"BM25Index(k1={self.k1}, b={self.b}, variant={self.variant!r}, docs={len(self)})"

    def __len__(self) -> int:
        return self._n_docs

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, int | np.integer):
            return False
        ids = np.array([doc_id], dtype=np.int64)
        with self._lock:
            return any(len(segment.locate(ids)) for segment in self._segments)

    def add(self, ids: Sequence[int], docs: Sequence[list[str]]) -> None:
        """Indexes `docs` (lists of tokens) under `ids`; an id already present is replaced."""
        if len(ids) != len(docs):
            raise ValueError(f"ids and docs must have the same length, got {len(ids)} and {len(docs)}")
        if len(ids) == 0:
            return
        if any(isinstance(doc, str) for doc in docs):
            raise TypeError("docs must be lists of tokens, not strings; tokenize them first (ragtune.store.text)")
        id_array = np.array(ids, dtype=np.int64)  # a copy: the segment keeps it
        unique, last = np.unique(id_array[::-1], return_index=True)
        if len(unique) < len(id_array):
            # Within one batch a later duplicate replaces an earlier one, as a second add() would.
            keep = np.sort(len(id_array) - 1 - last)
            id_array = id_array[keep]
            docs = [docs[i] for i in keep]
        lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        with self._lock:
            # One C-level pass maps every token to its term id; the sparse build sums repeats per document.
            terms = np.fromiter(
                map(self._vocab.__getitem__, itertools.chain.from_iterable(docs)),
                dtype=np.int32,
                count=int(lengths.sum()),
            )
            segment = _Segment.from_tokens(id_array, lengths, terms, len(self._vocab))
            self._grow_df(len(self._vocab))
            self._remove_ids(id_array)
            self._df[segment.terms] += np.diff(segment.indptr)
            self._segments.append(segment)
            self._n_docs += segment.size
            self._total_length += float(lengths.sum())
            self._idf_floor = None
            self._maintain()

    def remove(self, ids: Iterable[int]) -> None:
        """Removes the documents with these ids; unknown ids are ignored."""
        id_array = np.unique(np.fromiter(ids, dtype=np.int64))
        with self._lock:
            if self._remove_ids(id_array):
                self._maintain()

    def search(
        self, query_tokens: list[str], k: int, allowed: np.ndarray | set[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best documents as (ids int64, scores float32), best first, only those scoring above 0.

        A token repeated in the query counts once per occurrence (as in rank_bm25 and bm25s). `allowed`
        restricts results to those ids.
        """
        if k <= 0:
            raise ValueError(f"k must be greater than 0, got {k}")
        allowed_ids = None if allowed is None else _sorted_ids(allowed)
        if allowed_ids is not None and len(allowed_ids) == 0:
            return _EMPTY
        with self._lock:
            if self._n_docs == 0:
                return _EMPTY
            # Query order (not term-id order) fixes the float summation order, so rebuilds score identically.
            counts = Counter(self._vocab[t] for t in query_tokens if t in self._vocab)
            term_ids = np.fromiter(counts, dtype=np.int64, count=len(counts))
            df = self._df[term_ids].astype(np.float64)
            weights = self._idf(df) * np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            weights *= VARIANTS[self.variant].tf_scale(self.k1)
            query = [(t, w) for t, w, d in zip(term_ids.tolist(), weights.tolist(), df.tolist(), strict=True) if d]
            if not query:
                return _EMPTY
            avgdl = self._total_length / self._n_docs
            c1 = self.k1 * (1.0 - self.b)
            c2 = self.k1 * self.b / avgdl if avgdl > 0 else 0.0
            parts = [segment.top_k(query, c1, c2, k, allowed_ids) for segment in self._segments]
            parts = [part for part in parts if len(part[0])]
            if not parts:
                return _EMPTY
            if len(parts) == 1:
                return parts[0]
            return _best(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), k)

    def save(self, directory: Path, meta: dict[str, Any]) -> None:
        """Writes the index under `directory`; a crash mid-save leaves the previous save loadable.

        Segments are immutable, so only those the directory does not hold yet are written; the manifest
        naming the current set is replaced atomically last, then files no longer named are deleted.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for segment in self._segments:
                if (directory / segment.name).is_dir():
                    continue
                tmp = directory / f"{segment.name}.tmp-{uuid.uuid4().hex}"
                tmp.mkdir()
                for key in _SEGMENT_ARRAYS:
                    with _synced_open(tmp / f"{key}.npy") as handle:
                        np.save(handle, np.ascontiguousarray(getattr(segment, key)), allow_pickle=False)
                _fsync_dir(tmp)
                os.replace(tmp, directory / segment.name)
            state_name = f"state-{uuid.uuid4().hex}.npz"
            state = {f"alive_{i}": segment.alive for i, segment in enumerate(self._segments)}
            with _atomic_open(directory / state_name) as handle:
                np.savez(handle, allow_pickle=False, df=self._df[: len(self._vocab)], **state)
            vocab_name = f"vocab-{uuid.uuid4().hex}.json"
            with _atomic_open(directory / vocab_name) as handle:
                handle.write(json.dumps(list(self._vocab), ensure_ascii=False).encode())
            manifest: dict[str, Any] = {
                "format": _FORMAT,
                "k1": self.k1,
                "b": self.b,
                "variant": self.variant,
                "n_docs": self._n_docs,
                "segments": [segment.name for segment in self._segments],
                "state": state_name,
                "vocab": vocab_name,
                "meta": meta,
            }
            with _atomic_open(directory / _MANIFEST) as handle:
                handle.write(json.dumps(manifest, indent=1).encode())
            _fsync_dir(directory)
            keep = {state_name, vocab_name, *manifest["segments"]}
            for path in directory.iterdir():
                if path.name not in keep and path.name.startswith(_OWNED_PREFIXES):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()

    @classmethod
    def load(cls, directory: Path) -> tuple[BM25Index, dict[str, Any]]:
        """Opens an index written by `save`, memory-mapping its postings; returns it with the saved meta.

        Raises BM25IndexError when the directory holds no index or an unreadable one.
        """
        directory = Path(directory)
        manifest_path = directory / _MANIFEST
        if not manifest_path.is_file():
            raise BM25IndexError(f"{directory}: no BM25 index here; rebuild it from the knowledge base")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("format") != _FORMAT:
                raise ValueError(f"unknown format {manifest.get('format')!r}, expected {_FORMAT!r}")
            index = cls(k1=manifest["k1"], b=manifest["b"], variant=manifest["variant"])
            vocab = json.loads((directory / manifest["vocab"]).read_text(encoding="utf-8"))
            index._vocab = _Vocabulary((term, i) for i, term in enumerate(vocab))
            with np.load(directory / manifest["state"], allow_pickle=False) as state:
                index._df = np.array(state["df"], dtype=np.int64)
                alive = [np.array(state[f"alive_{i}"], dtype=bool) for i in range(len(manifest["segments"]))]
            for name, mask in zip(manifest["segments"], alive, strict=True):
                arrays = {
                    key: np.load(directory / name / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                    for key in _SEGMENT_ARRAYS
                }
                _check_segment(name, arrays, mask, len(vocab))
                index._segments.append(_Segment(arrays, mask, name))
            index._n_docs = sum(segment.n_alive for segment in index._segments)
            index._total_length = sum(
                float(segment.lengths[segment.alive].sum(dtype=np.float64)) for segment in index._segments
            )
            if len(index._df) != len(vocab) or index._n_docs != manifest["n_docs"]:
                raise ValueError("document counts do not match the segments")
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise BM25IndexError(
                f"{directory}: the BM25 index is unreadable ({exc}); delete it and rebuild from the knowledge base"
            ) from exc
        logger.debug("loaded BM25 index from %s: %d docs, %d segments", directory, index._n_docs, len(index._segments))
        return index, manifest["meta"]

    def _idf(self, df: np.ndarray) -> np.ndarray:
        variant = VARIANTS[self.variant]
        idf = variant.idf(df, self._n_docs)
        if variant.negative_idf_floor is not None and (idf < 0).any():
            if self._idf_floor is None:
                live = self._df[: len(self._vocab)]
                self._idf_floor = variant.negative_idf_floor(live[live > 0].astype(np.float64), self._n_docs)
            idf[idf < 0] = self._idf_floor
        return idf

    def _grow_df(self, n_terms: int) -> None:
        if n_terms > len(self._df):
            grown = np.zeros(max(n_terms, 2 * len(self._df)), dtype=np.int64)
            grown[: len(self._df)] = self._df
            self._df = grown

    def _remove_ids(self, ids: np.ndarray) -> bool:
        removed = False
        for segment in self._segments:
            slots = segment.locate(ids)
            if len(slots) == 0:
                continue
            np.subtract.at(self._df, segment.doc_terms_of(slots), 1)
            segment.alive[slots] = False
            segment.n_alive -= len(slots)
            self._n_docs -= len(slots)
            self._total_length -= float(segment.lengths[slots].sum(dtype=np.float64))
            removed = True
        if removed:
            self._idf_floor = None
            if self._n_docs == 0:
                self._total_length = 0.0
        return removed

    def _maintain(self) -> None:
        # Compact mostly-dead segments, then merge neighbours while the older is no larger than the newer.
        segments = []
        for segment in self._segments:
            if segment.n_alive == 0:
                continue
            if 2 * segment.n_alive < segment.size:
                segment = _Segment.merge([segment])
            segments.append(segment)
        i = len(segments) - 2
        while i >= 0:
            if segments[i].n_alive <= segments[i + 1].n_alive:
                segments[i : i + 2] = [_Segment.merge(segments[i : i + 2])]
                i = min(i, len(segments) - 2)
            else:
                i -= 1
        self._segments = segments


def _sorted_ids(allowed: np.ndarray | set[int]) -> np.ndarray:
    if isinstance(allowed, np.ndarray):
        return np.unique(allowed.astype(np.int64, copy=False))
    return np.unique(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))


def _check_segment(name: str, arrays: dict[str, np.ndarray], alive: np.ndarray, n_terms: int) -> None:
    n, terms = len(arrays["ids"]), arrays["terms"]
    consistent = (
        len(arrays["order"]) == n == len(arrays["lengths"]) == len(alive) == len(arrays["doc_indptr"]) - 1
        and len(arrays["indptr"]) == len(terms) + 1
        and (len(terms) == 0 or int(terms[-1]) < n_terms)
        and int(arrays["indptr"][-1]) == len(arrays["docs"]) == len(arrays["tfs"])
        and int(arrays["doc_indptr"][-1]) == len(arrays["doc_terms"]) == len(arrays["docs"])
    )
    if not consistent:
        raise ValueError(f"segment {name} has inconsistent array sizes")


@contextmanager
def _synced_open(path: Path) -> Iterator[IO[bytes]]:
    with open(path, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def _atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """A file written under a temporary name that replaces `path` only once complete and synced."""
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with _synced_open(tmp) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
