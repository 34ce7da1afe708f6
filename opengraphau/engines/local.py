"""The local engine: images decoded by worker processes, videos by a decoder thread, one model.

Workers decode (and, without face detection, preprocess) the next batches while the model runs
on this one; on CUDA they only read JPEG files, which the pipeline decodes on the GPU, and the
batches reach the device without blocking while the previous one runs.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DeviceError, ImageError, OpenGraphAUError, describe
from ..faces.keyframes import KeyFrameSearch
from ..model.transforms import EvalTransform
from ..options import Options
from ..pipeline import (
    PendingBatch,
    Pipeline,
    PipelineTimes,
    frames_per_batch,
    pixel_batches,
)
from ..records import FaceRecord, Frame, VideoInfo
from ..sources.images import image_pixels, load_image, read_jpeg
from ..sources.inputs import InputItem
from ..sources.video import CaptureFactory, VideoSource
from ..tracking import FaceTracker, IdsFromFirstFrame, Smoother, TrackedFaces
from . import Outcome

T = TypeVar("T")


def default_workers(device: torch.device) -> int:
    """Decoding processes for a model on `device`.

    On a GPU, half the CPU cores (at least 1): the other half feed the GPU. On a CPU the model's
    threads use every core and decoding is a tenth of its work, so one worker decodes ahead; on
    two cores or fewer none, as a worker's bursts stall the model's threads, which wait for each
    other (2 cores, ResNet-50 stage 2, --no-detect: 1.27x the model's time per photo with a
    worker, 1.08x without).
    """
    cores = os.cpu_count() or 2
    if device.type == "cuda":
        return max(1, cores // 2)
    return 0 if cores <= 2 else 1


class Decode(Dataset):
    """Item i -> its Frame (pixels and/or the prepared whole-frame crop, or with `encoded` the
    bytes of a JPEG for the pipeline to decode on its GPU), or why it failed.

    The Ray engine's decoding tasks use it too, so both engines fail an image alike."""

    def __init__(
        self,
        items: Sequence[InputItem],
        preprocess: EvalTransform,
        *,
        pixels: bool,
        prepare: bool,
        encoded: bool = False,
    ) -> None:
        self.items, self.preprocess = items, preprocess
        self.pixels, self.prepare, self.encoded = pixels, prepare, encoded

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def of(
        cls,
        items: Sequence[InputItem],
        preprocess: EvalTransform,
        *,
        detect: bool,
        keep_pixels: bool,
        encoded: bool = False,
    ) -> Decode:
        """What an engine decodes: pixels for the face search or for pictures, else only the
        whole-frame crop, prepared here."""
        return cls(
            items, preprocess, pixels=detect or keep_pixels, prepare=not detect, encoded=encoded
        )

    def __getitem__(self, i: int) -> tuple[int, Frame | None, str | None]:
        frame, error = prepared(lambda: self._frame(self.items[i].path))
        return i, frame, error

    def _frame(self, path: str) -> Frame:
        jpeg = read_jpeg(path) if self.encoded else None
        if jpeg is not None:
            return Frame(path, 0, 0.0, None, jpeg[1], encoded=jpeg[0])
        image = load_image(path)
        return Frame(
            path,
            0,
            0.0,
            np.asarray(image) if self.pixels else None,
            image.size,
            self.preprocess.pixels(image) if self.prepare else None,
        )


def prepared(make: Callable[[], T]) -> tuple[T | None, str | None]:
    """`make()` (an input decoded), or None and the one-line reason it could not be: one
    input's failure never ends the run, and it fails alike in every engine."""
    try:
        return make(), None
    except OpenGraphAUError as exc:
        return None, exc.reason
    except Exception as exc:  # noqa: BLE001 - one input's failure must not end the run
        return None, f"could not be prepared ({describe(exc)})"


def _worker_init(_: int) -> None:
    """One thread per worker (the model has the rest), and Ctrl-C is the main process's to
    handle: a worker that caught it would print a traceback of its own."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _as_list(batch: list) -> list:
    return batch


def _loader(dataset: Decode, batches: _Batches, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
    )


class _Batches:
    """The images' indices in batches of `batch_size`; where their pixels are kept (`sized`),
    also of at most `MAX_BATCH_PIXELS`, by the sizes their headers give (read as batches are
    asked for), so a batch of huge photos does not hold them all at once."""

    def __init__(self, items: Sequence[InputItem], batch_size: int, *, sized: bool) -> None:
        self.items, self.batch_size, self.sized = items, batch_size, sized

    def __iter__(self) -> Iterator[list[int]]:
        sizes = (image_pixels(item.path) if self.sized else 0 for item in self.items)
        return pixel_batches(sizes, self.batch_size)


def one_by_one(
    run: Callable[[int], T], indices: Iterable[int], errors: dict[int, str]
) -> dict[int, T]:
    """Results by index, each input run alone after its batch failed: only the input at fault
    fails (its reason goes into `errors`) and the others go on."""
    results: dict[int, T] = {}
    for i in indices:
        try:
            results[i] = run(i)
        except (ImageError, DeviceError) as exc:  # a JPEG it decoded, a frame too large for it
            errors[i] = exc.reason
        except Exception as exc:  # noqa: BLE001 - one input's failure must not end the run
            errors[i] = f"could not be processed ({describe(exc)})"
    return results


def batch_or_alone(
    batch: Callable[[], Sequence[T]],
    alone: Callable[[int], T],
    keys: list[int],
    errors: dict[int, str],
) -> dict[int, T]:
    """Results by key: the batch's (one per key, in order) or, when the batch fails, each
    key's run alone (`one_by_one`), so only the input at fault fails."""
    try:
        return dict(zip(keys, batch()))
    except Exception:  # noqa: BLE001 - retried one by one
        return one_by_one(alone, keys, errors)


def outcomes(
    items: Sequence[InputItem],
    keys: Iterable[int],
    records: dict[int, list[FaceRecord]],
    errors: dict[int, str],
    frames: dict[int, Frame] | None,
) -> list[Outcome]:
    """The outcome of each of `keys` (indices into `items`), in order: its records (and its
    frame, where `frames` are kept), or why it failed."""
    return [
        Outcome(items[i], records[i], None if frames is None else frames[i])
        if i in records
        else Outcome(items[i], [], error=errors[i])
        for i in keys
    ]


class _LocalVideo:
    """One video or camera through the pipeline in batches (frame by frame for cameras)."""

    def __init__(self, engine: LocalEngine, item: InputItem) -> None:
        o = engine.options
        self.item, self.pipeline = item, engine.pipeline
        self.source = VideoSource(
            item.path,
            every=o.every,
            start=o.start,
            end=o.end,
            max_frames=o.max_frames,
            capture_factory=engine.capture_factory,
        )
        self.info = VideoInfo(
            self.source.fps, self.source.size, self.source.frame_count, self.source.is_camera
        )
        self.error: str | None = None
        tracker = FaceTracker() if o.detect else None
        self.held: IdsFromFirstFrame[Frame] = IdsFromFirstFrame(
            TrackedFaces(tracker, Smoother(o.smooth, o.smooth_mode) if o.smooth > 1 else None)
        )
        self.search = KeyFrameSearch(o.detect_every) if o.detect else None
        self.batch_size = (
            1
            if self.source.is_camera
            else frames_per_batch(self.pipeline.batch_size, self.source.size)
        )

    def __iter__(self) -> Iterator[list[Outcome]]:
        # On a GPU a file's next batch is submitted while this one runs (cameras stay live:
        # frame by frame, no lag).
        lag = 1 if self.pipeline.device.type == "cuda" and not self.source.is_camera else 0
        queued: collections.deque[tuple[list[Frame], PendingBatch]] = collections.deque()
        with self.source:
            frames = iter(self.source)
            while batch := list(itertools.islice(frames, self.batch_size)):
                queued.append((batch, self.pipeline.submit(batch, search=self.search)))
                if len(queued) > lag:
                    if outcomes := self._outcomes(*queued.popleft()):
                        yield outcomes
            while queued:
                if outcomes := self._outcomes(*queued.popleft()):
                    yield outcomes
            if outcomes := self.flush():
                yield outcomes
        self.error = self.source.error

    def _outcomes(self, batch: list[Frame], pending: PendingBatch) -> list[Outcome]:
        """The frames whose faces' ids are known, with their records (`IdsFromFirstFrame`)."""
        return [
            Outcome(self.item, records, frame)
            for decoded, found in zip(batch, pending.result())
            for frame, records in self.held(decoded, found)
        ]

    def flush(self) -> list[Outcome]:
        """The frames held back for their faces' confirmation, with the ids known now: the
        end of the video, or the user stopped it."""
        return [Outcome(self.item, records, frame) for frame, records in self.held.flush()]

    def close(self) -> None:
        self.source.close()


class LocalEngine:
    """Runs everything in this process (plus decoding workers for images)."""

    def __init__(
        self,
        pipeline: Pipeline,
        options: Options,
        *,
        keep_pixels: bool,
        capture_factory: CaptureFactory | None = None,
    ) -> None:
        """`keep_pixels`: hand each image's pixels back with its outcome (to draw or crop);
        `capture_factory` opens videos and cameras (cv2.VideoCapture unless a test fakes it)."""
        self.pipeline, self.options = pipeline, options
        self.keep_pixels, self.capture_factory = keep_pixels, capture_factory
        self.times: PipelineTimes = pipeline.times

    def images(self, items: list[InputItem]) -> Iterator[list[Outcome]]:
        # A GPU pipeline decodes JPEGs itself, unless pictures need the pixels here anyway.
        on_gpu = self.pipeline.device.type == "cuda" and self.pipeline.crop == "tensor"
        dataset = Decode.of(
            items,
            self.pipeline.preprocess,
            detect=self.pipeline.detector is not None,
            keep_pixels=self.keep_pixels,
            encoded=on_gpu and not self.keep_pixels,
        )
        workers = self.options.workers
        if workers is None:
            workers = default_workers(self.pipeline.device)
        # No more processes than cores (decoding is all CPU) or batches; a system that cannot
        # start them decodes here.
        batches = _Batches(items, self.pipeline.batch_size, sized=dataset.pixels)
        workers = min(workers, os.cpu_count() or 1, len(items))
        try:
            loaded = iter(_loader(dataset, batches, workers))
        except (OSError, RuntimeError):
            loaded = iter(_loader(dataset, batches, 0))
        # On a GPU the next batch is prepared while this one runs: results lag one batch.
        lag = 1 if self.pipeline.device.type == "cuda" else 0
        queued: collections.deque = collections.deque()
        for batch in loaded:
            decoded = [(i, frame) for i, frame, _ in batch if frame is not None]
            queued.append((batch, decoded, self._submit(decoded)))
            if len(queued) > lag:
                yield self._outcomes(items, *queued.popleft())
        while queued:
            yield self._outcomes(items, *queued.popleft())

    def _submit(self, decoded: list[tuple[int, Frame]]) -> PendingBatch | None:
        """The batch's model work queued, or None when that failed (`_records` then looks for
        the input at fault)."""
        try:
            return self.pipeline.submit([f for _, f in decoded])
        except Exception:  # noqa: BLE001 - retried frame by frame in _records
            return None

    def _records(
        self, decoded: list[tuple[int, Frame]], pending: PendingBatch | None, errors: dict[int, str]
    ) -> dict[int, list[FaceRecord]]:
        """Records by item index. A batch that fails is run again frame by frame, so only the
        input at fault fails (its reason goes into `errors`) and the others go on."""
        frames = dict(decoded)

        def alone(i: int) -> list[FaceRecord]:
            return self.pipeline([frames[i]])[0]

        if pending is None:
            return one_by_one(alone, frames, errors)
        return batch_or_alone(pending.result, alone, list(frames), errors)

    def _outcomes(
        self,
        items: list[InputItem],
        batch: list,
        decoded: list[tuple[int, Frame]],
        pending: PendingBatch | None,
    ) -> list[Outcome]:
        errors = {i: error for i, _, error in batch if error is not None}
        records = self._records(decoded, pending, errors)
        frames = dict(decoded) if self.keep_pixels else None
        return outcomes(items, [i for i, _, _ in batch], records, errors, frames)

    def frames_that_fit(self) -> tuple[str, int] | None:
        fit = self.pipeline.frames_that_fit
        return None if fit is None else (str(self.pipeline.device), fit)

    def prepare_videos(self, items: list[InputItem]) -> None:
        """Nothing to start early: this machine reads one video at a time."""

    def video(self, item: InputItem) -> _LocalVideo:
        return _LocalVideo(self, item)

    def close(self) -> None:
        """Nothing to release: workers end with each image pass."""
