"""Where the embedder's time goes, per ONNX operator, fp32 against three int8 quantisations — why int8 buys nothing
on a CPU without int8 dot products (VNNI/AMX) and what is left for ingest speed there.

The all-MiniLM-L6-v2 export ragtune caches (``model.onnx``, and ``model.int8.onnx``: dynamic, per-channel s8
weights) plus two more quantisations made here from the same fp32 graph: u8 weights (MLAS's other AVX2 path) and s8
with ``reduce_range`` (7-bit, no 16-bit saturation). Each runs one thread on batches of 2 × 200 random tokens (a
SciFact chunk is ~196 tokens): ms per batch (median of 10 after 3 warm-ups) and each operator type's share of the
kernel time from ONNX Runtime's profiler. The JSON records the CPU's int8 flags (``machine().cpu``).

    OMP_NUM_THREADS=1 .venv/bin/python bench/embed_int8_ops.py [--out bench/results/embed_int8_ops_avx2.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, loadavg, machine, print_table, write_json  # noqa: E402


def profile(model: Path, feeds: dict[str, np.ndarray], work: Path) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(work / model.stem)
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    used = {i.name: feeds[i.name] for i in session.get_inputs()}
    for _ in range(3):
        session.run(None, used)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        session.run(None, used)
        times.append((time.perf_counter() - t) * 1000)
    kernels: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"]
    total = sum(kernels.values())
    return {"ms_per_batch": round(statistics.median(times), 2),
            "op_share": {op: round(us / total, 3) for op, us in kernels.most_common(6)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "embed_int8_ops.json")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=200)
    args = ap.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ragtune.embed import load_embedder

    export = Path(load_embedder("all-MiniLM-L6-v2", backend="onnx", precision="fp32", num_threads=1).export.directory)
    rng = np.random.default_rng(0)
    shape = (args.batch, args.tokens)
    feeds = {"input_ids": rng.integers(1000, 20000, shape).astype(np.int64),
             "attention_mask": np.ones(shape, np.int64), "token_type_ids": np.zeros(shape, np.int64)}
    logging.disable(logging.WARNING)  # quantize_dynamic's pre-processing advice is for static quantisation
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        u8 = work / "model.u8.onnx"
        rr = work / "model.s8_reduce_range.onnx"
        quantize_dynamic(str(export / "model.onnx"), str(u8), weight_type=QuantType.QUInt8, per_channel=True)
        quantize_dynamic(str(export / "model.onnx"), str(rr), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True)
        for label, path in (("fp32", export / "model.onnx"), ("int8 s8 per-channel (ragtune)",
                            export / "model.int8.onnx"), ("int8 u8 per-channel", u8),
                            ("int8 s8 per-channel, reduce_range", rr)):
            results[label] = profile(path, feeds, work)
    fp32 = results["fp32"]["ms_per_batch"]
    for row in results.values():
        row["speedup_vs_fp32"] = round(fp32 / row["ms_per_batch"], 3)
    write_json(args.out, {"what": __doc__.split("\n\n")[0], "batch": args.batch, "tokens": args.tokens,
                          "results": results, "loadavg": loadavg(), "machine": machine()})
    print_table([[label, r["ms_per_batch"], r["speedup_vs_fp32"], ", ".join(f"{k} {v}" for k, v in
                  list(r["op_share"].items())[:3])] for label, r in results.items()],
                ["model", "ms/batch", "vs fp32", "top operators (share)"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
