"""Wikitext → plain text, as the careful extractors do it (WikiExtractor, the HF ``wikipedia``
builder, mwparserfromhell used node by node).

1. Markup that real articles often leave unbalanced, which a parser then reads as text, is cut
   out first by scanners that count their own delimiters: comments, ``<ref>`` (and the other
   tags whose content is not prose: galleries, math, timelines, ...), tables (``{|`` … ``|}``
   at line starts, nested) and file/image/category links (``[[File:…|thumb|…[[nested]]…]]``),
   with the namespace names of the dump's own language.
2. The rest is parsed with mwparserfromhell and rendered node by node: links become their
   label, bold/italic their text, headings lines of their own, list items lines with ``- ``.
   Templates that carry prose are rendered (``convert``, ``lang``, ``nowrap``, dates, ``frac``,
   ``quote``, …: :data:`TEMPLATES`); every other template (infoboxes, citations, navboxes,
   pronunciations) is removed.
3. The holes removal leaves are closed: "Albedo () or", "Lincoln (; February 12, 1809 – …)",
   list items and lines with nothing left, headings of sections with nothing left, and the
   appendix sections (See also, References, External links, …) that hold only links and
   citations.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence

import mwparserfromhell
from lmforge.tasks.readers.wiki_templates import TEMPLATES, first_param
from mwparserfromhell.nodes import (
    Argument,
    Comment,
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)
from mwparserfromhell.wikicode import Wikicode

# Namespaces whose links are not text, in every language (MediaWiki's canonical names).
LINK_NAMESPACES = ("file", "image", "media", "category")
APPENDIX_SECTIONS = ("see also", "references", "notes", "footnotes", "further reading",
                     "external links", "bibliography", "sources", "citations",
                     "notes and references", "references and notes", "works cited",
                     "literature", "explanatory notes", "general references")
# Tags whose content is not prose (dropped whole); the others keep their content.
DROP_TAGS = ("ref", "references", "gallery", "timeline", "score",
             "syntaxhighlight", "source", "imagemap", "templatestyles", "graph", "mapframe",
             "maplink", "inputbox", "categorytree", "noinclude", "includeonly", "hiero",
             "table", "indicator", "section")
_DROP_TAG_RE = "|".join(DROP_TAGS)
_SELF_CLOSING = re.compile(rf"<(?:{_DROP_TAG_RE})\b[^>]*/\s*>", re.IGNORECASE)
_PAIRED = re.compile(rf"<({_DROP_TAG_RE})\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_OPENING = re.compile(rf"<(?:{_DROP_TAG_RE})\b[^>]*>", re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# Formulas stay, as their TeX source (as OpenWebMath keeps them): not parsed as wikitext.
_FORMULA = re.compile(r"<(math|chem|ce)\b[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_MAGIC = re.compile(r"__[A-Z]+__")
_TABLE_TOKEN = re.compile(r"^[ \t]*(\{\||\|\})", re.MULTILINE)
_LINK_TOKEN = re.compile(r"\[\[|\]\]")
_STRAY_TAG = re.compile(r"</?(?:ref|span|div|small|big|sup|sub|br|center|font|s|u|code|poem|"
                        r"blockquote|nowiki|abbr|cite|onlyinclude|p|hr)\b[^>]*>", re.IGNORECASE)
_QUOTES = re.compile(r"'{2,}")
_GROUP = re.compile(r"\s*\(([^()]*)\)")
_SEPARATORS = re.compile(r"\s*[,;]\s*(?:[,;]\s*)+")
_HEADING_MARK = "\x00H"
_TEX_OPEN, _TEX_CLOSE = "\x01", "\x02"  # around formulas, which line cleaning leaves alone
_TEX_SPLIT = re.compile("(\x01[^\x02]*\x02)")


def wikitext_to_text(wikitext: str, *, namespaces: Iterable[str] = (),
                     drop_sections: Sequence[str] = APPENDIX_SECTIONS) -> str:
    """Plain text of one article. ``namespaces`` adds the dump's own names of the file, media
    and category namespaces (e.g. "Файл", "Категория") to MediaWiki's canonical ones."""
    names = {n.lower() for n in (*LINK_NAMESPACES, *namespaces) if n}
    code = mwparserfromhell.parse(_preclean(wikitext, names))
    text = _render(code, names)
    return _finish(text, {s.lower() for s in drop_sections})


# --- 1. scanners for markup that is often unbalanced ------------------------------------------

def _preclean(text: str, link_namespaces: set[str]) -> str:
    text = _COMMENT.sub("", text)
    text = _FORMULA.sub(
        lambda m: f"<nowiki>{_TEX_OPEN}{' '.join(m.group(2).split())}{_TEX_CLOSE}</nowiki>", text)
    text = _SELF_CLOSING.sub("", text)
    text = _PAIRED.sub("", text)
    text = _OPENING.sub("", text)  # an opening tag that is never closed: the tag alone
    text = _MAGIC.sub("", text)
    text = _drop_tables(text)
    return _drop_links(text, link_namespaces)


def _drop_tables(text: str) -> str:
    """Remove ``{| … |}`` tables (nested ones too); an unclosed table runs to the end."""
    out, depth, last = [], 0, 0
    for m in _TABLE_TOKEN.finditer(text):
        if m.group(1) == "{|":
            if depth == 0:
                out.append(text[last:m.start()])
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                last = m.end()
    if depth == 0:
        out.append(text[last:])
    return "".join(out)


def _drop_links(text: str, namespaces: set[str]) -> str:
    """Remove ``[[File:…]]``-like links whole, nested links in their captions included."""
    out, last, pos = [], 0, 0
    while (start := text.find("[[", pos)) != -1:
        head = text[start + 2: start + 80].lstrip(" :").split(":", 1)
        if len(head) < 2 or head[0].strip().lower() not in namespaces:
            pos = start + 2
            continue
        depth, end = 0, len(text)
        for m in _LINK_TOKEN.finditer(text, start):
            depth += 1 if m.group() == "[[" else -1
            if depth == 0:
                end = m.end()
                break
        out.append(text[last:start])
        last = pos = end
    out.append(text[last:])
    return "".join(out)


# --- 2. node-by-node rendering --------------------------------------------------------------

def _render(code: Wikicode, names: set[str]) -> str:
    parts: list[str] = []
    for node in code.nodes:
        if isinstance(node, Text):
            parts.append(str(node))
        elif isinstance(node, Template):
            parts.append(_template(node, names))
        elif isinstance(node, Wikilink):
            parts.append(_wikilink(node, names))
        elif isinstance(node, ExternalLink):
            parts.append(_render(node.title, names) if node.title else "")
        elif isinstance(node, Heading):
            title = " ".join(_render(node.title, names).split())
            parts.append(f"\n{_HEADING_MARK}{node.level} {title}\n")
        elif isinstance(node, Tag):
            parts.append(_tag(node, names))
        elif isinstance(node, HTMLEntity):
            parts.append(node.normalize())
        elif isinstance(node, (Comment, Argument)):
            continue
        else:  # anything newer mwparserfromhell adds: its own plain-text rendering
            parts.append(str(node.__strip__(normalize=True, collapse=True) or ""))
    return "".join(parts)


def _wikilink(node: Wikilink, names: set[str]) -> str:
    title = str(node.title).strip()
    prefix = title.lstrip(":").split(":", 1)[0].strip().lower()
    if ":" in title and (prefix in names or re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", prefix)):
        return ""  # files, categories, interlanguage links
    return _render(node.text, names) if node.text is not None else title.lstrip(":")


def _tag(node: Tag, names: set[str]) -> str:
    name = str(node.tag).strip().lower()
    if name in DROP_TAGS:
        return ""
    if name == "br":
        return "\n"
    if name == "li":  # "* item" / "# item" at a line start: its text follows as siblings
        return "- "
    if name in ("dt", "dd"):  # "; term : definition", ": indented line"
        return " "
    if node.contents is None:
        return ""
    inner = _render(node.contents, names)
    return f"\n{inner}\n" if name in ("p", "div", "blockquote", "poem", "center") else inner


def _template(node: Template, names: set[str]) -> str:
    name = " ".join(str(node.name).replace("_", " ").split()).lower()
    if ":" in name:  # parser functions: {{formatnum:1234}}, {{lc:X}} show their argument
        func, _, arg = name.partition(":")
        return _render(mwparserfromhell.parse(str(node.name).split(":", 1)[1]), names) \
            if func in ("formatnum", "lc", "uc", "lcfirst", "ucfirst") and arg else ""
    renderer = TEMPLATES.get(name) or (first_param if re.fullmatch(r"lang-[a-z-]+", name) else None)
    if renderer is None:
        return ""
    positional, named = [], {}
    for param in node.params:
        value = " ".join(_render(param.value, names).split())
        if param.showkey:
            named[str(param.name).strip().lower()] = value
        else:
            positional.append(value)
    return renderer(positional, named)


# --- 3. closing the holes -------------------------------------------------------------------

def _clean_group(m: re.Match[str]) -> str:
    """A parenthesised group without what removal left: "(; , Akhilleus, )" → "(Akhilleus)",
    and nothing at all when no word is left."""
    inner = _SEPARATORS.sub(lambda s: s.group().strip()[0] + " ", m.group(1))
    inner = re.sub(r"^[\s,;:]+|[\s,;:]+$", "", inner)
    if not any(c.isalnum() for c in inner):
        return ""
    lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip())]
    return f"{lead}({inner})"


def _clean_line(line: str) -> str:
    """One line without markup debris and holes; formulas are kept as they are."""
    if _TEX_OPEN not in line:
        return _clean_text(line).strip()
    parts = [p[1:-1] if p.startswith(_TEX_OPEN) else _clean_text(p)
             for p in _TEX_SPLIT.split(line)]
    return " ".join("".join(parts).replace(_TEX_OPEN, "").replace(_TEX_CLOSE, "").split())


def _clean_text(line: str) -> str:
    edge = (" " if line[:1].isspace() else "", " " if line[-1:].isspace() else "")
    line = _STRAY_TAG.sub("", line)
    line = _QUOTES.sub("", line)
    line = line.replace("{{", "").replace("}}", "").replace("[[", "").replace("]]", "")
    line = " ".join(line.split())
    for _ in range(2):  # nested groups: inner first
        line = _GROUP.sub(_clean_group, line)
    line = re.sub(r"\s+([,.;:!?)\]])", r"\1", line)
    line = re.sub(r"([(\[])\s+", r"\1", line)
    line = re.sub(r"([,;])(?:\s*[,;])+", r"\1", line)
    line = re.sub(r"\s*[,;]+(?=[.!?](?:\s|$))", "", line)  # "52 minutes,." (a cut citation)
    line = re.sub(r"^[,;:.]\s*", "", line)
    return edge[0] + line.strip() + edge[1] if line.strip() else " ".join(edge)


_NESTED_ITEM = re.compile(r"^-(?:\s+-)+(?:\s+|$)")


def _finish(text: str, drop_sections: set[str]) -> str:
    """Clean every line, then drop appendix sections and sections left without text."""
    lines: list[tuple[int, str]] = []  # (heading level, or 0 for text; text)
    for raw in text.split("\n"):
        if raw.startswith(_HEADING_MARK):
            level, _, title = raw[len(_HEADING_MARK):].partition(" ")
            with contextlib.suppress(ValueError):
                lines.append((int(level), _clean_line(title)))
                continue
        # a nested item ("** x": one <li> per marker) is one item: "- - x" would read as
        # punctuation words to every word-based rule
        line = _NESTED_ITEM.sub("- ", _clean_line(raw))
        item = line.startswith("- ") or line == "-"
        body = line[2:] if item else line
        if not any(c.isalnum() for c in body):
            if not line:
                lines.append((0, ""))
            continue  # a list item or line with nothing left (punctuation only)
        lines.append((0, line))
    kept = _sections(lines, drop_sections)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _sections(lines: list[tuple[int, str]], drop: set[str]) -> list[str]:
    """Lines without dropped sections (the heading and everything under it) and without the
    headings of sections that hold no text, subsections included."""
    out: list[str] = []
    skip_below: int | None = None
    pending: list[tuple[int, str]] = []  # headings waiting for text
    for level, line in lines:
        if level:
            if skip_below is not None and level > skip_below:
                continue
            skip_below = level if line.strip().lower() in drop else None
            pending = [h for h in pending if h[0] < level]
            if skip_below is None:
                pending.append((level, line))
            continue
        if skip_below is not None:
            continue
        if line and pending:
            out += ["", *(h for _, h in pending)]
            pending = []
        out.append(line)
    return out
