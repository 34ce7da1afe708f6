"""Official models by name: fetched, checked, cached, resumed, shared between processes — against a
local HTTP server (loopback only) that serves official-layout checkpoints and plays Google
Drive's behaviours (a confirm page, a quota page, a cut transfer, 429, a stall)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

import opengraphau.weights.official as official_table
from factories import FACE, ROOT, read_rows
from opengraphau.cli import main
from opengraphau.weights import DownloadError, ModelCache, choose_weights, official_by_name

R18 = official_by_name("resnet18-s1")


@dataclass
class Served:
    """What the server did: each request's path and Range header, and bytes of files sent."""

    requests: list[tuple[str, str | None]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    """URL path -> the bytes served there."""
    plans: dict[str, list[str]] = field(default_factory=dict)
    """URL path -> what to do on its next requests, in order ("cut", "quota", "confirm", "429",
    "stall", "page-as-file", "slow"); then it serves normally."""

    def sent(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:  # the test's output stays clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        served = self.served
        served.requests.append((url.path, self.headers.get("Range")))
        plan = served.plans.get(url.path) or []
        action = plan.pop(0) if plan else "serve"
        if url.path == "/uc" and action == "confirm":
            fields = {"id": "x", "export": "download", "confirm": "t", "uuid": "u-1"}
            inputs = "".join(
                f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items()
            )
            return self._page(
                "<html><body>Google Drive can't scan this file for viruses."
                f'<form id="download-form" action="/download" method="get">'
                f'{inputs}<input type="submit" value="Download anyway"></form>'
                "</body></html>"
            )
        if action == "quota":
            return self._page(
                "<html><head><title>Google Drive - Quota exceeded</title></head>"
                "<body>Too many users have viewed or downloaded this file "
                "recently.</body></html>"
            )
        if action == "429":
            self.send_response(429)
            self.end_headers()
            return None
        body = served.files.get("/uc" if url.path == "/download" else url.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return None
        if action == "page-as-file":
            body = b"<!DOCTYPE html><html><body>Sign in - Google Accounts</body></html>"
        start = 0
        ranged = self.headers.get("Range")
        if ranged and action != "page-as-file":
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        if action == "cut":
            self.wfile.write(rest[: len(rest) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if action == "stall":
            self.wfile.write(rest[:1000])
            self.wfile.flush()
            time.sleep(3)
            return None
        step = 1 << 20
        for i in range(0, len(rest), step):
            try:
                self.wfile.write(rest[i : i + step])
            except OSError:  # the client left (Ctrl-C)
                return None
            if action == "slow":
                time.sleep(0.15)
        return None

    def _page(self, html: str) -> None:
        data = html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server(resnet18_s1: Path) -> Iterator[tuple[str, Served]]:
    """A loopback server: the ResNet-18 stage-1 checkpoint as a mirror file
    (`/files/<official name>`) and as Google Drive's download (`/uc`)."""
    served = Served()
    body = resnet18_s1.read_bytes()
    served.files = {f"/files/{R18.filename}": body, "/uc": body}
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def cache(
    tmp_path: Path, server: tuple[str, Served], monkeypatch: pytest.MonkeyPatch
) -> ModelCache:
    """An empty cache, online, with Google Drive's links pointed at the loopback server."""
    base, _ = server
    monkeypatch.setenv("OPENGRAPHAU_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENGRAPHAU_OFFLINE", raising=False)
    monkeypatch.delenv("OPENGRAPHAU_MIRROR", raising=False)
    monkeypatch.setattr(official_table, "DRIVE_DOWNLOAD", base + "/uc?id={}")
    return ModelCache()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENGRAPHAU_")}
    return {**env, "HOME": str(home), "PYTHONPATH": str(ROOT), **extra}


def _command(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "opengraphau", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- as a user meets it ------------------------------------------------------------------------


@pytest.mark.slow
def test_first_run_downloads_checks_and_runs_then_the_second_downloads_nothing(
    server: tuple[str, Served], tmp_path: Path
) -> None:
    """The issue's "done when": a fresh HOME, the mirror variable at a local server."""
    base, served = server
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, OPENGRAPHAU_MIRROR=base + "/files/")
    mirror_file = f"/files/{R18.filename}"
    args = ("--model", "resnet18-s1", "--input", str(FACE), "--no-detect", "--quiet")
    first = _command(*args, "--output-dir", str(tmp_path / "a"), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert served.sent(mirror_file) == 1
    cached = home / ".cache" / "opengraphau" / R18.filename
    assert cached.read_bytes() == served.files[mirror_file]
    index = json.loads((cached.parent / "index.json").read_text())["models"]["resnet18-s1"]
    assert index["sha256"] == _sha(cached.read_bytes()) and index["bytes"] == cached.stat().st_size
    assert index["source"] == base + "/files/" + R18.filename
    run = json.loads((tmp_path / "a" / "run.json").read_text())["runs"][0]["checkpoint"]
    assert (run["official"], run["sha256"], run["path"]) == (
        "resnet18-s1",
        index["sha256"],
        str(cached),
    )
    assert len(read_rows(tmp_path / "a")) == 1

    second = _command(*args, "--output-dir", str(tmp_path / "b"), env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert served.sent(mirror_file) == 1  # nothing downloaded again
    assert read_rows(tmp_path / "b") == read_rows(tmp_path / "a")

    listing = _command("models", env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith("resnet18-s1 "))
    assert " yes, " in line
    assert next(ln for ln in listing.stdout.splitlines() if ln.startswith("resnet18-s2 ")).endswith(
        " no"
    )
    assert str(home / ".cache" / "opengraphau") in listing.stdout


def test_without_any_checkpoint_offline_the_message_is_short_and_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The suite runs offline with an empty cache: no checkpoint anywhere. Nothing is made in
    the output folder."""
    out = tmp_path / "out"
    assert (
        main(
            [
                "--input",
                str(FACE),
                "--checkpoint-dir",
                str(tmp_path / "none"),
                "--output-dir",
                str(out),
            ],
            prog="opengraphau",
        )
        == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    root = os.environ["OPENGRAPHAU_HOME"]
    assert line == (
        f"opengraphau: error: no checkpoint; resnet50-s2: not cached (offline); run "
        "`opengraphau download resnet50-s2`, or copy "
        f"OpenGprahAU-ResNet50_second_stage.pth into {root}/"
    )
    assert len(line) - len(root) < 170  # under 200 with ~/.cache/opengraphau
    assert not out.exists()


def test_a_model_name_given_to_resume_is_pointed_to_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["--resume", "resnet50-s2", "--input", str(FACE), "--output-dir", str(tmp_path / "o")],
            prog="opengraphau",
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "opengraphau: error: --resume resnet50-s2: no such file; for the official model of "
        "that name, give --model resnet50-s2"
    )


def test_an_unknown_model_name_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "resnet51-s1", "--input", str(FACE)], prog="opengraphau") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "opengraphau: error: --model resnet51-s1: no official model of that "
        "name; choose one of resnet18-s1, resnet50-s1,"
    )
    assert main(["download", "nope"], prog="opengraphau") == 2
    assert "no official model of that name" in capsys.readouterr().err


# -- fetching ----------------------------------------------------------------------------------


def test_google_drive_confirm_page_is_followed(cache: ModelCache, server) -> None:
    _, served = server
    served.plans["/uc"] = ["confirm"]
    model = cache.get("resnet18-s1", progress=False)
    assert model.path.read_bytes() == served.files["/uc"]
    assert [p for p, _ in served.requests] == ["/uc", "/download"]
    assert R18.drive_id is not None
    assert model.source.endswith("/uc?id=" + R18.drive_id)


def test_a_quota_page_is_refused_in_one_line_with_the_browser_link(
    cache: ModelCache, server
) -> None:
    _, served = server
    served.plans["/uc"] = ["quota"]
    with pytest.raises(DownloadError) as caught:
        cache.get("resnet18-s1", progress=False)
    text = str(caught.value)
    assert text.startswith("resnet18-s1: ") and "\n" not in text
    assert R18.url is not None
    assert "download quota is exceeded" in text and R18.url in text
    assert not cache.path_of(R18).exists()


def test_a_page_saved_in_place_of_the_file_is_recognised_and_removed(
    cache: ModelCache, server
) -> None:
    _, served = server
    served.plans["/uc"] = ["page-as-file"]
    with pytest.raises(
        DownloadError,
        match=r"sent a web page, not the checkpoint; open "
        r"https://drive\.google\.com/.*it was removed",
    ):
        cache.get("resnet18-s1", progress=False)
    assert not any(cache.root.glob("OpenGprahAU*"))


def test_a_cut_transfer_resumes_to_a_byte_identical_file(cache: ModelCache, server) -> None:
    _, served = server
    served.plans["/uc"] = ["cut"]
    with pytest.raises(
        DownloadError,
        match=r"the transfer was cut at .* MB .*run the same "
        r"command again to resume",
    ):
        cache.get("resnet18-s1", progress=False)
    part = cache.path_of(R18).with_name(R18.filename + ".part")
    kept = part.stat().st_size
    assert 0 < kept < len(served.files["/uc"]) and not cache.path_of(R18).exists()
    model = cache.get("resnet18-s1", progress=False)
    assert served.requests[-1] == ("/uc", f"bytes={kept}-")
    assert model.path.read_bytes() == served.files["/uc"]
    assert model.sha256 == _sha(served.files["/uc"]) and not part.exists()


def test_429_and_a_stall_say_what_to_do_and_keep_what_came(cache: ModelCache, server) -> None:
    _, served = server
    served.plans["/uc"] = ["429"]
    with pytest.raises(DownloadError, match=r"too many requests \(HTTP 429\); wait a while"):
        cache.get("resnet18-s1", progress=False)
    served.plans["/uc"] = ["stall"]
    with pytest.raises(DownloadError, match=r"cut at 0\.0 of .* \(stalled for 0\.5 s\)"):
        cache.get("resnet18-s1", progress=False, timeout=0.5)
    part = cache.path_of(R18).with_name(R18.filename + ".part")
    assert part.stat().st_size == 1000
    assert cache.get("resnet18-s1", progress=False).path.read_bytes() == served.files["/uc"]


def test_a_mirror_is_tried_first_then_google_drive(
    cache: ModelCache, server, tmp_path: Path
) -> None:
    base, served = server
    model = cache.get("resnet18-s1", progress=False, mirror=base + "/nothing-here")
    assert [p for p, _ in served.requests] == [f"/nothing-here/{R18.filename}", "/uc"]
    assert model.source == official_table.DRIVE_DOWNLOAD.format(R18.drive_id)
    # Both failing: one line naming each source.
    model.path.unlink()
    served.plans["/uc"] = ["429"]
    with pytest.raises(DownloadError) as caught:
        cache.get("resnet18-s1", progress=False, mirror=base + "/nothing-here")
    assert "no such file there (HTTP 404); 127.0.0.1" in str(caught.value)
    # A folder as the mirror.
    folder = tmp_path / "lab-share"
    folder.mkdir()
    (folder / R18.filename).write_bytes(served.files["/uc"])
    count = len(served.requests)
    model = cache.get("resnet18-s1", progress=False, mirror=str(folder))
    assert len(served.requests) == count and model.source == str(folder / R18.filename)


def test_a_file_that_is_not_the_named_model_is_refused(
    cache: ModelCache, server, resnet18_s2: Path
) -> None:
    _, served = server
    served.files["/uc"] = resnet18_s2.read_bytes()
    with pytest.raises(
        DownloadError,
        match=r"is not that model \(holds a resnet18 stage-2 "
        r"model, not resnet18 stage-1.*it was removed",
    ):
        cache.get("resnet18-s1", progress=False)
    assert not any(cache.root.glob("OpenGprahAU*"))


def test_a_cached_file_that_changed_is_fetched_again(cache: ModelCache, server) -> None:
    _, served = server
    model = cache.get("resnet18-s1", progress=False)
    data = bytearray(model.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    model.path.write_bytes(bytes(data))
    again = cache.get("resnet18-s1", progress=False)
    assert served.sent("/uc") == 2 and again.path.read_bytes() == served.files["/uc"]


def test_a_file_copied_into_the_cache_by_hand_is_checked_and_recorded(
    cache: ModelCache, server, resnet18_s2: Path
) -> None:
    _, served = server
    cache.root.mkdir(parents=True)
    cache.path_of(R18).write_bytes(served.files["/uc"])
    model = cache.get("resnet18-s1", offline=True)
    assert served.requests == [] and model.source == "copied into the cache"
    assert cache.entries()["resnet18-s1"]["sha256"] == _sha(served.files["/uc"])
    r18s2 = official_by_name("resnet18-s2")
    cache.path_of(r18s2).write_bytes(served.files["/uc"])  # a stage-1 file named stage 2
    with pytest.raises(DownloadError, match=r"is not that model .*; delete it and try again"):
        cache.get("resnet18-s2", offline=True)


def test_offline_never_opens_a_socket(
    cache: ModelCache,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(
        DownloadError,
        match=r"not cached \(offline\); run `opengraphau "
        r"download resnet18-s1`, or copy "
        r"OpenGprahAU-ResNet18_first_stage\.pth into",
    ):
        cache.get("resnet18-s1", offline=True)
    assert (
        main(
            [
                "--model",
                "resnet18-s1",
                "--offline",
                "--input",
                str(FACE),
                "--output-dir",
                str(tmp_path / "o"),
            ],
            prog="opengraphau",
        )
        == 2
    )
    assert "resnet18-s1: not cached (offline)" in capsys.readouterr().err
    monkeypatch.setenv("OPENGRAPHAU_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline"):
        choose_weights(model="resnet18-s1")


def test_no_network_an_unwritable_cache_and_a_full_disk_are_one_line_each(
    cache: ModelCache, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(official_table, "DRIVE_DOWNLOAD", f"http://127.0.0.1:{closed}/uc?id={{}}")
    with pytest.raises(DownloadError, match=r"cannot connect \(.*\); check the network"):
        cache.get("resnet18-s1", progress=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(
        DownloadError,
        match=r"cannot write the model cache .*a-file/cache .*"
        r"set OPENGRAPHAU_HOME to a writable folder",
    ):
        ModelCache(blocker / "cache").get("resnet18-s1", progress=False)
    base, served = server
    monkeypatch.setattr(official_table, "DRIVE_DOWNLOAD", base + "/uc?id={}")
    monkeypatch.setattr("shutil.disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(
        DownloadError,
        match=r"needs \d+ MB in .*, which has 0 MB free; free "
        r"space or set OPENGRAPHAU_HOME",
    ):
        cache.get("resnet18-s1", progress=False)
    assert not cache.path_of(R18).exists()


def test_a_model_without_a_public_link_says_how_to_get_it(cache: ModelCache) -> None:
    with pytest.raises(
        DownloadError,
        match=r"resnet101-s1: the reference gives no public link "
        r".*set OPENGRAPHAU_MIRROR",
    ):
        cache.get("resnet101-s1", progress=False)


# -- processes ---------------------------------------------------------------------------------


def _start_download(home: Path, base: str, *names: str) -> subprocess.Popen:
    env = _env(home, OPENGRAPHAU_HOME=str(home / "cache"), OPENGRAPHAU_MIRROR=base + "/files")
    return subprocess.Popen(
        [sys.executable, "-m", "opengraphau", "download", *names, "--quiet"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_processes_asking_at_once_download_once(server, tmp_path: Path) -> None:
    base, served = server
    path = f"/files/{R18.filename}"
    served.plans[path] = ["slow"]  # long enough for the second to arrive mid-transfer
    first = _start_download(tmp_path, base, "resnet18-s1")
    _wait_for(lambda: served.sent(path) == 1)
    second = _start_download(tmp_path, base, "resnet18-s1")
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert served.sent(path) == 1
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert files == [".locks", R18.filename, "index.json"]
    assert (tmp_path / "cache" / R18.filename).read_bytes() == served.files[path]
    assert outs[0][0] == outs[1][0]  # the same line: name, path, size, hash


@pytest.mark.slow
def test_ctrl_c_mid_transfer_then_the_next_try_resumes(server, tmp_path: Path) -> None:
    base, served = server
    path = f"/files/{R18.filename}"
    served.plans[path] = ["slow"]
    part = tmp_path / "cache" / (R18.filename + ".part")
    process = _start_download(tmp_path, base, "resnet18-s1")
    _wait_for(lambda: part.exists() and part.stat().st_size > (4 << 20))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip() == (
        "opengraphau download: resnet18-s1: interrupted; run the same command again to resume"
    )
    kept = part.stat().st_size
    assert not (tmp_path / "cache" / R18.filename).exists()
    resumed = _start_download(tmp_path, base, "resnet18-s1")
    assert resumed.wait(timeout=300) == 0
    assert served.requests[-1] == (path, f"bytes={kept}-")
    assert (tmp_path / "cache" / R18.filename).read_bytes() == served.files[path]


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_ray_workers_take_the_model_from_their_cache(cache: ModelCache, server) -> None:
    """A worker builds from the model's name through its node's cache and refuses a file there
    that is not the driver's."""
    pytest.importorskip("ray")
    from opengraphau.spec import PipelineSpec

    model = cache.get("resnet18-s1", progress=False)
    spec = PipelineSpec(model="resnet18-s1", sha256=model.sha256, cached=True)
    assert spec._checkpoint() == str(model.path)
    other = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(Exception, match=r"holds another file under this name"):
        other._checkpoint()


def test_run_json_calls_a_file_official_by_its_hash_not_its_name(
    cache: ModelCache, resnet18_s2: Path, tmp_path: Path
) -> None:
    """The bytes the cache fetched for resnet18-s1, under any name, are that model; another
    file under the official name is not."""
    fetched = cache.get("resnet18-s1", progress=False)
    renamed = tmp_path / "mine.pth"
    renamed.write_bytes(fetched.path.read_bytes())
    impostor = tmp_path / "elsewhere" / R18.filename
    impostor.parent.mkdir()
    impostor.write_bytes(resnet18_s2.read_bytes())
    found = {}
    for name, path in (("renamed", renamed), ("impostor", impostor)):
        out = tmp_path / name
        assert (
            main(
                [
                    "--resume",
                    str(path),
                    "--input",
                    str(FACE),
                    "--no-detect",
                    "--quiet",
                    "--output-dir",
                    str(out),
                ],
                prog="opengraphau",
            )
            == 0
        )
        found[name] = json.loads((out / "run.json").read_text())["runs"][0]["checkpoint"]
    assert (found["renamed"]["official"], found["renamed"]["official_file"]) == (
        "resnet18-s1",
        R18.filename,
    )
    assert found["renamed"]["sha256"] == fetched.sha256
    assert (found["impostor"]["official"], found["impostor"]["official_file"]) == (None, None)


def test_the_api_takes_a_named_or_default_model_from_the_cache(cache: ModelCache) -> None:
    from opengraphau import AUPredictor

    fetched = cache.get("resnet18-s1", progress=False)
    named = AUPredictor(model="resnet18-s1", device="cpu")
    default = AUPredictor(arch="resnet18", stage=1, device="cpu", offline=True)
    assert named.weights is not None and default.weights is not None
    assert (named.weights.path, named.weights.sha256) == (fetched.path, fetched.sha256)
    assert (default.weights.model, default.untrained) == ("resnet18-s1", False)
    face = named.predict([FACE])[0].faces[0]
    assert face.probs is not None and face.probs.shape == (41,)
