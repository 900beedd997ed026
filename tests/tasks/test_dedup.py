from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash
from lmforge.infra.make_sample import Prose
from lmforge.tasks.dedup import (
    DedupConfig,
    MinHashConfig,
    MinHasher,
    duplicate_rows,
    find_duplicates,
    normalise,
    shingle_hashes,
    signature_table,
)
from lmforge.tasks.dedup.index import DedupIndex
from lmforge.tasks.dedup.minhash import candidate_probability, punctuation_chars
from lmforge.tasks.monitor import lsh_section
from lmforge.tasks.schema import Document


def text(seed: int) -> str:
    return " ".join(Prose(seed).article("Arvel", 3))


def edit(t: str, n: int, seed: int = 0) -> str:
    words, rng = t.split(), random.Random(seed)
    for _ in range(n):
        words[rng.randrange(len(words))] = "zzz"
    return " ".join(words)


def run(tmp_path, shards: list[list[Document]], cfg: DedupConfig | None = None, tag: str = ""):
    cfg = cfg or DedupConfig()
    work = tmp_path / f"work{tag}"
    work.mkdir(parents=True, exist_ok=True)
    files = []
    for i, docs in enumerate(shards):
        path = work / f"sig-part-{i:05d}.parquet"
        pq.write_table(signature_table(docs, i, cfg.minhash), path)
        files.append(path)
    report = find_duplicates(files, cfg, work / "duplicates")
    rows = [r for i in range(len(shards)) for r in duplicate_rows(work / "duplicates", i)]
    return report, {r["id"]: r for r in rows}


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("Hello,  World!\n") == normalise("hello world") == "hello world"


def test_normalise_is_the_per_character_translation_on_every_symbol_and_real_text() -> None:
    """Signatures in a dedup index were made with the translate table: ``normalise`` must give
    the same text (every punctuation and symbol character of the basic plane, and real
    prose)."""
    table = dict.fromkeys(punctuation_chars(), " ")

    def reference(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).lower().translate(table).split())

    every = "a".join(chr(c) for c in range(0x20, 0x10000) if not 0xD800 <= c < 0xE000)
    licences = [p.read_text(errors="replace")
                for p in sorted(Path("/usr/share/common-licenses").glob("*")) if p.is_file()]
    for text in [every, "Ünïcode — “quotes”, ½ and ﬁ!", *licences]:
        assert normalise(text) == reference(text)


def test_signatures_equal_datasketch_on_the_same_shingles() -> None:
    cfg = MinHashConfig(num_perm=64, seed=7)
    hashes = shingle_hashes(text(1), "word", 5)
    reference = MinHash(num_perm=64, seed=7, hashfunc=lambda x: x)
    reference.update_batch(hashes.tolist())
    assert np.array_equal(MinHasher(cfg).signature(hashes), reference.hashvalues)


def test_char_shingles() -> None:
    assert len(shingle_hashes("abcd", "char", 3)) == 2
    assert len(shingle_hashes("a b", "word", 5)) == 1
    assert len(shingle_hashes("", "word", 5)) == 0


def test_exact_url_and_near_duplicates_across_shards_and_sources(tmp_path) -> None:
    base = text(1)
    a = Document.new("wikipedia", "w#1", base)
    b = Document.new("commoncrawl", "c#1", base.upper() + "!!")  # exact after normalising
    c = Document.new("reddit", "r#1", edit(base, 2))  # near
    d = Document.new("books", "b#1", text(2))  # unrelated
    e = Document.new("commoncrawl", "c#2", text(3), url="https://x.example/p")
    f = Document.new("commoncrawl", "c#3", text(4), url="HTTPS://X.EXAMPLE/p/")  # same page
    report, dups = run(tmp_path, [[a, d, e], [b, f], [c]])
    assert set(dups) == {a.id, b.id, c.id, e.id, f.id} - {dups[next(iter(dups))]["survivor"],
                                                          *(r["survivor"] for r in dups.values())}
    assert d.id not in dups
    assert {r["reason"] for r in dups.values()} <= {"exact", "minhash", "url"}
    url_dup = dups.get(e.id) or dups.get(f.id)
    assert url_dup["reason"] == "url"
    total = report.total
    assert total.docs_in == 6 and total.docs_out == 3
    assert total.docs_in == total.docs_out + total.docs_dropped


def test_longest_survives_by_default_and_policy_changes_it(tmp_path) -> None:
    base = text(5)
    short = Document.new("commoncrawl", "c#1", base)
    longer = Document.new("commoncrawl", "c#2", base + " And one more sentence here.")
    _, dups = run(tmp_path, [[short, longer]], tag="a")
    assert list(dups) == [short.id] and dups[short.id]["survivor"] == longer.id
    _, dups = run(tmp_path, [[short, longer]], DedupConfig(survivor=["smallest_id"]), tag="b")
    assert list(dups) == [max(short.id, longer.id)]


def test_survivors_do_not_depend_on_shard_order_or_partitioning(tmp_path) -> None:
    docs = [Document.new("commoncrawl", f"c#{i}", edit(text(5), i % 3, seed=i))
            for i in range(9)]
    _, first = run(tmp_path, [docs[:3], docs[3:6], docs[6:]], tag="a")
    _, second = run(tmp_path, [docs[6:][::-1], docs[:6][::-1]], tag="b")
    assert len(first) >= 5
    assert {k: v["survivor"] for k, v in first.items()} == {
        k: v["survivor"] for k, v in second.items()}


@pytest.mark.parametrize("local_edges,local_bytes", [(5_000_000, 2**30), (5_000_000, 0), (0, 0)],
                         ids=["in-process", "distributed-scipy", "distributed"])
def test_chain_collapses_into_one_cluster(tmp_path, local_edges: int, local_bytes: int) -> None:
    base = text(7).split()
    tail, head = ["x1", "x2", "x3", "x4", "x5", "x6"], ["y1", "y2", "y3", "y4", "y5", "y6"]
    a = " ".join(base)
    b = " ".join([*base[:-6], *tail])
    c = " ".join([*head, *base[6:-6], *tail])
    docs = [Document.new("commoncrawl", f"c#{i}", t) for i, t in enumerate((a, b, c))]
    cfg = DedupConfig(minhash=MinHashConfig(threshold=0.7, verify=False), exact=False,
                      max_local_edges=local_edges, max_local_bytes=local_bytes)
    report, dups = run(tmp_path, [docs], cfg)
    assert len(dups) == 2
    assert report.extra["cluster_sizes"] == {"3": 1}
    assert report.extra["path"] == ("in-process" if local_bytes else "distributed")


def test_in_process_and_distributed_paths_give_identical_results(tmp_path) -> None:
    """Near copies at several edit rates, exact copies and an incremental index, spread over
    four shards: the small-corpus path (one partition in this process) and the cluster's
    shuffles remove the same documents for the same survivors and reasons, and count alike."""
    docs = []
    for i in range(24):
        base = text(200 + i)
        docs.append(Document.new("commoncrawl", f"o#{i}", base))
        if i % 3 == 0:
            docs.append(Document.new("commoncrawl", f"n#{i}", edit(base, 1 + i % 4, seed=i)))
        if i % 5 == 0:
            docs.append(Document.new("books", f"e#{i}", base))
    shards = [docs[k::4] for k in range(4)]
    results = {}
    for name, size in (("in-process", 2**30), ("distributed", 0)):
        cfg = DedupConfig(max_local_bytes=size, index=str(tmp_path / f"index-{name}"))
        run(tmp_path, [shards[0]], cfg, tag=f"{name}-first")  # an earlier run, indexed
        report, dups = run(tmp_path, shards[1:], cfg, tag=name)
        assert report.extra["path"] == name
        results[name] = (dups, report.total, report.extra["cluster_sizes"],
                         report.extra["index_added"])
    assert len(results["in-process"][0]) >= 5
    assert results["in-process"] == results["distributed"]
    # each removal's reason is its own: "exact" where its normalised text is its survivor's
    # (the cluster path once swapped reasons between rows: a column assigned after a shuffle)
    text_of = {d.id: normalise(d.text) for d in docs}
    for row in results["distributed"][0].values():
        same = text_of[row["id"]] == text_of[row["survivor"]]
        assert row["reason"] == ("exact" if same else "minhash"), row


def test_verification_drops_lsh_false_positives(tmp_path) -> None:
    base = text(8)
    far = edit(base, 40, seed=3)  # shares some bands by chance at a low threshold
    docs = [Document.new("books", "b#1", base), Document.new("books", "b#2", far)]
    loose = MinHashConfig(threshold=0.3, num_perm=128, verify=False)
    strict = MinHashConfig(threshold=0.3, num_perm=128, verify=True)
    _, unverified = run(tmp_path, [docs], DedupConfig(minhash=loose), tag="a")
    from lmforge.tasks.dedup.cluster import _jaccard  # noqa: F401 - the check under test
    a, b = (shingle_hashes(d.text) for d in docs)
    true = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
    _, verified = run(tmp_path, [docs], DedupConfig(minhash=strict), tag="b")
    assert (len(verified) == 1) == (true >= 0.3)
    assert len(unverified) >= len(verified)


def test_unrelated_documents_survive(tmp_path) -> None:
    docs = [Document.new("books", f"b#{i}", text(100 + i)) for i in range(20)]
    report, dups = run(tmp_path, [docs])
    assert dups == {} and report.total.docs_out == 20
    assert report.extra["cluster_sizes"] == {"1": 20}


def test_every_method_off_keeps_exact_copies(tmp_path) -> None:
    """An ablation's uncurated arm switches dedup off: copies stay, nothing crashes."""
    base = text(7)
    docs = [Document.new("books", "b#1", base), Document.new("books", "b#2", base)]
    report, dups = run(tmp_path, [docs], DedupConfig(exact=False, url=False, minhash=None))
    assert dups == {} and report.total.docs_out == 2


def test_incremental_index(tmp_path) -> None:
    index = tmp_path / "index"
    cfg = DedupConfig(index=str(index))
    batch_a = [Document.new("commoncrawl", f"a#{i}", text(200 + i)) for i in range(5)]
    report_a, dups_a = run(tmp_path, [batch_a], cfg, tag="a")
    assert dups_a == {} and DedupIndex(index).version == 1
    assert report_a.extra["index_added"] == 5
    # batch B repeats two of A's pages (one exactly, one edited) and has three new ones
    batch_b = [Document.new("commoncrawl", "b#0", text(200)),
               Document.new("commoncrawl", "b#1", edit(text(201), 2)),
               *(Document.new("commoncrawl", f"b#{i}", text(300 + i)) for i in range(2, 5))]
    report_b, dups_b = run(tmp_path, [batch_b], cfg, tag="b")
    assert set(dups_b) == {batch_b[0].id, batch_b[1].id}
    assert {r["survivor"] for r in dups_b.values()} == {batch_a[0].id, batch_a[1].id}
    assert DedupIndex(index).version == 2 and report_b.extra["index_added"] == 3
    # the same batch again: same decisions, nothing appended
    _, again = run(tmp_path, [batch_b], cfg, tag="c")
    assert again.keys() == dups_b.keys() and DedupIndex(index).version == 2
    ids = ds.dataset([str(f) for f in DedupIndex(index).files()]).to_table().column("id")
    assert len(ids) == len(set(ids.to_pylist())) == 8


def test_bands_and_rows_cover_num_perm() -> None:
    bands, rows = MinHashConfig(threshold=0.8, num_perm=128).bands_rows()
    assert bands * rows <= 128 and bands > 1


@pytest.mark.parametrize("threshold", [0.7, 0.8, 0.85, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_verified_banding_reaches_the_recall_at_the_threshold(threshold, num_perm) -> None:
    cfg = MinHashConfig(threshold=threshold, num_perm=num_perm)
    bands, rows = cfg.bands_rows()
    assert bands * rows <= num_perm
    assert candidate_probability(threshold, bands, rows) >= cfg.min_recall
    # of the bandings that reach it, the one with the fewest candidates below the threshold:
    # one more row per band (with as many bands as fit) falls short
    assert candidate_probability(threshold, num_perm // (rows + 1), rows + 1) < cfg.min_recall
    balanced = MinHashConfig(threshold=threshold, num_perm=num_perm, min_recall=None)
    assert candidate_probability(threshold, *balanced.bands_rows()) < cfg.min_recall
    # without verification every candidate is removed: the balanced choice stays
    unverified = MinHashConfig(threshold=threshold, num_perm=num_perm, verify=False)
    assert unverified.bands_rows() == balanced.bands_rows()


def test_report_carries_the_s_curve_and_verified_pairs(tmp_path) -> None:
    docs = [Document.new("commoncrawl", f"c#{i}", edit(text(9), i % 3, seed=i))
            for i in range(6)]
    report, _ = run(tmp_path, [docs[:3], docs[3:]], DedupConfig(exact=False, url=False))
    lsh = report.extra["lsh"]
    assert (lsh["bands"], lsh["rows"]) == (18, 7) and lsh["p_candidate_at_threshold"] > 0.98
    curve = list(lsh["s_curve"].values())
    assert curve == sorted(curve) and lsh["s_curve"]["1.00"] == 1.0
    assert lsh["verified_edges"] == sum(lsh["verified_jaccard"].values()) >= 5
    assert set(lsh["verified_jaccard"]) == {"0.80-0.85", "0.85-0.90", "0.90-0.95", "0.95-1.00"}
    section = lsh_section(lsh)  # the curation report's section
    assert "18 bands x 7 rows" in section and "probability 0.986" in section
    assert "0.80-0.85" in section


def test_empty_input(tmp_path) -> None:
    report, dups = run(tmp_path, [[]])
    assert dups == {} and report.total.docs_in == 0


def test_same_result_with_a_real_dask_cluster(tmp_path) -> None:
    from distributed import Client, LocalCluster

    docs = [Document.new("commoncrawl", f"c#{i}", edit(text(9), i % 4, seed=i))
            for i in range(8)]
    _, local = run(tmp_path, [docs[:4], docs[4:]], tag="local")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster):
        _, distributed = run(tmp_path, [docs[:4], docs[4:]], tag="d2")
    assert {k: v["survivor"] for k, v in local.items()} == {
        k: v["survivor"] for k, v in distributed.items()}


def _jaccard(a: str, b: str) -> float:
    x, y = shingle_hashes(a), shingle_hashes(b)
    inter = len(np.intersect1d(x, y))
    return inter / (len(x) + len(y) - inter)


def test_verification_keeps_each_edge_with_its_own_similarity(tmp_path) -> None:
    """Many shards, many candidate edges: every removal is at the threshold from its survivor
    and every close pair is found (a Jaccard column aligned to the wrong edges once removed
    distant copies and kept close ones, with the same number of removals)."""
    rng = random.Random(5)
    pairs = []
    for i in range(300):
        base = text(1000 + i)
        pairs.append((Document.new("commoncrawl", f"o#{i}", base),
                      Document.new("commoncrawl", f"c#{i}", edit(base, rng.choice((1, 25)),
                                                                seed=i))))
    docs = [d for p in pairs for d in p]
    _, dups = run(tmp_path, [docs[k::8] for k in range(8)],
                  DedupConfig(exact=False, url=False))
    by_id = {d.id: d for d in docs}
    close = {o.id for o, c in pairs if _jaccard(o.text, c.text) >= 0.8}
    assert 50 < len(close) < 250
    assert all(_jaccard(by_id[i].text, by_id[r["survivor"]].text) >= 0.8
               for i, r in dups.items())
    found = {o.id for o, c in pairs if c.id in dups or o.id in dups}
    assert found == close
