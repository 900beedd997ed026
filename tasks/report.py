"""Stage counts: kept once, by the base classes, and returned as frozen :class:`StageReport`.

A :class:`Tally` is the mutable counter a stage fills while documents stream through it; at the
end it freezes into a :class:`StageReport`. Reports of one stage over many shards merge into one;
the manifest, the Prefect table artifact and the MLflow metrics are all built from merged reports,
so the three always show the same numbers.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.model.atomic import write_json


@dataclass(frozen=True)
class SourceCounts:
    """What one stage did to one source."""

    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    changed: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)

    @property
    def docs_dropped(self) -> int:
        return sum(self.dropped.values())

    def __add__(self, other: SourceCounts) -> SourceCounts:
        return SourceCounts(
            docs_in=self.docs_in + other.docs_in,
            docs_out=self.docs_out + other.docs_out,
            bytes_in=self.bytes_in + other.bytes_in,
            bytes_out=self.bytes_out + other.bytes_out,
            changed=self.changed + other.changed,
            dropped=dict(Counter(self.dropped) + Counter(other.dropped)),
        )


@dataclass(frozen=True)
class StageReport:
    """Counts of one stage (over one shard, or merged over many), per source."""

    stage: str
    sources: Mapping[str, SourceCounts]
    seconds: float = 0.0
    shards: int = 1
    quarantined: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> SourceCounts:
        out = SourceCounts()
        for counts in self.sources.values():
            out = out + counts
        return out

    @classmethod
    def merge(cls, reports: Iterable[StageReport]) -> StageReport:
        reports = list(reports)
        if not reports:
            raise ValueError("merge needs at least one report")
        stages = {r.stage for r in reports}
        if len(stages) != 1:
            raise ValueError(f"cannot merge reports of different stages: {sorted(stages)}")
        sources: dict[str, SourceCounts] = defaultdict(SourceCounts)
        extra: dict[str, Any] = {}
        for report in reports:
            for name, counts in report.sources.items():
                sources[name] = sources[name] + counts
            extra = _merge_extra(extra, report.extra)
        return cls(
            stage=reports[0].stage,
            sources=dict(sorted(sources.items())),
            seconds=sum(r.seconds for r in reports),
            shards=sum(r.shards for r in reports),
            quarantined=sum(r.quarantined for r in reports),
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "seconds": round(self.seconds, 3),
            "shards": self.shards,
            "quarantined": self.quarantined,
            "sources": {
                name: {
                    "docs_in": c.docs_in, "docs_out": c.docs_out,
                    "bytes_in": c.bytes_in, "bytes_out": c.bytes_out,
                    "changed": c.changed, "dropped": dict(sorted(c.dropped.items())),
                }
                for name, c in self.sources.items()
            },
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageReport:
        return cls(
            stage=data["stage"],
            seconds=data["seconds"],
            shards=data["shards"],
            quarantined=data["quarantined"],
            sources={name: SourceCounts(**c) for name, c in data["sources"].items()},
            extra=data.get("extra", {}),
        )

    def save(self, path: Path) -> None:
        """Atomically write the report (a report on disk means the shard's outputs are complete)."""
        write_json(path, self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> StageReport:
        return cls.from_dict(json.loads(path.read_text()))


def _merge_extra(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers add, mappings merge recursively, anything else keeps the latest value."""
    out = dict(a)
    for key, value in b.items():
        if key in out and isinstance(value, (int, float)) and isinstance(out[key], (int, float)):
            out[key] = out[key] + value
        elif key in out and isinstance(value, Mapping) and isinstance(out[key], Mapping):
            out[key] = _merge_extra(out[key], value)
        else:
            out[key] = value
    return out


class Tally:
    """Mutable per-source counters that one stage fills on one shard."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._in: Counter[str] = Counter()
        self._out: Counter[str] = Counter()
        self._bytes_in: Counter[str] = Counter()
        self._bytes_out: Counter[str] = Counter()
        self._changed: Counter[str] = Counter()
        self._dropped: dict[str, Counter[str]] = defaultdict(Counter)
        self.quarantined = 0
        self.seconds = 0.0
        self.busy: float | None = None  # time inside this stage's steps (``run_steps``)
        self.extra: dict[str, Any] = {}

    def seen(self, source: str, nbytes: int) -> None:
        self._in[source] += 1
        self._bytes_in[source] += nbytes

    def add_bytes_in(self, source: str, nbytes: int) -> None:
        self._bytes_in[source] += nbytes

    def kept(self, source: str, nbytes: int) -> None:
        self._out[source] += 1
        self._bytes_out[source] += nbytes

    def dropped(self, source: str, reason: str) -> None:
        self._dropped[source][reason] += 1

    def bulk(self, source: str, *, docs_in: int = 0, docs_out: int = 0, bytes_in: int = 0,
             bytes_out: int = 0, dropped: dict[str, int] | None = None) -> None:
        """Add counts measured elsewhere (e.g. by a distributed computation)."""
        self._in[source] += docs_in
        self._out[source] += docs_out
        self._bytes_in[source] += bytes_in
        self._bytes_out[source] += bytes_out
        for reason, n in (dropped or {}).items():
            self._dropped[source][reason] += n

    def changed(self, source: str) -> None:
        self._changed[source] += 1

    def add_extra(self, key: str, value: Any) -> None:
        self.extra = _merge_extra(self.extra, {key: value})

    def report(self) -> StageReport:
        names = sorted(set(self._in) | set(self._out) | set(self._dropped) | set(self._bytes_in))
        return StageReport(
            stage=self.stage,
            sources={
                n: SourceCounts(
                    docs_in=self._in[n], docs_out=self._out[n],
                    bytes_in=self._bytes_in[n], bytes_out=self._bytes_out[n],
                    changed=self._changed[n], dropped=dict(self._dropped[n]),
                )
                for n in names
            },
            seconds=self.seconds,
            quarantined=self.quarantined,
            extra=dict(self.extra),
        )
