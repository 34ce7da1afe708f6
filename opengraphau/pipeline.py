"""The one road from decoded frames to face records: find faces, crop, normalise, run the model.

Pure over a batch: it reads no file and writes none, so the same object runs in the CLI, behind
`AUPredictor`, in a Ray actor or a worker, on any device. `AUPredictor.predict`, the image and
video jobs of both engines all call it; none of them loops over faces.

Crops travel as uint8 and are normalised on the model's device. `submit` returns as soon as the
model's work is queued, so on a GPU an engine can prepare the next batch while this one runs;
`result` waits for it.

On a GPU every pixel operation runs there (`crop="tensor"`): each frame reaches the device once
(JPEG bytes decoded there in one batch, other pixels copied from pinned memory, one copy per run
of same-size frames), and the detector's search copy, the face crops and the whole-frame crop
are made there by torch, within a grey level of Pillow's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from .aus import AU_COLUMNS
from .errors import ConfigError, DeviceError
from .faces.crop import CROP_SIZE, crop_faces, square_crop
from .faces.detector import Detection, FaceDetector
from .faces.keyframes import KeyFrameSearch
from .model.optimize import InferenceModel
from .records import FaceRecord, Frame
from .sources.images import decode_jpegs

CROP_MODES = ("auto", "pil", "tensor")

_BATCH_SIZE = {"cpu": 16, "cuda": 64}
"""Frames (and faces) per model call when none is asked for. A GPU's call has fixed costs
(launches, MTCNN's steps, copies and syncs) that a larger batch spreads; 64 frames of 12
megapixels still take only ~2.3 GB of its memory. A CPU keeps 16, at which its speed was
measured."""

MAX_BATCH_PIXELS = 256 * 2**20
"""Decoded pixels one batch may hold (768 MiB as 8-bit RGB; 2.9 of a default CPU batch's
16 12-megapixel photos): batches of larger pictures, or a --batch-size asked for far beyond
what memory holds, are cut to fit, so memory follows the pixels, not the count."""

T = TypeVar("T")


def pixel_batches(pixels: Iterable[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of `pixels` (each picture's pixel count, in order) grouped into batches of at
    most `batch_size` and, unless one picture alone exceeds it, `MAX_BATCH_PIXELS`."""
    batch: list[int] = []
    total = 0
    for index, count in enumerate(pixels):
        if batch and (len(batch) == batch_size or total + count > MAX_BATCH_PIXELS):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += count
    if batch:
        yield batch


def frames_per_batch(batch_size: int, size: tuple[int, int]) -> int:
    """Video frames of `size` (width, height) per batch: `batch_size`, or fewer where they would
    pass `MAX_BATCH_PIXELS`."""
    return max(1, min(batch_size, MAX_BATCH_PIXELS // max(1, size[0] * size[1])))


def default_batch_size(device: torch.device) -> int:
    """`batch_size` when none is given: 16 on a CPU, 64 on a GPU."""
    return _BATCH_SIZE["cuda" if device.type == "cuda" else "cpu"]


def crop_mode(*, exact_pixels: bool) -> str:
    """The `crop` for a run: Pillow's pixels everywhere when they must be exact, else the
    device's own road."""
    return "pil" if exact_pixels else "auto"


@dataclass
class PipelineTimes:
    """Seconds spent so far, for the run's summary line."""

    detect: float = 0.0
    model: float = 0.0


class PendingBatch:
    """A batch whose model work is queued; `result()` waits for it and builds the records."""

    def __init__(
        self,
        pipeline: Pipeline,
        frames: Sequence[Frame],
        located: list[list[Detection]],
        probs: torch.Tensor,
        embeddings: torch.Tensor,
    ) -> None:
        self._pipeline, self._frames, self._located = pipeline, frames, located
        self._probs, self._embeddings = probs, embeddings

    @classmethod
    def joined(cls, pipeline: Pipeline, parts: Sequence[PendingBatch]) -> PendingBatch:
        """One batch of consecutive parts, as if they had been submitted together."""
        # A part without faces has placeholder outputs of another shape: it adds no rows.
        faces = [part for part in parts if part._probs.shape[0]] or list(parts[:1])
        return cls(
            pipeline,
            [f for part in parts for f in part._frames],
            [found for part in parts for found in part._located],
            torch.cat([part._probs for part in faces]),
            torch.cat([part._embeddings for part in faces]),
        )

    def result(self) -> list[list[FaceRecord]]:
        """Per frame its records: one per face, left to right, or one `success` False record."""
        start = time.perf_counter()
        probs = self._probs.cpu().numpy()
        embeddings = self._embeddings.cpu().numpy()
        self._pipeline.times.model += time.perf_counter() - start
        results, k = [], 0
        for frame, found in zip(self._frames, self._located):
            records = []
            for face_id, (box, confidence) in enumerate(found):
                records.append(
                    FaceRecord(
                        frame.source,
                        frame.index,
                        frame.timestamp,
                        face_id,
                        box,
                        confidence,
                        probs[k],
                        embeddings[k],
                    )
                )
                k += 1
            results.append(records or [FaceRecord.no_face(frame)])
        return results


class Pipeline:
    """Frames in, per-frame face records out.

    `detector` None means the whole frame is the face (the reference demo's behaviour).
    `crop` "pil" does the pixel work with Pillow on the host (`faces.crop.square_crop`, the
    exact rule, and `EvalTransform.pixels`: the reference's numbers); "tensor" on the model's
    device (the same squares and crops, resized by torch within one grey level of Pillow, and
    frames that come as JPEG bytes decoded there); "auto" takes "tensor" on CUDA and "pil"
    elsewhere. `batch_size` None: `default_batch_size` for the model's device.

    A device that runs out of memory on a batch does not end the run: the batch is split in
    halves until its parts fit, and later batches go in parts of that many frames
    (`frames_that_fit` says how many; None while every batch has fitted). A frame that does
    not fit alone raises DeviceError and leaves the batches as they were.
    """

    def __init__(
        self,
        model: InferenceModel,
        *,
        detector: FaceDetector | None = None,
        batch_size: int | None = None,
        crop: str = "auto",
    ) -> None:
        self.device = next(model.parameters()).device
        if batch_size is None:
            batch_size = default_batch_size(self.device)
        if batch_size < 1:
            raise ConfigError("must be at least 1", param="batch_size", value=batch_size)
        if crop not in CROP_MODES:
            raise ConfigError(f"choose one of {', '.join(CROP_MODES)}", param="crop", value=crop)
        self.model, self.detector, self.batch_size = model, detector, batch_size
        self.preprocess = model.preprocess
        self.crop = ("tensor" if self.device.type == "cuda" else "pil") if crop == "auto" else crop
        self.times = PipelineTimes()
        self.frames_that_fit: int | None = None

    def __call__(self, frames: Sequence[Frame]) -> list[list[FaceRecord]]:
        """Per frame its records: one per face, left to right, or one `success` False record."""
        return self.submit(frames).result()

    def submit(
        self,
        frames: Sequence[Frame],
        located: Sequence[Sequence[Detection]] | None = None,
        *,
        search: KeyFrameSearch | None = None,
    ) -> PendingBatch:
        """Find the faces and queue the model's work on them; the records come from `result()`.

        `located` brings faces found elsewhere (the Ray engine searches in CPU tasks, beside the
        model's actors); they are cropped as this pipeline's detector's would be. `search`: the
        frames are a video's next ones, searched in full only on its key frames.
        """
        if not frames:
            return self._submit(frames, located, search)
        fitted = self.frames_that_fit
        step = min(len(frames), fitted or len(frames))
        parts: list[PendingBatch] = []
        start = 0
        while start < len(frames):
            end = min(start + step, len(frames))
            try:
                parts.append(
                    self._submit(
                        frames[start:end],
                        None if located is None else located[start:end],
                        search,
                    )
                )
            except torch.OutOfMemoryError as exc:
                if end - start == 1:
                    # That frame is too large, not the batches: they keep their size.
                    self.frames_that_fit = fitted
                    width, height = frames[start].size
                    raise DeviceError(
                        f"ran out of memory on {self.device} for this frame alone "
                        f"({width}x{height} px); use a device with more memory, or the CPU",
                        param="device",
                        value=str(self.device),
                    ) from exc
                step = (end - start + 1) // 2
                self.frames_that_fit = step
                continue
            start = end
        return parts[0] if len(parts) == 1 else PendingBatch.joined(self, parts)

    def _submit(
        self,
        frames: Sequence[Frame],
        located: Sequence[Sequence[Detection]] | None,
        search: KeyFrameSearch | None = None,
    ) -> PendingBatch:
        whole = self.detector is None and located is None
        # Whole frames whose crops the decoder prepared need no pixels on the device (a frame
        # keeps its pixels too when pictures are drawn from them).
        prepared = whole and all(f.prepared is not None for f in frames)
        images = self.on_device(frames) if self.crop == "tensor" and not prepared else None
        if located is not None:
            found = [list(f) for f in located]
        elif search is None:
            found = self.locate(frames, images)
        else:
            found = self.locate(frames, images, search)
        probs, embeddings = self.infer(self.pixels(frames, found, whole=whole, images=images))
        return PendingBatch(self, frames, found, probs, embeddings)

    def on_device(self, frames: Sequence[Frame]) -> list[torch.Tensor | None]:
        """Each frame's pixels as an (H, W, 3) uint8 tensor on the model's device, None for a
        frame that brings only its prepared crop. JPEG bytes are decoded there in one batch;
        host pixels are copied there from pinned memory, one copy per run of same-size frames."""
        images: list[torch.Tensor | None] = [None] * len(frames)
        jpegs = [(i, f.encoded) for i, f in enumerate(frames) if f.encoded is not None]
        for (i, _), image in zip(jpegs, decode_jpegs([e for _, e in jpegs], self.device)):
            images[i] = image
        hosts = [i for i, f in enumerate(frames) if f.encoded is None and f.image is not None]
        for _, group in itertools.groupby(hosts, key=lambda i: _pixels(frames[i]).shape):
            run = list(group)
            for i, image in zip(run, self._upload([_pixels(frames[i]) for i in run])):
                images[i] = image
        return images

    def _upload(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """Same-shape host arrays as one stacked tensor on the device."""
        if self.device.type == "cpu":
            return torch.stack([torch.from_numpy(np.require(a, requirements="W")) for a in arrays])
        pinned = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.uint8, pin_memory=True)
        for row, array in zip(pinned, arrays):
            row.numpy()[...] = array
        return pinned.to(self.device, non_blocking=True)

    def locate(
        self,
        frames: Sequence[Frame],
        images: Sequence[torch.Tensor | None] | None = None,
        search: KeyFrameSearch | None = None,
    ) -> list[list[Detection]]:
        """Per frame its faces, or the whole frame (confidence 1) without a detector. `images`:
        the frames' pixels on the device (`on_device`), searched there; `search`: a video's
        key-frame search, for its next frames."""
        if self.detector is None:
            return [
                [Detection((0.0, 0.0, float(f.size[0]), float(f.size[1])), 1.0)] for f in frames
            ]
        start = time.perf_counter()
        if images is None:
            pixels: list = [_pixels(f) for f in frames]
        else:
            pixels = [_present(image, f) for image, f in zip(images, frames)]
        if search is None:
            found = self.detector.detect(pixels)
        else:
            found = search(self.detector, pixels, [f.timestamp for f in frames])
        self.times.detect += time.perf_counter() - start
        return found

    def pixels(
        self,
        frames: Sequence[Frame],
        located: Sequence[Sequence[Detection]],
        *,
        whole: bool | None = None,
        images: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """(faces, 3, 224, 224) uint8 crops on the model's device, in record order; `whole`
        (default: when there is no detector) takes each frame as its face. `images`: the
        frames' pixels on the device (`on_device`), cropped there."""
        if whole or (whole is None and self.detector is None):
            return self._to_device([self._whole(f, images, n) for n, f in enumerate(frames)])
        if images is None and self.crop == "tensor":
            images = self.on_device(frames)
        if images is None:
            return self._to_device(
                [
                    self.preprocess.pixels(square_crop(Image.fromarray(_pixels(f)), d.box))
                    for f, found in zip(frames, located)
                    for d in found
                ]
            )
        parts = [
            crop_faces(_present(image, frame).permute(2, 0, 1), [d.box for d in found])
            for image, frame, found in zip(images, frames, located)
            if found
        ]
        if not parts:
            return self._to_device([])
        offset = (CROP_SIZE - self.preprocess.crop) // 2
        inner = slice(offset, offset + self.preprocess.crop)
        return torch.cat(parts)[:, :, inner, inner]

    def _whole(
        self, frame: Frame, images: Sequence[torch.Tensor | None] | None, n: int
    ) -> torch.Tensor:
        """The model's crop of a whole frame: prepared by the decoder, made on the device from
        the frame's pixels there, or by Pillow."""
        if frame.prepared is not None:
            return frame.prepared
        if images is not None and images[n] is not None:
            return self.preprocess.tensor_pixels(_present(images[n], frame).permute(2, 0, 1))
        return self.preprocess.pixels(Image.fromarray(_pixels(frame)))

    def _to_device(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        if not pixels:
            size = self.preprocess.crop
            return torch.empty(0, 3, size, size, dtype=torch.uint8, device=self.device)
        if self.device.type == "cuda" and all(p.is_cpu for p in pixels):
            # One copy, from pinned host memory, so that it runs asynchronously.
            return torch.stack(pixels).pin_memory().to(self.device, non_blocking=True)
        return torch.stack([p.to(self.device) for p in pixels])

    @torch.inference_mode()
    def infer(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, 3, 224, 224) crops -> (N, 41) probabilities and (N, E) embeddings, on the
        model's device, in chunks of `batch_size` (queued, not waited for, on a GPU)."""
        start = time.perf_counter()
        probs, embeddings = [], []
        for chunk in pixels.split(self.batch_size):
            p, e = self.model.predict(self.preprocess.normalize(chunk))
            probs.append(p)
            embeddings.append(e)
        self.times.model += time.perf_counter() - start
        if not probs:
            return (torch.zeros(0, len(AU_COLUMNS)), torch.zeros(0, 0))
        return torch.cat(probs), torch.cat(embeddings)


def _present(pixels: T | None, frame: Frame) -> T:
    """`pixels` of `frame`, which a step needs: ConfigError when the frame brought only its
    prepared crop."""
    if pixels is None:
        raise ConfigError(
            "this step needs the frame's pixels, but only its prepared tensor was kept",
            param="frames",
            value=frame.source,
        )
    return pixels


def _pixels(frame: Frame) -> np.ndarray:
    return _present(frame.image, frame)
