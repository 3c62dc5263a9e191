"""What this CPU computes natively, read from /proc/cpuinfo: int8 dot products (x86 VNNI or AMX, Arm dotprod) and
bf16 matrices (AMX). The automatic precision choices follow these flags, because the same ONNX int8 model is fast
and faithful on one CPU and neither on another.

Measured on one thread with the bundled MiniLM (``bench/results/embed_speed*.json``): on an Intel Xeon with AMX,
int8 encoded SciFact abstracts 3.5x faster than ONNX fp32; on an AMD EPYC with AVX2 only, int8 was no faster for
documents (79 ms against 78 ms per 240-token text) and followed fp32 less closely (mean cosine 0.991 against
0.993: without VNNI, ONNX Runtime multiplies int8 through 16-bit sums that can saturate).
"""

from __future__ import annotations

import os
import platform
from functools import cache

__all__ = ["cpu_flags", "cpu_has_amx_bf16", "cpu_has_fast_int8"]

#: Flags of int8 dot-product instructions: x86 AVX512-VNNI, AVX-VNNI, AMX-INT8; Arm dotprod (asimddp) and i8mm.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp", "i8mm"})

_OFF = ("0", "off", "false", "no")
_ON = ("1", "on", "true", "yes")


@cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm), or None where /proc/cpuinfo is not there
    (macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return frozenset()


def _switch(variable: str) -> bool | None:
    """The environment variable as a yes/no override (0/off/false/no, 1/on/true/yes), or None when it says neither."""
    setting = os.environ.get(variable, "").strip().lower()
    return False if setting in _OFF else True if setting in _ON else None


def cpu_has_fast_int8() -> bool:
    """Whether int8 inference pays on this CPU: it has int8 dot-product instructions (``INT8_FLAGS``). Where the
    flags cannot be read, Arm (Apple silicon has dotprod) and x86 alike answer yes, as ragtune did before it read
    them. ``RAGTUNE_CPU_INT8=0`` or ``=1`` overrides the answer."""
    override = _switch("RAGTUNE_CPU_INT8")
    if override is not None:
        return override
    flags = cpu_flags()
    if flags is None:
        return platform.machine().lower() in ("arm64", "aarch64", "x86_64", "amd64")
    return bool(flags & INT8_FLAGS)


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (the ``amx_bf16`` flag; Linux only).
    ``RAGTUNE_CPU_BF16=0`` says no, to encode documents exactly as ONNX fp32 or int8 do."""
    if _switch("RAGTUNE_CPU_BF16") is False:
        return False
    return "amx_bf16" in (cpu_flags() or ())
