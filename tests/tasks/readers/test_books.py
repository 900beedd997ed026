from __future__ import annotations

from lmforge.tasks.readers.books import strip_gutenberg, unwrap_paragraphs

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


def test_zip_archive_of_books(sample_dir, tmp_path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "pg.zip", "w") as z:
        for name in ("pg90001.txt", "pg90002.txt"):
            z.write(sample_dir / "books" / name, f"books/{name}")
        z.writestr("books/readme.md", "not a book")
    result = read("books", tmp_path / "pg.zip")
    assert sorted(d.meta["ebook"] for d in result.docs) == ["90001", "90002"]
    assert result.docs[0].location.startswith("pg.zip#books/pg9000")


def test_empty_and_corrupt_files(tmp_path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    assert [q["reason"] for q in read("books", tmp_path / "empty.txt").quarantined] == [
        "books/empty_file"]
    assert [q["reason"] for q in read("books", tmp_path / "bad.zip").quarantined] == [
        "books/unreadable_file"]
