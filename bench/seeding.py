"""Seeds, threads and the environment fingerprint of a run.

One derived seed per (base seed, task, method, repetition) seeds every RNG; the fingerprint says
what must match for a re-run to be expected bit-for-bit identical.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

from bench import numerics
from bench.errors import UsageError

# ISA extensions that change which CPU kernels run (and so how they round) under native numerics
KERNEL_ISA = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "sve", "asimd")


def derive_seed(base_seed: int, task: str, method: str, repetition: int) -> int:
    blob = f"{base_seed}|{task}|{method}|{repetition}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch (all devices), make cuDNN/cuBLAS deterministic, and return a
    numpy Generator for the data order (batch shuffling, variable BPTT)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    deterministic_algorithms()
    return np.random.default_rng(seed)


def deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True), without its import of torch._inductor
    (about 3 s in every process, for inductor's own flag; the benchmark compiles nothing): the same
    ATen switch, and inductor's flag as well once something has loaded it."""
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def thread_count() -> int:
    """$BENCH_THREADS (default 2), validated."""
    text = os.environ.get("BENCH_THREADS", "2").strip()
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"BENCH_THREADS={text!r} must be a positive integer (e.g. BENCH_THREADS=2)")
    return int(text)


def set_threads() -> int:
    """A fixed thread count: CPU results depend on it."""
    torch.set_num_threads(thread_count())
    return torch.get_num_threads()


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """Vendor, model name and the kernel-relevant ISA flags of this CPU (first processor of
    /proc/cpuinfo; the platform module's words where that file does not exist)."""
    fields = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in (cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.exists() else []):
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return dict(cpu_vendor=fields.get("vendor_id") or platform.machine(),
                cpu_model=fields.get("model name") or platform.processor() or platform.machine(),
                cpu_isa=",".join(f for f in KERNEL_ISA if f in flags))


def fingerprint(device: torch.device) -> dict:
    """What must match for a re-run to be expected bitwise-identical."""
    from bench.lockfile import lock_sha256
    cpu = cpu_info()
    fp = {
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "device": device.type,
        "device_name": "cpu",
        "cuda_version": torch.version.cuda or "",
        "numerics": numerics.effective() if device.type == "cpu" else "cuda-deterministic",
        "lock_sha256": lock_sha256(),
        **cpu,
    }
    if device.type == "cuda":
        fp["device_name"] = torch.cuda.get_device_name(device)
    return fp
