"""Joining a Ray cluster and laying the work out on it; what a worker says of where it runs."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import ray
import torch

from ...errors import ConfigError, DeviceError, OpenGraphAUError, describe
from ...options import Options
from ...pipeline import Pipeline

#: Seconds to wait for a TCP answer at --ray-address (Ray itself retries for minutes).
PROBE_SECONDS = 5.0


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` (else RAY_ADDRESS; else start a local Ray on this
    machine's cores). True when this call connected, so `RayEngine.close` disconnects; a
    connection this process already has (a notebook's, a test's) is used as it is."""
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if target not in ("local", "auto"):
        probe(target)
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


def probe(address: str) -> None:
    """Fail in seconds when nothing answers at `address`, where Ray would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            "not a Ray address; give HOST:PORT as `ray start --head` prints it, or auto",
            param="ray_address",
            value=address,
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers there ({exc.strerror or exc}); start one "
            "with `ray start --head`, or check the address",
            param="ray_address",
            value=address,
        ) from None


@dataclass(frozen=True)
class Placement:
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


def placement(options: Options) -> Placement:
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus and options.device != "cpu":
        return Placement(True, gpus, 1.0, 1.0, False, gpus)
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
    return Placement(
        False,
        max(1, int(total / 2 // share)),
        share,
        task,
        options.detect,
        max(1, int(total // share)),
    )


def use_assigned_cpus() -> None:
    """Torch's threads to the cores Ray gave this task or actor, not the whole node's."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))


def worker_failure(exc: ray.exceptions.RayError, options: Options) -> OpenGraphAUError:
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


def fit_on(pipeline: Pipeline) -> tuple[int, str]:
    """How many frames fit at once in this worker's device since a batch ran out of its memory
    (0: every batch fitted), and that device with its machine's name: for the driver's
    warning."""
    return pipeline.frames_that_fit or 0, f"{pipeline.device} of {socket.gethostname()}"
