"""The Ray engine: the same job on Ray Data, from one laptop to a GPU cluster.

Images: this process lists them; `ray.data.from_items` (index, path) -> `_decode` tasks
(decoding; without GPUs also the face search) -> `_Model` actors (the AU model; on GPUs the face
search too) -> plain columns, streamed back in input order and turned into FaceRecords here,
where jobs.py writes them as it writes the local engine's. An input that fails is a value in the
`error` column: nothing one input does stops the dataset.

Videos: one streaming task per video runs the local engine's own video loop (frames in order,
faces tracked inside), so rows and track ids are the local engine's, and sends each batch back
as it is done. Cameras stay on this machine.

Every node must see the inputs and the checkpoint at the same paths (a shared file system);
only this process writes, into its output folder. `FaceAUs` is the building block for Ray Data
pipelines of one's own.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import ray
import ray.data
import torch
from ray import ObjectRefGenerator

from ..aus import AU_COLUMNS
from ..errors import CheckpointError, ConfigError, DeviceError, OpenGraphAUError, describe
from ..faces.detector import Detection, FaceDetector
from ..model.transforms import EvalTransform
from ..options import Options
from ..pipeline import Pipeline, PipelineTimes, crop_mode
from ..predictor import build_model_for
from ..records import Box, FaceRecord, Frame, VideoInfo, display_name
from ..schema import CSV_HEADER
from ..sources.images import as_pil, load_image
from ..sources.inputs import InputItem
from ..sources.video import Capture
from ..weights import ModelCache, Weights, offline_from_env
from . import Outcome, VideoStream
from .local import Decode, LocalEngine, one_by_one

Columns = dict[str, Any]
"""A batch as Ray Data hands it over: column name -> one value per row (arrays, or lists)."""

#: Batches of images per Ray Data block, so per decoding task: small blocks spread a folder over
#: the cluster and lose little to a retry; a task's start (about a millisecond) is noise beside
#: decoding this many images.
_BATCHES_PER_BLOCK = 4
#: Batches a video task may run ahead of this process when frames travel with their rows (to
#: draw them): a bounded buffer for big frames. Rows alone are small and run ahead unbounded,
#: so a video task never waits for this process.
_VIDEO_AHEAD = 8
#: Bytes a model actor holds beside its weights: PyTorch and the Ray worker, and room for a
#: batch (measured: 740 MiB in all for a ResNet-18 actor, 45 MiB of it weights).
_ACTOR_MEMORY = 1 << 30
#: Seconds to wait for a TCP answer at --ray-address (Ray itself retries for minutes).
_PROBE_SECONDS = 5.0
#: The columns `_face_arrays` ships one frame's records in.
_FACE_COLUMNS = ("face_id", "success", "box", "score", "probs", "raw")


# -- joining a cluster ------------------------------------------------------------------------
def _connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` (else RAY_ADDRESS; else start a local Ray on this
    machine's cores). True when this call connected, so `RayEngine.close` disconnects; a
    connection this process already has (a notebook's, a test's) is used as it is."""
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if target not in ("local", "auto"):
        _probe(target)
    try:
        ray.init(
            target,
            include_dashboard=False if target == "local" else None,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for an address it cannot join
        raise ConfigError(
            f"cannot join a Ray cluster there ({describe(exc)})", param="ray_address", value=target
        ) from None
    # Ray Data's progress lines would break the terminal's; this tool reports progress itself.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return True


def _probe(address: str) -> None:
    """Fail in seconds when nothing answers at `address`, where Ray would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            "not a Ray address; give HOST:PORT as `ray start --head` prints it, or auto",
            param="ray_address",
            value=address,
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_PROBE_SECONDS):
            pass
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers there ({exc.strerror or exc}); start one "
            "with `ray start --head`, or check the address",
            param="ray_address",
            value=address,
        ) from None


@dataclass(frozen=True)
class _Placement:
    """How the work is laid out on the cluster.

    With GPUs: one model actor per GPU, which also searches for faces (MTCNN on a GPU is many
    times faster than on CPU cores, and the frames go to the GPU to be cropped anyway); the
    decoding tasks take the CPUs. Without: the decoding tasks also search (the search costs
    more than the model, and tasks run on every core of the cluster), and CPU actors holding
    half of a node's cores each run only the model.
    """

    gpu: bool
    actors: int
    actor_cpus: float
    """CPUs of a model actor, and of a video task."""
    task_cpus: float
    search_in_tasks: bool
    slots: int
    """Video tasks the cluster runs at once."""


def _placement(options: Options) -> _Placement:
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus and options.device != "cpu":
        return _Placement(True, gpus, 1.0, 1.0, False, gpus)
    if options.device not in ("auto", "cpu"):
        raise DeviceError(
            "the Ray cluster has no GPU; use auto or cpu", param="device", value=options.device
        )
    cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]
    if not any(cpus):
        raise ConfigError(
            "the Ray cluster has no CPU to run on", param="ray_address", value=options.ray_address
        )
    total = sum(cpus)
    task = min(1.0, total / 2)  # one core per task; half a core each on a one-core machine
    share = max(task, float(min(c for c in cpus if c) // 2))
    return _Placement(
        False,
        max(1, int(total / 2 // share)),
        share,
        task,
        options.detect,
        max(1, int(total // share)),
    )


def _use_assigned_cpus() -> None:
    """Torch's threads to the cores Ray gave this task or actor, not the whole node's."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))


@dataclass(frozen=True)
class _ModelSpec:
    """What a Ray worker needs to build the pipeline jobs.py built here: plain values."""

    checkpoint: str | None
    arch: str
    stage: int
    precision: str
    batch_size: int
    gpu: bool
    search: bool
    """Search for faces in this pipeline (False: whole frames, or the decoding tasks search)."""
    min_face_size: int
    max_faces: int | None
    exact_pixels: bool
    min_confidence: float = 0.9
    model: str | None = None
    """The official model's name when the driver took it from its model cache: each node then
    takes it from its own cache (fetching it once per node, the other workers waiting)."""
    sha256: str | None = None
    offline: bool | None = None

    def build(self) -> Pipeline:
        _use_assigned_cpus()
        device = torch.device("cuda" if self.gpu else "cpu")
        model = build_model_for(
            self._checkpoint(),
            arch=self.arch,
            stage=self.stage,
            device=device,
            precision=self.precision,
        )
        detector = (
            FaceDetector(
                device=device,
                min_face_size=self.min_face_size,
                max_faces=self.max_faces,
                threshold=self.min_confidence,
            )
            if self.search
            else None
        )
        return Pipeline(
            model,
            detector=detector,
            batch_size=self.batch_size,
            crop=crop_mode(exact_pixels=self.exact_pixels),
        )

    def _checkpoint(self) -> str | None:
        if self.model is None:
            return self.checkpoint
        cached = ModelCache().get(
            self.model,
            offline=offline_from_env() if self.offline is None else self.offline,
            progress=False,
        )
        if cached.sha256 != self.sha256:
            raise CheckpointError(
                f"the model cache of {socket.gethostname()} holds another file under this "
                f"name (sha256 {cached.sha256[:12]}, the driver's {str(self.sha256)[:12]}); "
                "delete it there",
                param="model",
                value=self.model,
            )
        return str(cached.path)


@functools.lru_cache(maxsize=1)
def _video_pipeline(spec: _ModelSpec) -> Pipeline:
    """One per worker process: the next video task on the same worker finds it loaded."""
    return spec.build()


@functools.lru_cache(maxsize=1)
def _task_detector(
    min_face_size: int, max_faces: int | None, min_confidence: float
) -> FaceDetector:
    """MTCNN, once per worker process: the next decoding task on it finds it loaded."""
    return FaceDetector(min_face_size=min_face_size, max_faces=max_faces, threshold=min_confidence)


# -- records as plain columns -----------------------------------------------------------------
def _face_arrays(records: Sequence[FaceRecord]) -> dict[str, np.ndarray]:
    """One frame's records as plain arrays; NaN stands for a faceless record's missing values.
    (Embeddings stay behind: only tracking uses them, and it runs where the model does.)"""
    none_box, none_probs = (np.nan,) * 4, np.full(len(AU_COLUMNS), np.nan, np.float32)
    return {
        "face_id": np.array([r.face_id for r in records], np.int64),
        "success": np.array([r.success for r in records], np.bool_),
        "box": np.array(
            [none_box if r.box is None else r.box for r in records], np.float64
        ).reshape(-1, 4),
        "score": np.array(
            [np.nan if r.confidence is None else r.confidence for r in records], np.float64
        ),
        "probs": np.array(
            [none_probs if r.probs is None else r.probs for r in records], np.float32
        ).reshape(-1, len(AU_COLUMNS)),
        "raw": np.array(
            [none_probs if r.raw is None else r.raw for r in records], np.float32
        ).reshape(-1, len(AU_COLUMNS)),
    }


def _face_records(
    columns: Columns, k: int, source: str, frame: int, timestamp: float
) -> list[FaceRecord]:
    """Row `k`'s records, rebuilt from what `_face_arrays` shipped."""
    face_id, success, box, score, probs, raw = (columns[c][k] for c in _FACE_COLUMNS)
    return [
        FaceRecord(
            source,
            frame,
            timestamp,
            int(face_id[j]),
            None if np.isnan(box[j][0]) else _box(box[j]),
            None if np.isnan(score[j]) else float(score[j]),
            np.array(probs[j], np.float32) if success[j] else None,
            raw=None if np.isnan(raw[j][0]) else np.array(raw[j], np.float32),
        )
        for j in range(len(face_id))
    ]


def _box(values: np.ndarray) -> Box:
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


def _ragged(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A column of one array per row, whatever their shapes (Ray Data keeps it as tensors)."""
    column = np.empty(len(arrays), dtype=object)
    for k, array in enumerate(arrays):
        column[k] = array
    return column


def _bytes(texts: Sequence[str]) -> np.ndarray:
    """Texts as bytes, so the undecodable bytes of a file name (lone surrogates, as `os`
    keeps them) survive Arrow and come back as they were."""
    return np.array([t.encode("utf-8", "surrogatepass") for t in texts], dtype=object)


def _text(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def _first_row(seconds: float, rows: int) -> np.ndarray:
    """A batch's seconds as a column: all on its first row, so the column sums to them."""
    column = np.zeros(rows)
    column[:1] = seconds
    return column


def _fit_on(pipeline: Pipeline) -> tuple[int, str]:
    """How many frames fit at once in this worker's device since a batch ran out of its memory
    (0: every batch fitted), and that device with its machine's name: for the driver's
    warning."""
    return pipeline.frames_that_fit or 0, f"{pipeline.device} of {socket.gethostname()}"


def _records_or_errors(
    run: Callable[[list[int]], list[list[FaceRecord]]], keys: list[int], errors: dict[int, str]
) -> dict[int, list[FaceRecord]]:
    """Records by row, the batch run at once or, when that fails, row by row (as the local
    engine does), so only the input at fault fails."""
    try:
        return dict(zip(keys, run(keys)))
    except Exception:  # noqa: BLE001 - retried row by row
        return one_by_one(lambda k: run([k])[0], keys, errors)


# -- the image stages -------------------------------------------------------------------------
def _decode(
    batch: Columns,
    *,
    preprocess: EvalTransform,
    pixels: bool,
    prepare: bool,
    search: bool,
    min_face_size: int,
    min_confidence: float,
    max_faces: int | None,
) -> Columns:
    """The CPU stage, as Ray tasks: decode a batch with the local engine's `Decode` (so an
    image fails alike in both engines) and, with `search`, find its faces. An input that fails
    is its `error`; nothing here stops the dataset."""
    _use_assigned_cpus()
    items = [InputItem(os.fsdecode(bytes(p)), "image") for p in batch["path"]]
    decode = Decode(items, preprocess, pixels=pixels or search, prepare=prepare)
    rows = len(items)
    errors: dict[int, str] = {}
    sizes: dict[int, tuple[int, int]] = {}
    images: dict[int, np.ndarray] = {}
    prepared: dict[int, torch.Tensor] = {}
    for k in range(rows):
        _, frame, error = decode[k]
        if frame is None:
            errors[k] = error or "could not be prepared"
            continue
        sizes[k] = frame.size
        if frame.image is not None:
            images[k] = frame.image
        if frame.prepared is not None:
            prepared[k] = frame.prepared
    out: Columns = {"index": batch["index"]}
    seconds = 0.0
    if search:
        start = time.perf_counter()
        detector = _task_detector(min_face_size, max_faces, min_confidence)
        keys = list(images)
        found: dict[int, list[Detection]] = {}
        try:
            found = dict(zip(keys, detector.detect([images[k] for k in keys])))
        except Exception:  # noqa: BLE001 - retried frame by frame, as the local engine does
            found = one_by_one(lambda k: detector.detect([images[k]])[0], keys, errors)
        seconds = time.perf_counter() - start
        out["box"] = _ragged(
            [
                np.array([d.box for d in found.get(k, [])], np.float64).reshape(-1, 4)
                for k in range(rows)
            ]
        )
        out["score"] = _ragged(
            [np.array([d.confidence for d in found.get(k, [])], np.float64) for k in range(rows)]
        )
    for k in errors:  # those the search failed on, too
        sizes.pop(k, None)
        images.pop(k, None)
        prepared.pop(k, None)
    out["error"] = _bytes([errors.get(k, "") for k in range(rows)])
    out["width"] = np.array([sizes.get(k, (0, 0))[0] for k in range(rows)], np.int64)
    out["height"] = np.array([sizes.get(k, (0, 0))[1] for k in range(rows)], np.int64)
    if pixels or search:
        empty = np.zeros((0, 0, 3), np.uint8)
        out["image"] = _ragged([images.get(k, empty) for k in range(rows)])
    if prepare:
        side = preprocess.crop
        blank = torch.zeros(3, side, side, dtype=torch.uint8)
        out["prepared"] = torch.stack([prepared.get(k, blank) for k in range(rows)]).numpy()
    out["detect_s"] = _first_row(seconds, rows)
    out["task_node"] = np.array([ray.get_runtime_context().get_node_id()] * rows, dtype=object)
    return out


class _Model:
    """The image stage in an actor: the AU model (and, on a GPU, the face search), loaded once."""

    def __init__(self, spec: _ModelSpec, pixels: bool) -> None:
        self.pipeline, self.pixels = spec.build(), pixels
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: Columns) -> Columns:
        rows = len(batch["index"])
        errors = {k: _text(e) for k, e in enumerate(batch["error"]) if len(e)}
        keys = [k for k in range(rows) if k not in errors]
        frames = {k: self._frame(batch, k) for k in keys}
        located = (
            {
                k: [
                    Detection(_box(box), float(score))
                    for box, score in zip(batch["box"][k], batch["score"][k])
                ]
                for k in keys
            }
            if "box" in batch
            else None
        )
        times = self.pipeline.times
        detect, model = times.detect, times.model
        records = _records_or_errors(
            lambda ks: self.pipeline.submit(
                [frames[k] for k in ks], None if located is None else [located[k] for k in ks]
            ).result(),
            keys,
            errors,
        )
        faces = [_face_arrays(records.get(k, [])) for k in range(rows)]
        out: Columns = {
            "index": batch["index"],
            "error": _bytes([errors.get(k, "") for k in range(rows)]),
            **{c: _ragged([f[c] for f in faces]) for c in _FACE_COLUMNS},
        }
        if self.pixels:
            out["image"] = batch["image"]
        out["detect_s"] = batch["detect_s"] + _first_row(times.detect - detect, rows)
        out["model_s"] = _first_row(times.model - model, rows)
        fit, where = _fit_on(self.pipeline)
        out["fit"] = np.full(rows, fit, np.int64)
        out["fit_on"] = _bytes([where] * rows)
        out["task_node"] = batch["task_node"]
        out["node"] = np.array([self.node] * rows, dtype=object)
        return out

    @staticmethod
    def _frame(batch: Columns, k: int) -> Frame:
        image = batch["image"][k] if "image" in batch else None
        prepared = torch.from_numpy(np.array(batch["prepared"][k])) if "prepared" in batch else None
        return Frame("", 0, 0.0, image, (int(batch["width"][k]), int(batch["height"][k])), prepared)


# -- videos -----------------------------------------------------------------------------------
@ray.remote(num_returns="streaming")
def _video_task(spec: _ModelSpec, options: Options, item: InputItem, pixels: bool) -> Iterator[Any]:
    """One video through the local engine's video loop (frames in order, faces tracked, so rows
    and track ids are the local engine's): its VideoInfo, then ("rows", columns) per batch as
    it is done, then ("end", why it ended early, or None). Exceptions travel to the driver,
    which raises them where the local engine would have."""
    pipeline = _video_pipeline(spec)
    stream = LocalEngine(pipeline, options, keep_pixels=False).video(item)
    try:
        yield stream.info
        times = pipeline.times
        detect, model = times.detect, times.model
        for outcomes in stream:
            frames = [o.frame for o in outcomes if o.frame is not None]  # a video's always are
            columns: Columns = {
                "frame": np.array([f.index for f in frames], np.int64),
                "timestamp": np.array([f.timestamp for f in frames], np.float64),
                "size": [f.size for f in frames],
                "detect_s": times.detect - detect,
                "model_s": times.model - model,
            }
            columns["fit"], columns["fit_on"] = _fit_on(pipeline)
            faces = [_face_arrays(o.records) for o in outcomes]
            columns.update({c: [f[c] for f in faces] for c in _FACE_COLUMNS})
            if pixels:
                columns["image"] = [f.image for f in frames]
            yield "rows", columns
            detect, model = times.detect, times.model
        yield "end", stream.error
    finally:
        stream.close()


def _worker_failure(exc: ray.exceptions.RayError, options: Options) -> OpenGraphAUError:
    """One line for a Ray failure that stops the images (an actor that cannot load the model,
    most often): the worker's own last line (the exception at the end of its traceback), and
    what a cluster's nodes need."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return OpenGraphAUError(
        f"a Ray worker failed ({lines[-1] if lines else type(exc).__name__}); every node needs "
        "this package, and the inputs and checkpoint at the same paths",
        param="ray_address",
        value=options.ray_address,
    )


def _get(ref: ray.ObjectRef) -> Any:
    """`ray.get`, raising a task's own exception (a VideoError, say) instead of Ray's wrapper,
    so `video_job` meets it as it meets the local engine's."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, Exception):
            raise exc.cause from None
        raise


class _RayVideo:
    """One video file in its own Ray task, its batches streamed back in order as they are done."""

    def __init__(
        self,
        item: InputItem,
        refs: ObjectRefGenerator,
        times: PipelineTimes,
        fitted: Callable[[int, str], None],
    ) -> None:
        """`times` adds up the task's seconds; `fitted` hears its out-of-memory reports."""
        self.item, self._refs, self.times, self.fitted = item, refs, times, fitted
        self.error: str | None = None
        self._done = False
        try:
            self.info: VideoInfo = _get(next(self._refs))
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[list[Outcome]]:
        for ref in self._refs:
            kind, value = _get(ref)
            if kind == "end":
                self.error, self._done = value, True
                return
            self.times.detect += value["detect_s"]
            self.times.model += value["model_s"]
            self.fitted(value["fit"], value["fit_on"])
            yield [self._outcome(value, k) for k in range(len(value["frame"]))]

    def _outcome(self, columns: Columns, k: int) -> Outcome:
        index, timestamp = int(columns["frame"][k]), float(columns["timestamp"][k])
        image = columns["image"][k] if "image" in columns else None
        frame = Frame(self.item.path, index, timestamp, image, tuple(columns["size"][k]))
        return Outcome(
            self.item, _face_records(columns, k, self.item.path, index, timestamp), frame
        )

    def flush(self) -> list[Outcome]:
        """Nothing: the frames the task held back stop with it. A video stopped early is not
        completed, and a resumed run does it again whole."""
        return []

    def close(self) -> None:
        """Stop the task when this process stops reading early."""
        if not self._done:
            self._done = True
            ray.cancel(self._refs)


# -- the engine -------------------------------------------------------------------------------
class RayEngine:
    """Runs the job on a Ray cluster: `options.ray_address`, or a new local Ray."""

    def __init__(
        self,
        pipeline: Pipeline,
        options: Options,
        *,
        weights: Weights | None,
        keep_pixels: bool,
        capture_factory: Callable[[str | int], Capture] | None = None,
    ) -> None:
        """`pipeline`: the one jobs.py built, for cameras (which stay here) and as the pattern
        the workers rebuild from `weights` (None: random); `keep_pixels`: images come back with
        their pixels (to draw or crop); `capture_factory` opens cameras (tests fake one)."""
        self.pipeline, self.options = pipeline, options
        self.keep_pixels, self.capture_factory = keep_pixels, capture_factory
        self.times: PipelineTimes = pipeline.times  # cameras run on it here; workers report
        self.nodes: Counter[str] = Counter()
        """Images each Ray node decoded or ran through the model: how the work spread."""
        self._fit: tuple[str, int] | None = None
        self._upcoming: list[InputItem] = []
        self._started: dict[InputItem, ObjectRefGenerator] = {}
        self._joined = _connect(options.ray_address)
        try:
            self.placement = _placement(options)
        except BaseException:
            self.close()
            raise
        spec = functools.partial(
            _ModelSpec,
            None if weights is None else os.path.abspath(weights.path),
            pipeline.model.arch,
            pipeline.model.stage,
            options.precision,
            pipeline.batch_size,
            self.placement.gpu,
            min_face_size=options.min_face_size,
            max_faces=options.max_faces,
            exact_pixels=options.exact_pixels,
            min_confidence=options.min_confidence,
            model=None if weights is None else weights.model,
            sha256=None if weights is None else weights.sha256,
            offline=options.offline,
        )
        self.image_spec = spec(search=options.detect and not self.placement.search_in_tasks)
        self._pixels_of_videos = keep_pixels or options.show
        self._actor_memory = _ACTOR_MEMORY + sum(
            t.numel() * t.element_size()
            for t in (*pipeline.model.parameters(), *pipeline.model.buffers())
        )
        self.video_spec = spec(search=options.detect)

    def images(self, items: list[InputItem]) -> Iterator[list[Outcome]]:
        """Outcomes in input order (Ray Data's `preserve_order`: the rows come out as the local
        engine writes them, at the cost of holding finished batches behind a slow one)."""
        o, placement = self.options, self.placement
        rows = [
            {"index": i, "path": os.fsencode(os.path.abspath(item.path))}
            for i, item in enumerate(items)
        ]
        per_block = self.pipeline.batch_size * _BATCHES_PER_BLOCK
        ds: ray.data.Dataset = ray.data.from_items(
            rows, override_num_blocks=-(-len(rows) // per_block)
        )
        ds = ds.map_batches(
            functools.partial(
                _decode,
                preprocess=self.pipeline.preprocess,
                pixels=o.detect or self.keep_pixels,
                prepare=not o.detect,
                search=placement.search_in_tasks,
                min_face_size=o.min_face_size,
                min_confidence=o.min_confidence,
                max_faces=o.max_faces,
            ),
            batch_size=self.pipeline.batch_size,
            num_cpus=placement.task_cpus,
        )
        # Each actor reserves what it holds, so Ray puts no more actors on a node than its
        # memory takes; the stages' different needs also keep Ray Data from fusing decoding into
        # the actors, whose one process would then decode, search and run the model in turn.
        ds = ds.map_batches(
            _Model,
            batch_size=self.pipeline.batch_size,
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
            raise _worker_failure(exc, self.options) from None

    def _outcomes(self, items: list[InputItem], batch: Columns) -> list[Outcome]:
        self.times.detect += float(np.sum(batch["detect_s"]))
        self.times.model += float(np.sum(batch["model_s"]))
        self.nodes.update(batch["node"])
        self.nodes.update(batch["task_node"])
        for row in np.flatnonzero(batch["fit"]):
            self._fitted(int(batch["fit"][row]), _text(batch["fit_on"][row]))
        outcomes = []
        for k, index in enumerate(batch["index"]):
            item = items[int(index)]
            if len(batch["error"][k]):
                outcomes.append(Outcome(item, [], error=_text(batch["error"][k])))
                continue
            frame = Frame.of(item.path, batch["image"][k]) if self.keep_pixels else None
            outcomes.append(Outcome(item, _face_records(batch, k, item.path, 0, 0.0), frame))
        return outcomes

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
        return _RayVideo(item, refs, self.times, self._fitted)

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
            _video_task.options(**args).remote(
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


# -- the building block -----------------------------------------------------------------------
class FaceAUs:
    """Faces and their 41 AU probabilities, as a callable class for `Dataset.map_batches`:

        faces = ray.data.read_images("photos/", mode="RGB", include_paths=True).map_batches(
            FaceAUs, fn_constructor_kwargs={"checkpoint": CHECKPOINT},
            compute=ray.data.ActorPoolStrategy(size=2), batch_size=16)

    In: an "image" column (uint8 H x W x 3 RGB) or a "path" column (decoded here as the tool
    decodes: EXIF orientation, one-line reasons for failures). Out: one row per face (one
    `success` False row for an image without any) with predictions.csv's columns (`CSV_HEADER`;
    `file` is the path, frame and timestamp 0), `error` (why an image could not be used, else
    "") and the batch's other columns, repeated on each of their image's rows. The model (and
    MTCNN) load once per actor, on its GPU when it has one (`num_gpus=1`).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model: str | None = None,
        offline: bool | None = None,
        arch: str | None = None,
        stage: int | None = None,
        device: str = "auto",
        detect_faces: bool = True,
        min_face_size: int = 20,
        max_faces: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        exact_pixels: bool = False,
        untrained: bool = False,
        min_confidence: float = 0.9,
    ) -> None:
        """As `AUPredictor`'s arguments (`model`: an official model by name, from each node's
        model cache; random weights, a smoke test, only with `untrained`)."""
        from ..predictor import AUPredictor

        self.pipeline = AUPredictor(
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
        ).pipeline

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
            try:
                image = as_pil(batch["image"][k]) if "image" in batch else load_image(paths[k])
                frames[k] = Frame.of(paths[k], np.asarray(image))
            except OpenGraphAUError as exc:
                errors[k] = exc.reason
            except Exception as exc:  # noqa: BLE001 - one image's failure must not end the batch
                errors[k] = f"could not be prepared ({describe(exc)})"
        records = _records_or_errors(
            lambda ks: self.pipeline([frames[k] for k in ks]), list(frames), errors
        )
        found = {
            k: records.get(k) or [FaceRecord(paths[k], 0, 0.0, 0, None, None, None)]
            for k in range(rows)
        }
        source = [k for k in range(rows) for _ in found[k]]
        faces = _face_arrays([r for k in range(rows) for r in found[k]])
        box, probs = faces["box"], faces["probs"]
        values: Columns = {
            "file": np.array([display_name(paths[k]) for k in source], dtype=object),
            "frame": np.zeros(len(source), np.int64),
            "timestamp": np.zeros(len(source)),
            "face_id": faces["face_id"],
            "success": faces["success"],
            "confidence": faces["score"],
            "x": box[:, 0],
            "y": box[:, 1],
            "w": box[:, 2],
            "h": box[:, 3],
            **{c: probs[:, j] for j, c in enumerate(AU_COLUMNS)},
        }
        out = {c: values[c] for c in CSV_HEADER}
        out["error"] = np.array([display_name(errors.get(k, "")) for k in source], dtype=object)
        for name, column in batch.items():
            if name not in ("image", "path") and name not in out:
                out[name] = np.asarray(column)[source]
        return out
