"""predictions.parquet/: the rows of predictions.csv with real types, as a folder of Parquet
files that pandas, polars, R's arrow and pyarrow each read as one table.

A Parquet file cannot be read until its footer is written, when it is closed, so one growing file
would be lost whole by a crash. Instead each batch becomes a small file of its own (written under
a hidden temporary name, then renamed into view): a run killed at any moment leaves every finished
batch readable. Thousands of small files are slow to read (about 2 ms and 17 kB each), so every
`COMPACT_ROWS` rows, and when the run ends, they are merged into one: the merged file is written
under a hidden name, the small ones removed, then it is renamed into view. A run killed inside
that step leaves the merged file hidden but complete; the next run and `read_results` take it
instead of the small files, so no row is read twice (a plain reader misses those rows until then).
Readers skip names starting with "." or "_", as pyarrow's datasets do.

Values are those of predictions.csv (`schema.face_columns`), so both files hold the same numbers.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..aus import AU_COLUMNS, SMOOTH_COLUMNS
from ..errors import ConfigError, OutputError
from ..records import FaceRecord
from ..schema import COLUMN_TYPES, face_columns, result_columns, typed
from .files import OutputFolder, output_error
from .writer import SinkSettings

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
except ImportError:
    raise ConfigError(
        "needs pyarrow; install it with pip install 'opengraphau[parquet]'",
        param="formats",
        value="parquet",
    ) from None

#: Rows of small batch files merged into one file (about 40 MB held in memory until then).
COMPACT_ROWS = 100_000
#: Batch files live briefly: written fast (1 ms, not 4.5, for 16 rows). Merged files are small
#: (zstd) and carry the statistics and dictionaries readers filter with.
_BATCH_OPTIONS: dict[str, Any] = {
    "compression": "snappy",
    "use_dictionary": False,
    "write_statistics": False,
}
_MERGED_OPTIONS: dict[str, Any] = {"compression": "zstd"}
#: Columns that a faceless row leaves empty (NaN in `face_columns`, null here).
_NULLABLE = frozenset(("confidence", "x", "y", "w", "h", *AU_COLUMNS, *SMOOTH_COLUMNS))
_PART = re.compile(r"(?P<hidden>\.?)part-(?P<first>\d+)(?:-(?P<last>\d+))?\.parquet")


def schema(untrained: bool, smooth: bool = False) -> pa.Schema:
    """The columns of predictions.csv (`result_columns`) with `COLUMN_TYPES`."""
    columns = result_columns(untrained=untrained, smooth=smooth)
    return pa.schema([(c, pa.type_for_alias(COLUMN_TYPES[c])) for c in columns])


@dataclass(frozen=True)
class _Part:
    """A part file holding batches first..last; `hidden`: a merge that a crash cut short."""

    path: Path
    first: int
    last: int
    merged: bool
    hidden: bool


def _part_name(first: int, last: int | None = None) -> str:
    return f"part-{first:08d}.parquet" if last is None else f"part-{first:08d}-{last:08d}.parquet"


def _names(root: Path) -> list[str]:
    try:
        return os.listdir(root)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise output_error(root, exc) from None


def _parts(root: Path) -> list[_Part]:
    """Every part file in `root` (none when it does not exist), hidden merges included."""
    parts = []
    for name in _names(root):
        match = _PART.fullmatch(name)
        if match and (match["last"] or not match["hidden"]):
            first = int(match["first"])
            parts.append(
                _Part(
                    root / name,
                    first,
                    int(match["last"] or first),
                    bool(match["last"]),
                    bool(match["hidden"]),
                )
            )
    return parts


def _in_view(parts: list[_Part]) -> list[_Part]:
    """The parts that hold the rows once each, in row order: a hidden merge replaces the small
    parts it holds."""
    hidden = [p for p in parts if p.hidden]
    return sorted(
        (
            p
            for p in parts
            if p.hidden or not any(h.first <= p.first and p.last <= h.last for h in hidden)
        ),
        key=lambda p: p.first,
    )


def read_dataset(root: Path) -> pa.Table | None:
    """All rows of the dataset folder `root`, in the order written; None when it has no part."""
    files = [str(p.path) for p in _in_view(_parts(root))]
    return ds.dataset(files, format="parquet").to_table() if files else None


class ParquetSink:
    """predictions.parquet/: `CSV_HEADER` (+ `untrained`) typed by `COLUMN_TYPES`; see the module
    docstring for how it survives crashes. On resume it keeps the rows of `completed` inputs."""

    name = "predictions.parquet"

    def __init__(self, folder: OutputFolder, settings: SinkSettings) -> None:
        self.folder, self.settings, completed = folder, settings, settings.completed
        self.schema = schema(settings.untrained, settings.smooth)
        if os.path.lexists(folder.root / self.name) and not os.path.isdir(folder.root / self.name):
            raise OutputError(
                "is a file, not the folder of Parquet parts this tool writes; move "
                "it away or choose another output folder",
                param="output_dir",
                value=folder.root / self.name,
            )
        self.root = folder.inside(f"{self.name}/{_part_name(0)}").parent
        parts = self._recover()
        if completed is None:
            for part in parts:
                self._unlink(part.path)
        kept = [p for p in parts if completed is not None and self._keep(p, completed)]
        self._next = max((p.last for p in kept), default=-1) + 1
        # Small parts always follow the last merged one: they become the tail to merge next.
        self._tail: list[tuple[Path, pa.Table]] = []
        for part in kept:
            if not part.merged:
                with self._open(part.path) as small:
                    self._tail.append((part.path, small.read()))
        self._tail_first = min((p.first for p in kept if not p.merged), default=0)
        self._tail_rows = sum(t.num_rows for _, t in self._tail)

    def write(self, records: Sequence[FaceRecord]) -> None:
        table = self._table(records)
        name = _part_name(self._next)
        self._write(name, table, _BATCH_OPTIONS)
        if not self._tail:
            self._tail_first = self._next
        self._next += 1
        self._tail.append((self.root / name, table))
        self._tail_rows += table.num_rows
        if self._tail_rows >= COMPACT_ROWS:
            self._compact()

    def close(self) -> None:
        self._compact()

    # -- files ------------------------------------------------------------------------------
    def _recover(self) -> list[_Part]:
        """The parts in view, after removing temporary files and finishing merges cut short."""
        for name in _names(self.root):  # OutputFolder.replace's names: ".NAME.*.tmp.SUFFIX"
            if name.startswith(".") and name.endswith(".tmp.parquet"):
                self._unlink(self.root / name)
        parts = _parts(self.root)
        for part in parts:
            if part.hidden:
                for small in parts:
                    if not small.hidden and part.first <= small.first <= small.last <= part.last:
                        self._unlink(small.path)
                self._rename(part.path, part.path.with_name(part.path.name[1:]))
        return _in_view(_parts(self.root))

    def _keep(self, part: _Part, completed: frozenset[str]) -> bool:
        """Drop the rows of inputs not in `completed` from a part; False when none was left."""
        with self._open(part.path) as parquet:
            keep = pc.is_in(
                parquet.read(columns=["file"]).column("file"),
                value_set=pa.array(sorted(completed), pa.string()),
            )
            kept = pc.sum(keep).as_py() or 0
            if kept == parquet.metadata.num_rows:
                return True
            table = parquet.read().filter(keep) if kept else None
        if table is None:
            self._unlink(part.path)
            return False
        self._write(part.path.name, table, _MERGED_OPTIONS if part.merged else _BATCH_OPTIONS)
        return True

    @contextlib.contextmanager
    def _open(self, path: Path) -> Iterator[pq.ParquetFile]:
        """A part file of an earlier run, checked to hold this run's columns (read never through
        a link, nor from a pipe planted there)."""
        with os.fdopen(
            self.folder.open_regular(f"{self.name}/{path.name}", os.O_RDONLY), "rb"
        ) as f:
            try:
                part = pq.ParquetFile(f)
            except (pa.ArrowException, OSError) as exc:
                raise OutputError(
                    f"is not a Parquet file this tool wrote ({exc}); move it away "
                    "or choose another output folder",
                    param="output_dir",
                    value=path,
                ) from None
            if not part.schema_arrow.equals(self.schema):
                raise OutputError(
                    "its columns differ from this run's (trained vs untrained weights, "
                    "smoothed or not, or another tool); choose another output folder",
                    param="output_dir",
                    value=path,
                )
            yield part

    def _write(self, name: str, table: pa.Table, options: dict[str, Any]) -> None:
        # Appended, not truncated: ext4 flushes a file truncated then rewritten when it is closed
        # (auto_da_alloc), a disk write per batch that made each removal wait 3 ms.
        with self.folder.replace(f"{self.name}/{name}") as temporary, open(temporary, "ab") as f:
            pq.write_table(table, f, **options)

    def _compact(self) -> None:
        """Merge the small parts into one (see the module docstring for the order of steps)."""
        if len(self._tail) > 1:
            name = _part_name(self._tail_first, self._next - 1)
            self._write(
                f".{name}",
                pa.concat_tables(t for _, t in self._tail).combine_chunks(),
                _MERGED_OPTIONS,
            )
            for path, _ in self._tail:
                self._unlink(path)
            self._rename(self.root / f".{name}", self.root / name)
        self._tail, self._tail_rows = [], 0

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise output_error(path, exc) from None

    def _rename(self, source: Path, target: Path) -> None:
        try:
            os.replace(source, target)
        except OSError as exc:
            raise output_error(target, exc) from None

    # -- rows -------------------------------------------------------------------------------
    def _table(self, records: Sequence[FaceRecord]) -> pa.Table:
        """The records as typed columns (`schema.face_columns`), nulls where predictions.csv
        leaves a field empty."""
        columns = typed(
            face_columns(records, smooth=self.settings.smooth, untrained=self.settings.untrained)
        )
        arrays = []
        for field in self.schema:
            values = columns[field.name]
            mask = np.isnan(values) if field.name in _NULLABLE else None
            arrays.append(pa.array(values, field.type, mask=mask))
        return pa.Table.from_arrays(arrays, schema=self.schema)
