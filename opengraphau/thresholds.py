"""When an AU counts as present: one cut for all AUs (`--threshold`, 0.5 by default) or one per
AU (`--thresholds FILE`, as `opengraphau evaluate --calibrate` writes it).

Every present/absent mark (the terminal table, pictures, timelines, summary.csv rates, the JSONL
`active`, the Python API) asks a `Thresholds`, so a per-AU file changes all of them alike.

thresholds.json holds {"thresholds": {"AU12": 0.41, ...}} (other keys, such as the calibration's
scores, are ignored; a plain {"AU12": 0.41} works too). AUs it does not name keep the default.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .aus import AU_COLUMNS
from .errors import ConfigError


@dataclass(frozen=True)
class Thresholds:
    """A probability cut per AU, in the models' output order (`aus.AU_COLUMNS`)."""

    values: tuple[float, ...]
    default: float = 0.5
    """The cut of the AUs no file set (what `--threshold` gave)."""
    source: str | None = None
    """The file the per-AU values came from, if any."""
    sha256: str | None = None
    """That file's SHA-256, as it was read."""

    def __post_init__(self) -> None:
        if len(self.values) != len(AU_COLUMNS):
            raise ValueError(f"expected {len(AU_COLUMNS)} thresholds, got {len(self.values)}")

    @classmethod
    def uniform(cls, threshold: float = 0.5) -> Thresholds:
        return cls((float(threshold),) * len(AU_COLUMNS), float(threshold))

    @classmethod
    def from_mapping(
        cls,
        per_au: Mapping[str, float],
        default: float = 0.5,
        *,
        source: str | None = None,
        sha256: str | None = None,
    ) -> Thresholds:
        """`default` for every AU, then the cut of each AU `per_au` names ("AU12": 0.41).
        ConfigError (param "thresholds") for an unknown AU or a value outside [0, 1]."""
        values = dict.fromkeys(AU_COLUMNS, float(default))
        for au, value in per_au.items():
            if au not in values:
                raise ConfigError(
                    f"unknown AU {au!r}; use the column names of predictions.csv "
                    "(AU1, AU12, AUL1, ...)",
                    param="thresholds",
                    value=source,
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= 1.0
                or math.isnan(value)
            ):
                raise ConfigError(
                    f"{au} is {value!r}; a threshold is a number between 0 and 1",
                    param="thresholds",
                    value=source,
                )
            values[au] = float(value)
        return cls(tuple(values.values()), float(default), source, sha256)

    @classmethod
    def load(cls, path: str | Path, default: float = 0.5) -> Thresholds:
        """The per-AU cuts of a thresholds.json; ConfigError naming the file when it cannot be
        read or names unknown AUs or values outside [0, 1]."""
        try:
            data = Path(path).read_bytes()
            document = json.loads(data.decode("utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"cannot be read ({exc.strerror or exc})", param="thresholds", value=path
            ) from None
        except ValueError as exc:
            raise ConfigError(
                f"is not valid JSON ({exc})", param="thresholds", value=path
            ) from None
        per_au = document.get("thresholds", document) if isinstance(document, dict) else None
        if not isinstance(per_au, dict):
            raise ConfigError(
                'expected {"thresholds": {"AU12": 0.41, ...}}',
                param="thresholds",
                value=path,
            )
        return cls.from_mapping(
            per_au, default, source=str(path), sha256=hashlib.sha256(data).hexdigest()
        )

    @property
    def vector(self) -> np.ndarray:
        """(41,) float64 cuts."""
        return np.asarray(self.values, dtype=np.float64)

    @property
    def is_uniform(self) -> bool:
        return len(set(self.values)) == 1

    def active(self, probs: np.ndarray) -> np.ndarray:
        """Booleans, True where an AU is at or above its cut: `probs` (..., 41)."""
        return np.asarray(probs) >= self.vector

    def as_dict(self) -> dict[str, float]:
        return dict(zip(AU_COLUMNS, self.values))

    def describe(self) -> str:
        """`0.5`, or `per AU (thresholds.json)` for a table's caption or a CSV cell."""
        if self.is_uniform:
            return f"{self.values[0]:g}"
        return f"per AU ({Path(self.source).name})" if self.source else "per AU"

    def manifest(self) -> dict[str, Any]:
        """What run.json records."""
        return {
            "default": self.default,
            "file": self.source,
            "sha256": self.sha256,
            "per_au": self.as_dict(),
        }


ThresholdLike = Union[float, Thresholds]


def as_thresholds(value: ThresholdLike) -> Thresholds:
    """A float (one cut for all AUs) or Thresholds, as Thresholds."""
    return value if isinstance(value, Thresholds) else Thresholds.uniform(value)
