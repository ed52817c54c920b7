"""CPU numerics and threading, fixed before torch is imported.

`BENCH_NUMERICS=portable` (default): MKL's conditional numerical reproducibility in COMPATIBLE
mode, ATen's vectorised kernels at the baseline ISA and oneDNN capped at SSE4.1, which brings CPUs
close: PTB and WikiText-2 smoke runs give the same bits on an AMD EPYC and on an Intel Xeon with
AVX512/AMX, SST and Multi30k ones differ in their last bits (up to 5e-7 after 2-3 epochs), so
verification compares rows from another CPU model within a tolerance either way (bench/verify.py).
`BENCH_NUMERICS=native`: the fastest kernels of this CPU (4-6x faster on real model sizes).
The mode is part of every row's fingerprint.
"""
from __future__ import annotations

import os
import sys

PORTABLE_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
MODES = ("portable", "native")


def mode() -> str:
    value = os.environ.get("BENCH_NUMERICS", "portable").strip().lower() or "portable"
    if value not in MODES:
        from bench.errors import UsageError
        raise UsageError(f"BENCH_NUMERICS={value!r} must be one of {', '.join(MODES)}")
    return value


def configure() -> None:
    """Set the environment the CPU libraries read when they load, for this process and the ones it
    starts: the portable settings in portable mode; in native mode none of them (a process started
    by a portable one, e.g. a campaign's run, inherits them otherwise). Idempotent."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # spinning threads thrash on shared cores
    try:
        portable = mode() == "portable"
    except Exception:
        return                                            # reported by mode() at run time
    for key, value in PORTABLE_ENV.items():
        if portable:
            os.environ.setdefault(key, value)
        elif os.environ.get(key) == value:
            del os.environ[key]


def effective() -> str:
    """The mode this process really runs in, whatever was asked: 'portable' only if torch loaded
    with every portable setting (not, e.g., if torch was imported before `bench`), else 'native'."""
    import torch
    actual = "portable" if (all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())
                            and torch.backends.cpu.get_cpu_capability() == "DEFAULT") else "native"
    if actual != mode():
        print(f"warning: BENCH_NUMERICS={mode()} but this process runs with {actual} numerics (torch "
              f"was loaded before bench set them); rows record {actual}", file=sys.stderr)
    return actual
