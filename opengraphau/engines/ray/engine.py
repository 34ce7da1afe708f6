"""`RayEngine`: the run's images and videos on a Ray cluster, outcomes back in input order."""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray import ObjectRefGenerator

from ...options import Options
from ...pipeline import Pipeline, PipelineTimes, pixel_batches
from ...records import Frame
from ...sources.images import image_pixels
from ...sources.inputs import InputItem
from ...sources.video import CaptureFactory
from ...spec import PipelineSpec
from .. import Outcome, VideoStream
from ..local import LocalEngine, outcomes
from . import cluster, images, videos
from .columns import FACES, Columns, as_text, matrix_records
from .videos import RayVideo

#: Batches of images per Ray Data block, so per decoding task, where their pixels allow: small
#: blocks spread a folder over the cluster and lose little to a retry; a task's start (its
#: worker's, the first time: torch and MTCNN loaded) is noise beside decoding this many images.
_BATCHES_PER_BLOCK = 4
#: Batches a video task may run ahead of this process when frames travel with their rows (to
#: draw them): a bounded buffer for big frames. Rows alone are small and run ahead unbounded,
#: so a video task never waits for this process.
_VIDEO_AHEAD = 8
#: Bytes a model actor holds beside its weights: PyTorch and the Ray worker, and room for a
#: batch (measured: 740 MiB in all for a ResNet-18 actor, 45 MiB of it weights).
_ACTOR_MEMORY = 1 << 30


class RayEngine:
    """Runs the job on a Ray cluster: `options.ray_address`, or a new local Ray."""

    def __init__(
        self,
        pipeline: Pipeline,
        options: Options,
        *,
        spec: PipelineSpec,
        keep_pixels: bool,
        capture_factory: CaptureFactory | None = None,
    ) -> None:
        """`pipeline`: the one jobs.py built, for cameras (which stay here); `spec`: what it
        was built from, resolved (`PipelineSpec.resolved`), which the workers build from;
        `keep_pixels`: images come back with their pixels (to draw or crop); `capture_factory`
        opens cameras (tests fake one)."""
        self.pipeline, self.options = pipeline, options
        self.keep_pixels, self.capture_factory = keep_pixels, capture_factory
        self.times: PipelineTimes = pipeline.times  # cameras run on it here; workers report
        self.nodes: Counter[str] = Counter()
        """Images each Ray node decoded or ran through the model: how the work spread."""
        self._fit: tuple[str, int] | None = None
        self._upcoming: list[InputItem] = []
        self._started: dict[InputItem, ObjectRefGenerator] = {}
        self._joined = cluster.connect(options.ray_address)
        try:
            self.placement = cluster.placement(options)
        except BaseException:
            self.close()
            raise
        gpu = self.placement.gpu
        self.spec = spec
        self.image_spec = spec.on_worker(
            gpu=gpu, detect=options.detect and not self.placement.search_in_tasks
        )
        self.video_spec = spec.on_worker(gpu=gpu, detect=options.detect)
        self._pixels_of_videos = keep_pixels or options.show
        self._actor_memory = _ACTOR_MEMORY + sum(
            t.numel() * t.element_size()
            for t in (*pipeline.model.parameters(), *pipeline.model.buffers())
        )

    def images(self, items: list[InputItem]) -> Iterator[list[Outcome]]:
        """Outcomes in input order (Ray Data's `preserve_order`: the rows come out as the local
        engine writes them, at the cost of holding finished batches behind a slow one)."""
        o, placement = self.options, self.placement
        ds: ray.data.Dataset = ray.data.from_arrow(
            [
                pa.table(
                    {
                        "index": pa.array([i for b in block for i in b], pa.int64()),
                        "path": pa.array(
                            [os.fsencode(os.path.abspath(items[i].path)) for b in block for i in b],
                            pa.binary(),
                        ),
                        "batch": pa.array([n for n, b in enumerate(block) for _ in b], pa.int64()),
                    }
                )
                for block in self._blocks(items, sized=o.detect or self.keep_pixels)
            ]
        )
        # Each stage takes a block whole (batch_size None) and runs it in the local engine's
        # batches (`batch`), so no block holds more decoded pixels than one batch may.
        ds = ds.map_batches(
            functools.partial(
                images.decode,
                spec=self.spec,
                preprocess=self.pipeline.preprocess,
                keep_pixels=self.keep_pixels,
                search=placement.search_in_tasks,
            ),
            batch_size=None,
            num_cpus=placement.task_cpus,
        )
        # Each actor reserves what it holds, so Ray puts no more actors on a node than its
        # memory takes; the stages' different needs also keep Ray Data from fusing decoding into
        # the actors, whose one process would then decode, search and run the model in turn.
        ds = ds.map_batches(
            images.Model,
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=placement.actors),
            num_cpus=placement.actor_cpus,
            num_gpus=1 if placement.gpu else None,
            memory=self._actor_memory,
            fn_constructor_kwargs={"spec": self.image_spec, "pixels": self.keep_pixels},
        )
        ds.context.execution_options.preserve_order = True
        ds.context.enable_progress_bars = False
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield self._outcomes(items, batch)
        except ray.exceptions.RayError as exc:
            raise cluster.worker_failure(exc, self.options) from None

    def _blocks(self, items: list[InputItem], *, sized: bool) -> list[list[list[int]]]:
        """The items' indices in the local engine's batches (the pipeline's batch size and,
        where pixels are kept (`sized`), at most `MAX_BATCH_PIXELS` by their headers), and
        those in blocks of up to `_BATCHES_PER_BLOCK` batches that together stay within
        `MAX_BATCH_PIXELS` too: a block of huge pictures is one batch, a task never holds
        more of them at once, and small pictures still go in blocks of several batches."""
        sizes = [image_pixels(item.path) if sized else 0 for item in items]
        batches = list(pixel_batches(sizes, self.pipeline.batch_size))
        pixels = (sum(sizes[i] for i in batch) for batch in batches)
        return [[batches[b] for b in block] for block in pixel_batches(pixels, _BATCHES_PER_BLOCK)]

    def _outcomes(self, items: list[InputItem], batch: Columns) -> list[Outcome]:
        self.times.detect += float(np.sum(batch["detect_s"]))
        self.times.model += float(np.sum(batch["model_s"]))
        self.nodes.update(batch["node"])
        self.nodes.update(batch["task_node"])
        for row in np.flatnonzero(batch["fit"]):
            self._fitted(int(batch["fit"][row]), as_text(batch["fit_on"][row]))
        keys = [int(index) for index in batch["index"]]
        errors = {i: as_text(e) for i, e in zip(keys, batch["error"]) if len(e)}
        records = {
            i: matrix_records(batch[FACES][k], items[i].path)
            for k, i in enumerate(keys)
            if i not in errors
        }
        frames = (
            {i: Frame.of(items[i].path, batch["image"][k]) for k, i in enumerate(keys)}
            if self.keep_pixels
            else None
        )
        return outcomes(items, keys, records, errors, frames)

    def video(self, item: InputItem) -> VideoStream:
        """A video file in a Ray task; a camera here, with this process's pipeline (its frames
        are live: sending them away and back would only add delay)."""
        if item.kind == "webcam":
            return LocalEngine(
                self.pipeline,
                self.options,
                keep_pixels=self.keep_pixels,
                capture_factory=self.capture_factory,
            ).video(item)
        refs = self._started.pop(item, None) or self._start(item)
        if item in self._upcoming:
            self._upcoming = self._upcoming[self._upcoming.index(item) + 1 :]
            for ahead in self._upcoming[: self.placement.slots]:
                if ahead not in self._started:
                    self._started[ahead] = self._start(ahead)
        return RayVideo(item, refs, self.times, self._fitted)

    def frames_that_fit(self) -> tuple[str, int] | None:
        """The device that fitted the fewest frames, of those the workers reported."""
        return self._fit

    def _fitted(self, fit: int, where: str) -> None:
        """A worker's report (`_fit_on`): 0 when its batches all fitted."""
        if fit and (self._fit is None or fit < self._fit[1]):
            self._fit = (where, fit)

    def prepare_videos(self, items: list[InputItem]) -> None:
        """While one video is read, the next ones (as many as the cluster runs at once) start,
        so a folder of videos keeps every worker busy; their rows wait in Ray's object store.
        Not when frames travel too (to draw them): those wait in bounded buffers, which would
        hold workers the video being read may need."""
        if not self._pixels_of_videos:
            self._upcoming = [i for i in items if i.kind != "webcam"]

    def _start(self, item: InputItem) -> ObjectRefGenerator:
        args: dict[str, Any] = (
            {"num_gpus": 1} if self.placement.gpu else {"num_cpus": self.placement.actor_cpus}
        )
        if self._pixels_of_videos:
            args["_generator_backpressure_num_objects"] = _VIDEO_AHEAD
        where = InputItem(os.path.abspath(item.path), item.kind, item.stem)
        return cast(
            ObjectRefGenerator,
            videos.video_task.options(**args).remote(
                self.video_spec, self.options, where, self._pixels_of_videos
            ),
        )

    def close(self) -> None:
        """Stop the videos started ahead and not read; leave the cluster if this engine joined
        it (a local Ray it started stops)."""
        for refs in self._started.values():
            ray.cancel(refs)
        self._started.clear()
        if self._joined and ray.is_initialized():
            ray.shutdown()
