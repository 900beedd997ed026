"""Quality-stage configuration per source kind, and the rule chain built from it.

A rule family's config (``GopherQualityConfig``, ``C4Config``, ...) is not written here: it is
assembled from the ``Params`` its rule classes declare (field, published default, citation), so
every threshold lives once, on its rule. Each source kind gets the defaults changed by the
preset its reader module registers (``SourceSpec.quality``): the web adds the C4 and FineWeb
sets; books drop the 100,000-word maximum; Reddit lowers the word minimum and adds rules for
short user text; code swaps the prose rules for code rules. A YAML config overrides single
values, e.g. ``quality: {reddit: {gopher: {min_words: 3}}}``; every other value keeps its
preset, and ``null`` switches a rule family off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmforge.tasks.base import DocFilter, DocRewriter
from lmforge.tasks.filters import c4, code, fineweb, gopher, language, lines, repetition, social
from lmforge.tasks.readers import SOURCES
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

_FROZEN = ConfigDict(extra="forbid", frozen=True)
Step = DocFilter | DocRewriter
RuleClass = type[DocFilter] | type[DocRewriter]


def family_config(name: str, doc: str, rules: Sequence[RuleClass]) -> type[BaseModel]:
    """One config model with the fields of every rule's ``Params``; a field several rules
    share (``word_tokenizer``) must be declared alike by each."""
    fields: dict[str, tuple[Any, Any]] = {}
    for rule in rules:
        for field, info in rule.Params.model_fields.items():
            if field in fields and fields[field][1].default != info.default:
                raise TypeError(f"{name}: rules disagree on the default of {field!r}")
            fields[field] = (info.annotation, info)
    return create_model(name, __config__=_FROZEN, __doc__=doc, __module__=__name__, **fields)


FAMILIES: dict[str, tuple[list[RuleClass], str]] = {
    "language": (language.RULES, "Language identification (py3langid, masked code, "
                 "paragraph vote)"),
    "uppercase_lines": (lines.RULES, "The survey's all-caps line removal (headings kept)"),
    "repetition": (repetition.RULES, "Gopher repetition rules (Rae et al. 2021, Table A1)"),
    "gopher": (gopher.RULES, "Gopher quality rules (Rae et al. 2021, App. A.1.1)"),
    "c4": (c4.RULES, "C4 line cleaning and page rules (Raffel et al. 2020, §2.2)"),
    "fineweb": (fineweb.RULES, "FineWeb rules (Penedo et al. 2024, §3.3)"),
    "social": (social.RULES, "Rules for short user text (Reddit)"),
    "code": (code.RULES, "StarCoder file filters (Li et al. 2023, §3) and data files"),
}
LanguageConfig = family_config("LanguageConfig", *reversed(FAMILIES["language"]))
UppercaseLinesConfig = family_config("UppercaseLinesConfig", *reversed(FAMILIES[
    "uppercase_lines"]))
RepetitionConfig = family_config("RepetitionConfig", *reversed(FAMILIES["repetition"]))
GopherQualityConfig = family_config("GopherQualityConfig", *reversed(FAMILIES["gopher"]))
C4Config = family_config("C4Config", *reversed(FAMILIES["c4"]))
FineWebConfig = family_config("FineWebConfig", *reversed(FAMILIES["fineweb"]))
SocialConfig = family_config("SocialConfig", *reversed(FAMILIES["social"]))
CodeQualityConfig = family_config("CodeQualityConfig", *reversed(FAMILIES["code"]))


class QualityConfig(BaseModel):
    """The quality rules applied to one source kind; ``null`` switches a family off. By
    default the prose families run (language, all-caps lines, Gopher repetition and quality);
    a source's preset adds or removes families."""

    model_config = _FROZEN
    language: LanguageConfig | None = Field(default_factory=LanguageConfig,  # type: ignore[valid-type]
                                            description=FAMILIES["language"][1])
    uppercase_lines: UppercaseLinesConfig | None = Field(  # type: ignore[valid-type]
        default_factory=UppercaseLinesConfig, description=FAMILIES["uppercase_lines"][1])
    repetition: RepetitionConfig | None = Field(  # type: ignore[valid-type]
        default_factory=RepetitionConfig, description=FAMILIES["repetition"][1])
    gopher: GopherQualityConfig | None = Field(  # type: ignore[valid-type]
        default_factory=GopherQualityConfig, description=FAMILIES["gopher"][1])
    c4: C4Config | None = Field(None, description=FAMILIES["c4"][1])  # type: ignore[valid-type]
    fineweb: FineWebConfig | None = Field(None, description=FAMILIES["fineweb"][1])  # type: ignore[valid-type]
    social: SocialConfig | None = Field(None, description=FAMILIES["social"][1])  # type: ignore[valid-type]
    code: CodeQualityConfig | None = Field(None, description=FAMILIES["code"][1])  # type: ignore[valid-type]


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

# The settings under which the four web families decide as datatrove's filters do (its
# word tokenizer and counting, no markup or code-line exclusions, physical lines for C4, and
# the 0.01 duplicate-line share of its FineWeb filter where the paper's text says 0.1). Merge
# them into a source's quality config for parity; ``benchmarks/quality.py`` measures it.
DATATROVE_PARITY: dict[str, dict[str, Any]] = {
    "repetition": {"word_tokenizer": "datatrove", "ignore_markup_lines": False,
                   "ignore_code_lines": False},
    "gopher": {"word_tokenizer": "datatrove"},
    "c4": {"logical_lines": False, "terminal_punctuation": True, "curly_bracket": True},
    "fineweb": {"word_tokenizer": "datatrove", "ignore_markup_lines": False,
                "ignore_code_lines": False, "max_duplicate_line_char_ratio": 0.01},
}


# FineWeb's order (Penedo et al. 2024): language, Gopher repetition, Gopher quality, C4,
# FineWeb; after the survey's all-caps line rule. C4 cleans lines, so the rules after it see
# the cleaned text.
ORDER = ("uppercase_lines", "language", "repetition", "gopher", "c4", "fineweb", "social",
         "code")


def build_quality_steps(cfg: QualityConfig) -> list[Step]:
    """The rule chain for one source kind: every active rule of every configured family,
    each built from its own slice of the family's config."""
    steps: list[Step] = []
    for family in ORDER:
        family_cfg = getattr(cfg, family)
        if family_cfg is None:
            continue
        for rule in FAMILIES[family][0]:
            params = rule.Params(**{f: getattr(family_cfg, f) for f in rule.Params.model_fields})
            if params.active():
                steps.append(rule(params))
    return steps
