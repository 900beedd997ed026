"""Toxicity scoring speed and quality.

    python -m benchmarks.toxicity [--docs 2000] [--detoxify-checkpoint FILE]

Prints documents/s of detoxify scoring batched (lmforge's path) against one document per call,
in the same run and on the same texts; the profanity-check scorer's documents/s; and both
scorers' precision and recall on the labelled Jigsaw sample (../shared/data/jigsaw-sample).
Without a real detoxify checkpoint (none can be downloaded here) a tiny random-weight one in
detoxify's format is built: its speeds are those of the real loading and batching code, its
precision and recall mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from lmforge.infra.settings import prepare_environment
from lmforge.tasks.toxicity import DetoxifyConfig, DetoxifyScorer, profanity_scorer

from benchmarks.corpus import web_documents
from tests.tasks.test_toxicity import make_detoxify_checkpoint

JIGSAW = Path(__file__).resolve().parents[2] / "shared/data/jigsaw-sample/train.csv"


def precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float
                     ) -> tuple[float, float]:
    predicted = scores > threshold
    tp = int((predicted & labels).sum())
    return tp / max(1, int(predicted.sum())), tp / max(1, int(labels.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--detoxify-checkpoint", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    prepare_environment()
    texts = [t[:600] for t in web_documents(args.docs, seed=2)]
    checkpoint = args.detoxify_checkpoint or make_detoxify_checkpoint(
        Path(tempfile.mkdtemp(prefix="detoxify-tiny-")))
    cfg = DetoxifyConfig(checkpoint=str(checkpoint), device="cpu", batch_size=args.batch_size)
    scorer = DetoxifyScorer(cfg)
    scorer(texts[:8])  # warm up
    start = time.perf_counter()
    batched = scorer(texts)["detoxify.toxicity"]
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    single = np.array([scorer([t])["detoxify.toxicity"][0] for t in texts])
    single_s = time.perf_counter() - start
    kind = "given" if args.detoxify_checkpoint else "tiny random-weight"
    print(f"detoxify ({kind} checkpoint), {len(texts)} texts of <= 600 chars:")
    print(f"  batched ({args.batch_size}/call): {len(texts) / batched_s:8.1f} docs/s")
    print(f"  one per call:        {len(texts) / single_s:8.1f} docs/s   "
          f"speed-up {single_s / batched_s:.1f}x   max |diff| {np.abs(batched - single).max():.2e}")
    profanity = profanity_scorer()
    start = time.perf_counter()
    profanity(texts)
    print(f"profanity-check:       {len(texts) / (time.perf_counter() - start):8.1f} docs/s")
    if not JIGSAW.exists():
        print(f"Jigsaw sample not found at {JIGSAW}: precision/recall skipped")
        return
    with JIGSAW.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    comments = [r["comment_text"] for r in rows]
    labels = np.array([r["toxic"] == "1" for r in rows])
    print(f"Jigsaw sample: {len(rows)} comments, {int(labels.sum())} toxic")
    for name, scores in (("profanity-check", profanity(comments)["toxicity"]),
                         (f"detoxify ({kind})", scorer(comments)["detoxify.toxicity"])):
        for threshold in (0.5, 0.9):
            p, r = precision_recall(scores, labels, threshold)
            print(f"  {name:<32} threshold {threshold}: precision {p:.3f}  recall {r:.3f}")


if __name__ == "__main__":
    main()
