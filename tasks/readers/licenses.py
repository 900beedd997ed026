"""The licence of a source file, as The Stack decided it (Kocetkov et al. 2022, §3.1): from
licence *texts* matched whole against the SPDX licence list, never from a phrase found
anywhere (a licence's history section that mentions the GPL does not make it the GPL).

In order:

1. an ``SPDX-License-Identifier:`` line near the top of the file (an SPDX expression:
   ``MIT``, ``(Apache-2.0 OR MIT)``, ``GPL-2.0-or-later WITH Linux-syscall-note``);
2. a licence notice in the file's header (the first lines), matched against the SPDX
   templates by ``licenseclassifier`` (the Apache header notice, a full MIT text, ...);
3. the licence files (``LICENSE*``, ``COPYING*``, ...) of the nearest folder above the file
   that has any: a vendored package with its own licence file gets that licence, not its
   host project's; a licence file that matches no SPDX licence makes the files under it
   ``unknown`` rather than inheriting a licence from further up.

Every decision keeps its evidence (which file, which ids, which character ranges).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from licenseclassifier import identify_license

LICENSE_FILE = re.compile(r"^(?:LICEN[CS]E|COPYING|COPYRIGHT|UNLICENSE)(?:[-._ ][\w.-]*)?$",
                          re.IGNORECASE)
_SPDX_LINE = re.compile(r"SPDX-License-Identifier:\s*(.+?)\s*(?:\*/|-->|#\}|\"\"\"|$)",
                        re.MULTILINE)
_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+:-]+")
HEADER_LINES = 60
HEADER_CHARS = 8192
MIN_NOTICE_CHARS = 60  # a matched region shorter than this is a mention, not a licence text


@dataclass(frozen=True)
class License:
    """What a file is licensed under, and why we think so."""

    expression: str  # an SPDX expression: "MIT", "Python-2.0.1 AND 0BSD", "unknown"
    evidence: str

    @property
    def ids(self) -> list[str]:
        return [t for t in _TOKEN.findall(self.expression)
                if t not in ("(", ")", "AND", "OR", "WITH")]

    @property
    def primary(self) -> str:
        """The first (largest) licence of the expression, for display and counts."""
        ids = self.ids
        return ids[0] if ids else "unknown"

    def allowed(self, allow: Iterable[str]) -> bool:
        """Whether the expression is satisfied by ``allow``: every part of an AND, one branch
        of an OR; ``WITH`` exceptions and ``+`` follow their licence."""
        tokens = _TOKEN.findall(self.expression)
        if not tokens or self.expression == UNKNOWN.expression:
            return False
        try:
            value, rest = _or(tokens, {a.lower() for a in allow})
        except (IndexError, ValueError):
            return False
        return value and not rest


UNKNOWN = License("unknown", "no SPDX identifier, licence notice or licence file")


def _or(tokens: list[str], allow: set[str]) -> tuple[bool, list[str]]:
    return _chain(tokens, allow, "OR", _and, any)


def _and(tokens: list[str], allow: set[str]) -> tuple[bool, list[str]]:
    return _chain(tokens, allow, "AND", _atom, all)


def _chain(tokens: list[str], allow: set[str], op: str,
           operand: Callable[[list[str], set[str]], tuple[bool, list[str]]],
           combine: Callable[[list[bool]], bool]) -> tuple[bool, list[str]]:
    """``operand (op operand)*``, its values combined (``any`` for OR, ``all`` for AND)."""
    value, tokens = operand(tokens, allow)
    values = [value]
    while tokens and tokens[0].upper() == op:
        value, tokens = operand(tokens[1:], allow)
        values.append(value)
    return combine(values), tokens


def _atom(tokens: list[str], allow: set[str]) -> tuple[bool, list[str]]:
    if tokens[0] == "(":
        value, rest = _or(tokens[1:], allow)
        if not rest or rest[0] != ")":
            raise ValueError("unbalanced parentheses")
        return value, rest[1:]
    licence, rest = tokens[0], tokens[1:]
    if rest and rest[0].upper() == "WITH":
        rest = rest[2:]
    base = licence.removesuffix("+").lower()
    return base in allow or f"{base}-only" in allow or base.removesuffix("-only") in allow, rest


def spdx_identifier(text: str) -> License | None:
    """The ``SPDX-License-Identifier`` of a file, from its first lines."""
    found = _SPDX_LINE.search(text[:HEADER_CHARS])
    if not found or not found.group(1).strip():
        return None
    return License(found.group(1).strip(), f"SPDX-License-Identifier at char {found.start()}")


def _expression(matches: list[tuple[str, int, int]]) -> str:
    """One AND-expression of the licences matched in one text, largest region first; a
    variant of a licence already listed ("GPL-3.0-or-later" after "GPL-3.0": the "how to
    apply" notice after the GPL's text) adds nothing."""
    ids: list[str] = []
    for spdx, _, _ in sorted(matches, key=lambda m: m[1] - m[2]):
        if not any(spdx.startswith(have) or have.startswith(spdx) for have in ids):
            ids.append(spdx)
    return " AND ".join(ids)


def _matches(text: str, threshold: float | None) -> list[tuple[str, int, int]]:
    found = identify_license(text) if threshold is None else identify_license(
        text, coverage_threshold=threshold)
    return [(m.id, m.start, m.end) for m in found if m.end - m.start >= MIN_NOTICE_CHARS]


def _evidence(name: str, matches: list[tuple[str, int, int]]) -> str:
    return f"{name}: " + ", ".join(f"{spdx} (chars {a}-{b})" for spdx, a, b in matches)


def license_text(name: str, text: str) -> License:
    """The licence(s) of a licence file: the whole text matched against the SPDX list (at
    licenseclassifier's coverage threshold); when the file is mostly other prose (a notice
    that names the MPL inside a paragraph about the package), the licence texts found in it."""
    matches = _matches(text, None) or _matches(text, 0.0)
    if not matches:
        return License("unknown", f"{name}: matches no SPDX licence text")
    return License(_expression(matches), _evidence(name, matches))


def header_license(text: str) -> License | None:
    """A licence notice in the file's first lines, matched as a whole licence (or notice)
    text; a mention ("see LICENSE", "GPL-compatible") is not one."""
    lines = text[:HEADER_CHARS].split("\n", HEADER_LINES)[:HEADER_LINES]
    header = "\n".join(lines)
    matches = _matches(header, 0.0)
    if not matches:
        return None
    return License(_expression(matches), _evidence("file header", matches))


class LicenseIndex:
    """The licence files of one container, by folder; :meth:`lookup` finds the nearest."""

    def __init__(self, files: Mapping[str, str]) -> None:
        """``files``: path (relative, "/"-separated) -> text of every licence file."""
        by_folder: dict[str, list[License]] = {}
        for path in sorted(files):
            found = license_text(path, files[path])
            if found.expression == "unknown" and posixpath.basename(path).lower().startswith(
                    "copyright"):
                continue  # a list of authors or a page about copyright, not a licence
            by_folder.setdefault(posixpath.dirname(path), []).append(found)
        self.folders = {folder: _combine(found) for folder, found in by_folder.items()}

    def lookup(self, path: str) -> License | None:
        folder = posixpath.dirname(path)
        while True:
            if folder in self.folders:
                return self.folders[folder]
            if not folder:
                return None
            folder = posixpath.dirname(folder)

    def root(self) -> License | None:
        """The licence of the container itself: of its top folder, or of the single folder
        an archive usually wraps everything in ("project-1.0/")."""
        if "" in self.folders:
            return self.folders[""]
        tops = [f for f in self.folders if "/" not in f]
        return self.folders[tops[0]] if len(tops) == 1 else None


def _combine(found: list[License]) -> License:
    known = [f for f in found if f.expression != "unknown"]
    if not known:
        return found[0]
    ids: list[str] = []
    for lic in known:
        ids += [i for i in lic.expression.split(" AND ") if i not in ids]
    return License(" AND ".join(ids), "; ".join(f.evidence for f in known))


def is_license_file(path: str) -> bool:
    return bool(LICENSE_FILE.match(posixpath.basename(path)))


def file_license(text: str, path: str, index: LicenseIndex | None) -> License:
    """The licence of one source file (see the module docs for the order)."""
    return (spdx_identifier(text) or header_license(text)
            or (index.lookup(path) if index is not None else None) or UNKNOWN)
