"""Writing inside the output folder and nowhere else.

Whole files (pictures, videos, plots, rewritten tables) are written under a temporary name in
their folder and renamed into place, so a planted symbolic link is replaced, never written
through, and a crash never leaves half a file under the real name. Files that grow batch by batch
are opened without following links. Every OS failure becomes one OutputError line naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePath

from ..errors import OutputError

_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space, then continue with --skip-existing",
    errno.EDQUOT: "the disk quota is exhausted; free some space",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.EACCES: "permission denied; choose another output folder",
    errno.EPERM: "permission denied; choose another output folder",
    errno.EISDIR: "a folder stands where the file should be; move it away",
    errno.ENOTDIR: "a file stands where a folder should be; move it away",
    errno.ELOOP: "is a symbolic link; remove it (links are never written through)",
}


def output_error(path: str | Path, exc: OSError, param: str = "output_dir") -> OutputError:
    """One line for an OS failure on an output file."""
    advice = _ADVICE.get(exc.errno or 0, f"{exc.strerror or exc}; check the output folder")
    return OutputError(advice, param=param, value=path)


def _not_a_folder(root: Path) -> OutputError:
    return OutputError(
        "exists and is not a folder; choose another output folder", param="output_dir", value=root
    )


def _cannot_create(root: Path, why: str) -> OutputError:
    return OutputError(
        f"cannot create it ({why}); choose another folder", param="output_dir", value=root
    )


class OutputFolder:
    """The run's output folder: creates it, and hands out paths that stay inside it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise _not_a_folder(self.root) from None
        except OSError as exc:
            raise _cannot_create(self.root, exc.strerror or str(exc)) from None
        self._real = os.path.realpath(self.root)

    @staticmethod
    def check(root: str | Path) -> None:
        """The errors making `root` would raise, found without making anything: a run checks
        before its model loads, and leaves nothing behind when it cannot start."""
        path = Path(root).absolute()
        if path.exists():
            if not path.is_dir():
                raise _not_a_folder(Path(root))
            return
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir():
            raise _cannot_create(Path(root), os.strerror(errno.ENOTDIR))
        if not os.access(parent, os.W_OK | os.X_OK):
            raise _cannot_create(Path(root), os.strerror(errno.EACCES))

    def inside(self, rel: str | PurePath) -> Path:
        """`root/rel` with its folders made; OutputError when a link would lead it outside."""
        target = self.root / rel
        missing: list[Path] = []
        folder = target.parent
        while not os.path.isdir(folder) and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        try:  # outermost first, iteratively: Path.mkdir(parents=True) recurses once a level
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:
                    if not os.path.isdir(folder):
                        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        except OSError as exc:
            raise output_error(target.parent, exc) from None
        real = os.path.realpath(target.parent)
        if real != self._real and not real.startswith(self._real + os.sep):
            raise OutputError(
                "leads outside the output folder through a symbolic link; remove the link",
                param="output_dir",
                value=target.parent,
            )
        return target

    def open_regular(self, rel: str | PurePath, flags: int) -> int:
        """A descriptor of `root/rel` (os.open `flags`), never through a link and never of a pipe
        or a device planted there: those would be written through or block for ever."""
        path = self.inside(rel)
        try:
            fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise output_error(path, exc) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise OutputError(
                _ADVICE[errno.EISDIR]
                if stat.S_ISDIR(mode)
                else "is not a regular file (a pipe, a device or a socket); move it away",
                param="output_dir",
                value=path,
            )
        os.set_blocking(fd, True)
        return fd

    def open_append(self, name: str) -> int:
        """A descriptor of `root/name` for appending, created if missing, never through a link."""
        return self.open_regular(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def read_text(self, name: str) -> str | None:
        """The text of `root/name` (None when it does not exist), read as `open_append` writes
        it; a planted link, pipe or device is refused rather than followed or waited on."""
        if not os.path.lexists(self.root / name):
            return None
        with os.fdopen(
            self.open_regular(name, os.O_RDONLY),
            encoding="utf-8",
            errors="surrogateescape",
            newline="",
        ) as f:
            try:
                return f.read()
            except OSError as exc:
                raise output_error(self.root / name, exc) from None

    @contextlib.contextmanager
    def replace(self, rel: str | PurePath) -> Iterator[Path]:
        """`replaced(root/rel)`, its folders made inside the output folder."""
        with replaced(self.inside(rel)) as temporary:
            yield temporary


def special_reason(path: str | Path) -> str | None:
    """Why an output must not replace what stands at `path` (a pipe, a device, a socket, a
    folder: the system's own `/dev/full` as an export target), or None. A symbolic link is
    replaced itself, never written through, so it is no reason."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None  # nothing there (or no way to tell): the rename says why, if anything
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    if stat.S_ISDIR(mode):
        return _ADVICE[errno.EISDIR]
    return "is not a regular file (a pipe, a device or a socket); not replaced, choose a file"


@contextlib.contextmanager
def replaced(target: Path, *, param: str = "output_dir") -> Iterator[Path]:
    """Yields a temporary path beside `target`; on success it is renamed into place, on any
    failure removed, so the real name only ever holds a whole file.

    The temporary name is unpredictable and created exclusively (a link planted at a guessable
    name is never followed), and keeps the suffix, so writers that choose a format by it still
    can. A pipe, device or socket at `target` is refused, never replaced. OS failures (a full
    disk) become OutputError naming `param`; others (an encoder's) pass through.
    """
    reason = special_reason(target)
    if reason:
        raise OutputError(reason, param=param, value=target)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
        )
        os.fchmod(fd, 0o644)
        os.close(fd)
    except OSError as exc:
        raise output_error(target, exc, param) from None
    temporary = Path(name)
    try:
        yield temporary
        reason = special_reason(target)  # planted while the file was written
        if reason:
            raise OutputError(reason, param=param, value=target)
        os.replace(temporary, target)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise output_error(target, exc, param) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """RFC 4180 CSV (CRLF line ends, so a CR or LF inside a field is always quoted)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def read_csv(folder: OutputFolder, name: str) -> list[list[str]]:
    """The complete rows of a CSV file this tool wrote in `folder` (a last row cut off by a
    crash is dropped; none when the file is missing)."""
    path = folder.root / name
    text = folder.read_text(name) or ""
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        raise OutputError(
            "is not a CSV file this tool wrote; choose another output folder",
            param="output_dir",
            value=path,
        ) from None
