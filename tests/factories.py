"""The tests' one home for helpers: official-layout checkpoints, real face photos, a fake camera,
CLI runners, readers of the outputs, IoU."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from PIL import Image
from skimage import data

from opengraphau.aus import AU_COLUMNS
from opengraphau.cli import main
from opengraphau.context import UNTRAINED_BANNER

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "demo_imgs" / "astronaut_face.jpg"
#: `tests/data/checkpoint-keys/ARCH_stageN.json`: [[key, shape], ...] of the official files.
KEYS_DIR = Path(__file__).resolve().parent / "data" / "checkpoint-keys"


def doc_section(doc: str, title: str) -> str:
    """The text of the `## title` section of `doc` (README.md, docs/ray.md, ...), up to the next
    `## ` heading: the tests run its code blocks as written."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def official_keys(arch: str, stage: int) -> list[tuple[str, list[int]]]:
    return [(k, s) for k, s in json.loads((KEYS_DIR / f"{arch}_stage{stage}.json").read_text())]


def random_tensor(key: str, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    """Random values a trained network could hold (BatchNorm variances positive)."""
    if not shape:
        return torch.tensor(7)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=gen) + 0.5
    if key.endswith("relative_position_index"):
        return torch.randint(0, 169, shape, generator=gen)
    return torch.randn(shape, generator=gen) * 0.05


def face_photos(count: int = 8, size: int = 224) -> torch.Tensor:
    """`count` normalised (3, size, size) views of skimage's public-domain astronaut's face:
    shifted, zoomed and mirrored, so a network sees real-photo statistics."""
    from opengraphau.model.transforms import EvalTransform

    photo = Image.fromarray(data.astronaut())
    preprocess = EvalTransform(resize=size * 256 // 224, crop=size)
    views = []
    for n in range(count):
        left, top, side = 140 + 6 * (n % 4), 30 + 5 * (n // 4), 170 - 8 * (n % 3)
        view = photo.crop((left, top, left + side, top + side))
        views.append(preprocess(view.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if n % 2 else view))
    return torch.stack(views)


@torch.no_grad()
def _calibrate(state: dict[str, torch.Tensor], arch: str, stage: int) -> None:
    """Set the BatchNorm statistics of the backbone, the global block and the 27 AU blocks from
    real face photos (a train-mode pass), in place in the official-layout `state`: with made-up
    statistics the outputs would barely depend on the image, and parity tests would prove little.
    """
    from opengraphau.model.blocks import AUBlocks
    from opengraphau.model.checkpoint import checkpoint_filter_fn
    from opengraphau.model.opengraphau import build_model

    model = build_model(arch=arch, stage=stage)
    bare = {k.removeprefix("module."): v for k, v in state.items()}
    model.load_state_dict(checkpoint_filter_fn(bare, arch), strict=True)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # the cumulative average over the pass
    model.backbone.train()
    model.global_linear.train()
    tokens = model.global_linear(model.backbone(face_photos()))
    new = {
        f"backbone.{k}": v
        for k, v in model.backbone.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }
    new.update(
        {
            f"global_linear.{k}": v
            for k, v in model.global_linear.state_dict().items()
            if k.endswith(("running_mean", "running_var"))
        }
    )
    blocks = model.head.au_linears
    assert isinstance(blocks, AUBlocks)
    for i in range(blocks.weight.shape[0]):
        out = tokens @ blocks.weight[i].T + blocks.bias[i]
        new[f"head.main_class_linears.{i}.bn.running_mean"] = out.mean(dim=(0, 1))
        new[f"head.main_class_linears.{i}.bn.running_var"] = out.var(dim=(0, 1))
    for key, value in new.items():
        if "module." + key in state:
            state["module." + key] = value.clone()


def official_state_dict(
    arch: str, stage: int, seed: int = 0, *, calibrate: bool = False
) -> dict[str, torch.Tensor]:
    """`module.`-prefixed random state dict with exactly the official keys and shapes;
    `calibrate` sets its BatchNorm statistics from real photos."""
    gen = torch.Generator().manual_seed(seed)
    state = {"module." + k: random_tensor(k, s, gen) for k, s in official_keys(arch, stage)}
    if calibrate:
        _calibrate(state, arch, stage)
    return state


def write_official_checkpoint(
    arch: str, stage: int, path: Path, seed: int = 0, *, calibrate: bool = False
) -> Path:
    """A file laid out like the released ones: epoch, state_dict and an AdamW optimizer state."""
    state = official_state_dict(arch, stage, seed, calibrate=calibrate)
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    params[0].grad = torch.ones(3)
    optimizer.step()
    torch.save({"epoch": 19, "state_dict": state, "optimizer": optimizer.state_dict()}, path)
    return path


VIDEO_FPS = 10.0
"""The frame rate of `write_video`'s clips."""


def write_video(path: Path, frames: int, *, face_until: int, fourcc: str = "mp4v") -> Path:
    """A 480 x 320 clip at `VIDEO_FPS`: skimage's astronaut's face sliding right over a grey
    background, leaving the picture at frame `face_until`."""
    face = np.ascontiguousarray(data.astronaut()[20:240, 120:340][..., ::-1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), VIDEO_FPS, (480, 320))
    for i in range(frames):
        frame = np.full((320, 480, 3), 180, np.uint8)
        if i < face_until:
            x = 10 + (8 * i) % 240
            frame[50:270, x : x + 220] = face
        writer.write(frame)
    writer.release()
    return path


class FakeCamera:
    """A camera for `capture_factory` that always has a frame; counts reads and records
    release(). Frame n (from 1) is `frame(n)`: override it to tell frames apart."""

    def __init__(self) -> None:
        self.reads, self.released = 0, False

    def frame(self, n: int) -> np.ndarray:
        return np.full((120, 160, 3), (n * 7) % 256, np.uint8)

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        self.reads += 1
        return True, self.frame(self.reads)

    def grab(self) -> bool:
        raise AssertionError("a camera is read, never grabbed")

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        raise AssertionError("a camera is read, never retrieved")

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


def cli(
    *args: str, cwd: Path = ROOT, script: str = "demo.py", timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python demo.py ARGS` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(*args: str, capture_factory=None) -> int:
    """The command line in this process (quicker than `cli`); returns the exit status."""
    return main(list(args), prog="demo.py", capture_factory=capture_factory)


FAST = ("--untrained", "--arc", "resnet18", "--no-detect", "--workers", "0", "--quiet")
"""The quickest run: random ResNet-18 weights, whole images, no worker processes, quiet."""
BANNER = f"*** {UNTRAINED_BANNER} ***"


def fast_with(checkpoint: Path) -> tuple[str, ...]:
    """`FAST` with `checkpoint`'s weights: whole images, no worker processes, quiet."""
    return ("--resume", str(checkpoint), "--no-detect", "--quiet", "--workers", "0")


@dataclass
class Result:
    """One run of the command line in this process (the `demo` fixture)."""

    code: int
    err: list[str]
    """stderr's lines, less the untrained banner."""
    out: str


Demo = Callable[..., Result]
"""`demo(out, *inputs, extra=(), flags=FAST)`: one run of the command line into `out`,
replacing what an earlier run left there unless it continues (--skip-existing)."""


def read_rows(out: Path, name: str = "predictions.csv") -> list[dict[str, str]]:
    """The rows of a CSV file in `out`, each a dict by column name."""
    with open(out / name, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def probs_of(rows: list[dict[str, str]]) -> np.ndarray:
    """(rows, 41) AU probabilities of CSV rows."""
    return np.array([[float(r[c]) for c in AU_COLUMNS] for r in rows])


def present(values: Iterable[T | None]) -> list[T]:
    """`values` as a list, none of which may be missing: what a test knows is there (the
    probabilities of faces that were found, the pixels of decoded frames), typed so."""
    items = list(values)
    assert all(value is not None for value in items), "a value the test expects is None"
    return [value for value in items if value is not None]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


# -- synthetic clips of real faces, for tracking ---------------------------------------------------


def face_sprites() -> dict[str, np.ndarray]:
    """Two different people as RGB crops (head and some background): skimage's astronaut
    (public domain, colour) and its cameraman (CC0, grey)."""
    return {
        "astronaut": data.astronaut()[20:240, 130:330],
        "cameraman": np.repeat(data.camera()[60:230, 140:300, None], 3, axis=2),
    }


#: MTCNN's box (x, y, w, h) of the face in each of `face_sprites()`.
SPRITE_FACES = {"astronaut": (51.0, 43.0, 86.0, 111.0), "cameraman": (61.0, 59.0, 55.0, 78.0)}


class Actor:
    """One face of a synthetic clip: its picture scaled to `height` pixels, and where its centre
    is at frame t (`path(t)`, None while it is out of the picture). `face` is the face's box in
    the picture as given (default: all of it)."""

    def __init__(
        self,
        picture: np.ndarray,
        height: int,
        path,
        face: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.scale = height / picture.shape[0]
        width = round(picture.shape[1] * self.scale)
        self.picture = np.asarray(
            Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR)
        )
        self.face = face or (0.0, 0.0, picture.shape[1], picture.shape[0])
        self.path = path

    def box(self, t: int) -> tuple[int, int, int, int] | None:
        """Where the picture is pasted at frame t."""
        centre = self.path(t)
        if centre is None:
            return None
        height, width = self.picture.shape[:2]
        return (round(centre[0] - width / 2), round(centre[1] - height / 2), width, height)

    def face_box(self, t: int) -> tuple[float, float, float, float] | None:
        box = self.box(t)
        if box is None:
            return None
        x, y, w, h = (v * self.scale for v in self.face)
        return (box[0] + x, box[1] + y, w, h)


def render_clip(
    actors: list[Actor], frames: int, size: tuple[int, int] = (320, 240)
) -> tuple[list[np.ndarray], list[list[tuple[float, ...] | None]]]:
    """RGB frames of `actors` over a grey background, later actors in front, and per frame each
    actor's face box (None while it is out of the picture; hidden or not)."""
    width, height = size
    images = []
    for t in range(frames):
        image = np.full((height, width, 3), 170, np.uint8)
        for actor in actors:
            box = actor.box(t)
            if box is None:
                continue
            x, y, w, h = box
            x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
            if x1 > x0 and y1 > y0:
                image[y0:y1, x0:x1] = actor.picture[y0 - y : y1 - y, x0 - x : x1 - x]
        images.append(image)
    return images, [[actor.face_box(t) for actor in actors] for t in range(frames)]


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """RGB `frames` as an MP4 (mp4v) video."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def tracking_clips() -> dict[str, tuple[list[Actor], int]]:
    """The tracking scenarios at 25 fps, 320 x 240: (actors, frames) by name.

    crossing: two people walk past each other, the cameraman in front. hidden10 / 25 / 50: the
    cameraman, nearer the camera, walks across the astronaut, his picture over the centre of
    her face for 10 / 25 / 50 frames. flicker: a face shows for one frame beside a steady one.
    swap: the astronaut leaves and, 5 frames later, the cameraman stands where she was.
    """
    faces = face_sprites()

    def astronaut(height: int, path) -> Actor:
        return Actor(faces["astronaut"], height, path, SPRITE_FACES["astronaut"])

    def cameraman(height: int, path) -> Actor:
        return Actor(faces["cameraman"], height, path, SPRITE_FACES["cameraman"])

    def sway(x: float, y: float):
        return lambda t: (x + 3 * math.sin(t / 4), y + 2 * math.cos(t / 5))

    def across(start: float, speed: float, y: float):
        return lambda t: (start + speed * t, y)

    def hidden(frames: int) -> tuple[list[Actor], int]:
        rear, front = astronaut(70, sway(160, 120)), cameraman(130, lambda t: None)
        rear_w, front_w = rear.picture.shape[1], front.picture.shape[1]
        speed = front_w / frames  # his picture covers her face's centre for `frames` frames
        start = 160 - (rear_w + front_w) / 2 - 10 * speed  # touches her after 10 frames
        front.path = across(start, speed, 125)
        return [rear, front], 20 + math.ceil((rear_w + front_w) / speed)

    return {
        "crossing": ([astronaut(90, across(60, 4, 110)), cameraman(90, across(260, -4, 125))], 50),
        "hidden10": hidden(10),
        "hidden25": hidden(25),
        "hidden50": hidden(50),
        "flicker": (
            [
                astronaut(80, sway(110, 120)),
                cameraman(80, lambda t: (240, 110) if t == 12 else None),
            ],
            30,
        ),
        "swap": (
            [
                astronaut(80, lambda t: (160, 120) if t < 20 else None),
                cameraman(80, lambda t: (160, 120) if t >= 25 else None),
            ],
            50,
        ),
    }
