from __future__ import annotations

import random

import pyarrow.parquet as pq

from infra.make_sample import FACTS, Prose
from tasks.dedup import (
    DedupConfig,
    MinHashConfig,
    duplicate_ids,
    find_duplicates,
    normalise,
    shingles,
    signature_table,
)
from tasks.schema import Document


def text(seed: int) -> str:
    return Prose(seed).paragraph(FACTS, 8)


def edit(t: str, n: int, seed: int = 0) -> str:
    words, rng = t.split(), random.Random(seed)
    for _ in range(n):
        words[rng.randrange(len(words))] = "zzz"
    return " ".join(words)


def run(tmp_path, shards: list[list[Document]], cfg: DedupConfig | None = None):
    cfg = cfg or DedupConfig()
    files = []
    for i, docs in enumerate(shards):
        path = tmp_path / f"sig-part-{i:05d}.parquet"
        pq.write_table(signature_table(docs, i, cfg), path)
        files.append(path)
    report = find_duplicates(files, cfg, tmp_path / "rejected.parquet", tmp_path / "dups.parquet")
    dups = pq.read_table(tmp_path / "dups.parquet").to_pylist() if report.sources else []
    return report, {d["id"]: d for d in dups}


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("Hello,  World!\n") == normalise("hello world") == "hello world"


def test_shingles_word_and_char() -> None:
    assert shingles("a b c d", "word", 3) == {b"a b c", b"b c d"}
    assert shingles("abcd", "char", 3) == {b"abc", b"bcd"}
    assert shingles("a b", "word", 5) == {b"a b"}


def test_exact_and_near_duplicates_across_shards_and_sources(tmp_path) -> None:
    base = text(1)
    a = Document.new("wikipedia", "w#1", base)
    b = Document.new("commoncrawl", "c#1", base.upper() + "!!")  # exact after normalising
    c = Document.new("reddit", "r#1", edit(base, 2))  # near
    d = Document.new("books", "b#1", text(2))  # unrelated
    report, dups = run(tmp_path, [[a, d], [b], [c]])
    survivor = min(a.id, b.id, c.id)
    assert set(dups) == {a.id, b.id, c.id} - {survivor}
    assert all(r["survivor"] == survivor for r in dups.values())
    assert d.id not in dups
    rows = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    reasons = {r["id"]: r["reason"] for r in rows}
    assert reasons[max(a.id, b.id)] == "dedup:exact"  # has an identical twin with smaller id
    if c.id != survivor:
        assert reasons[c.id] == "dedup:minhash"
    total = report.total
    assert total.docs_in == 4 and total.docs_out == 2
    assert total.docs_in == total.docs_out + total.docs_dropped


def test_survivors_do_not_depend_on_shard_order(tmp_path) -> None:
    docs = [Document.new("commoncrawl", f"c#{i}", edit(text(5), i % 3, seed=i)) for i in range(6)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, first = run(tmp_path / "a", [docs[:3], docs[3:]])
    _, second = run(tmp_path / "b", [docs[3:][::-1], docs[:3][::-1]])
    assert len(first) >= 3
    assert {k: v["survivor"] for k, v in first.items()} == {k: v["survivor"]
                                                            for k, v in second.items()}


def test_chain_collapses_into_one_cluster(tmp_path) -> None:
    # A~B and B~C but A and C share less: transitive closure keeps one of the three.
    base = text(7).split()
    a = " ".join(base)
    tail, head = ["x1", "x2", "x3", "x4", "x5", "x6"], ["y1", "y2", "y3", "y4", "y5", "y6"]
    b = " ".join([*base[:-6], *tail])
    c = " ".join([*head, *base[6:-6], *tail])
    docs = [Document.new("commoncrawl", f"c#{i}", t) for i, t in enumerate((a, b, c))]
    cfg = DedupConfig(minhash=MinHashConfig(threshold=0.7))
    report, dups = run(tmp_path, [docs], cfg)
    assert len(dups) == 2
    assert report.extra["cluster_sizes"] == {"3": 1}


def test_unrelated_documents_survive(tmp_path) -> None:
    docs = [Document.new("books", f"b#{i}", text(100 + i)) for i in range(20)]
    report, dups = run(tmp_path, [docs])
    assert dups == {} and report.total.docs_out == 20


def test_exact_only(tmp_path) -> None:
    base = text(3)
    docs = [Document.new("books", "b#1", base), Document.new("books", "b#2", base),
            Document.new("books", "b#3", edit(base, 1))]
    _, dups = run(tmp_path, [docs], DedupConfig(minhash=None))
    assert len(dups) == 1 and next(iter(dups.values()))["reason"] == "exact"


def test_duplicate_ids_per_shard(tmp_path) -> None:
    base = text(4)
    a, b = Document.new("books", "b#1", base), Document.new("books", "b#2", base)
    run(tmp_path, [[a], [b]])
    loser = max(a.id, b.id)
    shard = 0 if loser == a.id else 1
    assert duplicate_ids(tmp_path / "dups.parquet", shard) == {loser}
    assert duplicate_ids(tmp_path / "dups.parquet", 1 - shard) == set()


def test_bands_and_rows_cover_num_perm() -> None:
    bands, rows = MinHashConfig(threshold=0.8, num_perm=128).bands_rows()
    assert bands * rows <= 128 and bands > 1
