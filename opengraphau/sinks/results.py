"""`read_results(folder)`: a results folder as one pandas DataFrame, typed the same whichever file
the rows come from, with the folder's run.json in `df.attrs["run"]`.

    from opengraphau import read_results
    df = read_results("results/demo")
    df[df.success].groupby("file")["AU12"].mean()
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ..errors import InputError
from ..records import FaceRecord
from ..schema import COLUMN_TYPES, CSV_HEADER, face_columns, result_columns
from .manifest import MANIFEST_NAME
from .writer import CsvSink

#: ParquetSink.name, not imported from there: that module needs pyarrow, a CSV reader does not.
_PARQUET = "predictions.parquet"


def read_results(folder: str | Path) -> pd.DataFrame:
    """Every row written to `folder`: from predictions.parquet when every run behind the rows
    wrote it (run.json says; a folder without run.json is trusted), else from predictions.csv
    (else from what Parquet there is). Columns as in predictions.csv, typed by `COLUMN_TYPES`
    (`file` a string, frame and face_id int64, success bool, the rest floats, AUs float32), NaN
    where a row has no face. `attrs["run"]` is run.json (None without one). InputError when
    there are no results."""
    root = Path(folder)
    manifest = _manifest(root / MANIFEST_NAME)
    parquet, csv = (root / _PARQUET).is_dir(), (root / CsvSink.name).is_file()
    if parquet and (_all_runs_wrote_parquet(manifest) or not csv):
        frame = _from_parquet(root / _PARQUET)
    elif csv:
        frame = _from_csv(root / CsvSink.name)
    else:
        raise InputError(
            f"holds no results ({_PARQUET} or {CsvSink.name}); give the output folder of a run",
            param="folder",
            value=root,
        )
    frame.attrs["run"] = manifest
    return frame


def _all_runs_wrote_parquet(manifest: dict[str, Any] | None) -> bool:
    """Whether the Parquet folder holds every row: each run listed in run.json (the runs since
    the last fresh one, whose rows the folder holds) wrote Parquet. A fresh CSV-only run leaves
    an older Parquet folder behind; a resumed run that adds Parquet has its earlier rows in CSV
    only."""
    if manifest is None:
        return True
    return all("parquet" in run.get("formats", ()) for run in manifest.get("runs", ()))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({c: COLUMN_TYPES[c] for c in frame.columns})


def _from_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    from .parquet import read_dataset

    table = read_dataset(path)
    if table is None:
        return _typed(pd.DataFrame(columns=list(CSV_HEADER)))
    return _typed(table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get))


def records_frame(records: Iterable[FaceRecord]) -> pd.DataFrame:
    """Records (a face, or a frame without one) as the DataFrame `read_results` would give for
    the predictions.csv they make: its columns, types and decimals, from the same
    `schema.face_columns` the files are written from, so a notebook's table and a run's files
    agree to the last digit."""
    records = list(records)
    smooth = any(r.raw is not None for r in records)
    return _typed(pd.DataFrame(face_columns(records, smooth=smooth)))


def _parse_csv(source: Path | IO[bytes], columns: list[str]) -> pd.DataFrame:
    types = {c: "int8" if COLUMN_TYPES[c] == "bool" else COLUMN_TYPES[c] for c in columns}
    frame = pd.read_csv(
        source,
        dtype=types,
        keep_default_na=False,
        na_values={c: [""] for c in columns if c != "file"},
    )
    return _typed(frame)


def _from_csv(path: Path) -> pd.DataFrame:
    """predictions.csv read with explicit types: a file name is never taken for a number or NA,
    an empty field is NaN, and a last line cut off by a crash is left out."""
    try:
        columns = pd.read_csv(path, nrows=0).columns.tolist()
        if columns not in [
            result_columns(untrained=u, smooth=s) for u in (False, True) for s in (False, True)
        ]:
            raise InputError(
                "its columns are not those this tool writes", param="folder", value=path
            )
        frame = _parse_csv(_complete_lines(path), columns)
    except OSError as exc:
        raise InputError(
            f"cannot be read ({exc.strerror or exc})", param="folder", value=path
        ) from None
    except ValueError as exc:  # pandas' ParserError included
        raise InputError(
            f"is not a predictions file this tool wrote ({exc})", param="folder", value=path
        ) from None
    return frame


def _complete_lines(path: Path) -> Path | io.BytesIO:
    """`path`, or its bytes up to the last line end when a crash cut the last line off."""
    with open(path, "rb") as f:
        if f.seek(0, io.SEEK_END) == 0:
            return path
        f.seek(-1, io.SEEK_END)
        if f.read(1) == b"\n":
            return path
        f.seek(0)
        data = f.read()
    return io.BytesIO(data[: data.rfind(b"\n") + 1])


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(
            f"cannot be read ({exc.strerror or exc})", param="folder", value=path
        ) from None
    except ValueError as exc:
        raise InputError(f"is not valid JSON ({exc})", param="folder", value=path) from None
