"""The one-process-per-run lock, runs/<run_id>/lock (no torch here: the campaign probes it too)."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from bench.errors import UsageError

PROBE_RETRIES = 4       # RunLock: tries again 4 x 50 ms before refusing, so a probe is never taken for a run


def _pid(fd: int) -> str:
    """The pid the lock's holder wrote into it ("?" before it has)."""
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"


class RunLock:
    """An exclusive lock on runs/<run_id>/lock for the life of the process (released by the kernel
    even on SIGKILL). A second process for the same run id is refused (after 0.2 s of retries)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "lock"
        self._fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(PROBE_RETRIES + 1):     # a holder() probe holds it for microseconds
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < PROBE_RETRIES:
                    time.sleep(0.05)
        else:
            holder = _pid(fd)
            os.close(fd)
            raise UsageError(f"run {self.path.parent.name} is already running (pid {holder}, lock "
                             f"{self.path}); wait for it to finish, or stop that process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def holder(folder: Path) -> str | None:
        """The pid (as written) of another process holding runs/<run_id>/lock now, else None. Creates
        nothing; a lock taken right after this answer is still refused by __enter__."""
        path = Path(folder) / "lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return _pid(fd)
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
