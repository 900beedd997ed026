"""Quality-stage configuration per source kind, and the rule chain built from it.

Each source kind gets its own rule set: the defaults below, changed by the preset its reader
module registers (``SourceSpec.quality``): the web adds the C4 and FineWeb sets; books drop the
100,000-word maximum; Reddit lowers the word minimum and adds rules for short user text; code
swaps the prose rules for code rules.
A YAML config overrides single values, e.g. ``quality: {reddit: {gopher: {min_words: 3}}}``;
every other value keeps its preset, and ``null`` switches a rule family off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from tasks.base import DocFilter, DocRewriter
from tasks.filters import c4, code, fineweb, gopher, repetition, social
from tasks.filters.language import LanguageFilter
from tasks.filters.lines import UppercaseLinesRemover
from tasks.readers import SOURCES

_FROZEN = ConfigDict(extra="forbid", frozen=True)
Step = DocFilter | DocRewriter


class LanguageConfig(BaseModel):
    """Language identification (py3langid); language and score are stored on every document."""

    model_config = _FROZEN
    keep: list[str] | None = Field(["en"], description="ISO 639-1 codes to keep; null keeps all")
    min_score: float | None = Field(0.65, ge=0, le=1, description="lowest probability of the "
                                    "identified language (FineWeb: 0.65); null disables")


class C4Config(BaseModel):
    """C4 line cleaning and page rules (Raffel et al. 2020, §2.2)."""

    model_config = _FROZEN
    min_words_per_line: int | None = Field(3, description="lines with fewer words are removed")
    terminal_punctuation: bool = Field(True, description="remove lines not ending in . ? ! \" '")
    javascript: bool = Field(True, description="remove lines mentioning javascript")
    policy: bool = Field(True, description="remove cookie / terms-of-use lines")
    lorem_ipsum: bool = Field(True, description="drop pages with 'lorem ipsum'")
    curly_bracket: bool = Field(True, description="drop pages with a curly bracket")
    min_sentences: int | None = Field(5, description="drop pages with fewer sentences")
    bad_words: bool = Field(
        False, description="drop pages with a word of the bad-words list. Off by default: "
        "Dodge et al. 2021 found C4's list removed medical, LGBTQ+ and minority-dialect pages; "
        "the toxicity stage handles abuse")
    bad_words_list: str | None = Field(None, description="a word list file; null uses the "
                                       "list shipped in the better-profanity package")


class GopherQualityConfig(BaseModel):
    """Gopher quality thresholds (Rae et al. 2021, App. A.1.1); ``null`` disables a rule."""

    model_config = _FROZEN
    min_words: int | None = Field(50, description="fewest words a document may have")
    max_words: int | None = Field(100_000, description="most words a document may have")
    min_mean_word_length: float | None = Field(3, description="shortest mean word length")
    max_mean_word_length: float | None = Field(10, description="longest mean word length")
    max_symbol_word_ratio: float | None = Field(0.1, description="'#' (or ellipses) per word")
    max_bullet_lines_ratio: float | None = Field(0.9, description="share of lines with bullets")
    max_ellipsis_lines_ratio: float | None = Field(0.3, description="share of lines ending '...'")
    min_alpha_words_ratio: float | None = Field(0.8, description="share of words with a letter")
    min_stop_words: int | None = Field(2, description="distinct English stop words required")


class RepetitionConfig(BaseModel):
    """Gopher repetition thresholds (Rae et al. 2021, Table A1); ``null`` disables a rule."""

    model_config = _FROZEN
    max_dup_line_fraction: float | None = Field(0.3, description="share of repeated lines")
    max_dup_line_char_fraction: float | None = Field(0.2, description="chars in repeated lines")
    max_dup_paragraph_fraction: float | None = Field(0.3, description="share of repeated "
                                                     "paragraphs")
    max_dup_paragraph_char_fraction: float | None = Field(0.2, description="chars in repeated "
                                                          "paragraphs")
    top_ngrams: dict[int, float] = Field(dict(repetition.TOP_NGRAMS), description="n -> max "
                                         "char fraction of the most frequent n-gram")
    dup_ngrams: dict[int, float] = Field(dict(repetition.DUP_NGRAMS), description="n -> max "
                                         "char fraction of repeated n-grams")


class FineWebConfig(BaseModel):
    """FineWeb rules (Penedo et al. 2024, §3.3); ``null`` disables a rule."""

    model_config = _FROZEN
    min_line_punctuation_ratio: float | None = Field(0.12, description="lines ending in "
                                                     "terminal punctuation")
    max_short_line_ratio: float | None = Field(0.67, description="lines of <= 30 characters")
    max_duplicate_line_char_ratio: float | None = Field(0.01, description="chars in repeated "
                                                        "lines")
    max_newline_ratio: float | None = Field(0.3, description="newlines per word")


class SocialConfig(BaseModel):
    """Rules for short user text (Reddit)."""

    model_config = _FROZEN
    max_url_ratio: float | None = Field(0.5, description="share of words that are links")
    max_repeated_chars: int | None = Field(10, description="longest run of one character")
    min_unique_word_ratio: float | None = Field(0.3, description="distinct words per word")


class CodeQualityConfig(BaseModel):
    """StarCoder file filters (Li et al. 2023, §3) and data-file detection."""

    model_config = _FROZEN
    max_line_length: int | None = Field(1000, description="longest line allowed")
    max_mean_line_length: float | None = Field(100, description="largest mean line length")
    min_alphanumeric_fraction: float | None = Field(0.25, description="share of alnum chars")
    max_data_line_ratio: float | None = Field(0.5, description="share of data-only lines")


class QualityConfig(BaseModel):
    """The quality rules applied to one source kind; ``null`` switches a family off."""

    model_config = _FROZEN
    language: LanguageConfig | None = Field(default_factory=LanguageConfig,
                                            description="language identification")
    c4: C4Config | None = Field(None, description="C4 line cleaning and page rules")
    uppercase_lines_min_letters: int | None = Field(
        10, description="remove all-caps lines with at least this many letters (the survey's "
        "rule); null keeps them")
    gopher: GopherQualityConfig | None = Field(default_factory=GopherQualityConfig,
                                               description="Gopher quality rules")
    repetition: RepetitionConfig | None = Field(default_factory=RepetitionConfig,
                                                description="Gopher repetition rules")
    fineweb: FineWebConfig | None = Field(None, description="FineWeb rules")
    social: SocialConfig | None = Field(None, description="rules for short user text")
    code: CodeQualityConfig | None = Field(None, description="code rules")


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _QualityPlanBase(BaseModel):
    """Quality rules per source kind: each kind's preset (its ``SourceSpec.quality``) merged
    with the config's overrides."""

    model_config = _FROZEN

    @model_validator(mode="before")
    @classmethod
    def _apply_presets(cls, data: Any) -> Any:
        data = dict(data or {})
        for kind, spec in SOURCES.items():
            override = data.get(kind, {})
            if isinstance(override, BaseModel):
                continue
            if not isinstance(override, dict):
                raise ValueError(f"quality.{kind} must be a mapping of rule settings")
            data[kind] = _deep_merge(spec.quality, override)
        return data

    def for_source(self, kind: str) -> QualityConfig:
        return getattr(self, kind)


QualityPlan = create_model(  # one field per registered source kind
    "QualityPlan", __base__=_QualityPlanBase, __module__=__name__,
    **{kind: (QualityConfig, Field(description=f"quality rules of {kind} sources"))
       for kind in SOURCES})


def _c4(cfg: C4Config) -> list[Step]:
    steps: list[Step] = [c4.C4LineCleaner(min_words_per_line=cfg.min_words_per_line,
                                          terminal_punctuation=cfg.terminal_punctuation,
                                          javascript=cfg.javascript, policy=cfg.policy)]
    if cfg.lorem_ipsum:
        steps.append(c4.C4LoremIpsumFilter())
    if cfg.curly_bracket:
        steps.append(c4.C4CurlyBracketFilter())
    if cfg.min_sentences is not None:
        steps.append(c4.C4MinSentencesFilter(min_sentences=cfg.min_sentences))
    if cfg.bad_words:
        steps.append(c4.C4BadWordsFilter(word_list=cfg.bad_words_list))
    return steps


def _gopher(g: GopherQualityConfig) -> list[Step]:
    steps: list[Step] = [
        gopher.GopherWordCountFilter(min_words=g.min_words, max_words=g.max_words),
        gopher.GopherMeanWordLengthFilter(min_mean=g.min_mean_word_length,
                                          max_mean=g.max_mean_word_length)]
    optional = [(g.max_symbol_word_ratio, gopher.GopherSymbolRatioFilter, "max_ratio"),
                (g.max_bullet_lines_ratio, gopher.GopherBulletLinesFilter, "max_ratio"),
                (g.max_ellipsis_lines_ratio, gopher.GopherEllipsisLinesFilter, "max_ratio"),
                (g.min_alpha_words_ratio, gopher.GopherAlphaWordsFilter, "min_ratio"),
                (g.min_stop_words, gopher.GopherStopWordsFilter, "min_stop_words")]
    steps += [cls(**{arg: value}) for value, cls, arg in optional if value is not None]
    return steps


def _repetition(r: RepetitionConfig) -> list[Step]:
    return [
        repetition.DuplicateParagraphsFilter(
            max_fraction=r.max_dup_paragraph_fraction,
            max_char_fraction=r.max_dup_paragraph_char_fraction),
        repetition.DuplicateLinesFilter(max_fraction=r.max_dup_line_fraction,
                                        max_char_fraction=r.max_dup_line_char_fraction),
        *(repetition.TopNGramFilter(n=n, max_fraction=f) for n, f in sorted(r.top_ngrams.items())),
        *(repetition.DuplicateNGramFilter(n=n, max_fraction=f)
          for n, f in sorted(r.dup_ngrams.items())),
    ]


def _fineweb(f: FineWebConfig) -> list[Step]:
    optional = [(f.min_line_punctuation_ratio, fineweb.FineWebLinePunctuationFilter, "min_ratio"),
                (f.max_short_line_ratio, fineweb.FineWebShortLinesFilter, "max_ratio"),
                (f.max_duplicate_line_char_ratio, fineweb.FineWebDuplicateLineCharsFilter,
                 "max_ratio"),
                (f.max_newline_ratio, fineweb.FineWebListRatioFilter, "max_ratio")]
    return [cls(**{arg: value}) for value, cls, arg in optional if value is not None]


def _social(s: SocialConfig) -> list[Step]:
    optional = [(s.max_url_ratio, social.UrlRatioFilter, "max_ratio"),
                (s.max_repeated_chars, social.RepeatedCharactersFilter, "max_run"),
                (s.min_unique_word_ratio, social.UniqueWordsFilter, "min_ratio")]
    return [cls(**{arg: value}) for value, cls, arg in optional if value is not None]


def _code(c: CodeQualityConfig) -> list[Step]:
    steps: list[Step] = [code.CodeLineLengthFilter(max_line_length=c.max_line_length,
                                                   max_mean_line_length=c.max_mean_line_length)]
    if c.min_alphanumeric_fraction is not None:
        steps.append(code.CodeAlphanumFilter(min_fraction=c.min_alphanumeric_fraction))
    if c.max_data_line_ratio is not None:
        steps.append(code.CodeDataFileFilter(max_ratio=c.max_data_line_ratio))
    return steps


def build_quality_steps(cfg: QualityConfig) -> list[Step]:
    """The rule chain for one source kind, in FineWeb's order (Penedo et al. 2024: language,
    Gopher repetition, Gopher quality, C4, FineWeb), after the survey's all-caps line rule;
    C4 cleans lines, so the rules after it see the cleaned text."""
    steps: list[Step] = []
    if cfg.uppercase_lines_min_letters is not None:
        steps.append(UppercaseLinesRemover(min_letters=cfg.uppercase_lines_min_letters))
    if cfg.language is not None:
        steps.append(LanguageFilter(keep=cfg.language.keep, min_score=cfg.language.min_score))
    if cfg.repetition is not None:
        steps += _repetition(cfg.repetition)
    if cfg.gopher is not None:
        steps += _gopher(cfg.gopher)
    if cfg.c4 is not None:
        steps += _c4(cfg.c4)
    if cfg.fineweb is not None:
        steps += _fineweb(cfg.fineweb)
    if cfg.social is not None:
        steps += _social(cfg.social)
    if cfg.code is not None:
        steps += _code(cfg.code)
    return steps
