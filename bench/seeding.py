"""Seeds: one derived seed per (base seed, task, method, repetition), applied to every RNG."""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


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
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def set_threads() -> int:
    """A fixed thread count ($BENCH_THREADS, default 2): CPU results depend on it."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    return torch.get_num_threads()


def fingerprint(device: torch.device) -> dict:
    """What must match for a re-run to be expected bitwise-identical."""
    fp = {
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "device": device.type,
        "device_name": "cpu",
        "cuda_version": torch.version.cuda or "",
    }
    if device.type == "cuda":
        fp["device_name"] = torch.cuda.get_device_name(device)
    return fp
