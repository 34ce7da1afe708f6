"""--engine ray joining a cluster: a bad --ray-address ends in one line; two nodes (simulated on
this machine) share the work and give the local engine's records."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import FACE, present, run_main
from opengraphau.engines.local import LocalEngine
from opengraphau.options import Options
from opengraphau.sources.inputs import collect_inputs
from opengraphau.spec import PipelineSpec

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
import ray  # noqa: E402 - after its settings
from ray.cluster_utils import Cluster  # noqa: E402

import opengraphau.engines.ray as ray_engine  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1:1", "no Ray cluster answers there"),
        ("nonsense", "not a Ray address"),
    ],
)
def test_bad_address_is_one_line(
    address: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert (
        run_main(
            "--untrained",
            "--arc",
            "resnet18",
            "--no-detect",
            "--quiet",
            "--engine",
            "ray",
            "--ray-address",
            address,
            "--output-dir",
            str(tmp_path / "out"),
            "--input",
            str(image),
        )
        == 2
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "UNTRAINED" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"demo.py: error: --ray-address {address}: ")
    assert reason in lines[0] and "Traceback" not in err
    assert not ray.is_initialized()


@pytest.mark.slow
def test_two_nodes_share_the_work(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for n in range(5):
        noise = np.random.default_rng(n).integers(0, 256, (80, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(folder / f"noise{n}.png")
    (folder / "face.jpg").write_bytes(FACE.read_bytes())
    # One CPU a node: the model's actor takes one node's, the decoding tasks run on the other.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        options = Options(
            inputs=(str(folder),),
            untrained=True,
            arch="resnet18",
            batch_size=2,
            workers=0,
            engine="ray",
            ray_address=cluster.address,
        )
        spec = PipelineSpec.from_options(options, None)
        pipeline = spec.build()
        items = collect_inputs(options.inputs).items
        expected = [
            o
            for batch in LocalEngine(pipeline, options, keep_pixels=False).images(items)
            for o in batch
        ]
        engine = ray_engine.RayEngine(
            pipeline, options, spec=spec.resolved(pipeline), keep_pixels=False
        )
        try:
            outcomes = [o for batch in engine.images(items) for o in batch]
        finally:
            engine.close()
        assert not ray.is_initialized()  # the engine joined the cluster, and left it
    finally:
        cluster.shutdown()
    assert len(engine.nodes) == 2 and sum(engine.nodes.values()) == 2 * len(items)
    assert [o.item for o in outcomes] == [o.item for o in expected]
    got = [r for o in outcomes for r in o.records]
    want = [r for o in expected for r in o.records]
    assert [(r.face_id, r.success, r.box is None) for r in got] == [
        (r.face_id, r.success, r.box is None) for r in want
    ]
    assert any(r.success for r in got)
    np.testing.assert_allclose(
        present(r.probs for r in got if r.success),
        present(r.probs for r in want if r.success),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        [r.box for r in got if r.box], [r.box for r in want if r.box], atol=1e-5
    )


def test_an_address_needs_the_ray_engine() -> None:
    from opengraphau.errors import ConfigError

    with pytest.raises(ConfigError, match="ray_address='h:6379': .*only with the ray engine"):
        Options(inputs=("a.jpg",), ray_address="h:6379")
