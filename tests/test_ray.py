"""--engine ray against --engine local on one local Ray (2 CPUs, shared by the module): the same
rows, errors, pictures, resuming, exit codes and summary; videos; cameras; the FaceAUs snippet."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from factories import (
    FACE,
    ROOT,
    FakeCamera,
    doc_section,
    read_rows,
    run_main,
    write_video,
)
from opengraphau import to_dataframe
from opengraphau.aus import AU_COLUMNS
from opengraphau.schema import CSV_HEADER

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
import ray  # noqa: E402 - after its settings

from opengraphau.engines.ray import RayEngine, cluster, columns  # noqa: E402
from opengraphau.engines.ray.columns import FACES  # noqa: E402
from opengraphau.engines.ray.images import Model  # noqa: E402
from opengraphau.spec import PipelineSpec  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NUMBERS = ("timestamp", "confidence", "x", "y", "w", "h", *AU_COLUMNS)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One Ray for the module: the engine uses a connection it finds and leaves it open."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Faces, faceless and broken images, over sub-folders."""
    root = tmp_path_factory.mktemp("images")
    for sub in ("a", "b", "c"):
        (root / sub).mkdir()
    shutil.copy(FACE, root / "a" / "astronaut_face.jpg")
    shutil.copy(ROOT / "demo_imgs" / "two_faces.jpg", root / "a" / "two_faces.jpg")
    shutil.copy(ROOT / "demo_imgs" / "astronaut.jpg", root / "c" / "astronaut.jpg")
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(root / "b" / "grey.png")
    noise = np.random.default_rng(0).integers(0, 256, (112, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "b" / "noise.jpg")
    (root / "broken.jpg").write_text("not an image")
    data = (root / "a" / "two_faces.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return root


def _run(
    ck: Path, out: Path, *inputs: str, extra: tuple[str, ...] = (), capture_factory=None
) -> int:
    return run_main(
        "--resume",
        str(ck),
        "--quiet",
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--output-dir",
        str(out),
        "--input",
        *inputs,
        *extra,
        capture_factory=capture_factory,
    )


def _summary(text: str) -> str:
    """The summary (wrapped on lines or not) without its times and output folder."""
    flat = " ".join(text.split())
    line = flat[max(flat.rfind("done:"), flat.rfind("interrupted:")) :].split("; outputs in")[0]
    return re.sub(r"[\d.]+ s\b|[\d.]+ images(\+frames)?/s", "T", line)


def _errors(out: Path) -> list[tuple[str, str]]:
    with open(out / "errors.csv", newline="") as f:
        return [(r["file"], r["reason"]) for r in csv.DictReader(f)]


def _numbers(rows: list[dict[str, str]]) -> np.ndarray:
    return np.array([[float(r[c]) if r[c] else np.nan for c in NUMBERS] for r in rows])


def _same_rows(a: list[dict[str, str]], b: list[dict[str, str]]) -> None:
    keys = ("file", "frame", "face_id", "success")
    assert [tuple(r[k] for k in keys) for r in a] == [tuple(r[k] for k in keys) for r in b]
    np.testing.assert_allclose(_numbers(a), _numbers(b), atol=1e-5, equal_nan=True)


@pytest.fixture(scope="module")
def local(
    folder: Path, resnet18_s1: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The local engine's run on `folder`, pictures included, and its summary line: what Ray
    must reproduce."""
    out = tmp_path_factory.mktemp("local") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert _run(resnet18_s1, out, str(folder), extra=("--draw_text",)) == 1
    return out, _summary(printed.getvalue())


def test_images_match_local(
    folder: Path,
    resnet18_s1: Path,
    local: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected, summary = local
    out = tmp_path / "ray"
    capsys.readouterr()
    assert _run(resnet18_s1, out, str(folder), extra=("--engine", "ray")) == 1
    captured = capsys.readouterr()
    assert _summary(captured.out) == summary
    assert "Traceback" not in captured.err
    rows = read_rows(out)
    _same_rows(rows, read_rows(expected))
    assert {r["file"] for r in rows if r["success"] == "1"} >= {
        str(folder / "a" / "astronaut_face.jpg"),
        str(folder / "a" / "two_faces.jpg"),
    }
    assert _errors(out) == _errors(expected)
    assert {Path(f).name for f, _ in _errors(out)} == {"broken.jpg", "truncated.jpg"}
    assert (out / "completed.csv").read_text() == (expected / "completed.csv").read_text()


def test_faces_found_in_the_actors_with_pictures(
    folder: Path,
    resnet18_s1: Path,
    local: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The GPU layout (the model's actors search for faces), here on CPU actors."""
    expected = local[0]
    placement = cluster.placement
    monkeypatch.setattr(
        cluster,
        "placement",
        lambda options: dataclasses.replace(placement(options), search_in_tasks=False),
    )
    out = tmp_path / "ray"
    assert _run(resnet18_s1, out, str(folder), extra=("--engine", "ray", "--draw_text")) == 1
    _same_rows(read_rows(out), read_rows(expected))
    assert _errors(out) == _errors(expected)
    pictures = sorted(p.relative_to(expected) for p in expected.rglob("*.jpg"))
    assert pictures and sorted(p.relative_to(out) for p in out.rglob("*.jpg")) == pictures


def test_whole_frames_resumed_with_skip_existing(
    folder: Path, resnet18_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = ("--no-detect",)
    assert _run(resnet18_s1, tmp_path / "local", str(folder), extra=whole) == 1
    out = tmp_path / "ray"
    ray_args = (*whole, "--engine", "ray", "--skip-existing")
    assert _run(resnet18_s1, out, str(folder / "a"), extra=ray_args) == 0
    capsys.readouterr()
    assert _run(resnet18_s1, out, str(folder), extra=ray_args) == 1
    assert "2 already done" in capsys.readouterr().out

    def by_file(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return sorted(rows, key=lambda r: (r["file"], r["face_id"]))

    _same_rows(by_file(read_rows(out)), by_file(read_rows(tmp_path / "local")))
    assert _errors(out) == _errors(tmp_path / "local")


def test_videos_match_local(resnet18_s1: Path, tmp_path: Path) -> None:
    """Three videos, the later ones started while the first is read; two of them broken."""
    clip = write_video(tmp_path / "clip.mp4", 16, face_until=12)
    (tmp_path / "garbage.mp4").write_bytes(b"\x00" * 1000)
    cut = write_video(tmp_path / "cut.mkv", 30, face_until=0, fourcc="MJPG")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    inputs = (str(clip), str(tmp_path / "garbage.mp4"), str(cut))
    video = ("--batch-size", "5", "--smooth", "3")
    assert _run(resnet18_s1, tmp_path / "local", *inputs, extra=video) == 1
    out = tmp_path / "ray"
    assert _run(resnet18_s1, out, *inputs, extra=(*video, "--engine", "ray")) == 1
    expected = read_rows(tmp_path / "local")
    _same_rows(read_rows(out), expected)
    assert _errors(out) == _errors(tmp_path / "local")
    assert {Path(f).name for f, _ in _errors(out)} == {"garbage.mp4", "cut.mkv"}
    # Frames travel too when they are drawn.
    drawn = tmp_path / "drawn"
    assert (
        _run(
            resnet18_s1,
            drawn,
            str(clip),
            extra=(*video, "--engine", "ray", "--draw_text", "--max-frames", "6"),
        )
        == 0
    )
    _same_rows(read_rows(drawn), expected[:6])
    capture = cv2.VideoCapture(str(drawn / "clip_pred.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


def test_webcam_stays_local(resnet18_s1: Path, tmp_path: Path) -> None:
    cameras: list[FakeCamera] = []

    def factory(index: int) -> FakeCamera:
        cameras.append(FakeCamera())
        return cameras[-1]

    assert (
        _run(
            resnet18_s1,
            tmp_path / "out",
            "webcam:0",
            extra=("--engine", "ray", "--no-detect", "--max-frames", "5"),
            capture_factory=factory,
        )
        == 0
    )
    assert len(read_rows(tmp_path / "out")) == 5 and cameras[0].released


def test_face_aus_snippet_of_the_docs(folder: Path, resnet18_s1: Path, tmp_path: Path) -> None:
    """docs/ray.md's FaceAUs example, run as written on a small folder."""
    import pyarrow.parquet as pq

    from opengraphau.predictor import AUPredictor

    text = doc_section("docs/ray.md", "Many machines: Ray")
    snippet = next(
        block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "FaceAUs" in block
    )
    photos = tmp_path / "photos"
    shutil.copytree(folder / "a", photos)
    checkpoint = '"checkpoints/OpenGprahAU-ResNet50_first_stage.pth"'
    snippet = (
        snippet.replace('"photos/"', repr(str(photos)))
        .replace(checkpoint, repr(str(resnet18_s1)))
        .replace('"aus/"', repr(str(tmp_path / "aus")))
    )
    exec(compile(snippet, "docs/ray.md", "exec"), {})
    table = pq.read_table(tmp_path / "aus").to_pandas().sort_values(["file", "face_id"])
    expected = AUPredictor(resnet18_s1, detect_faces=True, batch_size=16).predict(
        sorted(photos.iterdir())
    )
    faces = [face for result in expected for face in result.faces]
    assert list(table["file"]) == [face.source for face in faces]
    # predictions.csv's columns, rounded as the CSV is (a float-noise flip of the last digit
    # between the two processes' batches aside)
    csv = to_dataframe(expected)
    assert list(table.columns[: len(CSV_HEADER)]) == list(CSV_HEADER)
    for names, decimals in ((list(AU_COLUMNS), 6), (["x", "y", "w", "h"], 1)):
        got = table[names].to_numpy(np.float64)
        np.testing.assert_allclose(got, csv[names].to_numpy(np.float64), atol=1.01 * 10**-decimals)
        np.testing.assert_allclose(got, np.round(got, decimals), atol=1e-7)


def test_a_worker_without_the_checkpoint_is_one_error(folder: Path, tmp_path: Path) -> None:
    """What a node that does not see the checkpoint (no shared file system) comes to."""
    from opengraphau.errors import OpenGraphAUError
    from opengraphau.options import Options
    from opengraphau.sources.inputs import collect_inputs

    options = Options(inputs=(str(folder / "b"),), untrained=True, arch="resnet18", engine="ray")
    spec = PipelineSpec.from_options(options, None)
    pipeline = spec.build()
    elsewhere = PipelineSpec(str(tmp_path / "elsewhere.pth"), detect=False)
    engine = RayEngine(pipeline, options, spec=elsewhere, keep_pixels=False)
    with pytest.raises(OpenGraphAUError, match=r"a Ray worker failed \(.*no such checkpoint"):
        list(engine.images(collect_inputs(options.inputs).items))
    engine.close()
    assert ray.is_initialized()  # the module's connection, which the engine did not open


def test_an_actor_out_of_memory_reaches_the_runs_warning(
    folder: Path, resnet18_s1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor whose device held fewer frames than its batch reports how many fit, and where;
    the engine keeps the smallest report for the run's warning. (The actor is built in this
    process, where its device can be made to run out of memory.)"""
    import socket

    import torch

    from opengraphau.options import Options
    from opengraphau.pipeline import Pipeline
    from opengraphau.sources.inputs import InputItem

    monkeypatch.setattr(cluster, "use_assigned_cpus", lambda: None)  # none assigned here
    spec = PipelineSpec(str(resnet18_s1), arch="resnet18", stage=1, device="cpu", batch_size=3)
    actor = Model(spec, pixels=False)
    paths = [
        folder / "a" / "astronaut_face.jpg",
        folder / "a" / "two_faces.jpg",
        folder / "c" / "astronaut.jpg",
    ]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    batch = {
        "index": np.arange(3),
        "error": columns.as_bytes([""] * 3),
        "image": columns.ragged(images),
        "width": np.array([i.shape[1] for i in images]),
        "height": np.array([i.shape[0] for i in images]),
        "batch": np.zeros(3, np.int64),
        "detect_s": np.zeros(3),
        "task_node": np.array(["node"] * 3, dtype=object),
    }
    fitted = actor(batch)
    locate = Pipeline.locate

    def tight(self, frames, images=None):  # a device that holds one frame at a time
        if len(frames) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return locate(self, frames, images)

    monkeypatch.setattr(Pipeline, "locate", tight)
    split = actor(batch)
    where = f"cpu of {socket.gethostname()}"
    assert fitted["fit"].tolist() == [0, 0, 0] and split["fit"].tolist() == [1, 1, 1]
    assert {columns.as_text(w) for w in split["fit_on"]} == {where}
    assert [len(f) for f in split[FACES]] == [len(f) for f in fitted[FACES]] == [1, 2, 1]
    np.testing.assert_allclose(
        np.concatenate(split[FACES]), np.concatenate(fitted[FACES]), rtol=1e-6, atol=1e-6
    )
    engine = RayEngine(
        actor.pipeline, Options((str(folder),), engine="ray"), spec=spec, keep_pixels=False
    )
    try:
        items = [InputItem(str(p), "image") for p in paths]
        engine._outcomes(items, {**fitted, "node": fitted["task_node"]})
        assert engine.frames_that_fit() is None
        engine._outcomes(items, {**split, "node": split["task_node"]})
        assert engine.frames_that_fit() == (where, 1)
        engine._fitted(2, "cuda:0 of another")  # more frames fit there: not the smallest
        assert engine.frames_that_fit() == (where, 1)
    finally:
        engine.close()


def test_image_blocks_are_bounded_by_pixels_and_run_in_the_local_batches(
    folder: Path, resnet18_s1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Ray block holds more than MAX_BATCH_PIXELS of decoded pictures (unless one picture
    alone passes it); the model stage runs each block in the local engine's batches, and the
    rows are the local engine's, in input order."""
    import opengraphau.pipeline as pipeline_module
    from opengraphau.engines.local import LocalEngine
    from opengraphau.engines.ray.images import decode
    from opengraphau.options import Options
    from opengraphau.pipeline import Pipeline
    from opengraphau.sources.images import image_pixels
    from opengraphau.sources.inputs import collect_inputs
    from opengraphau.weights import Weights

    options = Options((str(folder),), batch_size=2, workers=0, engine="ray")
    items = collect_inputs(options.inputs).items
    pixels = {item.path: image_pixels(item.path) for item in items}
    limit = max(pixels.values())  # the largest picture fills a batch, and a block, on its own
    monkeypatch.setattr(pipeline_module, "MAX_BATCH_PIXELS", limit)
    spec = PipelineSpec.from_options(options, Weights(resnet18_s1))
    pipeline = spec.build()
    submitted: list[int] = []
    submit = Pipeline.submit

    def counted(self, frames, *args, **kwargs):  # the batch sizes the model stage sees
        submitted.append(len(frames))
        return submit(self, frames, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "submit", counted)
    local = list(LocalEngine(pipeline, options, keep_pixels=False).images(items))
    in_local, submitted[:] = list(submitted), []
    engine = RayEngine(pipeline, options, spec=spec.resolved(pipeline), keep_pixels=False)
    try:
        blocks = list(engine.images(items))
        # The same blocks through the two stages here, where the model's calls can be counted.
        monkeypatch.setattr(cluster, "use_assigned_cpus", lambda: None)
        actor = Model(engine.image_spec, pixels=False)
        for block in engine._blocks(items, sized=True):
            rows = [i for batch in block for i in batch]
            columns = {
                "index": np.array(rows),
                "path": np.array([os.fsencode(items[i].path) for i in rows], dtype=object),
                "batch": np.array([n for n, batch in enumerate(block) for _ in batch]),
            }
            actor(
                decode(
                    columns,
                    spec=engine.spec,
                    preprocess=pipeline.preprocess,
                    keep_pixels=False,
                    search=engine.placement.search_in_tasks,
                )
            )
    finally:
        engine.close()
    # (The local engine also submits a batch whose pictures all failed, as an empty one.)
    assert submitted == [n for n in in_local if n] and len(submitted) > 2
    sizes = [[pixels[o.item.path] for o in block] for block in blocks]
    assert all(len(s) == 1 or sum(s) <= limit for s in sizes), sizes
    assert len(blocks) > 1  # by count alone, these 7 pictures would be one block of 4 batches
    ends = {sum(len(b) for b in local[: n + 1]) for n in range(len(local))}
    assert {sum(len(b) for b in blocks[: n + 1]) for n in range(len(blocks))} <= ends
    got = [o for b in blocks for o in b]
    want = [o for b in local for o in b]
    assert [o.item for o in got] == [o.item for o in want] == items
    assert [o.error for o in got] == [o.error for o in want]
    records = [(r, s) for o, p in zip(got, want) for r, s in zip(o.records, p.records)]
    assert len(records) == sum(len(o.records) for o in want) > 0
    assert all((r.face_id, r.box is None) == (s.face_id, s.box is None) for r, s in records)
    np.testing.assert_allclose(
        [r.probs for r, _ in records if r.probs is not None],
        [s.probs for _, s in records if s.probs is not None],
        atol=1e-5,
    )
