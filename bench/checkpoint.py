"""Checkpoints of a run in progress, the stop signal, and the one-process-per-run lock.

A checkpoint is a snapshot at a step boundary (an epoch end, or mid-epoch after SIGTERM/SIGINT):
everything `bench/train.py` needs to continue bit for bit (model, optimizer, NT-ASGD average, best
weights, history, counters, the carried LM state, and the RNG states of python, numpy, torch CPU and
CUDA and the task's numpy Generator). Written atomically: temp file, fsync, rename.
"""
from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch


class Interrupted(Exception):
    """The run stopped on a signal after writing its checkpoint."""

    def __init__(self, path: Path, epoch: int, step: int):
        super().__init__(f"stopped at epoch {epoch}, step {step}; checkpoint {path}")
        self.path, self.epoch, self.step = path, epoch, step


def rng_states(rng: np.random.Generator) -> dict:
    return dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                task=rng.bit_generator.state)


def set_rng_states(states: dict, rng: np.random.Generator | None = None) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if rng is not None:
        rng.bit_generator.state = states["task"]


class Checkpoint:
    """runs/<run_id>/checkpoint.pt. `load` returns None when there is none; an unreadable file is
    reported by path and ignored (the run starts over), never fatal."""

    def __init__(self, path: Path, echo=print):
        self.path = Path(path)
        self.echo = echo
        self._loaded = None          # (file identity, state) kept by load(keep=True)

    def _identity(self):
        st = self.path.stat()
        return st.st_ino, st.st_size, st.st_mtime_ns

    def load(self, keep: bool = False) -> dict | None:
        """The saved state, or None. keep=True holds it for the next load() (the runner reads where a
        run resumes, then the trainer restores it: the file is read once, and not held after)."""
        if not self.path.exists():
            return None
        try:
            identity = self._identity()
            cached, self._loaded = self._loaded, None
            if cached is not None and cached[0] == identity:
                state = cached[1]
            else:
                state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:
            self.echo(f"warning: checkpoint {self.path} is unreadable ({type(exc).__name__}: {exc}); "
                      f"starting the run from scratch")
            return None
        if keep:
            self._loaded = identity, state
        return state

    def save(self, state: dict) -> None:
        self._loaded = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self) -> None:
        self._loaded = None
        self.path.unlink(missing_ok=True)


class StopSignal:
    """While active, SIGTERM/SIGINT only set `requested`; the trainer finishes its step, writes a
    checkpoint and raises Interrupted. A second signal restores the default behaviour."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handle(self, signum, frame):
        self.requested = True
        for s, h in self._old.items():
            signal.signal(s, h)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():   # only it may set handlers
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
