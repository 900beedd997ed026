"""HTML extraction on real pages: the C-level element lookup of ``parse_html`` gives the texts
that lxml.html's own parser gives (``tasks/readers/extract.py`` says why it is used)."""

from __future__ import annotations

import shutil

import pytest
import trafilatura
from lmforge.infra.real_corpora import default_cache, fetch
from lmforge.tasks.readers.extract import extract_text, unwrap_html_text
from lxml import html as lxml_html
from warcio.archiveiterator import ArchiveIterator

pytestmark = pytest.mark.real


def _pages(limit: int) -> list[str]:
    if shutil.which("apt-get") is None and not (default_cache() / "sources.json").exists():
        pytest.skip("the real corpora come from Debian's archive: apt-get is not available")
    cache = fetch(default_cache())
    warcs = [cache / "python-docs" / "python-docs.warc.gz",
             *sorted((cache / "html").glob("*.warc.gz"))]
    pages = []
    for warc in warcs:
        with warc.open("rb") as fh:
            for record in ArchiveIterator(fh):
                headers = record.http_headers
                ctype = (headers.get_header("Content-Type") if headers else None) or ""
                if record.rec_type == "response" and "html" in ctype:
                    pages.append(record.content_stream().read().decode("utf-8", "replace"))
    return pages[:limit]


def test_texts_equal_those_of_lxml_html_own_parser() -> None:
    pages = _pages(150)
    assert len(pages) >= 100
    differ = 0
    for page in pages:
        tree = lxml_html.document_fromstring(page)  # lxml.html's parser, Python class lookup
        unwrap_html_text(tree)
        expected = trafilatura.extract(tree, include_comments=False, include_tables=False,
                                       deduplicate=False)
        differ += extract_text(page, None, False) != expected
    assert differ == 0
