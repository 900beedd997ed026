from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import (
    DocumentWriter,
    Layout,
    QuarantineWriter,
    RejectWriter,
    iter_documents,
    list_shards,
    prune_shards,
)


def test_writer_appears_only_on_success(tmp_path) -> None:
    path = tmp_path / "part-00000.parquet"
    with pytest.raises(RuntimeError), DocumentWriter(path) as out:
        out.write(Document.new("books", "a#1", "text"))
        raise RuntimeError("worker died")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_documents_stream_back_in_row_groups(tmp_path) -> None:
    path = tmp_path / "part-00000.parquet"
    docs = [Document.new("books", f"a#{i}", f"text {i}") for i in range(2500)]
    with DocumentWriter(path, rows_per_group=1000) as out:
        for doc in docs:
            out.write(doc)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert [d.id for d in iter_documents(path)] == [d.id for d in docs]


def test_empty_reject_file_is_not_written_and_stale_one_removed(tmp_path) -> None:
    path = tmp_path / "quality-part-00000.parquet"
    with RejectWriter(path, "quality") as reject:
        reject(Document.new("books", "a#1", "abc"), "gopher/x", {"v": 1})
    assert pq.read_table(path).to_pylist()[0]["reason"] == "quality:gopher/x"
    with RejectWriter(path, "quality"):
        pass
    assert not path.exists()


def test_quarantine_detail_is_truncated(tmp_path) -> None:
    path = tmp_path / "part-00000.parquet"
    with QuarantineWriter(path) as q:
        q("reddit", "RC.zst", "reddit/invalid_json", offset=5, record="line 2", detail="x" * 900)
    row = pq.read_table(path).to_pylist()[0]
    assert (row["offset"], row["record"], len(row["detail"])) == (5, "line 2", 500)


def test_prune_removes_shards_beyond_the_plan(tmp_path) -> None:
    layout = Layout(tmp_path)
    layout.make_dirs()
    for n in range(3):
        (layout.curated / f"part-{n:05d}.parquet").write_bytes(b"x")
        (layout.rejected / f"quality-part-{n:05d}.parquet").write_bytes(b"x")
    removed = prune_shards(layout, 2)
    assert sorted(p.name for p in removed) == ["part-00002.parquet", "quality-part-00002.parquet"]
    assert len(list_shards(layout.curated)) == 2


def test_unchanged_outputs_are_not_hashed_again(tmp_path, monkeypatch) -> None:
    """A rerun checks an output by size + mtime first and hashes only a file that changed;
    a record from before the quick check (the SHA alone) is still checked by hashing."""
    import os

    from lmforge.tasks import shards

    out = tmp_path / "part-00000.parquet"
    out.write_bytes(b"x" * 1000)
    recorded = shards.output_digests(tmp_path, [out, tmp_path / "missing.parquet"])
    hashed: list[str] = []
    real = shards.file_digest
    monkeypatch.setattr(shards, "file_digest", lambda p: hashed.append(p.name) or real(p))
    assert shards.outputs_intact(tmp_path, recorded) and hashed == []
    stat = out.stat()
    out.write_bytes(b"y" * 1000)  # same size, new bytes
    os.utime(out, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert not shards.outputs_intact(tmp_path, recorded) and hashed == [out.name]
    out.write_bytes(b"x" * 1000)  # the same bytes again: hashed, found intact
    assert shards.outputs_intact(tmp_path, recorded)
    sha_only = {k: v.split()[0] if v else v for k, v in recorded.items()}
    hashed.clear()
    assert shards.outputs_intact(tmp_path, sha_only) and hashed == [out.name]
    (tmp_path / "missing.parquet").write_bytes(b"")  # recorded as not written
    assert not shards.outputs_intact(tmp_path, recorded)
