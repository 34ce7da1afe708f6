"""Bringing an official checkpoint's bytes into the cache's partial file, from a mirror (a base URL
or a folder) or from Google Drive, resuming a cut transfer; and checking what came.

Google Drive's protocol is handled here with the standard library rather than gdown: gdown
recognises Drive by its host name alone, so its confirm-page and quota handling could not be
tested against a local server, and the cache needs its own partial-file, lock and resume rules.
What Drive does that matters: a direct link with `confirm=t`; a "cannot scan for viruses" page
with a form to follow; quota, sign-in and error pages in HTML with status 200.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from ..errors import CheckpointError, OpenGraphAUError
from ..version import __version__
from .official import OfficialCheckpoint

ENV_MIRROR = "OPENGRAPHAU_MIRROR"


class DownloadError(OpenGraphAUError):
    """An official model that could not be fetched, checked or kept; `value` is its name."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason, param="model", value=name)


_CHUNK = 1 << 16
_PAGE_LIMIT = 1 << 20
"""Bytes of an HTML answer read to understand it (Drive's pages are tens of kB)."""
_MB = 1 << 20


class _SourceFailed(Exception):
    """This source cannot give the file now; the next source may."""


def fetch(
    official: OfficialCheckpoint, part: Path, *, mirror: str | None, progress: bool, timeout: float
) -> str:
    """Fill `part` with the file from the first source that has it; returns that source.

    DownloadError (one line, naming the model and what to do) when none does, or when a
    transfer is cut: `part` then keeps what came, and the next call resumes it.
    """

    sources = []
    if mirror:
        sources.append(_mirror_location(mirror, official.filename))
    if official.download_url:
        sources.append(official.download_url)
    if not sources:
        raise DownloadError(
            official.name,
            f"the reference gives no public link for {official.filename}; set {ENV_MIRROR} to "
            "a folder or server that holds it, or pass the file's path as the checkpoint",
        )
    failures = []
    for source in sources:
        try:
            if _is_url(source):
                _download(source, part, official, progress=progress, timeout=timeout)
            else:
                _copy(Path(source), part)
            return source
        except _SourceFailed as exc:
            failures.append(f"{_where(source)}: {exc}")
    raise DownloadError(
        official.name,
        "; ".join(failures) + f"; then `opengraphau download {official.name}` tries again",
    )


def verify_fetched(official: OfficialCheckpoint, part: Path, source: str) -> None:
    """DownloadError, and `part` removed, unless it is the checkpoint its name says: not a web
    page saved in its place, and loading strictly as that backbone and stage."""
    from ..model.checkpoint import check_checkpoint

    with open(part, "rb") as f:
        head = f.read(1024).lstrip().lower()
    reason = None
    if head.startswith(b"<") or b"<html" in head:
        reason = (
            f"{_where(source)} sent a web page, not the checkpoint; open {official.url or source} "
            "in a browser"
        )
    else:
        try:
            check_checkpoint(part, official.arch, official.stage)
        except CheckpointError as exc:
            reason = f"the file from {_where(source)} is not that model ({exc.reason})"
    if reason is not None:
        _discard(part)
        raise DownloadError(official.name, f"{reason}; it was removed")


def _mirror_location(mirror: str, filename: str) -> str:
    if _is_url(mirror):
        return f"{mirror.rstrip('/')}/{urllib.parse.quote(filename)}"
    return str(Path(mirror).expanduser() / filename)


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def _where(source: str) -> str:
    """A short name for a source in messages: its host, or the folder."""
    if _is_url(source):
        host = urllib.parse.urlsplit(source).netloc
        return "Google Drive" if host.endswith("google.com") else host
    return str(Path(source).parent)


def _discard(part: Path) -> None:
    for path in (part, part.with_name(part.name + ".source")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _copy(source: Path, part: Path) -> None:
    """A mirror folder: the whole file copied into `part`."""
    try:
        src = open(source, "rb")  # closed by the with below
    except FileNotFoundError:
        raise _SourceFailed(f"no {source.name} there") from None
    except OSError as exc:
        raise _SourceFailed(f"{source.name} cannot be read ({exc.strerror or exc})") from None
    with src, open(part, "wb") as out:
        shutil.copyfileobj(src, out, _MB)


def _start(part: Path, source: str) -> int:
    """Bytes of `part` to resume from: what is there when it came from the same source
    (recorded beside it), else 0 after emptying it."""
    marker = part.with_name(part.name + ".source")
    try:
        same = marker.read_text(encoding="utf-8") == source
        size = part.stat().st_size if same else 0
    except OSError:
        size = 0
    if size == 0:
        _discard(part)
        marker.write_text(source, encoding="utf-8")
    return size


def _download(
    url: str,
    part: Path,
    official: OfficialCheckpoint,
    *,
    progress: bool,
    timeout: float,
    source: str | None = None,
) -> None:
    """HTTP(S) into `part`, resuming with a Range request; a Drive confirm page is followed.
    `source`: the link the transfer started from (a confirm page's target changes each time,
    so the partial file is known by where it started)."""
    from tqdm import tqdm

    offset = _start(part, source or url)
    headers = {"User-Agent": f"opengraphau/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already whole: checked next
            return
        raise _SourceFailed(_http_reason(exc.code, official)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _SourceFailed(f"no answer within {timeout:g} s; try again later") from None
        raise _SourceFailed(f"cannot connect ({_os_reason(reason)}); check the network") from None
    with response:
        if response.headers.get_content_type() == "text/html":
            page = response.read(_PAGE_LIMIT).decode("utf-8", "replace")
            target = _confirm_target(page, response.geturl())
            if target is not None and source is None:  # one confirm page, not a loop
                _download(target, part, official, progress=progress, timeout=timeout, source=url)
                return
            raise _SourceFailed(_page_reason(page, official))
        if offset and response.status != 206:  # the server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if free < total - offset:
                raise DownloadError(
                    official.name,
                    f"needs {(total - offset) / _MB:.0f} MB in {part.parent}, which has "
                    f"{free / _MB:.0f} MB free; free space or set OPENGRAPHAU_HOME",
                )
        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=official.name, disable=None if progress else True, leave=False)  # fmt: skip
        with bar, open(part, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            try:
                while chunk := response.read1(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except TimeoutError:
                out.flush()
                raise DownloadError(
                    official.name, _cut(received, total, f"stalled for {timeout:g} s")
                ) from None
            except (http.client.IncompleteRead, ConnectionError) as exc:
                out.flush()
                raise DownloadError(official.name, _cut(received, total, _os_reason(exc))) from None
        if total is not None and received < total:
            raise DownloadError(official.name, _cut(received, total, "the connection closed"))


def _cut(received: int, total: int | None, why: str) -> str:
    of = f" of {total / _MB:.1f}" if total else ""
    return (
        f"the transfer was cut at {received / _MB:.1f}{of} MB ({why}); run the same command "
        "again to resume"
    )


def _os_reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "disk full"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _http_reason(code: int, official: OfficialCheckpoint) -> str:
    if code == 429:
        return "too many requests (HTTP 429); wait a while, then run the same command again"
    if code in (401, 403):
        return f"access refused (HTTP {code}); open {official.url or 'the link'} in a browser"
    if code == 404:
        return "no such file there (HTTP 404)"
    return f"the server answered HTTP {code}; try again later"


def _page_reason(page: str, official: OfficialCheckpoint) -> str:
    """Why Drive (or a mirror) sent a web page instead of the file."""
    text = re.sub(r"\s+", " ", page).lower()
    browser = (
        f"download it in a browser from {official.url}" if official.url else "check the mirror"
    )
    if "quota" in text or "too many users" in text:
        return f"the file's download quota is exceeded for today; try tomorrow, or {browser}"
    if "accounts.google.com" in text or "sign in" in text:
        return f"the link asks to sign in; {browser}"
    return f"a web page came instead of the file; {browser}"


class _FormFinder(HTMLParser):
    """The first form holding a `confirm` field (Drive's virus-scan warning) and its fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self._done:
            return
        if tag == "form":
            self._in_form, self.action, self.fields = True, a.get("action", ""), {}
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = "confirm" in self.fields


def _confirm_target(page: str, base: str) -> str | None:
    """The URL that Drive's "download anyway" form leads to, if the page is that form."""
    finder = _FormFinder()
    finder.feed(page)
    if not finder._done or finder.action is None:
        return None
    action = urllib.parse.urljoin(base, finder.action)
    return f"{action}?{urllib.parse.urlencode(finder.fields)}"
