"""One process per run directory: an exclusive ``flock`` on ``RUN/.lock``.

The kernel drops the lock when its holder dies (even by kill -9), so a crashed run never
leaves a stale lock behind. A second process on the same directory gets a clear error
instead of mixing its files and its spending with the first one's.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ThriftyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunDirectoryBusy(ThriftyError):
    """Another live process is using this run directory."""


class RunLock:
    """Hold ``directory/.lock`` exclusively until :meth:`release` (or process exit)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryBusy(
                f"{self.path.parent} is in use by another thrifty process (pid {holder}). Wait for it to finish, "
                "or give this run another --out directory (several runs may share one --ledger)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
