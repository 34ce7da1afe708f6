"""The image stages: decoding (and, without GPUs, the face search) in Ray tasks, the AU model
(and, on GPUs, the search) in actors. Each runs what the local engine runs, on columns."""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import ray
import torch

from ...faces.detector import Detection, FaceDetector
from ...model.transforms import EvalTransform
from ...records import FaceRecord, Frame
from ...sources.inputs import InputItem
from ...spec import PipelineSpec
from ..local import Decode, batch_or_alone
from . import cluster
from .columns import (
    FACES,
    Columns,
    as_box,
    as_bytes,
    as_text,
    face_matrix,
    first_row,
    ragged,
)

T = TypeVar("T")


def _in_batches(
    batch: Columns, keys: list[int], run: Callable[[list[int]], Sequence[T]], errors: dict[int, str]
) -> dict[int, T]:
    """`run` over the rows `keys` of a block, in the local engine's batches as the driver cut
    them (its `batch` column), each batch at once or, when that fails, one row at a time."""
    results: dict[int, T] = {}
    for _, group in itertools.groupby(keys, key=lambda k: int(batch["batch"][k])):
        rows = list(group)
        results.update(
            batch_or_alone(functools.partial(run, rows), lambda k: run([k])[0], rows, errors)
        )
    return results


@functools.lru_cache(maxsize=1)
def _task_detector(spec: PipelineSpec) -> FaceDetector:
    """MTCNN, once per worker process: the next decoding task on it finds it loaded."""
    return spec.detector()


def decode(
    batch: Columns,
    *,
    spec: PipelineSpec,
    preprocess: EvalTransform,
    keep_pixels: bool,
    search: bool,
) -> Columns:
    """The CPU stage, as Ray tasks: decode a batch with the local engine's `Decode` (so an
    image fails alike in both engines) and, with `search`, find its faces with `spec`'s
    detector. An input that fails is its `error`; nothing here stops the dataset."""
    cluster.use_assigned_cpus()
    items = [InputItem(os.fsdecode(bytes(p)), "image") for p in batch["path"]]
    dataset = Decode.of(items, preprocess, detect=spec.detect, keep_pixels=keep_pixels)
    rows = len(items)
    errors: dict[int, str] = {}
    sizes: dict[int, tuple[int, int]] = {}
    images: dict[int, np.ndarray] = {}
    crops: dict[int, torch.Tensor] = {}
    for k in range(rows):
        _, frame, error = dataset[k]
        if frame is None:
            errors[k] = error or "could not be prepared"
            continue
        sizes[k] = frame.size
        if frame.image is not None:
            images[k] = frame.image
        if frame.prepared is not None:
            crops[k] = frame.prepared
    out: Columns = {"index": batch["index"], "batch": batch["batch"]}
    seconds = 0.0
    if search:
        start = time.perf_counter()
        detector = _task_detector(spec)
        keys = list(images)
        found = _in_batches(
            batch, keys, lambda ks: detector.detect([images[k] for k in ks]), errors
        )
        seconds = time.perf_counter() - start
        out["box"] = ragged(
            [
                np.array([d.box for d in found.get(k, [])], np.float64).reshape(-1, 4)
                for k in range(rows)
            ]
        )
        out["score"] = ragged(
            [np.array([d.confidence for d in found.get(k, [])], np.float64) for k in range(rows)]
        )
    for k in errors:  # those the search failed on, too
        sizes.pop(k, None)
        images.pop(k, None)
        crops.pop(k, None)
    out["error"] = as_bytes([errors.get(k, "") for k in range(rows)])
    out["width"] = np.array([sizes.get(k, (0, 0))[0] for k in range(rows)], np.int64)
    out["height"] = np.array([sizes.get(k, (0, 0))[1] for k in range(rows)], np.int64)
    if dataset.pixels:
        empty = np.zeros((0, 0, 3), np.uint8)
        out["image"] = ragged([images.get(k, empty) for k in range(rows)])
    if dataset.prepare:
        blank = torch.zeros(3, preprocess.crop, preprocess.crop, dtype=torch.uint8)
        out["prepared"] = torch.stack([crops.get(k, blank) for k in range(rows)]).numpy()
    out["detect_s"] = first_row(seconds, rows)
    out["task_node"] = np.array([ray.get_runtime_context().get_node_id()] * rows, dtype=object)
    return out


class Model:
    """The image stage in an actor: the AU model (and, on a GPU, the face search), loaded once
    from `spec` (the run's, for this worker: `PipelineSpec.on_worker`)."""

    def __init__(self, spec: PipelineSpec, pixels: bool) -> None:
        cluster.use_assigned_cpus()
        self.pipeline, self.pixels = spec.build(), pixels
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: Columns) -> Columns:
        rows = len(batch["index"])
        errors = {k: as_text(e) for k, e in enumerate(batch["error"]) if len(e)}
        keys = [k for k in range(rows) if k not in errors]
        frames = {k: self._frame(batch, k) for k in keys}
        located = (
            {
                k: [
                    Detection(as_box(box), float(score))
                    for box, score in zip(batch["box"][k], batch["score"][k])
                ]
                for k in keys
            }
            if "box" in batch
            else None
        )
        times = self.pipeline.times
        detect, model = times.detect, times.model

        def run(ks: list[int]) -> list[list[FaceRecord]]:
            found = None if located is None else [located[k] for k in ks]
            return self.pipeline.submit([frames[k] for k in ks], found).result()

        records = _in_batches(batch, keys, run, errors)
        out: Columns = {
            "index": batch["index"],
            "error": as_bytes([errors.get(k, "") for k in range(rows)]),
            FACES: ragged([face_matrix(records.get(k, [])) for k in range(rows)]),
        }
        if self.pixels:
            out["image"] = batch["image"]
        out["detect_s"] = batch["detect_s"] + first_row(times.detect - detect, rows)
        out["model_s"] = first_row(times.model - model, rows)
        fit, where = cluster.fit_on(self.pipeline)
        out["fit"] = np.full(rows, fit, np.int64)
        out["fit_on"] = as_bytes([where] * rows)
        out["task_node"] = batch["task_node"]
        out["node"] = np.array([self.node] * rows, dtype=object)
        return out

    @staticmethod
    def _frame(batch: Columns, k: int) -> Frame:
        image = batch["image"][k] if "image" in batch else None
        prepared = torch.from_numpy(np.array(batch["prepared"][k])) if "prepared" in batch else None
        return Frame("", 0, 0.0, image, (int(batch["width"][k]), int(batch["height"][k])), prepared)
