from __future__ import annotations

import pytest
from lmforge.tasks.report import SourceCounts, StageReport, Tally


def _report(stage: str, n_in: int, n_out: int, reason: str = "r") -> StageReport:
    tally = Tally(stage)
    for _ in range(n_in):
        tally.seen("web", 10)
    for _ in range(n_out):
        tally.kept("web", 8)
    for _ in range(n_in - n_out):
        tally.dropped("web", reason)
    tally.add_extra("hist", {"1": n_in})
    return tally.report()


def test_merge_adds_counts_reasons_and_extras() -> None:
    merged = StageReport.merge([_report("q", 3, 1, "a"), _report("q", 2, 2), _report("q", 4, 1)])
    web = merged.sources["web"]
    assert (web.docs_in, web.docs_out, web.bytes_in, web.bytes_out) == (9, 4, 90, 32)
    assert dict(web.dropped) == {"a": 2, "r": 3}
    assert merged.shards == 3
    assert merged.extra["hist"] == {"1": 9}


def test_merge_refuses_mixed_stages() -> None:
    with pytest.raises(ValueError, match="different stages"):
        StageReport.merge([_report("a", 1, 1), _report("b", 1, 1)])


def test_round_trip_through_json(tmp_path) -> None:
    report = _report("q", 5, 2)
    report.save(tmp_path / "r.json")
    assert StageReport.load(tmp_path / "r.json") == report


def test_source_counts_add() -> None:
    total = SourceCounts(1, 1, dropped={"x": 1}) + SourceCounts(2, 0, dropped={"x": 2, "y": 1})
    assert total.docs_in == 3 and dict(total.dropped) == {"x": 3, "y": 1}
