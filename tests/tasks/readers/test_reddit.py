from __future__ import annotations

import json

import pytest
import zstandard
from lmforge.infra.make_sample import _comment, _zstd_long
from lmforge.tasks.readers.reddit import MAX_WINDOW

from tests.tasks.readers.helpers import read


def test_reads_long_window_zstd_that_default_decoders_refuse(sample_dir) -> None:
    raw = (sample_dir / "reddit/RC_2024-03.zst").read_bytes()
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    assert zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(raw).read(10)
    result = read("reddit", sample_dir / "reddit/RC_2024-03.zst")
    assert len(result.docs) > 200
    doc = result.docs[0]
    assert doc.meta["subreddit"] == "westmark" and doc.created is not None
    assert isinstance(doc.meta["score"], int)


def test_drops_deleted_bots_and_low_scores_with_reasons(sample_dir) -> None:
    result = read("reddit", sample_dir / "reddit/RC_2024-03.zst")
    reasons = sorted(r for _, r in result.skipped)
    assert reasons == ["reddit/bot_author", "reddit/deleted", "reddit/deleted",
                       "reddit/low_score"]
    assert all(d.text not in ("[deleted]", "[removed]") for d in result.docs)


def test_bad_lines_are_quarantined_with_line_numbers(sample_dir) -> None:
    result = read("reddit", sample_dir / "reddit/RC_2024-03.zst")
    bad = {q["reason"]: q["record"] for q in result.quarantined}
    assert bad == {"reddit/invalid_json": "line 51", "reddit/invalid_utf8": "line 91"}


def test_truncated_stream_keeps_every_complete_line(tmp_path) -> None:
    lines = [json.dumps(_comment(i, f"comment {i} about the river {i * 7919 % 1000}")).encode()
             + b"\n" for i in range(4000)]
    blob = _zstd_long(lines)
    path = tmp_path / "RC_cut.zst"
    path.write_bytes(blob[: len(blob) * 3 // 4])
    result = read("reddit", path)
    assert 0 < len(result.docs) < 4000
    assert [d.meta["reddit_id"] for d in result.docs] == [
        f"t1_c{i:05x}" for i in range(len(result.docs))]
    assert [q["reason"] for q in result.quarantined] == ["reddit/truncated_stream"]


def test_submissions_keep_title_and_outbound_link(sample_dir) -> None:
    result = read("reddit", sample_dir / "reddit/RS_2024-03.zst", min_score=None)
    links = [d for d in result.docs if d.meta["kind"] == "submission" and d.url
             and "photos.example.com" in d.url]
    assert links and links[0].text.startswith("Photos from my trip to")


def test_webtext_list_takes_outbound_links_with_enough_karma(sample_dir) -> None:
    result = read("reddit", sample_dir / "reddit/RS_2024-03.zst", min_score=None)
    rows = [row for name, row in result.side if name == "webtext"]
    links = {d.url: d.meta["score"] for d in result.docs if d.url and "photos." in d.url}
    assert rows and {r["url"] for r in rows} == {u for u, s in links.items() if s >= 3}
    assert all(r["score"] >= 3 for r in rows)
    none = read("reddit", sample_dir / "reddit/RS_2024-03.zst", webtext_min_karma=None)
    assert none.side == []


def test_empty_file(tmp_path) -> None:
    (tmp_path / "RC_empty.zst").write_bytes(b"")
    result = read("reddit", tmp_path / "RC_empty.zst")
    assert result.docs == [] and result.quarantined == []
