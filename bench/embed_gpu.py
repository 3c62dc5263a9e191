"""Embedding throughput on a CUDA GPU through ragtune's own embedder (``embed_device = "cuda"``): chunks per second
over a knowledge base's chunks, and the share of the GPU's peak half-precision FLOP rate that is.

Two steps, because the GPU machine has no copy of the data:

    # here: the embedding texts of a SciFact knowledge base's chunks (what ingestion encodes), gzip'd
    .venv/bin/python bench/embed_gpu.py export --kb /tmp/ragtune-graph-bench/scifact-plain --out chunks.jsonl.gz
    # on the GPU machine (model = a sentence-transformers directory, e.g. the bundled all-MiniLM-L6-v2)
    python3 bench/embed_gpu.py measure --chunks chunks.jsonl.gz --model DIR [--batch 64 --batch 512]

FLOPs per chunk are counted from the model's shape: per layer and token 24·h² for the projections and the
feed-forward (4h² + 8h² multiply-adds) and 4·L·h for attention (scores and weighted sum over L tokens). "Useful"
counts each chunk's own tokens; "executed" counts the padding of the batches as sentence-transformers forms them
(sorted by length). Peak: the datasheet's dense fp16 rate (989 TFLOP/s for an H100/H200 SXM) and an 8192³ fp16
matrix product measured in the same run. Vectors are compared with the CPU's fp32 ones on a sample (cosine).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

DATASHEET_FP16_TFLOPS = 989.0


def export(kb: Path, out: Path) -> None:
    from ragtune.kb import KnowledgeBase
    from ragtune.types import embedding_text

    with KnowledgeBase.open(kb) as base:
        store = base.store
        context = store.chunk_context
        rows = []
        for document in store.documents():
            for update in store.export([document.id]):
                rows.extend(embedding_text(c.text, c.meta, context) for c in update.chunks)
    with gzip.open(out, "wt", encoding="utf-8") as f:
        for text in rows:
            f.write(json.dumps(text, ensure_ascii=False) + "\n")
    print(json.dumps({"chunks": len(rows), "out": str(out)}))


def matmul_tflops() -> float:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - started) / 1e12


def measure(chunks_file: Path, model: str, batches: list[int], out: Path | None) -> dict[str, object]:
    import numpy as np
    import torch

    from ragtune.embed import load_embedder

    with gzip.open(chunks_file, "rt", encoding="utf-8") as f:
        texts = [json.loads(line) for line in f]
    gpu = load_embedder(model, backend="torch", device="cuda")
    st = gpu._model  # type: ignore[attr-defined]
    config = st[0].auto_model.config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    lengths = [len(ids) for ids in st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]]

    def flops(length: int) -> float:
        return layers * (24 * hidden * hidden * length + 4 * length * length * hidden)

    useful = sum(flops(n) for n in lengths)
    peak = matmul_tflops()
    report: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "model": model, "chunks": len(texts),
        "tokens": sum(lengths), "mean_tokens": round(statistics.fmean(lengths), 1), "max_seq_length": st.max_seq_length,
        "hidden": hidden, "layers": layers, "useful_gflop": round(useful / 1e9, 1),
        "peak_tflops": {"datasheet_fp16_dense": DATASHEET_FP16_TFLOPS, "measured_fp16_matmul_8192": round(peak, 1)},
        "runs": [],
    }
    ordered = sorted(lengths, reverse=True)
    for batch in batches:
        gpu.batch_size = batch  # type: ignore[attr-defined]
        gpu.encode_documents(texts[: batch * 2])  # warm-up: kernels, allocator
        torch.cuda.synchronize()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            gpu.encode_documents(texts)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        best = min(times)
        executed = sum(flops(ordered[i]) * len(ordered[i:i + batch]) for i in range(0, len(ordered), batch))
        run = {
            "batch": batch, "seconds": [round(t, 3) for t in times], "chunks_per_s": round(len(texts) / best),
            "useful_tflops": round(useful / best / 1e12, 2), "executed_tflops": round(executed / best / 1e12, 2),
            "share_of_datasheet_peak": round(useful / best / 1e12 / DATASHEET_FP16_TFLOPS, 4),
            "share_of_measured_peak": round(useful / best / 1e12 / peak, 4),
        }
        report["runs"].append(run)  # type: ignore[union-attr]
        print(json.dumps(run), flush=True)
    sample = texts[:: max(1, len(texts) // 256)][:256]
    cpu = load_embedder(model, backend="torch", device="cpu")
    cosines = np.sum(gpu.encode_documents(sample) * cpu.encode_documents(sample), axis=1)
    report["cosine_to_cpu_fp32"] = {"n": len(sample), "mean": round(float(cosines.mean()), 6),
                                    "min": round(float(cosines.min()), 6)}
    print(json.dumps(report, indent=2))
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export")
    e.add_argument("--kb", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("measure")
    m.add_argument("--chunks", type=Path, required=True)
    m.add_argument("--model", required=True)
    m.add_argument("--batch", type=int, action="append")
    m.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.step == "export":
        export(args.kb, args.out)
    else:
        measure(args.chunks, args.model, args.batch or [64, 256, 1024], args.out)
    sys.exit(0)


if __name__ == "__main__":
    main()
