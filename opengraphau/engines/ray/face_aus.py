"""`FaceAUs`: the AU pipeline as a building block for Ray Data pipelines of one's own."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigError
from ...records import FaceRecord, Frame, display_name
from ...schema import face_columns, typed
from ...sources.images import as_pil, load_image
from ..local import batch_or_alone, prepared
from .columns import Columns

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ...spec import PipelineOptions


class FaceAUs:
    """Faces and their 41 AU probabilities, as a callable class for `Dataset.map_batches`:

        faces = ray.data.read_images("photos/", mode="RGB", include_paths=True).map_batches(
            FaceAUs, fn_constructor_kwargs={"checkpoint": CHECKPOINT},
            compute=ray.data.ActorPoolStrategy(size=2), batch_size=16)

    In: an "image" column (uint8 H x W x 3 RGB) or a "path" column (decoded here as the tool
    decodes: EXIF orientation, one-line reasons for failures). Out: one row per face (one
    `success` False row for an image without any) with predictions.csv's columns, types and
    decimals (`schema.face_columns`; `file` is the path, frame and timestamp 0), `error` (why
    an image could not be used, else "") and the batch's other columns, repeated on each of
    their image's rows. The model (and MTCNN) load once per actor, on its GPU when it has one
    (`num_gpus=1`).
    """

    def __init__(
        self, checkpoint: str | Path | None = None, **settings: Unpack[PipelineOptions]
    ) -> None:
        """As `AUPredictor`'s arguments (`model`: an official model by name, from each node's
        model cache; random weights, a smoke test, only with `untrained`), but faces are
        searched for unless `detect_faces=False`."""
        from ...spec import api_spec

        settings.setdefault("detect_faces", True)
        self.pipeline = api_spec(checkpoint, **settings)[0].build()

    def __call__(self, batch: Columns) -> Columns:
        if "image" not in batch and "path" not in batch:
            raise ConfigError(
                "needs an 'image' or a 'path' column", param="batch", value=sorted(batch)
            )
        rows = len(batch["image" if "image" in batch else "path"])
        paths = (
            [p if isinstance(p, str) else os.fsdecode(bytes(p)) for p in batch["path"]]
            if "path" in batch
            else [""] * rows
        )
        frames: dict[int, Frame] = {}
        errors: dict[int, str] = {}
        for k in range(rows):
            frame, error = prepared(functools.partial(self._frame, batch, paths, k))
            if frame is None:
                errors[k] = str(error)
            else:
                frames[k] = frame
        keys = list(frames)
        records = batch_or_alone(
            lambda: self.pipeline([frames[k] for k in keys]),
            lambda k: self.pipeline([frames[k]])[0],
            keys,
            errors,
        )
        found = {
            k: records.get(k) or [FaceRecord(paths[k], 0, 0.0, 0, None, None, None)]
            for k in range(rows)
        }
        source = [k for k in range(rows) for _ in found[k]]
        out: Columns = typed(face_columns([r for k in range(rows) for r in found[k]]))
        out["error"] = np.array([display_name(errors.get(k, "")) for k in source], dtype=object)
        for name, column in batch.items():
            if name not in ("image", "path") and name not in out:
                out[name] = np.asarray(column)[source]
        return out

    @staticmethod
    def _frame(batch: Columns, paths: list[str], k: int) -> Frame:
        """Row `k`'s image, as given or decoded from its path as the tool decodes."""
        image = as_pil(batch["image"][k]) if "image" in batch else load_image(paths[k])
        return Frame.of(paths[k], np.asarray(image))
