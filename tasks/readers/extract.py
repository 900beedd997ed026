"""HTML → main text with trafilatura, under a per-document time limit.

trafilatura has no internal time limit and a pathological page (a huge table, deep nesting) can
keep it busy for minutes. Threads cannot be interrupted, so extraction runs in one child process
per worker (talking pickled messages over its stdin/stdout); a page that
exceeds the limit gets the child killed and restarted, and the page is reported, while the
worker moves on.
"""

from __future__ import annotations

import atexit
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from functools import lru_cache
from typing import IO, Any

import trafilatura
from lxml import etree
from lxml import html as lxml_html

STARTUP_TIMEOUT_S = 180.0
_NOT_TEXT = ("script", "style", "noscript", "template")
_HEADER = struct.Struct("<Q")
_CHILD = "from lmforge.tasks.readers.extract import _serve; _serve()"


class ExtractTimeout(Exception):
    """Extraction of one page took longer than the limit."""


_PREFORMATTED = frozenset({"pre", "code", "textarea", "listing", "plaintext", "xmp"})
_SPACES = re.compile(r"\s+")

# lxml.html's parser picks each element's Python class in a Python method (form elements get
# their own classes), called every time trafilatura touches an element: a tenth of extraction.
# trafilatura uses no form API, so a C-level lookup that makes every element an HtmlElement
# gives the same texts (``tests/real/test_extraction.py`` compares them on real pages).
_LOOKUP = etree.ElementDefaultClassLookup(
    element=lxml_html.HtmlElement, comment=lxml_html.HtmlComment,
    pi=lxml_html.HtmlProcessingInstruction, entity=lxml_html.HtmlEntity)
_PARSERS = threading.local()  # an lxml parser serves one thread at a time


def parse_html(html: str) -> lxml_html.HtmlElement:
    """The page's tree as trafilatura reads it (``lxml.html`` elements)."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = lxml_html.HTMLParser()
        parser.set_element_class_lookup(_LOOKUP)
    return lxml_html.document_fromstring(html, parser=parser)


def unwrap_html_text(root: etree._Element) -> None:
    """Whitespace inside text as a browser shows it: outside preformatted elements a line
    break in the HTML source is a space. trafilatura keeps the source's line breaks, so a page
    whose paragraphs are hard-wrapped (the Python documentation) would reach the line rules
    as sentence fragments. The text and tail of every element that is not preformatted nor
    inside one are collapsed (the tail after a preformatted element is left as it is); one
    walk over the elements, the few preformatted subtrees collected first (an XPath asking
    every text node for its ancestors cost twice as much)."""
    inside = {e for pre in root.iter(*_PREFORMATTED) for e in pre.iter()}
    for element in root.iter():
        if element in inside:
            continue
        text = element.text
        if text and "\n" in text and isinstance(element.tag, str):  # not a comment's body
            element.text = _SPACES.sub(" ", text)
        tail = element.tail
        if tail and "\n" in tail:
            element.tail = _SPACES.sub(" ", tail)


def extract_text(html: str, url: str | None, include_tables: bool) -> str | None:
    try:
        tree = parse_html(html)
    except (etree.ParserError, ValueError):
        tree = None
    if tree is not None:
        unwrap_html_text(tree)
    return trafilatura.extract(tree if tree is not None else html, url=url,
                               include_comments=False, include_tables=include_tables,
                               deduplicate=False)


def html_pieces(html: str, max_chars: int) -> list[str]:
    """A long page as several small pages of at most about ``max_chars`` each: the body's
    elements in document order, consecutive ones grouped, an oversized one split into its
    children (an element with no children is kept whole), each piece with the page's
    ``<head>``; scripts and styles, which are not text, are left out first. Extraction then
    costs a bounded time per piece."""
    try:
        root = parse_html(html)
    except (etree.ParserError, ValueError):
        return [html]
    for element in list(root.iter(*_NOT_TEXT)):  # not text; each piece would repeat them
        element.drop_tree()
    head = root.find("head")
    head_html = etree.tostring(head, encoding="unicode") if head is not None else ""
    body = root.find("body")
    if body is None:
        return [html]
    groups: list[list[str]] = [[]]
    size = 0

    def add(element: etree._Element) -> None:
        nonlocal size
        markup = etree.tostring(element, encoding="unicode", with_tail=True)
        if len(markup) > max_chars and len(element):
            if element.text and element.text.strip():
                add_text(element.text)
            for child in element:
                add(child)
            if element.tail and element.tail.strip():
                add_text(element.tail)
            return
        if size + len(markup) > max_chars and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(markup)
        size += len(markup)

    def add_text(text: str) -> None:
        paragraph = lxml_html.Element("p")
        paragraph.text = text
        add(paragraph)

    if body.text and body.text.strip():
        add_text(body.text)
    for child in body:
        add(child)
    return [f"<html>{head_html}<body>{''.join(g)}</body></html>" for g in groups if g]


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the extraction process closed its output")
    return pickle.loads(stream.read(_HEADER.unpack(header)[0]))  # our own child: trusted


def _serve() -> None:  # the child's loop
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            job = _recv(stdin)
        except EOFError:
            return
        try:
            _send(stdout, ("ok", extract_text(*job)))
        except Exception as err:  # any extractor failure is reported for that page
            _send(stdout, ("error", f"{type(err).__name__}: {err}"))


class IsolatedExtractor:
    """One long-lived child process; killed and replaced when a page times out."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._proc = proc
        self._ask(("<html><body><p>warm-up</p></body></html>", None, False), STARTUP_TIMEOUT_S)
        return proc

    def _ask(self, job: tuple[str, str | None, bool], timeout: float) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        _send(proc.stdin, job)
        deadline = time.monotonic() + timeout
        ready: list[Any] = []
        while not ready:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ExtractTimeout(f"extraction took longer than {timeout:g} s")
            ready, _, _ = select.select([proc.stdout], [], [], left)
        return _recv(proc.stdout)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def __call__(self, html: str, url: str | None, include_tables: bool) -> str | None:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        status, value = self._ask((html, url, include_tables), self.timeout_s)
        if status == "error":
            raise ValueError(value)
        return value


@lru_cache(maxsize=4)
def extractor(timeout_s: float | None) -> IsolatedExtractor | None:
    """The process-wide extractor for this limit (None: extract in-process, no limit)."""
    return IsolatedExtractor(timeout_s) if timeout_s else None

