"""CPU numerics and threading, fixed before torch is imported.

`BENCH_NUMERICS=portable` (default): MKL's conditional numerical reproducibility in COMPATIBLE
mode, ATen's vectorised kernels at the baseline ISA and oneDNN capped at SSE4.1, so the same run
gives the same bits on an AMD EPYC and on an Intel Xeon with AVX512/AMX (measured: about +10% wall
time). `BENCH_NUMERICS=native`: the fastest kernels of this CPU; rows then verify exactly only on
the same CPU model. The mode is part of every row's fingerprint.
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
    """Set the environment the CPU libraries read when they load. Idempotent; a no-op for
    variables the user already set."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # spinning threads thrash on shared cores
    try:
        portable = mode() == "portable"
    except Exception:
        return                                            # reported by effective() at run time
    if portable:
        for key, value in PORTABLE_ENV.items():
            os.environ.setdefault(key, value)


def effective() -> str:
    """The mode this process really runs in: 'portable' only if torch loaded with every portable
    setting, else 'native' (e.g. torch was imported before `bench`)."""
    requested = mode()
    if requested == "portable" and all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items()):
        import torch
        if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
            return "portable"
        print("warning: BENCH_NUMERICS=portable but torch was loaded before bench set it; "
              "running with native numerics", file=sys.stderr)
    return "native"
