"""One whole run: inputs -> engine -> result files and pictures, with counts at the end.

    from opengraphau import Options, run
    stats = run(Options(inputs=("data/",), output_dir="results/data", formats=("csv", "jsonl")))

The CLI is a thin shell around this. `context.Reporter` is how a front end hears of progress
(the default one says nothing). Images are handled here, videos by `video_job.VideoJob`; both
share the run's files, counts and reporter through a `context.RunContext`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .context import Reporter, RunContext, RunStats
from .engines import Engine, Outcome
from .errors import InputError, OpenGraphAUError, OutputError, describe
from .options import Options
from .records import FaceRecord, display_name
from .sinks.files import OutputFolder
from .sinks.lock import RunLock
from .sinks.manifest import RunManifest, run_entry
from .sinks.previous import check_unused, remove_results
from .sinks.summary import VideoSummary
from .sinks.writer import ResultWriter
from .sources.inputs import InputItem, collect_inputs
from .video_job import VideoJob
from .weights import Weights, choose_weights

if TYPE_CHECKING:
    from .sources.video import CaptureFactory


def run(
    options: Options,
    reporter: Reporter | None = None,
    *,
    capture_factory: CaptureFactory | None = None,
) -> RunStats:
    """Process every input of `options`; the counts come back, the results go to the files.

    Raises OpenGraphAUError subclasses for problems that stop the run before or while it writes
    (checkpoint, device, output folder); problems with single inputs, expected or not, are
    counted, reported and listed in errors.csv instead. KeyboardInterrupt ends it cleanly: what
    was written stays, and `interrupted` says so. `capture_factory` opens videos and cameras
    (tests fake it).
    """
    return _Run(options, reporter or Reporter(), capture_factory).execute()


class _Run:
    def __init__(
        self, options: Options, reporter: Reporter, capture_factory: CaptureFactory | None
    ) -> None:
        self.options, self.reporter, self.capture_factory = options, reporter, capture_factory
        self.stats = RunStats(options.output_dir, options.untrained, options.detect)
        self.batch_size: int | None = None
        """The batch size the pipeline chose, for the out-of-memory warning."""
        self.told_fit: tuple[str, int] | None = None

    def execute(self) -> RunStats:
        o = self.options
        plan = collect_inputs(o.inputs, exclude=o.output_dir)
        items = [
            i for i in plan.items if o.only is None or (i.kind == "image") == (o.only == "images")
        ]
        if not items:
            reasons = [f"{display_name(spec)}: {why}" for spec, why in plan.problems]
            if plan.items:
                reasons.append(
                    f"{len(plan.items)} inputs left out, as only {o.only} were asked for"
                )
            wanted = o.only or "images or videos"
            raise InputError(
                f"no {wanted} found ({'; '.join(reasons) or 'nothing given'})", param="inputs"
            )
        inputs = {os.path.realpath(i.path) for i in items if i.kind != "webcam"}
        # Before the model loads (seconds) and before anything is created: a folder holding an
        # earlier run's results is refused, unless continued or replaced.
        OutputFolder.check(o.output_dir)
        check_unused(o.output_dir, skip_existing=o.skip_existing, overwrite=o.overwrite)
        # Before the output folder: a model that cannot be had leaves nothing behind.
        weights = None if o.untrained else self._weights()
        with contextlib.ExitStack() as cleanup:
            # Whatever fails from here on (an output file that cannot be opened, too), the
            # engine (a Ray it started) and the reporter (a progress bar) are closed.
            cleanup.callback(self.reporter.close)
            engine, entry = self._engine(weights)
            cleanup.callback(engine.close)
            # Only now, with the model loaded, is the folder made and locked: a run that stops
            # before it starts (a checkpoint that does not load) leaves nothing behind.
            folder = OutputFolder(o.output_dir)
            cleanup.enter_context(RunLock(folder))
            check_unused(o.output_dir, skip_existing=o.skip_existing, overwrite=o.overwrite)
            if o.overwrite:
                remove_results(folder, inputs)
            with ResultWriter(
                folder,
                formats=o.formats,
                threshold=o.au_thresholds,
                untrained=o.untrained,
                resume=o.skip_existing,
                smooth=o.smooth > 1,
            ) as writer:
                kept = {name for name, _ in writer.completed} if o.skip_existing else None
                run = RunContext(
                    o,
                    self.reporter,
                    self.stats,
                    writer,
                    VideoSummary(folder, threshold=o.au_thresholds, completed=kept),
                    RunManifest(folder, entry, resume=o.skip_existing),
                    folder,
                    inputs,
                )
                for spec, why in plan.problems:
                    run.fail(spec, why)
                start = time.perf_counter()
                status, error = "interrupted", None
                try:
                    self._process(run, engine, items)
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
                    s = self.stats
                    # When the run already fails (a full disk), that error is the one to tell.
                    with (
                        contextlib.suppress(OutputError)
                        if status == "failed"
                        else contextlib.nullcontext()
                    ):
                        run.manifest.finish(
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
    def _weights(self) -> Weights:
        o = self.options
        return choose_weights(
            checkpoint=o.checkpoint,
            model=o.model,
            checkpoint_dir=o.checkpoint_dir,
            arch=o.arch,
            stage=o.stage,
            offline=o.offline,
            progress=self.reporter.shows_progress,
            say=self.reporter.warn,
        )

    def _engine(self, weights: Weights | None) -> tuple[Engine, dict[str, Any]]:
        """The engine with the pipeline loaded, and the run's entry for run.json."""
        from .spec import PipelineSpec, warn_untrained

        o = self.options
        if weights is None:
            warn_untrained()
        spec = PipelineSpec.from_options(o, weights)
        pipeline = spec.build()
        spec = spec.resolved(pipeline)
        # run.json records the batch size the pipeline chose (the engines read the pipeline's).
        o = replace(o, batch_size=spec.batch_size)
        self.batch_size = spec.batch_size
        source = (
            "random weights"
            if weights is None
            else f"{weights.model}, {weights.path}"
            if weights.model
            else str(weights.path)
        )
        model = pipeline.model
        self.reporter.model_ready(
            f"{model.arch} stage {model.stage} ({source}) on {spec.device}", o.untrained
        )
        entry = run_entry(
            o, device=spec.device, arch=model.arch, stage=model.stage, weights=weights
        )
        keep_pixels = o.draw or o.save_crops
        if o.engine == "ray":
            from .engines.ray import RayEngine

            engine: Engine = RayEngine(
                pipeline,
                o,
                spec=spec,
                keep_pixels=keep_pixels,
                capture_factory=self.capture_factory,
            )
        else:
            from .engines.local import LocalEngine

            engine = LocalEngine(
                pipeline, o, keep_pixels=keep_pixels, capture_factory=self.capture_factory
            )
        return engine, entry

    # -- processing ---------------------------------------------------------------------------
    def _process(self, run: RunContext, engine: Engine, items: list[InputItem]) -> None:
        images = [i for i in items if i.kind == "image"]
        todo = [i for i in images if not run.writer.is_completed(i.path)]
        self.stats.skipped = len(images) - len(todo)
        self.reporter.start_images(len(todo))
        if todo:
            for outcomes in engine.images(todo):
                _images_done(run, outcomes)
                self._tell_fit(run, engine)
                run.stop_if_asked()
        videos = [i for i in items if i.kind != "image" and not run.writer.is_completed(i.path)]
        if videos:
            self.reporter.start_videos([self._frames_of(item) for item in videos])
        engine.prepare_videos(videos)
        video = VideoJob(run)
        for item in videos:
            video(engine, item)
            self._tell_fit(run, engine)

    def _frames_of(self, item: InputItem) -> int | None:
        """The frames `item` will give, as its container states them, for progress."""
        from .sources.video import frames_kept, probe_frames

        o = self.options
        probed = probe_frames(item.path, self.capture_factory) if item.kind == "video" else None
        count, fps = probed if probed is not None else (None, 1.0)
        return frames_kept(
            count, fps, every=o.every, start=o.start, end=o.end, max_frames=o.max_frames
        )

    def _tell_fit(self, run: RunContext, engine: Engine) -> None:
        """Say once (and again if it shrinks further) that batches had to be split to fit in
        the device's memory: the run goes on, slower than with that batch size asked for."""
        found = engine.frames_that_fit()
        if found is not None and found != self.told_fit:
            self.told_fit = found
            where, fit = found
            run.warn(
                f"{where} ran out of memory on batches of "
                f"{self.batch_size} frames; the run goes on in parts of {fit} "
                f"(a batch size of {fit} saves the retries)"
            )


def _images_done(run: RunContext, outcomes: list[Outcome]) -> None:
    """Rows, then pictures, of a batch of images; then they count as completed."""
    rows: list[FaceRecord] = []
    for outcome in outcomes:
        if outcome.error is not None:
            run.fail(outcome.item.path, outcome.error)
            continue
        rows.extend(outcome.records)
        run.count(outcome.records)
        run.stats.images += 1
    run.writer.write(rows)
    for outcome in outcomes:
        frame = outcome.frame
        if outcome.error is None and frame is not None and frame.image is not None:
            _pictures(run, outcome.item, frame.image, outcome.records)
    # Only now: a run stopped by a full disk while saving a picture redoes it when resumed.
    run.writer.mark_completed([o.item.path for o in outcomes if o.error is None])
    run.reporter.images_done(outcomes, run.options.au_thresholds, run.options.detect)


def _pictures(
    run: RunContext, item: InputItem, pixels: np.ndarray, records: list[FaceRecord]
) -> None:
    """--save-crops and --draw_text of one image."""
    from .faces.crop import square_crop
    from .render.pictures import annotate_image

    options, stem = run.options, item.stem
    image = Image.fromarray(pixels)
    if options.save_crops and options.detect:
        for record in records:
            if record.box is not None:
                run.pictures.save_jpeg(
                    f"crops/{stem}_face{record.face_id}.jpg",
                    functools.partial(square_crop, image, record.box),
                )
    if options.draw:
        run.pictures.save_jpeg(
            f"{stem}_pred.jpg",
            lambda: annotate_image(
                image,
                records,
                threshold=options.au_thresholds,
                title=run.title,
                show_boxes=options.detect,
            ),
        )
