"""The model cache: official checkpoints fetched once, checked, and kept under their own names.

    <cache>/OpenGprahAU-ResNet50_second_stage.pth   complete and checked (never a partial file)
    <cache>/OpenGprahAU-ResNet50_second_stage.pth.part   a transfer in progress or cut: resumed
    <cache>/index.json       name -> file, bytes, SHA-256, where it came from, when
    <cache>/.locks/NAME.lock one process fetches or checks a model at a time; the others wait

The folder is `$OPENGRAPHAU_HOME`, else the platform's user cache folder. A cached file whose
size or SHA-256 no longer matches the index is fetched again, not used; a file copied into the
folder by hand under its official name is checked (it must load strictly as its model) and
recorded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, OpenGraphAUError
from .fetch import ENV_MIRROR, DownloadError, fetch, verify_fetched
from .official import OfficialCheckpoint, official_by_name

ENV_HOME = "OPENGRAPHAU_HOME"
ENV_OFFLINE = "OPENGRAPHAU_OFFLINE"
INDEX_NAME = "index.json"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """`$OPENGRAPHAU_HOME`, else the user cache folder (`~/.cache/opengraphau` on Linux)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("opengraphau", appauthor=False))


def offline_from_env() -> bool:
    """`OPENGRAPHAU_OFFLINE=1` (or true/yes/on): never touch the network."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: str | Path) -> str:
    """The file's SHA-256, read in 1 MiB chunks (checkpoints reach hundreds of MB)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(
            f"cannot be read ({exc.strerror or exc})", param="checkpoint", value=path
        ) from None
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedModel:
    """An official model in the cache, checked against its recorded size and SHA-256."""

    official: OfficialCheckpoint
    path: Path
    sha256: str
    bytes: int
    source: str


class ModelCache:
    """The cache folder `root` (default `cache_dir()`); `get` is the one way in."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def path_of(self, official: OfficialCheckpoint) -> Path:
        return self.root / official.filename

    def entries(self) -> dict[str, dict[str, Any]]:
        """The index as recorded (empty when there is none or it cannot be read)."""
        try:
            data = json.loads((self.root / INDEX_NAME).read_text(encoding="utf-8"))
            models = data.get("models", {}) if isinstance(data, dict) else {}
            return {k: v for k, v in models.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            return {}

    def official_for(self, sha256: str) -> OfficialCheckpoint | None:
        """The official model recorded with this SHA-256: a file is called official only when
        its bytes are those the cache fetched and checked for that model."""
        for name, entry in self.entries().items():
            if entry.get("sha256") == sha256:
                with contextlib.suppress(OpenGraphAUError):
                    return official_by_name(name)
        return None

    def get(
        self,
        name: str,
        *,
        offline: bool = False,
        mirror: str | None = None,
        progress: bool = True,
        timeout: float = 30.0,
        say: Callable[[str], None] | None = None,
    ) -> CachedModel:
        """The model called `name`, fetched first if it is not cached (or no longer matches
        its record). `mirror` (default `$OPENGRAPHAU_MIRROR`): a base URL or a folder tried
        before Google Drive. `offline`: never touch the network. `say` hears of waits."""
        official = official_by_name(name)
        if mirror is None:
            mirror = os.environ.get(ENV_MIRROR) or None
        with self._locked(official, say):
            try:
                cached = self._cached(official)
                if cached is not None:
                    return cached
                if offline:
                    raise DownloadError(
                        name,
                        f"not cached (offline); run `opengraphau download {name}`, or copy "
                        f"{official.filename} into {self.root}/",
                    )
                part = self.path_of(official).with_name(official.filename + ".part")
                source = fetch(official, part, mirror=mirror, progress=progress, timeout=timeout)
                verify_fetched(official, part, source)
                return self._keep(official, part, source)
            except OSError as exc:  # writing the cache: full, read-only, gone
                raise DownloadError(name, _cache_problem(self.root, exc)) from None

    # -- inside the model's lock ----------------------------------------------------------------
    def _cached(self, official: OfficialCheckpoint) -> CachedModel | None:
        """The cached file if it matches its record; a hand-copied one is checked and recorded;
        one that no longer matches is removed (to be fetched again)."""
        from ..model.checkpoint import check_checkpoint

        path = self.path_of(official)
        if not path.is_file():
            return None
        entry = self.entries().get(official.name)
        size = path.stat().st_size
        if entry is None:
            try:
                check_checkpoint(path, official.arch, official.stage)
            except CheckpointError as exc:
                raise DownloadError(
                    official.name,
                    f"{path} is not that model ({exc.reason}); delete it and try again",
                ) from None
            return self._record(official, path, sha256_of(path), "copied into the cache")
        if entry.get("bytes") == size:
            sha = sha256_of(path)
            if sha == entry.get("sha256"):
                return CachedModel(official, path, sha, size, str(entry.get("source", "")))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # changed since it was checked: fetched again
        return None

    def _keep(self, official: OfficialCheckpoint, part: Path, source: str) -> CachedModel:
        """The checked `part` under its final name (atomically), then recorded."""
        sha = sha256_of(part)
        path = self.path_of(official)
        os.replace(part, path)
        _fsync_dir(self.root)
        with contextlib.suppress(FileNotFoundError):
            part.with_name(part.name + ".source").unlink()
        return self._record(official, path, sha, source)

    def _record(
        self, official: OfficialCheckpoint, path: Path, sha: str, source: str
    ) -> CachedModel:
        size = path.stat().st_size
        entry = {
            "file": official.filename,
            "bytes": size,
            "sha256": sha,
            "source": source,
            "fetched": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        with self._lock_file("index"):
            entries = self.entries()
            entries[official.name] = entry
            _write_json(self.root / INDEX_NAME, {"cache": "opengraphau", "models": entries})
        return CachedModel(official, path, sha, size, source)

    # -- locks ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(
        self, official: OfficialCheckpoint, say: Callable[[str], None] | None
    ) -> Iterator[None]:
        with self._lock_file(
            official.name,
            waiting=say and (lambda: say(f"waiting for another process fetching {official.name}")),
        ):
            yield

    @contextlib.contextmanager
    def _lock_file(self, key: str, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """An exclusive `flock` on `.locks/KEY.lock` (released by the kernel however the holder
        ends); blocks while another process holds it."""
        locks = self.root / ".locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
            fd = os.open(locks / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise DownloadError(key, _cache_problem(self.root, exc)) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _cache_problem(root: Path, exc: OSError) -> str:
    """One line for a cache folder that cannot be used."""
    if exc.errno == errno.ENOSPC:
        return f"the model cache {root} is full; free space there or set {ENV_HOME}"
    return (
        f"cannot write the model cache {root} ({exc.strerror or exc}); "
        f"set {ENV_HOME} to a writable folder"
    )


def _write_json(path: Path, data: object) -> None:
    """`path` replaced whole through an exclusive temporary file beside it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
