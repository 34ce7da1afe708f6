"""One run per output folder at a time: an advisory lock the kernel releases when the run ends,
however it ends (exit, crash, kill -9), so a stale lock never blocks a later run."""
from __future__ import annotations

import contextlib
import os

from ..errors import BusyError, OutputError
from .files import OutputFolder, output_error

LOCK_NAME = ".opengraphau.lock"


class RunLock:
    """Held while a run writes into `folder`; BusyError names the process holding it."""

    def __init__(self, folder: OutputFolder) -> None:
        self.path = folder.inside(LOCK_NAME)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise output_error(self.path, exc) from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before this existed
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder()
            self.release()
            raise BusyError(f"is in use by another run ({holder}); wait for it to finish or "
                            "choose another output folder", param="output_dir",
                            value=folder.root) from None
        except OSError as exc:
            self.release()
            raise OutputError(f"cannot be locked ({exc.strerror or exc})", param="output_dir",
                              value=folder.root) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def _read_holder(self) -> str:
        assert self._fd is not None
        with contextlib.suppress(OSError, ValueError):
            pid = int(os.pread(self._fd, 32, 0).decode().strip())
            return f"process {pid}"
        return "process unknown"

    def release(self) -> None:
        """Let the folder go (closing the file drops the lock); safe to call more than once."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
