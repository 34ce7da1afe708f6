"""Load once, predict many: the Python API.

from opengraphau import AUPredictor, to_dataframe
predictor = AUPredictor(model="resnet50-s2", detect_faces=True)  # or a checkpoint's path
results = predictor.predict(["a.jpg", "b.png"])
for result in results:
    for face in result.faces:
        print(face.box, face.aus["AU12"], predictor.present(face)["AU12"])
table = to_dataframe(results)                   # predictions.csv's columns, in memory
video = predictor.predict_video("clip.mp4")     # faces tracked across frames, as a run does
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from .errors import ImageError
from .records import FaceRecord, Frame
from .sources.images import as_pil, load_image
from .spec import PipelineSpec, api_spec
from .thresholds import ThresholdLike, Thresholds, as_thresholds

if TYPE_CHECKING:
    import pandas as pd

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclass(frozen=True)
class ImageResult:
    """One image's faces, left to right; empty when none was found."""

    size: tuple[int, int]
    faces: list[FaceRecord] = field(default_factory=list)
    source: str = ""
    """The path given, or "<image N>" for pixels."""

    @property
    def records(self) -> list[FaceRecord]:
        """Its rows of predictions.csv: the faces, or one faceless row."""
        return self.faces or [FaceRecord(self.source, 0, 0.0, 0, None, None, None)]


@dataclass(frozen=True)
class VideoResult:
    """One video's rows in frame order: each face with its track id (as a run writes them),
    and a frame without a face as one faceless row. `error` says why it ended early."""

    source: str
    fps: float
    records: list[FaceRecord]
    error: str | None = None


def to_dataframe(results: Iterable[ImageResult | VideoResult | FaceRecord]) -> pd.DataFrame:
    """Results as one DataFrame with predictions.csv's columns, types and decimals (what
    `read_results` gives for a run's folder), with no file written."""
    from .sinks.results import records_frame

    records: list[FaceRecord] = []
    for result in results:
        records.extend([result] if isinstance(result, FaceRecord) else result.records)
    return records_frame(records)


class AUPredictor:
    """Holds the model (and the face detector when asked) and predicts on batches of images."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model: str | None = None,
        offline: bool | None = None,
        arch: str | None = None,
        stage: int | None = None,
        device: str = PipelineSpec.device,
        detect_faces: bool = False,
        min_face_size: int = PipelineSpec.min_face_size,
        max_faces: int | None = PipelineSpec.max_faces,
        batch_size: int | None = PipelineSpec.batch_size,
        precision: str = PipelineSpec.precision,
        exact_pixels: bool = PipelineSpec.exact_pixels,
        thresholds: ThresholdLike | str | Path = 0.5,
        untrained: bool = False,
        min_confidence: float = PipelineSpec.min_confidence,
    ) -> None:
        """`checkpoint`: the model file, or `model`: an official model by name (`resnet50-s2`);
        neither: the default official model, as the command line chooses it. Official models
        are fetched into the model cache on first use, never with `offline` (default
        `$OPENGRAPHAU_OFFLINE`). Random weights (a smoke test) only with `untrained=True`; they
        are announced with an UntrainedWarning and a log line.

        `precision` fp32 (default) | bf16 (CUDA, or CPUs with native bf16) | fp16 (CUDA); one
        that cannot run on the device raises DeviceError. `exact_pixels`: on a GPU too, search
        and crop with Pillow on the CPU, for the reference's pixels exactly (slower).
        `batch_size` None: 16 on a CPU, 64 on a GPU (`pipeline.default_batch_size`).
        `thresholds`: when `present` calls an AU present: one cut for all, `Thresholds`, or a
        thresholds.json (`opengraphau evaluate --calibrate`; AUs it leaves out keep 0.5).
        `min_confidence`: the face detector's probability below which a face is dropped.
        """
        self.thresholds: Thresholds = (
            Thresholds.load(thresholds)
            if isinstance(thresholds, (str, Path))
            else as_thresholds(thresholds)
        )
        spec, self.weights = api_spec(
            checkpoint,
            model=model,
            offline=offline,
            arch=arch,
            stage=stage,
            device=device,
            detect_faces=detect_faces,
            min_face_size=min_face_size,
            max_faces=max_faces,
            batch_size=batch_size,
            precision=precision,
            exact_pixels=exact_pixels,
            untrained=untrained,
            min_confidence=min_confidence,
        )
        self.untrained = untrained
        self.pipeline = spec.build()
        self.device = self.pipeline.device
        self.spec = spec.resolved(self.pipeline)
        """What the pipeline was built from, resolved (device, backbone, stage, batch size)."""
        self.model, self.detector = self.pipeline.model, self.pipeline.detector

    def present(self, face: FaceRecord) -> dict[str, bool]:
        """{'AU1': False, ..., 'AUR14': True}: each AU at or above its threshold."""
        if face.probs is None:
            return {}
        return dict(zip(face.aus, map(bool, self.thresholds.active(face.probs))))

    def predict(self, images: Sequence[ImageLike]) -> list[ImageResult]:
        """Paths (decoded with EXIF orientation), PIL images or uint8 RGB arrays -> results."""
        frames = []
        for n, image in enumerate(images):
            pil = load_image(image) if isinstance(image, (str, Path)) else as_pil(image)
            source = str(image) if isinstance(image, (str, Path)) else f"<image {n}>"
            if 0 in pil.size:  # nothing to crop or scale (a division by zero further on)
                raise ImageError(
                    f"has no pixels ({pil.width} x {pil.height})", param="images", value=source
                )
            frames.append(Frame.of(source, np.asarray(pil)))
        return [
            ImageResult(frame.size, [r for r in records if r.success], frame.source)
            for frame, records in zip(frames, self.pipeline(frames))
        ]

    def predict_video(
        self,
        path: str | Path,
        *,
        every: int = 1,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
        smooth: int = 0,
        smooth_mode: str = "median",
    ) -> VideoResult:
        """A video file (or "webcam:N" with `max_frames`) through the engine a run uses:
        the same frames, faces, track ids and smoothing as the rows of its predictions.csv.
        VideoError when it cannot be opened."""
        from .engines.local import LocalEngine
        from .options import Options
        from .sources.inputs import InputItem
        from .sources.video import parse_webcam

        source = str(path)
        options = Options(
            inputs=(source,),
            untrained=self.untrained,
            detect=self.detector is not None,
            every=every,
            start=start,
            end=end,
            max_frames=max_frames,
            smooth=smooth,
            smooth_mode=smooth_mode,
            workers=0,
        )
        kind = "webcam" if parse_webcam(source) is not None else "video"
        stream = LocalEngine(self.pipeline, options, keep_pixels=False).video(
            InputItem(source, kind)
        )
        try:
            records = [r for outcomes in stream for outcome in outcomes for r in outcome.records]
        finally:
            stream.close()
        return VideoResult(source, stream.info.fps, records, stream.error)
