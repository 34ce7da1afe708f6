"""Face ids on synthetic clips of real faces: ids per person, id switches, ghosts, cost per frame.

    .venv/bin/python -m benchmarks.bench_tracking [--every N] [--json FILE]

Renders `tests.factories.tracking_clips()` (two people from skimage's public-domain and CC0
photos crossing, one hiding the other for 10, 25 and 50 frames, a face shown for one frame, one
person leaving and another standing where she was), encodes each as MP4 and decodes it, finds
the faces with MTCNN and runs a calibrated random-weight ResNet-18 (so embeddings depend on the
face), then gives the same records to each tracker at each frame step:

- `appearance`: `opengraphau.tracking.FaceTracker`, the one the CLI uses;
- `motion only`: the same without embeddings;
- `bytetrack`: ByteTrack from Roboflow's `trackers` package (motion and IoU), when installed,
  with the same 3-frame confirmation and 1 s of lost-track time.

With `--keyframes K...`, each clip instead goes through `opengraphau.run` at each
`--detect-every` K (`bench_video.compare_keyframes`, the one home of these figures): detection
and model time per frame, recall, box IoU and AU probability difference against the first K,
ids per person and id switches.

Per clip: `ids/person` distinct confirmed ids over the people seen in 3 frames or more (1 is
right), `switches` changes of id along one person's frames, `jumps` ids given to two people,
`ghosts` confirmed ids of a face seen in fewer than 3 frames or of no face, `unconf` rows of
people that kept face_id -1 (the price of confirmation), and the tracker's microseconds per frame.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from opengraphau.pipeline import Pipeline
from opengraphau.records import UNCONFIRMED, FaceRecord, Frame
from opengraphau.spec import PipelineSpec
from opengraphau.tracking import FaceTracker
from tests.factories import render_clip, tracking_clips, write_clip, write_official_checkpoint

FPS = 25.0
#: A person seen in fewer frames than this cannot be confirmed: any id it gets is a ghost.
MIN_FRAMES = 3


class ByteTrack:
    """`trackers.ByteTrackTracker` behind FaceTracker's update(faces, timestamp) -> ids."""

    def __init__(self) -> None:
        from trackers import ByteTrackTracker

        self.tracker = ByteTrackTracker(
            frame_rate=FPS, lost_track_buffer=30, minimum_consecutive_frames=MIN_FRAMES
        )

    def update(self, faces: Sequence[FaceRecord], timestamp: float) -> list[int]:
        import supervision as sv

        xyxy = np.array(
            [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces if f.box is not None)]
        ).reshape(-1, 4)
        found = sv.Detections(
            xyxy=xyxy,
            confidence=np.array([f.confidence for f in faces]),
            data={"index": np.arange(len(faces))},
        )
        tracked = self.tracker.update(found, timestamp=timestamp)
        ids = [UNCONFIRMED] * len(faces)
        for index, track_id in zip(tracked.data.get("index", ()), tracked.tracker_id):
            ids[int(index)] = int(track_id)
        return ids


def decoded(frames: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """`frames` after an MP4 round trip, as a detector sees a real video."""
    capture, out = cv2.VideoCapture(str(write_clip(folder / "clip.mp4", frames, FPS))), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(np.ascontiguousarray(frame[..., ::-1]))
    capture.release()
    return out


def clip_records(pipeline: Pipeline, folder: Path) -> dict[str, tuple[list, list]]:
    """Per clip: per frame its face records, and per frame each person's box (or None)."""
    clips = {}
    for name, (actors, count) in tracking_clips().items():
        images, truth = render_clip(actors, count)
        frames = [
            Frame.of(name, image, i, i / FPS) for i, image in enumerate(decoded(images, folder))
        ]
        records = [
            [r for r in found if r.success]
            for k in range(0, len(frames), 16)
            for found in pipeline(frames[k : k + 16])
        ]
        clips[name] = (records, truth)
    return clips


def person_of(record: FaceRecord, boxes: list) -> int | None:
    """The frontmost person whose picture holds the detection's centre."""
    assert record.box is not None
    x, y, w, h = record.box
    cx, cy = x + w / 2, y + h / 2
    for person in reversed(range(len(boxes))):
        box = boxes[person]
        if box is not None and box[0] <= cx < box[0] + box[2] and box[1] <= cy < box[1] + box[3]:
            return person
    return None


def score(
    records: list[list[FaceRecord]], truth: list[list], ids: list[list[int]], seconds: float
) -> dict[str, float]:
    seen: dict[int, list[int]] = {}  # person -> ids along its frames (UNCONFIRMED included)
    owners: dict[int, set] = {}  # confirmed id -> the people (None: no face) it was given to
    for found, boxes, given in zip(records, truth, ids):
        for record, track_id in zip(found, given):
            person = person_of(record, boxes)
            if person is not None:
                seen.setdefault(person, []).append(track_id)
            if track_id != UNCONFIRMED:
                owners.setdefault(track_id, set()).add(person)
    real = {p: s for p, s in seen.items() if len(s) >= MIN_FRAMES}
    confirmed = {p: [i for i in s if i != UNCONFIRMED] for p, s in real.items()}
    ghosts = {
        i for i, people in owners.items() if None in people or any(p not in real for p in people)
    }
    return {
        "ids/person": (sum(len(set(s)) for s in confirmed.values()) / len(real)) if real else 0,
        "switches": sum(sum(a != b for a, b in zip(s, s[1:])) for s in confirmed.values()),
        "jumps": sum(len(people - {None}) > 1 for people in owners.values()),
        "ghosts": len(ghosts),
        "unconf": sum(s.count(UNCONFIRMED) for s in real.values()),
        "us/frame": 1e6 * seconds / max(1, len(records)),
    }


def run_tracker(
    make: Callable[[], object], records: list[list[FaceRecord]], every: int
) -> tuple[list[list[int]], float, list[int]]:
    """Ids per kept frame, the seconds the tracker took, and which frames were kept."""
    tracker = make()
    kept = list(range(0, len(records), every))
    ids, spent = [], 0.0
    for i in kept:
        start = time.perf_counter()
        ids.append(tracker.update(records[i], i / FPS))  # type: ignore[attr-defined]
        spent += time.perf_counter() - start
    return ids, spent, kept


def without_embeddings(records: list[list[FaceRecord]]) -> list[list[FaceRecord]]:
    return [[replace(r, embedding=None) for r in found] for found in records]


def keyframes(ks: list[int], json_path: Path | None) -> None:
    """The --keyframes measurements, per tracking clip."""
    from benchmarks.bench_video import compare_keyframes

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_official_checkpoint("resnet18", 1, Path(tmp) / "r18.pth", calibrate=True)
        for name, (actors, count) in tracking_clips().items():
            print(f"\n{name}")
            images, truth = render_clip(actors, count)
            folder = Path(tmp) / name
            folder.mkdir()
            clip = write_clip(folder / "clip.mp4", images, FPS)
            results[name] = compare_keyframes(clip, truth, ks, checkpoint, folder)
    if json_path:
        json_path.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--every",
        type=int,
        nargs="+",
        default=[1, 2, 5],
        help="frame steps to track at (default: 1 2 5)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--keyframes",
        type=int,
        nargs="+",
        metavar="K",
        help="run each clip at --detect-every K against the first K given (1)",
    )
    args = parser.parse_args()
    if args.keyframes:
        keyframes(args.keyframes, args.json)
        return
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_official_checkpoint("resnet18", 1, Path(tmp) / "r18.pth", calibrate=True)
        pipeline = PipelineSpec(str(checkpoint), device="cpu").build()
        clips = clip_records(pipeline, Path(tmp))
    trackers: dict[str, tuple[Callable[[], object], bool]] = {
        "appearance": (FaceTracker, True),
        "motion only": (FaceTracker, False),
    }
    try:
        import trackers as _  # noqa: F401

        trackers["bytetrack"] = (ByteTrack, False)
    except ImportError:
        print("(trackers not installed: no ByteTrack rows)")
    results: dict[int, dict[str, dict[str, dict[str, float]]]] = {}
    for every in args.every:
        print(f"\n--every {every}")
        for label, (make, looks) in trackers.items():
            for name, (records, truth) in clips.items():
                given = records if looks else without_embeddings(records)
                ids, seconds, kept = run_tracker(make, given, every)
                numbers = score([records[i] for i in kept], [truth[i] for i in kept], ids, seconds)
                results.setdefault(every, {}).setdefault(label, {})[name] = numbers
                print(
                    f"{label:12s} {name:9s} "
                    + "  ".join(
                        f"{k} {v:.2f}" if k == "ids/person" else f"{k} {v:.0f}"
                        for k, v in numbers.items()
                    )
                )
            rows = results[every][label].values()
            mean_ids = np.mean([r["ids/person"] for r in rows])
            print(
                f"{label:12s} {'all':9s} ids/person {mean_ids:.2f}"
                + "".join(
                    f"  {k} {sum(r[k] for r in rows):.0f}"
                    for k in ("switches", "jumps", "ghosts", "unconf")
                )
                + f"  us/frame {np.mean([r['us/frame'] for r in rows]):.0f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
