"""VideoSource and VideoWriter on real small videos written with OpenCV into tmp_path, and the
labels drawn on annotated video frames."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

import factories
from opengraphau.errors import OutputError, VideoError
from opengraphau.records import UNCONFIRMED, FaceRecord, Frame
from opengraphau.render.pictures import (
    FRAME_BOX_PX,
    annotate_frame,
    frame_labels,
    title_rect,
)
from opengraphau.render.video import VideoWriter
from opengraphau.sources.video import VideoSource, is_video_path, parse_webcam

FPS = 10.0
WIDTH, HEIGHT = 64, 48
BITS = 8  # the frame index is drawn as 8 black/white vertical stripes, robust to compression
STRIPE = WIDTH // BITS


def encode(index: int) -> np.ndarray:
    """A BGR frame whose stripes spell `index` in binary."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * STRIPE : (bit + 1) * STRIPE] = 255
    return image


def decode(image: np.ndarray | None) -> int:
    """The index drawn by encode(), read from the stripes' centres (of a frame with pixels)."""
    assert image is not None
    centres = image[HEIGHT // 4 : -HEIGHT // 4, STRIPE // 2 :: STRIPE].mean(axis=(0, 2))
    return sum(1 << bit for bit, value in enumerate(centres[:BITS]) if value > 127)


def write_video(path: Path, frames: int, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(frames):
        writer.write(encode(index))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 30)


def indices(frames: list[Frame]) -> list[int]:
    return [frame.index for frame in frames]


def video_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("VideoSource:") and t.is_alive()]


class FakeCamera(factories.FakeCamera):
    """Frames whose stripes spell how many reads came before."""

    def frame(self, n: int) -> np.ndarray:
        return encode(n % 256)


def test_paths_and_webcam_specs() -> None:
    assert is_video_path("a/b/Clip.MP4") and is_video_path("x.webm")
    assert not is_video_path("face.jpg") and not is_video_path("webcam:0")
    assert parse_webcam("webcam:0") == 0 and parse_webcam("webcam:12") == 12
    assert parse_webcam("clip.mp4") is None
    for bad in ("webcam:x", "webcam:", "webcam:-1"):
        with pytest.raises(VideoError, match="webcam:N"):
            parse_webcam(bad)


def test_all_frames_with_index_and_timestamp(clip: Path) -> None:
    with VideoSource(str(clip)) as source:
        assert (source.fps, source.frame_count, source.size) == (FPS, 30, (WIDTH, HEIGHT))
        assert not source.is_camera
        frames = list(source)
    assert indices(frames) == list(range(30))
    assert [decode(f.image) for f in frames] == list(range(30))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(30) / FPS, atol=1e-3)
    images = [f.image for f in frames]
    assert all(
        i is not None and i.shape == (HEIGHT, WIDTH, 3) and i.dtype == np.uint8 for i in images
    )
    assert source.error is None


def test_image_is_rgb(tmp_path: Path) -> None:
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for _ in range(3):
        writer.write(np.full((HEIGHT, WIDTH, 3), (0, 0, 255), np.uint8))  # BGR red
    writer.release()
    with VideoSource(str(path)) as source:
        image = next(iter(source)).image
    assert image is not None
    red, green, blue = image.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_every_start_end_max_frames(clip: Path) -> None:
    with VideoSource(str(clip), every=4) as source:
        assert indices(list(source)) == [0, 4, 8, 12, 16, 20, 24, 28]
    with VideoSource(str(clip), start=1.0, end=2.0) as source:
        frames = list(source)
    assert indices(frames) == list(range(10, 21))
    assert [decode(f.image) for f in frames] == list(range(10, 21))
    with VideoSource(str(clip), every=3, start=0.5, end=1.5) as source:
        assert indices(list(source)) == [6, 9, 12, 15]
    with VideoSource(str(clip), start=0.4, max_frames=5) as source:
        assert indices(list(source)) == [4, 5, 6, 7, 8]


def test_start_after_the_end_is_an_error(clip: Path) -> None:
    with VideoSource(str(clip), start=50.0) as source, pytest.raises(VideoError, match="no frames"):
        list(source)


def test_bad_options_are_errors(clip: Path) -> None:
    for options in ({"every": 0}, {"start": -1.0}, {"start": 2.0, "end": 1.0}, {"max_frames": 0}):
        with pytest.raises(VideoError, match=str(clip)):
            VideoSource(str(clip), **options)


def test_truncated_file_keeps_early_frames_and_sets_error(tmp_path: Path) -> None:
    # MKV keeps its index up front, so a cut file still opens, like a partial download.
    path = write_video(tmp_path / "full.mkv", 60)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with VideoSource(str(cut)) as source:
        assert source.frame_count == 60
        frames = list(source)
    assert 0 < len(frames) < 50
    assert indices(frames) == list(range(len(frames)))
    assert [decode(f.image) for f in frames] == list(range(len(frames)))
    assert source.error == (
        f"decoding stopped at frame {len(frames)} of 60 (file damaged or truncated)"
    )


def test_truncated_mp4_is_an_error(tmp_path: Path) -> None:
    # MP4 from OpenCV has its index at the end: cut in half, nothing is decodable.
    data = write_video(tmp_path / "full.mp4", 60).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cannot open as a video"):
        VideoSource(str(cut))


def test_unreadable_sources_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT)).release()
    with pytest.raises(VideoError, match="has no frames"):
        VideoSource(str(empty))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match=f"{garbage}: cannot open as a video"):
        VideoSource(str(garbage))
    with pytest.raises(VideoError, match="no such file"):
        VideoSource(str(tmp_path / "missing.mp4"))
    with pytest.raises(VideoError, match="folder"):
        VideoSource(str(tmp_path))


def test_webcam_with_fake_capture_stops_at_max_frames() -> None:
    cameras: list[FakeCamera] = []
    opened_with: list[str | int] = []

    def factory(spec: str | int) -> FakeCamera:
        opened_with.append(spec)
        cameras.append(FakeCamera())
        return cameras[-1]

    with VideoSource("webcam:0", max_frames=5, capture_factory=factory) as source:
        assert source.is_camera and source.frame_count is None and source.fps == 30.0
        assert source.size == (WIDTH, HEIGHT)
        frames = list(source)
    assert opened_with == [0]
    assert indices(frames) == [0, 1, 2, 3, 4]
    # the probe read in the constructor is dropped: the stream starts at the camera's 2nd frame
    assert [decode(f.image) for f in frames] == [2, 3, 4, 5, 6]
    timestamps = [f.timestamp for f in frames]
    assert timestamps[0] == 0.0 and timestamps == sorted(timestamps)
    assert cameras[0].released
    assert not video_threads()


def test_camera_that_cannot_open_is_an_error() -> None:
    class Closed(FakeCamera):
        def isOpened(self) -> bool:
            return False

    camera = Closed()
    with pytest.raises(VideoError, match="cannot open camera 3"):
        VideoSource("webcam:3", capture_factory=lambda spec: camera)
    assert camera.released


def test_prefetch_bounds_what_is_decoded_ahead() -> None:
    camera = FakeCamera()
    with VideoSource("webcam:0", prefetch=2, capture_factory=lambda spec: camera) as source:
        frames = iter(source)
        next(frames)
        time.sleep(0.3)
        # probe + frame in hand + 2 queued + 1 waiting to be queued
        assert camera.reads <= 5
    assert camera.released


def test_breaking_out_early_stops_the_thread(clip: Path) -> None:
    camera = FakeCamera()
    source = VideoSource("webcam:0", prefetch=1, capture_factory=lambda spec: camera)
    for frame in source:
        if frame.index == 3:
            break
    source.close()
    assert not video_threads() and camera.released

    with VideoSource(str(clip), prefetch=1) as source:
        for frame in source:
            if frame.index == 2:
                break
    assert not video_threads()


def test_keyboard_interrupt_stops_the_thread() -> None:
    camera = FakeCamera()
    with pytest.raises(KeyboardInterrupt):
        with VideoSource("webcam:0", capture_factory=lambda spec: camera) as source:
            for _ in source:
                raise KeyboardInterrupt
    assert not video_threads() and camera.released


def test_writer_output_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with VideoWriter(path, FPS) as writer:
        assert not path.exists()  # opened lazily on the first frame
        for index in range(12):
            writer.write(encode(index))
    writer.close()  # idempotent
    with VideoSource(str(path)) as source:
        assert (source.frame_count, source.size, source.fps) == (12, (WIDTH, HEIGHT), FPS)
        assert [decode(f.image) for f in source] == list(range(12))


def test_writer_pads_odd_sizes(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, FPS) as writer:
        for _ in range(3):
            writer.write(np.zeros((49, 65, 3), np.uint8))
        with pytest.raises(ValueError, match="differs from the first frame"):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    assert capture.read()[1].shape == (50, 66, 3)
    capture.release()


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "no" / "such" / "out.mp4", FPS)
    with pytest.raises(OutputError, match="frame rate"):
        VideoWriter(tmp_path / "out.mp4", 0.0)
    (tmp_path / "taken.mp4").mkdir()  # a folder where the file should go
    with pytest.raises(OutputError, match="a folder stands where"):
        VideoWriter(tmp_path / "taken.mp4", FPS)


#: A frame colour nothing draws with: every pixel of another colour was drawn.
BACKGROUND = (30, 60, 90)


def _faces(boxes: Sequence[tuple[float, float, float, float]], ids: list[int]) -> list[FaceRecord]:
    rng = np.random.default_rng(len(boxes))
    return [
        FaceRecord("clip", 0, 0.0, i, box, 0.99, rng.random(41).astype(np.float32))
        for box, i in zip(boxes, ids)
    ]


def _box_lines(faces: list[FaceRecord], shape: tuple[int, ...]) -> np.ndarray:
    """Where the boxes' outlines may be drawn."""
    mask = np.zeros(shape[:2], bool)
    for face in faces:
        assert face.box is not None
        x, y, w, h = face.box
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1 = int(np.ceil(x + w)), int(np.ceil(y + h))
        mask[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
        inset = 1 if face.face_id == UNCONFIRMED else FRAME_BOX_PX
        mask[max(0, y0 + inset) : y1 + 1 - inset, max(0, x0 + inset) : x1 + 1 - inset] = False
    return mask


@pytest.mark.parametrize(
    "size, boxes",
    [
        ((320, 240), [(100, 80, 40, 48), (146, 84, 38, 46), (60, 170, 30, 36), (250, 20, 30, 30)]),
        ((160, 120), [(10 + 18 * i, 40 + 6 * (i % 2), 16, 18) for i in range(8)]),
        ((1920, 1080), [(300 + 70 * i, 400 + 30 * (i % 2), 60, 70) for i in range(9)]),
    ],
)
def test_labels_never_overlap_and_hold_their_text(size: tuple[int, int], boxes: list) -> None:
    """Close faces: labels side by side, each wholly in the frame, every drawn pixel on a box
    outline or a label, and every label painted all over (no text on the picture)."""
    ids = [*range(len(boxes) - 1), UNCONFIRMED]
    faces = _faces(boxes, ids)
    frame = np.empty((size[1], size[0], 3), np.uint8)
    frame[:] = BACKGROUND
    drawn = annotate_frame(frame, faces)
    labels = frame_labels(faces, size)
    rects = [label.rect for label in labels]
    assert {label.face.face_id for label in labels} <= set(ids[:-1])
    if size[0] >= 320:
        assert len(labels) == len(ids) - 1  # room for all: every confirmed face has its label
    for i, (x0, y0, x1, y1) in enumerate(rects):
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        for u0, v0, u1, v1 in rects[i + 1 :]:
            assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0, "labels overlap"
        assert (drawn[y0:y1, x0:x1] != BACKGROUND).any(axis=-1).all(), "text on the picture"
    on_labels = np.zeros(frame.shape[:2], bool)
    for x0, y0, x1, y1 in rects:
        on_labels[y0:y1, x0:x1] = True
    changed = (drawn != frame).any(axis=-1)
    assert not (changed & ~on_labels & ~_box_lines(faces, frame.shape)).any()


def test_title_has_its_own_background_and_no_label_covers_it() -> None:
    frame = np.empty((120, 160, 3), np.uint8)
    frame[:] = BACKGROUND
    faces = _faces([(10, 10, 30, 30)], [0])
    drawn = annotate_frame(frame, faces, title="UNTRAINED")
    x0, y0, x1, y1 = title = title_rect("UNTRAINED", (160, 120))
    (label,) = frame_labels(faces, (160, 120), taken=[title])
    u0, v0, u1, v1 = label.rect
    assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0
    assert (drawn[y0:y1, x0:x1] != BACKGROUND).any(axis=-1).all()
    changed = (drawn != frame).any(axis=-1) & ~_box_lines(faces, frame.shape)
    changed[v0:v1, u0:u1] = changed[y0:y1, x0:x1] = False
    assert not changed.any()


def test_labels_name_their_aus_where_there_is_room() -> None:
    """One face in an HD frame: "AU12 Lip corner puller 0.83"; eight in a thumbnail: codes."""
    from opengraphau.aus import AU_IDS, AU_NAMES
    from opengraphau.render.pictures import _au_text

    (roomy,) = frame_labels(_faces([(600, 300, 120, 140)], [0]), (1280, 720))
    assert roomy.named and len(roomy.aus) == 6
    index = roomy.aus[0]
    assert _au_text(index, 0.834, roomy.named) == f"AU{AU_IDS[index]} {AU_NAMES[index]} 0.83"
    crowded = frame_labels(
        _faces([(10 + 18 * i, 40, 16, 18) for i in range(8)], list(range(8))), (160, 120)
    )
    assert crowded and not any(label.named for label in crowded)


def test_every_face_on_screen_has_its_own_colour() -> None:
    """Track ids that share a palette slot (0 and 12, 5 and 17) still differ on screen; a track
    alone keeps its own colour."""
    from opengraphau.render.pictures import BOX_COLORS, track_colors

    boxes = [(10 + 30 * i, 10, 20, 20) for i in range(len(BOX_COLORS))]
    ids = [0, 12, 5, 17, 1, 2, 3, 4, 6, 7, 8, 9]
    colors = track_colors(_faces(boxes, ids))
    assert len(set(colors.values())) == len(ids) == len(BOX_COLORS)
    assert track_colors(_faces([boxes[0]], [17])) == {17: BOX_COLORS[17 % len(BOX_COLORS)]}
    frame = np.full((60, 400, 3), 128, np.uint8)
    drawn = annotate_frame(frame, _faces(boxes[:2], [0, 12]))
    edge = [tuple(int(c) for c in drawn[10, x]) for x in (10, 40)]  # top-left box corners
    assert edge[0] != edge[1] and set(edge) <= set(BOX_COLORS)
