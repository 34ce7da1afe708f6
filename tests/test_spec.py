"""PipelineSpec: one frozen, picklable value that every entry point builds its pipeline from,
and the defaults it shares with Options, the CLI and the API."""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from opengraphau.cli.args import build_parser
from opengraphau.options import Options
from opengraphau.predictor import AUPredictor
from opengraphau.spec import PipelineSpec
from opengraphau.weights import Weights

#: Each default of the spec, by the name the API's signatures and the CLI's flags give it.
API_NAMES = {
    "device": "device",
    "min_face_size": "min_face_size",
    "max_faces": "max_faces",
    "batch_size": "batch_size",
    "precision": "precision",
    "exact_pixels": "exact_pixels",
    "min_confidence": "min_confidence",
}
FLAGS = {
    "device": "device",
    "precision": "precision",
    "batch_size": "batch_size",
    "min_confidence": "min_confidence",
    "min_face_size": "min_face_size",
    "max_faces": "max_faces",
    "exact_pixels": "exact_pixels",
}


def _default(field: str) -> object:
    return {f.name: f.default for f in dataclasses.fields(PipelineSpec)}[field]


def test_every_front_end_has_the_specs_defaults() -> None:
    options = Options(("x.jpg",))
    api = inspect.signature(AUPredictor.__init__).parameters
    flags = build_parser("opengraphau").parse_args(["x.jpg"])
    for field, name in API_NAMES.items():
        assert getattr(options, field) == _default(field), field
        assert api[name].default == _default(field), name
    for field, dest in FLAGS.items():
        assert getattr(flags, dest) == _default(field), dest
    assert options.detect == _default("detect") is True and flags.no_detect is False
    # The numbers as a user reads them (so the spec's defaults are the documented ones).
    assert (_default("min_face_size"), _default("min_confidence")) == (20, 0.9)
    assert (_default("device"), _default("precision")) == ("auto", "fp32")


def test_face_aus_builds_as_au_predictor_does_with_faces_by_default() -> None:
    pytest.importorskip("ray")
    from opengraphau.engines.ray import FaceAUs
    from opengraphau.errors import UntrainedWarning

    with pytest.warns(UntrainedWarning):
        faces = FaceAUs(untrained=True, arch="resnet18", min_face_size=33, batch_size=3)
        whole = FaceAUs(untrained=True, arch="resnet18", detect_faces=False)
    detector = faces.pipeline.detector
    assert detector is not None and (detector.min_face_size, faces.pipeline.batch_size) == (33, 3)
    assert whole.pipeline.detector is None and whole.pipeline.batch_size == 16


def test_from_options_carries_every_setting_and_the_weights() -> None:
    settings: dict[str, Any] = {
        "offline": True,
        "arch": "resnet18",
        "stage": 2,
        "device": "cpu",
        "precision": "bf16",
        "batch_size": 3,
        "detect": False,
        "min_face_size": 40,
        "max_faces": 2,
        "min_confidence": 0.95,
        "exact_pixels": True,
    }
    # Every setting differs from its default, so none is carried by chance.
    assert all(value != _default(name) for name, value in settings.items())
    options = Options(("x.jpg",), **settings)
    weights = Weights(Path("ck/r18.pth"), "resnet18-s2", "ab" * 32)
    spec = PipelineSpec.from_options(options, weights)
    assert spec == PipelineSpec("ck/r18.pth", "resnet18-s2", "ab" * 32, **settings)
    assert spec.crop == "pil" and dataclasses.replace(spec, exact_pixels=False).crop == "auto"
    random = PipelineSpec.from_options(options, None)
    assert (random.checkpoint, random.model, random.sha256) == (None, None, None)
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and hash(again) == hash(spec)


def test_api_spec_carries_every_keyword_of_the_api(tmp_path: Path) -> None:
    from opengraphau.spec import api_spec

    settings: dict[str, Any] = {
        "offline": True,
        "arch": "resnet18",
        "stage": 2,
        "precision": "bf16",
        "batch_size": 3,
        "min_face_size": 40,
        "max_faces": 2,
        "min_confidence": 0.95,
        "exact_pixels": True,
    }
    assert all(value != _default(name) for name, value in settings.items())
    checkpoint = tmp_path / "r18.pth"
    checkpoint.write_bytes(b"not read until the pipeline is built")
    spec, weights = api_spec(checkpoint, device="cpu", detect_faces=False, **settings)
    assert weights is not None and weights.path == checkpoint
    assert spec == PipelineSpec(str(checkpoint), None, None, device="cpu", detect=False, **settings)
    # Faces are searched for only when asked: the API's default differs from the CLI's.
    assert api_spec(checkpoint)[0].detect is False
    assert api_spec(checkpoint, detect_faces=True)[0].detect is True


def test_a_worker_gets_an_absolute_path_its_device_and_the_cache_by_name() -> None:
    spec = PipelineSpec("ck/r18.pth", "resnet18-s1", "ab" * 32, device="auto")
    worker = spec.on_worker(gpu=True, detect=False)
    assert worker.checkpoint == os.path.abspath("ck/r18.pth")
    assert (worker.device, worker.detect, worker.cached) == ("cuda", False, True)
    by_path = PipelineSpec("ck/r18.pth").on_worker(gpu=False, detect=True)
    assert (by_path.device, by_path.detect, by_path.cached) == ("cpu", True, False)


def test_build_makes_what_the_spec_says_and_resolved_says_what_it_became(
    resnet18_s1: Path,
) -> None:
    spec = PipelineSpec(
        str(resnet18_s1), device="cpu", min_face_size=33, max_faces=1, min_confidence=0.7
    )
    pipeline = spec.build()
    detector = pipeline.detector
    assert detector is not None
    assert (detector.min_face_size, detector.max_faces, detector.threshold) == (33, 1, 0.7)
    assert (pipeline.batch_size, pipeline.crop, str(pipeline.device)) == (16, "pil", "cpu")
    resolved = spec.resolved(pipeline)
    assert (resolved.arch, resolved.stage, resolved.batch_size, resolved.device) == (
        "resnet18",
        1,
        16,
        "cpu",
    )
    whole = dataclasses.replace(spec, detect=False, batch_size=2, exact_pixels=True).build()
    assert (whole.detector, whole.batch_size, whole.crop) == (None, 2, "pil")
