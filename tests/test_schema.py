"""The output schema's one records->columns function: its digits against exact decimal
arithmetic, the three file formats holding the same numbers, and the lossless transport form."""

from __future__ import annotations

import csv
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from opengraphau.aus import AU_COLUMNS, SMOOTH_COLUMNS
from opengraphau.records import FaceRecord
from opengraphau.schema import (
    COLUMN_TYPES,
    DECIMALS,
    FORMATS,
    face_columns,
    face_records,
    result_columns,
    typed,
)
from opengraphau.sinks.files import OutputFolder
from opengraphau.sinks.parquet import read_dataset
from opengraphau.sinks.writer import SINKS, ResultWriter


def _exact(value: float, decimals: int) -> float:
    """`value` rounded half to even on its exact binary value, by decimal arithmetic."""
    step = Decimal(1).scaleb(-decimals)
    return float(Decimal(value).quantize(step, rounding=ROUND_HALF_EVEN))


def _records() -> list[FaceRecord]:
    """Faces with values on and near rounding edges, a faceless frame, a smoothed face."""
    gen = np.random.default_rng(7)
    probs = gen.random((3, len(AU_COLUMNS))).astype(np.float32)
    probs[0, :6] = np.array([0.0, 1.0, 0.5, 0.1234565, 0.9999995, 5e-7], np.float32)
    return [
        FaceRecord("a.jpg", 0, 0.0005, 0, (0.25, 0.35, -0.04, 1000.05), 0.9999995, probs[0]),
        FaceRecord("a.jpg", 0, 0.0005, 1, (10.15, 2.45, 3.0, 4.0), 0.25, probs[1]),
        FaceRecord("b.jpg", 3, 2.0015, 0, None, None, None),
        FaceRecord("c.mp4", 7, 1.2345, 2, (1.05, 2.0, 3.0, 4.0), 0.9, probs[2], raw=probs[0]),
    ]


def test_face_columns_round_each_value_as_exact_decimal_arithmetic_does() -> None:
    records = _records()
    columns = face_columns(records, smooth=True, untrained=True)
    assert list(columns) == result_columns(untrained=True, smooth=True)
    b, s, t = DECIMALS["box"], DECIMALS["score"], DECIMALS["timestamp"]
    for k, r in enumerate(records):
        assert columns["file"][k] == r.source and columns["frame"][k] == r.frame
        assert columns["timestamp"][k] == _exact(r.timestamp, t)
        assert columns["success"][k] == (r.probs is not None)
        boxes = [columns[c][k] for c in "xywh"]
        if r.box is None:
            assert np.isnan(boxes).all() and np.isnan(columns["confidence"][k])
        else:
            assert boxes == [_exact(v, b) for v in r.box]
            assert columns["confidence"][k] == _exact(r.confidence or 0, s)
        model = r.raw if r.raw is not None else r.probs
        got = np.array([columns[c][k] for c in AU_COLUMNS])
        smoothed = np.array([columns[c][k] for c in SMOOTH_COLUMNS])
        if model is None:
            assert np.isnan(got).all()
        else:
            assert got.tolist() == [_exact(float(p), s) for p in model]
        if r.raw is None:
            assert np.isnan(smoothed).all()
        else:
            assert r.probs is not None  # the smoothed values, beside the model's in `raw`
            assert smoothed.tolist() == [_exact(float(p), s) for p in r.probs]
    assert columns["x"][0] == 0.2 and columns["w"][0] == -0.0  # half to even; the sign kept
    assert columns["timestamp"][2] == 2.002  # 2.0015 is 2.00150000000000005684... in binary
    assert columns["untrained"].all()


def test_typed_columns_have_the_schema_types() -> None:
    columns = typed(face_columns(_records(), smooth=True))
    for name, values in columns.items():
        assert values.dtype == (object if name == "file" else np.dtype(COLUMN_TYPES[name]))


def test_csv_jsonl_and_parquet_hold_the_same_numbers(tmp_path: Path) -> None:
    records = _records()
    with ResultWriter(
        OutputFolder(tmp_path), formats=("csv", "jsonl", "parquet"), smooth=True
    ) as writer:
        writer.write(records)
    with open(tmp_path / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    table = read_dataset(tmp_path / "predictions.parquet")
    assert table is not None
    parquet = table.to_pydict()
    columns = face_columns(records, smooth=True)
    assert rows[2]["x"] == "" and rows[2]["AU1"] == "" and objects[2]["aus"] is None
    assert rows[0]["x"] == "0.2" and rows[0]["timestamp"] == "0.001"  # 0.25, 0.0005 in binary
    assert rows[0]["AU12_smooth"] == "" and rows[3]["AU12_smooth"] != ""
    for k, (row, obj) in enumerate(zip(rows, objects)):
        assert float(row["timestamp"]) == obj["timestamp"] == parquet["timestamp"][k]
        for c in "xywh":
            box = obj["box"]
            assert (row[c] == "") == (box is None) == (parquet[c][k] is None)
            if box is not None:
                assert float(row[c]) == box[c] == parquet[c][k] == columns[c][k]
        if obj["aus"] is None:
            continue
        assert float(row["confidence"]) == obj["confidence"] == parquet["confidence"][k]
        for au, c in zip(obj["aus"], AU_COLUMNS):
            assert float(row[c]) == au["probability"] == columns[c][k]
            assert np.float32(row[c]) == np.float32(parquet[c][k])
            if "smoothed" in au:
                assert float(row[f"{c}_smooth"]) == au["smoothed"]
                assert np.float32(au["smoothed"]) == np.float32(parquet[f"{c}_smooth"][k])
    assert [r["face_id"] for r in rows] == ["0", "1", "0", "2"]
    assert pq.read_schema(next((tmp_path / "predictions.parquet").iterdir())).names == list(columns)


@pytest.mark.parametrize("smoothed", [False, True])
def test_unrounded_columns_give_back_the_records(smoothed: bool) -> None:
    records = [r for r in _records() if smoothed or r.raw is None]
    again = face_records(face_columns(records, smooth=True, rounded=False), "x.mp4")
    assert len(again) == len(records)
    for old, new in zip(records, again):
        assert new.source == "x.mp4" and new.embedding is None
        assert (new.frame, new.timestamp, new.face_id) == (old.frame, old.timestamp, old.face_id)
        assert (new.box, new.confidence) == (old.box, old.confidence)
        for mine, theirs in ((new.probs, old.probs), (new.raw, old.raw)):
            assert (mine is None) == (theirs is None)
            if mine is not None and theirs is not None:
                assert mine.dtype == np.float32 and np.array_equal(mine, theirs)


def test_every_format_has_a_sink_that_writes_it(tmp_path: Path) -> None:
    assert tuple(SINKS) == FORMATS
    with ResultWriter(OutputFolder(tmp_path), formats=FORMATS) as writer:
        writer.write(_records()[:1])
    assert {p.name for p in tmp_path.iterdir()} >= {
        "predictions.csv",
        "predictions.jsonl",
        "predictions.parquet",
    }
