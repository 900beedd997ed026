"""One record per source kind: everything else is derived from the registry."""

from __future__ import annotations

from typing import Literal, get_args

import pytest
from lmforge.tasks.filters.quality import QualityPlan
from lmforge.tasks.readers import SOURCE_KINDS, SOURCES, Source, SourceKind
from lmforge.tasks.readers.base import WHOLE, SourceBase, SourceSpec


def test_union_kinds_and_presets_come_from_the_records() -> None:
    assert set(SOURCE_KINDS) == {"books", "code", "commoncrawl", "reddit", "wikipedia"}
    assert set(get_args(SourceKind)) == set(SOURCES)
    members = get_args(get_args(Source)[0])
    assert {m.model_fields["kind"].annotation for m in members} == {
        Literal[k] for k in SOURCES}  # type: ignore[valid-type]
    assert set(QualityPlan.model_fields) == set(SOURCES)
    plan = QualityPlan.model_validate({})
    for kind, spec in SOURCES.items():  # each kind's preset applied
        for family, value in spec.quality.items():
            if value is None:
                assert getattr(plan.for_source(kind), family) is None


def test_a_record_must_match_its_config_model() -> None:
    class ToySource(SourceBase):
        kind: Literal["toy"]

    def read(part, source, ctx):  # pragma: no cover - never called
        return iter(())

    assert SourceSpec("toy", ToySource, lambda url, size, s: WHOLE, read).kind == "toy"
    with pytest.raises(ValueError, match="must declare `kind: Literal\\['other'\\]`"):
        SourceSpec("other", ToySource, lambda url, size, s: WHOLE, read)
