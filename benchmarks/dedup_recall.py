"""MinHash-LSH recall and precision per Jaccard bin, on near-duplicates of real documents.

    python -m benchmarks.dedup_recall [--pairs 1800] [--cache .cache/real-corpora]

Base documents are real text nobody here wrote: Wikipedia articles, passages of the novels and
pages of the Python documentation that ``python -m lmforge.infra.real_corpora`` fetches. Each
gets one copy edited (words substituted, deleted and inserted at random places) until the exact
Jaccard similarity of the two documents' 5-word shingle sets reaches a target drawn uniformly from
0.70-1.00. The pairs are mixed into one corpus and deduplicated by ``find_duplicates`` with two
bandings of the same 128 permutations: lmforge's default (chosen for recall at the threshold,
verified by exact Jaccard) and datasketch's balanced choice (what datatrove and a plain
``MinHashLSH(threshold=0.8)`` use). Printed per bin: pairs, the S-curve's promise, recall
(the copy removed in favour of its original or the original in favour of the copy), and
overall the precision of the removals (a removed document is at Jaccard >= 0.8 from a member of
its cluster).
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from lmforge.infra.settings import prepare_environment
from lmforge.tasks.dedup import DedupConfig, MinHashConfig, find_duplicates, signature_table
from lmforge.tasks.dedup.minhash import candidate_probability, shingle_hashes
from lmforge.tasks.readers import ReadContext, Source, plan_partitions, read_partition
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document
from pydantic import TypeAdapter

BINS = (0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 1.0)
PASSAGE_WORDS = 600  # novels are cut into passages of this many words
MIN_WORDS = 150


def base_texts(cache: Path) -> Iterator[tuple[str, str]]:
    """(label, text) of real documents of at least MIN_WORDS words."""
    sources = TypeAdapter(list[Source]).validate_python([
        {"kind": "wikipedia", "paths": [str(cache / "wikipedia" / "*.bz2")]},
        {"kind": "books", "paths": [str(cache / "books" / "*.txt")]},
        {"kind": "commoncrawl", "paths": [str(cache / "python-docs" / "*.warc.gz")]},
    ])
    tally = Tally("ingest")
    for part in plan_partitions(sources):
        ctx = ReadContext(part, tally, lambda *a: None, lambda *a, **k: None)
        for doc in read_partition(part, sources[part.source_index], ctx):
            words = doc.text.split()
            if doc.source == "books":
                for k in range(0, len(words) - MIN_WORDS, PASSAGE_WORDS):
                    yield f"{doc.location}@{k}", " ".join(words[k:k + PASSAGE_WORDS])
            elif len(words) >= MIN_WORDS:
                yield doc.location, doc.text


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / max(1, len(a) + len(b) - inter)


def edited(words: list[str], k: int, rng: random.Random) -> list[str]:
    """``words`` with ``k`` random word edits (a third each substitutions, deletions and
    insertions of words drawn from the document itself); the same rng state gives nested
    edit sets, so Jaccard falls as k grows."""
    out = list(words)
    for _ in range(k):
        op, at = rng.random(), rng.randrange(len(out))
        if op < 1 / 3:
            out[at] = rng.choice(words)
        elif op < 2 / 3 and len(out) > MIN_WORDS // 2:
            del out[at]
        else:
            out.insert(at, rng.choice(words))
    return out


def near_copy(text: str, target: float, seed: int) -> tuple[str, float]:
    """A copy of ``text`` whose shingle Jaccard to it is as close to ``target`` as whole
    word edits allow (bisection on the number of edits)."""
    words, base = text.split(), shingle_hashes(text)

    def at(k: int) -> tuple[str, float]:
        copy = " ".join(edited(words, k, random.Random(seed)))
        return copy, jaccard(base, shingle_hashes(copy))

    lo, hi = 0, max(2, len(words) // 3)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if at(mid)[1] >= target:
            lo = mid
        else:
            hi = mid
    return min((at(lo), at(hi)), key=lambda cj: abs(cj[1] - target))


@dataclass
class Pair:
    original: Document
    copy: Document
    jaccard: float


def make_pairs(cache: Path, n: int, seed: int = 7) -> list[Pair]:
    rng = random.Random(seed)
    texts = list(base_texts(cache))
    rng.shuffle(texts)
    pairs = []
    for i, (label, text) in enumerate(texts[:n]):
        copy, j = near_copy(text, rng.uniform(BINS[0], BINS[-1]), seed + i)
        pairs.append(Pair(Document.new("commoncrawl", f"orig:{label}", text),
                          Document.new("commoncrawl", f"copy:{label}", copy), j))
    return pairs


@dataclass
class BinScore:
    low: float
    high: float
    pairs: int
    found: int
    promised: float  # mean P(candidate) of the banding over the bin's pairs

    @property
    def recall(self) -> float:
        return self.found / self.pairs if self.pairs else float("nan")


@dataclass
class Result:
    bands: int
    rows: int
    bins: list[BinScore]
    removed: int
    true_removals: int

    @property
    def precision(self) -> float:
        return self.true_removals / self.removed if self.removed else 1.0

    def recall_between(self, low: float, high: float) -> float:
        chosen = [b for b in self.bins if b.low >= low and b.high <= high]
        return sum(b.found for b in chosen) / max(1, sum(b.pairs for b in chosen))


def evaluate(pairs: list[Pair], minhash: MinHashConfig, work: Path, shards: int = 4
             ) -> Result:
    """Deduplicate the corpus of all pairs with ``minhash`` and score it."""
    cfg = DedupConfig(exact=False, url=False, minhash=minhash)
    docs = [d for p in pairs for d in (p.original, p.copy)]
    work.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(shards):
        path = work / f"sig-part-{k:05d}.parquet"
        pq.write_table(signature_table(docs[k::shards], k, minhash), path)
        files.append(path)
    find_duplicates(files, cfg, work / "dups")
    rows = pq.read_table(work / "dups").to_pylist() if (work / "dups").exists() else []
    survivor = {r["id"]: r["survivor"] for r in rows}
    shingles = {d.id: shingle_hashes(d.text) for d in docs}
    members: dict[str, list[str]] = {}
    for doc_id, s in survivor.items():
        members.setdefault(s, [s]).append(doc_id)
    true = sum(any(jaccard(shingles[doc_id], shingles[m]) >= minhash.threshold
                   for m in members[s] if m != doc_id) for doc_id, s in survivor.items())
    bands, rows_ = minhash.bands_rows()
    bins = []
    for low, high in itertools.pairwise(BINS):
        inside = [p for p in pairs if low <= p.jaccard < high or (high == 1.0 and p.jaccard == 1)]
        found = sum(survivor.get(p.copy.id) == p.original.id
                    or survivor.get(p.original.id) == p.copy.id
                    or (p.copy.id in survivor
                        and survivor.get(p.copy.id) == survivor.get(p.original.id))
                    for p in inside)
        promise = float(np.mean([candidate_probability(p.jaccard, bands, rows_)
                                 for p in inside])) if inside else float("nan")
        bins.append(BinScore(low, high, len(inside), found, promise))
    return Result(bands, rows_, bins, len(survivor), true)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1800)
    parser.add_argument("--cache", type=Path, default=Path(".cache/real-corpora"))
    args = parser.parse_args()
    prepare_environment()
    pairs = make_pairs(args.cache, args.pairs)
    tmp = Path(tempfile.mkdtemp(prefix="lmforge-bench-dedup-recall-"))
    arms = {"lmforge (recall banding, verified)": MinHashConfig(),
            "balanced banding (datasketch/datatrove)": MinHashConfig(min_recall=None)}
    results = {name: evaluate(pairs, cfg, tmp / str(i)) for i, (name, cfg) in
               enumerate(arms.items())}
    print(f"{len(pairs)} near-copy pairs of real documents, threshold 0.80, 128 permutations, "
          "5-word shingles\n")
    print(f"{'Jaccard':<11} {'pairs':>6}" + "".join(
        f"  {f'{r.bands}x{r.rows} promise':>16} {'removed':>7}" for r in results.values()))
    for k, b in enumerate(next(iter(results.values())).bins):
        cells = "".join(f"  {r.bins[k].promised:>16.3f} {r.bins[k].recall:>7.3f}"
                        for r in results.values())
        print(f"{b.low:.2f}-{b.high:.2f}  {b.pairs:>6}{cells}")
    for name, r in results.items():
        print(f"{name}: {r.bands}x{r.rows}, recall at 0.80-0.85 "
              f"{r.recall_between(0.80, 0.85):.3f}, at >= 0.80 {r.recall_between(0.80, 1.0):.3f}"
              f", precision {r.precision:.4f} ({r.removed} removed)")
    print("targets: recall >= 0.95 at Jaccard 0.80-0.85, precision >= 0.99")


if __name__ == "__main__":
    main()
