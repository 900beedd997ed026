from __future__ import annotations

import pytest
from lmforge.tasks.filters.gopher import GopherStopWordsFilter, GopherWordCountFilter
from lmforge.tasks.filters.quality import QualityPlan, build_quality_steps
from pydantic import ValidationError


def test_presets_per_source() -> None:
    plan = QualityPlan.model_validate({})
    assert plan.books.gopher.max_words is None  # novels are long
    assert plan.reddit.gopher.min_words == 5  # comments are short
    assert plan.code.gopher is None and plan.code.code is not None
    assert plan.commoncrawl.gopher.max_symbol_word_ratio == 0.1


def test_override_merges_with_preset() -> None:
    plan = QualityPlan.model_validate({"reddit": {"gopher": {"min_words": 3}}})
    assert plan.reddit.gopher.min_words == 3
    assert plan.reddit.gopher.min_stop_words == 1  # preset kept
    assert plan.wikipedia.gopher.min_words == 50


def test_null_disables_rules() -> None:
    plan = QualityPlan.model_validate({"wikipedia": {"gopher": {"min_stop_words": None}}})
    kinds = {type(s) for s in build_quality_steps(plan.wikipedia)}
    assert GopherStopWordsFilter not in kinds and GopherWordCountFilter in kinds


def test_code_chain_has_code_rules_only() -> None:
    kinds = {type(s) for s in build_quality_steps(QualityPlan.model_validate({}).code)}
    assert {k.__name__ for k in kinds} == {"CodeLineLengthFilter", "CodeAlphanumFilter",
                                           "CodeDataFileFilter"}


def test_unknown_rule_is_rejected() -> None:
    with pytest.raises(ValidationError, match="min_wrods"):
        QualityPlan.model_validate({"books": {"gopher": {"min_wrods": 3}}})
