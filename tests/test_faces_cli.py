"""Face detection through demo.py: one row per face, face-less images, big photos, crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from factories import iou, probs_of, read_rows, run_main
from opengraphau.aus import AU_COLUMNS

# The astronaut's face in skimage.data.astronaut() (512 x 512), measured by hand: x, y, w, h.
FACE_REGION = (180, 72, 90, 106)


def _box(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[c]) for c in "xywh")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(root / "one.png")
    face = astronaut.crop((140, 30, 310, 200))
    pair = Image.new("RGB", (520, 260), (200, 200, 200))
    pair.paste(face.resize((150, 150)), (20, 60))  # smaller face on the left
    pair.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((220, 220)), (280, 20))
    pair.save(root / "two.png")
    ramp = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))
    Image.fromarray(ramp).save(root / "none.png")
    astronaut.resize((2560, 2560), Image.Resampling.BICUBIC).save(root / "large.jpg", quality=90)
    return {p.stem: p for p in root.iterdir()}


def _run(ck: Path, out: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> int:
    return run_main(
        "--resume",
        str(ck),
        "--quiet",
        "--workers",
        "0",
        "--output-dir",
        str(out),
        "--input",
        *map(str, inputs),
        *extra,
    )


def test_faces_rows_boxes_and_summary(
    resnet18_s1: Path, photos: dict[str, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert (
        _run(
            resnet18_s1,
            out,
            photos["one"],
            photos["two"],
            photos["none"],
            photos["large"],
            extra=("--save-crops", "--draw_text"),
        )
        == 0
    )
    rows = read_rows(out)
    by_file: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_file.setdefault(Path(row["file"]).stem, []).append(row)
    one = by_file["one"]
    assert len(one) == 1 and one[0]["success"] == "1" and float(one[0]["confidence"]) > 0.9
    assert iou(_box(one[0]), FACE_REGION) > 0.6
    two = by_file["two"]
    assert [r["face_id"] for r in two] == ["0", "1"]
    assert _box(two[0])[0] < 170 < _box(two[1])[0]  # left to right
    none = by_file["none"]
    assert len(none) == 1 and none[0]["success"] == "0"
    assert all(none[0][c] == "" for c in ("x", "y", "w", "h", *AU_COLUMNS))
    large = by_file["large"]
    assert len(large) == 1
    assert iou(_box(large[0]), tuple(v * 5 for v in FACE_REGION)) > 0.6  # original pixels
    summary = capsys.readouterr().out
    assert "4 images" in summary and "4 faces, 1 without a face" in summary
    assert "detection" in summary
    crops = sorted(p.name for p in (out / "crops").iterdir())
    assert crops == ["large_face0.jpg", "one_face0.jpg", "two_face0.jpg", "two_face1.jpg"]
    assert Image.open(out / "crops" / "one_face0.jpg").size == (256, 256)
    assert (out / "two_pred.jpg").is_file() and (out / "none_pred.jpg").is_file()


def test_max_faces_keeps_the_largest(
    resnet18_s1: Path, photos: dict[str, Path], tmp_path: Path
) -> None:
    assert _run(resnet18_s1, tmp_path / "o", photos["two"], extra=("--max-faces", "1")) == 0
    rows = read_rows(tmp_path / "o")
    assert len(rows) == 1 and _box(rows[0])[0] > 170


def test_no_detect_is_the_reference_behaviour(
    resnet18_s1: Path, photos: dict[str, Path], tmp_path: Path
) -> None:
    """--no-detect predicts on the whole image: equal to the API on the whole image."""
    from opengraphau.predictor import AUPredictor

    assert _run(resnet18_s1, tmp_path / "o", photos["one"], extra=("--no-detect",)) == 0
    row = read_rows(tmp_path / "o")[0]
    assert _box(row) == (0, 0, 512, 512)
    whole = AUPredictor(resnet18_s1, device="cpu").predict([photos["one"]])[0].faces[0].probs
    assert whole is not None
    np.testing.assert_allclose(probs_of([row])[0], whole, atol=2e-6)
