"""Splitting a file into partitions reads every record exactly once."""

from __future__ import annotations

import bz2
import io
import json

from lmforge.infra.make_sample import (
    EPOCH,
    FACTS,
    WIKI_HEADER,
    Prose,
    _comment,
    _warc_response,
    _zstd_long,
    html_page,
    wiki_page,
)
from lmforge.tasks.readers.base import byte_ranges, strides
from warcio.warcwriter import WARCWriter

from tests.tasks.readers.helpers import read


def _ids(result) -> list[str]:
    return sorted(d.id for d in result.docs)


def test_byte_ranges_cover_the_file() -> None:
    ranges = byte_ranges(10_000, 3_000)
    assert [(r.start, r.end) for r in ranges] == [(0, 2500), (2500, 5000), (5000, 7500),
                                                  (7500, None)]
    assert byte_ranges(10, 3000)[0].end is None
    assert [s.piece for s in strides(10_000, 3_000)] == [0, 1, 2, 3]


def test_warc_ranges_read_each_record_once(tmp_path) -> None:
    prose, buf = Prose(11), io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i in range(40):
        page = html_page(f"Page {i}", [prose.paragraph(FACTS, 4) for _ in range(2)])
        _warc_response(writer, f"https://e.com/{i}", page, "text/html", EPOCH)
    (tmp_path / "a.warc.gz").write_bytes(buf.getvalue())
    whole = read("commoncrawl", tmp_path / "a.warc.gz")
    split = read("commoncrawl", tmp_path / "a.warc.gz", split_bytes=4096)
    assert whole.partitions == 1 and split.partitions > 5
    assert _ids(split) == _ids(whole) and len(whole.docs) == 40


def test_multistream_wikipedia_ranges(tmp_path) -> None:
    prose = Prose(12)
    pages = [wiki_page(i, f"Page {i}", prose.paragraph(FACTS, 6)) for i in range(60)]
    streams = [bz2.compress(WIKI_HEADER.encode())]
    streams += [bz2.compress("".join(pages[i:i + 5]).encode()) for i in range(0, 60, 5)]
    streams.append(bz2.compress(b"</mediawiki>\n"))
    (tmp_path / "dump-multistream.xml.bz2").write_bytes(b"".join(streams))
    whole = read("wikipedia", tmp_path / "dump-multistream.xml.bz2")
    split = read("wikipedia", tmp_path / "dump-multistream.xml.bz2", split_bytes=2048)
    assert split.partitions > 3 and len(whole.docs) == 60
    assert _ids(split) == _ids(whole)
    assert split.quarantined == []


def test_single_stream_bz2_is_read_once_by_its_first_range(tmp_path) -> None:
    prose = Prose(13)
    xml = WIKI_HEADER + "".join(wiki_page(i, f"P{i}", prose.paragraph(FACTS, 8))
                                for i in range(30)) + "</mediawiki>\n"
    (tmp_path / "single.xml.bz2").write_bytes(bz2.compress(xml.encode()))
    split = read("wikipedia", tmp_path / "single.xml.bz2", split_bytes=1024)
    assert split.partitions > 1 and len(split.docs) == 30


def test_plain_xml_ranges(tmp_path) -> None:
    prose = Prose(14)
    xml = WIKI_HEADER + "".join(wiki_page(i, f"P{i}", prose.paragraph(FACTS, 5))
                                for i in range(30)) + "</mediawiki>\n"
    (tmp_path / "dump.xml").write_text(xml)
    whole, split = read("wikipedia", tmp_path / "dump.xml"), read(
        "wikipedia", tmp_path / "dump.xml", split_bytes=2000)
    assert split.partitions > 3 and _ids(split) == _ids(whole) and len(whole.docs) == 30


def test_reddit_zstd_strides_and_ndjson_ranges(tmp_path) -> None:
    lines = [json.dumps(_comment(i, f"comment {i} about the river and the mill")).encode()
             + b"\n" for i in range(500)]
    (tmp_path / "RC_x.zst").write_bytes(_zstd_long(lines))
    (tmp_path / "RC_y.ndjson").write_bytes(b"".join(lines))
    whole = read("reddit", tmp_path / "RC_x.zst")
    strided = read("reddit", tmp_path / "RC_x.zst", split_bytes=1024)
    ranged = read("reddit", tmp_path / "RC_y.ndjson", split_bytes=4096)
    assert strided.partitions > 1 and ranged.partitions > 5
    assert len(whole.docs) == 500
    assert _ids(strided) == _ids(whole)
    keys = sorted(d.meta["reddit_id"] for d in whole.docs)
    assert sorted(d.meta["reddit_id"] for d in ranged.docs) == keys


def test_a_pattern_that_matches_nothing_is_an_error(tmp_path) -> None:
    import pytest
    from lmforge.tasks.readers import Source, plan_partitions
    from pydantic import TypeAdapter

    sources = TypeAdapter(list[Source]).validate_python([
        {"kind": "books", "paths": [str(tmp_path / "*.txt"), str(tmp_path / "x.txt")]}])
    with pytest.raises(FileNotFoundError, match=r"sources.0 \(books\).*\*\.txt.*x\.txt"):
        plan_partitions(sources)


def test_a_corpus_smaller_than_split_bytes_is_still_cut_for_parallel_work(tmp_path,
                                                                         monkeypatch) -> None:
    """Below split_bytes a corpus is cut into about TARGET_SHARDS shards (not one); a .zst
    keeps its configured strides, since every stride reads the whole stream."""
    from lmforge.tasks import readers
    from pydantic import TypeAdapter

    monkeypatch.setattr(readers, "TARGET_SHARDS", 4)
    monkeypatch.setattr(readers, "MIN_SHARD_BYTES", 1024)
    for i in range(8):
        (tmp_path / f"b{i}.txt").write_bytes(b"x" * 2048)
    (tmp_path / "RC_z.zst").write_bytes(b"\0" * 4096)
    books, reddit = TypeAdapter(list[readers.Source]).validate_python([
        {"kind": "books", "paths": [str(tmp_path / "*.txt")]},
        {"kind": "reddit", "paths": [str(tmp_path / "RC_z.zst")], "split_bytes": 4096}])
    # 16 KiB of books alone: 4 KiB shards of two books each, not one 256 MiB shard
    assert [len(s.parts) for s in readers.plan_shards([books])] == [2, 2, 2, 2]
    whole = readers.plan_shards([reddit])
    assert [(p.piece, p.pieces) for s in whole for p in s.parts] == [(0, 1)]
    assert readers.shard_bytes(10 * 1024, 256 << 20) == 2560
    assert readers.shard_bytes(1 << 40, 256 << 20) == 256 << 20
    assert readers.shard_bytes(100, 256 << 20) == 1024
