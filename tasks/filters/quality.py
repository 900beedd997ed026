"""Quality-stage configuration per source kind, and the rule chain built from it.

Each source kind gets its own rule set: prose rules for web pages, Wikipedia and Reddit (with
Reddit's word minimum lowered for short comments), prose rules without the word maximum for
books (a novel has far more than 100,000 words), and code rules for code. A YAML config
overrides single values, e.g. ``quality: {reddit: {gopher: {min_words: 3}}}``; every other
value keeps its preset.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.base import DocFilter, DocRewriter
from tasks.filters.code import CodeAlphanumFilter, CodeLineLengthFilter
from tasks.filters.gopher import (
    GopherAlphaWordsFilter,
    GopherBulletLinesFilter,
    GopherEllipsisLinesFilter,
    GopherMeanWordLengthFilter,
    GopherStopWordsFilter,
    GopherSymbolRatioFilter,
    GopherWordCountFilter,
)
from tasks.filters.lines import UppercaseLinesRemover
from tasks.schema import SOURCE_KINDS

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class GopherQualityConfig(BaseModel):
    """Gopher quality thresholds (Rae et al. 2021, App. A.1.1); ``null`` disables a rule."""

    model_config = _FROZEN
    min_words: int | None = Field(50, description="fewest words a document may have")
    max_words: int | None = Field(100_000, description="most words a document may have")
    min_mean_word_length: float | None = Field(3, description="shortest mean word length")
    max_mean_word_length: float | None = Field(10, description="longest mean word length")
    max_symbol_word_ratio: float | None = Field(0.1, description="'#' and ellipses per word")
    max_bullet_lines_ratio: float | None = Field(0.9, description="share of lines with bullets")
    max_ellipsis_lines_ratio: float | None = Field(0.3, description="share of lines ending '...'")
    min_alpha_words_ratio: float | None = Field(0.8, description="share of words with a letter")
    min_stop_words: int | None = Field(2, description="distinct English stop words required")


class CodeQualityConfig(BaseModel):
    """StarCoder file filters (Li et al. 2023, §3); ``null`` disables a rule."""

    model_config = _FROZEN
    max_line_length: int | None = Field(1000, description="longest line allowed")
    max_mean_line_length: float | None = Field(100, description="largest mean line length")
    min_alphanumeric_fraction: float | None = Field(0.25, description="share of alnum chars")


class QualityConfig(BaseModel):
    """The quality rules applied to one source kind."""

    model_config = _FROZEN
    uppercase_lines_min_letters: int | None = Field(
        10, description="remove all-caps lines with at least this many letters (the survey's "
        "rule); null keeps them")
    gopher: GopherQualityConfig | None = Field(
        default_factory=GopherQualityConfig, description="Gopher prose rules; null disables")
    code: CodeQualityConfig | None = Field(None, description="code rules; null disables")


def _presets() -> dict[str, dict[str, Any]]:
    prose: dict[str, Any] = {}
    return {
        "commoncrawl": prose,
        "wikipedia": prose,
        "books": {"gopher": {"max_words": None}},
        # A Reddit comment is short: Gopher's 50-word minimum would drop nearly all of them.
        "reddit": {"gopher": {"min_words": 5, "min_stop_words": 1}},
        "code": {"gopher": None, "uppercase_lines_min_letters": None, "code": {}},
    }


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class QualityPlan(BaseModel):
    """Quality rules per source kind (presets merged with the config's overrides)."""

    model_config = _FROZEN
    books: QualityConfig
    commoncrawl: QualityConfig
    reddit: QualityConfig
    wikipedia: QualityConfig
    code: QualityConfig

    @model_validator(mode="before")
    @classmethod
    def _apply_presets(cls, data: Any) -> Any:
        data = dict(data or {})
        presets = _presets()
        for kind in SOURCE_KINDS:
            override = data.get(kind, {})
            if isinstance(override, BaseModel):
                continue
            if not isinstance(override, dict):
                raise ValueError(f"quality.{kind} must be a mapping of rule settings")
            data[kind] = _deep_merge(presets[kind], override)
        return data

    def for_source(self, kind: str) -> QualityConfig:
        return getattr(self, kind)


def build_quality_steps(cfg: QualityConfig) -> list[DocFilter | DocRewriter]:
    """The rule chain for one source kind: line cleaning first, then document rules, cheapest
    first so expensive rules see fewer documents."""
    steps: list[DocFilter | DocRewriter] = []
    if cfg.uppercase_lines_min_letters is not None:
        steps.append(UppercaseLinesRemover(min_letters=cfg.uppercase_lines_min_letters))
    if (g := cfg.gopher) is not None:
        steps.append(GopherWordCountFilter(min_words=g.min_words, max_words=g.max_words))
        steps.append(GopherMeanWordLengthFilter(min_mean=g.min_mean_word_length,
                                                max_mean=g.max_mean_word_length))
        if g.max_symbol_word_ratio is not None:
            steps.append(GopherSymbolRatioFilter(max_ratio=g.max_symbol_word_ratio))
        if g.max_bullet_lines_ratio is not None:
            steps.append(GopherBulletLinesFilter(max_ratio=g.max_bullet_lines_ratio))
        if g.max_ellipsis_lines_ratio is not None:
            steps.append(GopherEllipsisLinesFilter(max_ratio=g.max_ellipsis_lines_ratio))
        if g.min_alpha_words_ratio is not None:
            steps.append(GopherAlphaWordsFilter(min_ratio=g.min_alpha_words_ratio))
        if g.min_stop_words is not None:
            steps.append(GopherStopWordsFilter(min_stop_words=g.min_stop_words))
    if (c := cfg.code) is not None:
        steps.append(CodeLineLengthFilter(max_line_length=c.max_line_length,
                                          max_mean_line_length=c.max_mean_line_length))
        if c.min_alphanumeric_fraction is not None:
            steps.append(CodeAlphanumFilter(min_fraction=c.min_alphanumeric_fraction))
    return steps
