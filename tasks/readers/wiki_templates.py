"""Templates that carry prose, rendered as Wikipedia shows them (the value, not the markup):
``{{convert|10|km|mi}}`` → "10 km", ``{{lang|fr|texte}}`` → "texte", ``{{birth date|1809|2|12}}``
→ "February 12, 1809", ``{{frac|1|2}}`` → "1/2". Every template not listed here (infoboxes,
citations, navigation boxes, pronunciations) is removed by the converter.

A renderer gets the template's positional parameters and its named ones (lower-cased keys),
both already rendered to text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")

Renderer = Callable[[list[str], dict[str, str]], str]


def first_param(pos: list[str], named: dict[str, str]) -> str:
    return pos[0] if pos else named.get("1", "")


def _last(pos: list[str], named: dict[str, str]) -> str:
    return pos[-1] if pos else ""


def _second(pos: list[str], named: dict[str, str]) -> str:
    return pos[1] if len(pos) > 1 else first_param(pos, named)


def _const(text: str) -> Renderer:
    return lambda pos, named: text


def _joined(sep: str) -> Renderer:
    return lambda pos, named: sep.join(p for p in pos if p)


def _prefixed(prefix: str) -> Renderer:
    return lambda pos, named: f"{prefix}{pos[0]}" if pos else ""


_UNITS = {"sqmi": "sq mi", "sqkm": "km²", "km2": "km²", "sqft": "sq ft", "m2": "m²",
          "sqm": "m²", "km/h": "km/h", "F": "°F", "C": "°C", "K": "K", "ft2": "sq ft",
          "cuft": "cu ft", "m3": "m³", "acre": "acres", "ha": "ha", "mi2": "sq mi",
          "nmi": "nmi", "kn": "kn", "mph": "mph", "km": "km", "mi": "mi", "m": "m", "ft": "ft"}
_RANGE_WORDS = {"-": "–", "–": "–", "to": "to", "and": "and", "or": "or", "x": "×", "by": "by",
                "+": "+", "to(-)": "to", "&": "and"}


def _convert(pos: list[str], named: dict[str, str]) -> str:
    """``{{convert|10|km|mi}}`` → "10 km"; ``{{convert|3|to|5|m}}`` → "3 to 5 m" (the value as
    written, not the computed conversion)."""
    if not pos:
        return ""
    values, rest = [pos[0]], pos[1:]
    while len(rest) >= 2 and rest[0] in _RANGE_WORDS:
        values += [_RANGE_WORDS[rest[0]], rest[1]]
        rest = rest[2:]
    unit = _UNITS.get(rest[0], rest[0]) if rest else ""
    joiner = "" if values[1:2] == ["–"] else " "
    amount = joiner.join(values) if joiner == "" else " ".join(values)
    return f"{amount} {unit}".strip()


def _date_text(year: str, month: str = "", day: str = "", dmy: bool = False) -> str:
    if not year.isdigit():
        return " ".join(p for p in (day, month, year) if p)
    if month.isdigit() and 1 <= int(month) <= 12:
        name = _MONTHS[int(month) - 1]
        if day.isdigit():
            return f"{int(day)} {name} {year}" if dmy else f"{name} {int(day)}, {year}"
        return f"{name} {year}"
    return year


def _numbers(pos: list[str]) -> list[str]:
    return [p for p in pos if p.strip()][:6]


def _date(pos: list[str], named: dict[str, str]) -> str:
    dmy = named.get("df", "").lower() in ("y", "yes", "1", "true")
    return _date_text(*_numbers(pos)[:3], dmy=dmy) if pos else ""


def _death_date_and_age(pos: list[str], named: dict[str, str]) -> str:
    parts = _numbers(pos)
    text = _date(pos, named)
    if len(parts) >= 6 and all(p.isdigit() for p in parts):
        try:
            died, born = date(*map(int, parts[:3])), date(*map(int, parts[3:6]))
        except ValueError:
            return text
        age = died.year - born.year - ((died.month, died.day) < (born.month, born.day))
        return f"{text} (aged {age})"
    return text


def _frac(pos: list[str], named: dict[str, str]) -> str:
    if len(pos) == 1:
        return f"1/{pos[0]}"
    if len(pos) == 2:
        return f"{pos[0]}/{pos[1]}"
    return f"{pos[0]} {pos[1]}/{pos[2]}" if len(pos) >= 3 else ""


def _val(pos: list[str], named: dict[str, str]) -> str:
    text = pos[0] if pos else ""
    if len(pos) > 1 and pos[1]:
        text += f" ± {pos[1]}"
    unit = named.get("u") or named.get("ul") or ""
    return f"{text} {unit}".strip()


def _as_of(pos: list[str], named: dict[str, str]) -> str:
    if "alt" in named:
        return named["alt"]
    lead = "as of" if named.get("lc", "").lower() in ("y", "yes") else "As of"
    return f"{lead} {_date_text(*_numbers(pos)[:3])}" if pos else ""


def _quote(pos: list[str], named: dict[str, str]) -> str:
    text = named.get("text") or named.get("quote") or (pos[0] if pos else "")
    return f"\n{text}\n" if text else ""


def _nihongo(pos: list[str], named: dict[str, str]) -> str:
    native = [p for p in pos[1:3] if p]
    if pos and pos[0] and native:
        return f"{pos[0]} ({' '.join(native)})"
    return first_param(pos, named)


def _lines(pos: list[str], named: dict[str, str]) -> str:
    return "\n" + "\n".join(f"- {p}" for p in pos if p) + "\n"


TEMPLATES: dict[str, Renderer] = {
    **dict.fromkeys(("nowrap", "nobr", "small", "smaller", "big", "larger", "sc", "smallcaps",
                     "em", "strong", "mvar", "var", "math", "abbr", "vanchor", "sic", "ill",
                     "interlanguage link", "nts", "flag", "flagcountry", "flagu", "tooltip",
                     "script", "serif", "sans-serif", "wikt", "chem2", "vr", "longitem", "text",
                     "noitalic", "uc", "lc", "sm"), first_param),
    **dict.fromkeys(("lang", "langx", "lang2"), _last),
    **dict.fromkeys(("transl", "transliteration", "translit"), _last),
    **dict.fromkeys(("native name", "lsj", "iast", "linktext"), _second),
    "keypress": _joined("+"),
    **dict.fromkeys(("convert", "cvt"), _convert),
    **dict.fromkeys(("birth date", "death date", "start date", "end date", "dts", "dob",
                     "birth date and age", "start date and age", "end date and age",
                     "film date", "release date", "date", "birth year and age"), _date),
    "death date and age": _death_date_and_age,
    **dict.fromkeys(("frac", "sfrac", "fraction"), _frac),
    "val": _val,
    "as of": _as_of,
    **dict.fromkeys(("quote", "blockquote", "quotation", "cquote", "quote box", "poemquote",
                     "rquote"), _quote),
    "nihongo": _nihongo,
    **dict.fromkeys(("hlist", "flatlist"), _joined(" · ")),
    **dict.fromkeys(("plainlist", "unbulleted list", "ubl", "bulleted list", "ordered list"),
                    _lines),
    "chem": _joined(""),
    "angbr": lambda pos, named: f"⟨{pos[0]}⟩" if pos else "",
    **dict.fromkeys(("c.", "circa", "ca."), _prefixed("c. ")),
    **dict.fromkeys(("fl.", "floruit"), _prefixed("fl. ")),
    **dict.fromkeys(("us$", "usd"), _prefixed("US$")),
    "£": _prefixed("£"), "€": _prefixed("€"), "¥": _prefixed("¥"),
    **dict.fromkeys(("·", "dot", "middot", "dot-sep"), _const(" · ")),
    **dict.fromkeys(("!", "pipe"), _const("|")),
    "=": _const("="),
    **dict.fromkeys(("nbsp", "spaces", "space", "sp"), _const(" ")),
    "'": _const("'"), "'s": _const("'s"), "' \"": _const("'\""),
    **dict.fromkeys(("ndash", "snd", "en dash"), _const("–")),
    **dict.fromkeys(("spaced ndash", "spnd", "spaced en dash"), _const(" – ")),
    **dict.fromkeys(("mdash", "em dash"), _const("—")),
    **dict.fromkeys(("spaced mdash", "spd"), _const(" — ")),
}
