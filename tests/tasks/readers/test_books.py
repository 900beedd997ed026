from __future__ import annotations

from tasks.readers.books import strip_gutenberg, unwrap_paragraphs
from tests.tasks.readers.helpers import read


def test_strips_header_and_licence_and_reads_fields(sample_dir) -> None:
    result = read("books", sample_dir / "books/*.txt")
    assert len(result.docs) == 3
    for doc in result.docs:
        assert "Project Gutenberg" not in doc.text and "PROJECT GUTENBERG" not in doc.text
        assert doc.meta["gutenberg"] is True and doc.language == "en"
    book = result.by_title()["The Miller of Arvel"]
    assert book.meta == {**book.meta, "author": "Maren Holt", "ebook": "90001"}
    assert book.url == "https://www.gutenberg.org/ebooks/90001"


def test_marker_variants() -> None:
    for start, end in [
        ("*** START OF THE PROJECT GUTENBERG EBOOK X ***",
         "*** END OF THE PROJECT GUTENBERG EBOOK X ***"),
        ("***START OF THIS PROJECT GUTENBERG EBOOK X***",
         "***END OF THIS PROJECT GUTENBERG EBOOK X***"),
        ("*** START OF THE PROJECT GUTENBERG E-BOOK X ***",
         "End of the Project Gutenberg EBook of X"),
        ("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
         "End of Project Gutenberg's X"),
    ]:
        body, _, marked = strip_gutenberg(f"Title: X\n\n{start}\n\nThe body.\n\n{end}\nlicence")
        assert marked and body.strip() == "The body.", (start, end)


def test_text_without_markers_is_kept_whole() -> None:
    body, fields, marked = strip_gutenberg("Just a plain book.\n")
    assert (body, fields, marked) == ("Just a plain book.\n", {}, False)


def test_hard_wrapped_lines_become_paragraphs() -> None:
    assert unwrap_paragraphs("one\ntwo\n\n\nthree\r\nfour\n") == "one two\n\nthree four"


def test_latin1_book_is_decoded(tmp_path) -> None:
    (tmp_path / "old.txt").write_bytes("Caf\xe9 au lait, a story.".encode("latin-1"))
    doc = read("books", tmp_path / "old.txt").docs[0]
    assert doc.text == "Café au lait, a story." and doc.meta["encoding"] == "cp1252"


def test_binary_file_is_quarantined(tmp_path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02" * 10)
    result = read("books", tmp_path / "bin.txt")
    assert result.docs == [] and result.quarantined[0]["reason"] == "books/binary_file"
