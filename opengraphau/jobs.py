"""One whole run: inputs -> engine -> result files, pictures and videos, with counts at the end.

    from opengraphau import Options, run
    stats = run(Options(inputs=("data/",), output_dir="results/data", formats=("csv", "jsonl")))

The CLI is a thin shell around this. `Reporter` is how a front end hears of progress; the
default one says nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .aus import AU_IDS
from .errors import InputError, OpenGraphAUError, OutputError, VideoError, describe
from .options import Options
from .records import UNCONFIRMED, FaceRecord, display_name
from .sinks.files import OutputFolder
from .sinks.lock import RunLock
from .sinks.manifest import RunManifest, run_entry
from .sinks.summary import VideoSummary
from .sinks.writer import ResultWriter
from .sources.inputs import InputItem, collect_inputs

UNTRAINED_BANNER = "UNTRAINED: random weights, the numbers mean nothing (smoke test only)"
JPEG_MAX_SIDE = 65500
"""Pixels; a bigger picture (a panel per face of a crowd) is skipped with a warning."""


@dataclass
class RunStats:
    """What a run did; `failed` counts inputs that could not be used."""

    output_dir: Path
    untrained: bool = False
    detect: bool = True
    images: int = 0
    failed: int = 0
    faces: int = 0
    no_face: int = 0
    frames: int = 0
    videos: int = 0
    skipped: int = 0
    detect_s: float = 0.0
    model_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)


class Reporter:
    """Hears of a run's progress; subclass it to show it. Every method may be left as it is."""

    def model_ready(self, description: str, untrained: bool) -> None:
        """The model is loaded: `description` says which, on which device."""

    def start_images(self, total: int) -> None:
        """`total` images are about to be processed."""

    def images_done(self, outcomes: list, threshold: float, detect: bool) -> None:
        """A batch of image outcomes (`engines.Outcome`) has been written."""

    def failed(self, source: str, reason: str) -> None:
        """An input could not be used; the run goes on."""

    def warn(self, text: str) -> None:
        """Something was skipped (a picture that could not be drawn); its rows are written."""

    def start_camera(self) -> None:
        """A live camera starts: a front end may offer a way to stop it."""

    def preview(self, frame: np.ndarray) -> bool:
        """An annotated video frame to show; True asks the run to stop this video."""
        return False

    def stop_requested(self) -> bool:
        """Whether the user asked to stop the live camera."""
        return False

    def interrupt_requested(self) -> bool:
        """Whether the user asked to stop the whole run (Ctrl-C). Asked after every batch, so
        the run stops where it is consistent; it then ends as KeyboardInterrupt would."""
        return False

    def close(self) -> None:
        """The run is over."""


def run(options: Options, reporter: Reporter | None = None, *, capture_factory=None) -> RunStats:
    """Process every input of `options`; the counts come back, the results go to the files.

    Raises OpenGraphAUError subclasses for problems that stop the run before or while it writes
    (checkpoint, device, output folder); problems with single inputs, expected or not, are
    counted, reported and listed in errors.csv instead. KeyboardInterrupt ends it cleanly: what
    was written stays, and `interrupted` says so. `capture_factory` opens videos and cameras
    (tests fake it).
    """
    return _Run(options, reporter or Reporter(), capture_factory).execute()


class _Run:
    def __init__(self, options: Options, reporter: Reporter, capture_factory) -> None:
        self.options, self.reporter, self.capture_factory = options, reporter, capture_factory
        self.stats = RunStats(options.output_dir, options.untrained, options.detect)
        self.undrawable: set[str] = set()
        """Videos whose annotated copy stopped at a frame that could not be drawn."""

    def execute(self) -> RunStats:
        o = self.options
        plan = collect_inputs(o.inputs, exclude=o.output_dir)
        if not plan.items:
            reasons = "; ".join(f"{display_name(spec)}: {why}" for spec, why in plan.problems)
            raise InputError(
                f"no images or videos found ({reasons or 'nothing given'})", param="inputs"
            )
        self.inputs = {os.path.realpath(i.path) for i in plan.items if i.kind != "webcam"}
        folder = OutputFolder(o.output_dir)
        with RunLock(folder):
            engine = self._engine()
            with ResultWriter(
                folder,
                formats=o.formats,
                threshold=o.threshold,
                untrained=o.untrained,
                resume=o.skip_existing,
            ) as writer:
                self.folder, self.writer = folder, writer
                kept = {name for name, _ in writer.completed} if o.skip_existing else None
                self.summary = VideoSummary(folder, threshold=o.threshold, completed=kept)
                self.manifest = RunManifest(folder, self.entry, resume=o.skip_existing)
                for spec, why in plan.problems:
                    self._fail(spec, why)
                start = time.perf_counter()
                status, error = "interrupted", None
                try:
                    self._process(engine, plan.items)
                    status = "done"
                except KeyboardInterrupt:
                    self.stats.interrupted = True
                except Exception as exc:
                    status = "failed"
                    error = str(exc) if isinstance(exc, OpenGraphAUError) else describe(exc)
                    raise
                finally:
                    self.stats.elapsed_s = time.perf_counter() - start
                    self.stats.detect_s = engine.times.detect
                    self.stats.model_s = engine.times.model
                    engine.close()
                    self.reporter.close()
                    s = self.stats
                    # When the run already fails (a full disk), that error is the one to tell.
                    with (
                        contextlib.suppress(OutputError)
                        if status == "failed"
                        else contextlib.nullcontext()
                    ):
                        self.manifest.finish(
                            status,
                            error,
                            {
                                "images": s.images,
                                "videos": s.videos,
                                "frames": s.frames,
                                "faces": s.faces,
                                "no_face": s.no_face,
                                "failed": s.failed,
                                "skipped": s.skipped,
                            },
                        )
        return self.stats

    # -- set-up -------------------------------------------------------------------------------
    def _engine(self):
        from .device import resolve_device
        from .faces.detector import FaceDetector
        from .pipeline import Pipeline
        from .predictor import build_model_for
        from .weights import find_checkpoint

        o = self.options
        checkpoint = None
        if not o.untrained:
            checkpoint = o.checkpoint or find_checkpoint(o.checkpoint_dir, o.arch, o.stage)
        device = resolve_device(o.device)
        model = build_model_for(
            checkpoint, arch=o.arch, stage=o.stage, device=device, precision=o.precision
        )
        detector = (
            FaceDetector(device=device, min_face_size=o.min_face_size, max_faces=o.max_faces)
            if o.detect
            else None
        )
        pipeline = Pipeline(model, detector=detector, batch_size=o.batch_size)
        self.reporter.model_ready(
            f"{model.arch} stage {model.stage} "
            f"({'random weights' if checkpoint is None else checkpoint}) "
            f"on {device}",
            o.untrained,
        )
        self.checkpoint = checkpoint
        self.entry = run_entry(
            o, device=str(device), arch=model.arch, stage=model.stage, checkpoint=checkpoint
        )
        if o.engine == "ray":
            from .engines.ray import RayEngine

            return RayEngine(
                pipeline,
                o,
                checkpoint=checkpoint,
                keep_pixels=o.draw or o.save_crops,
                capture_factory=self.capture_factory,
            )
        from .engines.local import LocalEngine

        return LocalEngine(
            pipeline, o, keep_pixels=o.draw or o.save_crops, capture_factory=self.capture_factory
        )

    # -- processing ---------------------------------------------------------------------------
    def _stop_if_asked(self) -> None:
        if self.reporter.interrupt_requested():
            raise KeyboardInterrupt

    def _process(self, engine, items: list[InputItem]) -> None:
        images = [i for i in items if i.kind == "image"]
        todo = [i for i in images if not self.writer.is_completed(i.path)]
        self.stats.skipped = len(images) - len(todo)
        self.reporter.start_images(len(todo))
        if todo:
            for outcomes in engine.images(todo):
                self._images_done(outcomes)
                self._stop_if_asked()
        videos = [i for i in items if i.kind != "image" and not self.writer.is_completed(i.path)]
        engine.prepare_videos(videos)
        for item in videos:
            self._video(engine, item)

    def _images_done(self, outcomes: list) -> None:
        rows: list[FaceRecord] = []
        for outcome in outcomes:
            if outcome.error is not None:
                self._fail(outcome.item.path, outcome.error)
                continue
            rows.extend(outcome.records)
            self._count(outcome.records)
            self.stats.images += 1
        self.writer.write(rows)
        for outcome in outcomes:
            if outcome.error is None and outcome.frame is not None:
                self._pictures(outcome)
        # Only now: a run stopped by a full disk while saving a picture redoes it when resumed.
        self.writer.mark_completed([o.item.path for o in outcomes if o.error is None])
        self.reporter.images_done(outcomes, self.options.threshold, self.options.detect)

    def _count(self, records: list[FaceRecord]) -> None:
        faces = sum(r.success for r in records)
        self.stats.faces += faces
        self.stats.no_face += faces == 0

    def _pictures(self, outcome) -> None:
        from .faces.crop import square_crop
        from .render.pictures import annotate_image

        item, frame = outcome.item, outcome.frame
        image = Image.fromarray(frame.image)

        def jpeg(draw: Callable[[], Image.Image]) -> Callable[[Path], None]:
            def save(path: Path) -> None:
                picture = draw()
                if max(picture.size) > JPEG_MAX_SIDE:  # libjpeg would print its own complaint
                    raise ValueError(
                        f"{picture.width} x {picture.height} pixels, more than "
                        f"JPEG's {JPEG_MAX_SIDE} a side"
                    )
                picture.save(path, format="JPEG", quality=95)

            return save

        if self.options.save_crops and self.options.detect:
            for record in outcome.records:
                if record.success:
                    self._save_picture(
                        f"crops/{item.stem}_face{record.face_id}.jpg",
                        jpeg(functools.partial(square_crop, image, record.box)),
                    )
        if self.options.draw:
            self._save_picture(
                f"{item.stem}_pred.jpg",
                jpeg(
                    lambda: annotate_image(
                        image,
                        outcome.records,
                        threshold=self.options.threshold,
                        title=self._title(),
                        show_boxes=self.options.detect,
                    )
                ),
            )

    def _save_picture(self, rel: str, write: Callable[[Path], None]) -> None:
        """Draw one picture into a temporary file that is renamed into place. One that cannot be
        drawn, for whatever reason, is skipped with a warning; its rows are written anyway.
        Output folder failures (a full disk) stop the run."""
        if not self._may_write(rel):
            return
        try:
            with self.folder.replace(rel) as temporary, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # matplotlib's, on glyphs a name lacks
                write(temporary)
        except OutputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any drawing failure skips only the picture
            self._warn(
                f"{display_name(str(self.folder.root / rel))}: picture skipped ({describe(exc)})"
            )

    def _may_write(self, rel: str) -> bool:
        """False, with a warning, when `rel` would replace one of this run's inputs (possible
        when inputs lie inside the output folder)."""
        target = self.folder.root / rel
        if os.path.realpath(target) not in self.inputs:
            return True
        self._warn(f"{display_name(str(target))}: not written, it would replace an input")
        return False

    def _warn(self, text: str) -> None:
        self.stats.warnings.append(text)
        self.reporter.warn(text)

    def _title(self) -> str | None:
        return UNTRAINED_BANNER if self.options.untrained else None

    def _video(self, engine, item: InputItem) -> None:
        """One video or camera. Whatever goes wrong with it alone is its line in errors.csv and
        the run goes on; it is marked completed only when it was read to its end or its damage
        (so a resumed run retries one that failed otherwise)."""
        try:
            error = self._stream(engine, item)
        except OutputError:
            raise
        except VideoError as exc:
            self._fail(item.path, exc.reason)
            return
        except Exception as exc:  # noqa: BLE001 - one input's failure must not end the run
            self._fail(item.path, f"could not be processed ({describe(exc)})")
            return
        if error:
            self._fail(item.path, error)
        self.writer.mark_completed([item.path])

    def _stream(self, engine, item: InputItem) -> str | None:
        """Rows, annotated video and timeline of one video; why it ended early, or None."""
        stream = engine.video(item)
        self.stats.videos += 1
        self.manifest.add_video(item.path, stream.info)
        self.summary.start()
        timeline = _Timeline()
        with contextlib.ExitStack() as stack:
            stack.callback(stream.close)
            writer = self._video_writer(item, stream.info.fps) if self.options.draw else None
            if writer is not None:
                stack.callback(writer.close)
            if stream.info.is_camera:
                self.reporter.start_camera()
            stack.callback(self._plot_timeline, item, timeline)
            for outcomes in stream:
                stop = self._frames_done(outcomes, writer, timeline)
                self._stop_if_asked()
                if stop or (stream.info.is_camera and self.reporter.stop_requested()):
                    break
        self.summary.finish(item.path)
        return stream.error

    def _video_writer(self, item: InputItem, fps: float):
        from .render.video import VideoWriter

        rel = f"{item.stem}_pred.mp4"
        if not self._may_write(rel):
            return None
        return VideoWriter(self.folder.inside(rel), fps / self.options.every)

    def _frames_done(self, outcomes: list, writer, timeline: _Timeline) -> bool:
        """Write a batch of video frames; True when the user asked to stop."""
        from .render.pictures import annotate_frame

        rows: list[FaceRecord] = []
        stop = False
        for outcome in outcomes:
            rows.extend(outcome.records)
            self._count(outcome.records)
            self.stats.frames += 1
            timeline.add(outcome.frame.timestamp, outcome.records)
            path = outcome.item.path
            if (writer is not None or self.options.show) and path not in self.undrawable:
                try:
                    drawn = annotate_frame(
                        outcome.frame.image,
                        outcome.records,
                        threshold=self.options.threshold,
                        title=self._title(),
                    )
                    if writer is not None:
                        writer.write(drawn)
                except OutputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the rows go on without the drawing
                    self.undrawable.add(path)
                    self._warn(
                        f"{display_name(path)}: annotated video stopped at frame "
                        f"{outcome.frame.index} ({describe(exc)})"
                    )
                    continue
                if self.options.show and self.reporter.preview(drawn):
                    stop = True
                    break
        self.writer.write(rows)
        self.summary.add(rows)
        return stop

    def _plot_timeline(self, item: InputItem, timeline: _Timeline) -> None:
        if not self.options.draw or not timeline.times:
            return
        from .render.plots import plot_timeline

        picked = timeline.longest()
        if picked is None:
            return
        track, probs = picked
        title = f"{display_name(item.path)} (face {track})" + (
            f" - {UNTRAINED_BANNER}" if self.options.untrained else ""
        )
        self._save_picture(
            f"{item.stem}_aus.png",
            lambda path: plot_timeline(
                np.asarray(timeline.times),
                probs,
                path,
                threshold=self.options.threshold,
                title=title,
            ),
        )

    def _fail(self, source: str, reason: str) -> None:
        self.writer.error(source, reason)
        self.stats.failed += 1
        self.reporter.failed(display_name(source), reason)


class _Timeline:
    """Per video: the frame times and, per track, its probabilities by frame (unconfirmed faces
    belong to no track)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tracks: dict[int, dict[int, np.ndarray]] = {}

    def add(self, timestamp: float, records: list[FaceRecord]) -> None:
        self.times.append(timestamp)
        for record in records:
            if record.probs is not None and record.face_id != UNCONFIRMED:
                self.tracks.setdefault(record.face_id, {})[len(self.times) - 1] = record.probs

    def longest(self) -> tuple[int, np.ndarray] | None:
        """The face seen in the most frames, NaN where it is absent."""
        if not self.tracks:
            return None
        track, seen = max(self.tracks.items(), key=lambda kv: len(kv[1]))
        probs = np.full((len(self.times), len(AU_IDS)), np.nan)
        for index, p in seen.items():
            probs[index] = p
        return track, probs
