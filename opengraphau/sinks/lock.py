"""One run per output folder at a time: an advisory lock the kernel releases when the run ends,
however it ends (exit, crash, kill -9), so a stale lock never blocks a later run.

It is a POSIX record lock (`lockf`), owned by the process: decoding workers forked during the run
do not inherit it, so a run killed with -9 frees the folder at once, not when its orphaned
workers notice. Such locks cannot tell two runs of one process apart, so those are kept apart
by a set of the folders this process holds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading

from ..errors import BusyError, OutputError
from .files import OutputFolder, output_error

LOCK_NAME = ".opengraphau.lock"

_held: set[str] = set()
"""Real paths of the output folders runs of this process hold."""
_held_guard = threading.Lock()


class RunLock:
    """Held while a run writes into `folder`; BusyError names the process holding it."""

    def __init__(self, folder: OutputFolder) -> None:
        self._fd: int | None = None
        self._key: str | None = os.path.realpath(folder.root)
        with _held_guard:
            if self._key in _held:
                raise self._busy(folder, f"process {os.getpid()}")
            _held.add(self._key)
        try:
            self._fd = folder.open_regular(LOCK_NAME, os.O_RDWR | os.O_CREAT)
            self._lock(folder)
        except BaseException:
            self.release()
            raise

    def _lock(self, folder: OutputFolder) -> None:
        assert self._fd is not None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before this existed
            return
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise self._busy(folder, self._read_holder()) from None
            raise OutputError(
                f"cannot be locked ({exc.strerror or exc})", param="output_dir", value=folder.root
            ) from None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise output_error(folder.root / LOCK_NAME, exc) from None

    @staticmethod
    def _busy(folder: OutputFolder, holder: str) -> BusyError:
        return BusyError(
            f"is in use by another run ({holder}); wait for it to finish or "
            "choose another output folder",
            param="output_dir",
            value=folder.root,
        )

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
        if self._key is not None:
            with _held_guard:
                _held.discard(self._key)
            self._key = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
