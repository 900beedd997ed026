"""The Gopher + C4 + FineWeb rule set: lmforge against datatrove on the same web corpus.

    python -m benchmarks.quality [--docs 3000] [--datatrove-python /tmp/dtvenv/bin/python]

Both run single-threaded on one core over the same generated 2 KB web pages; prints
documents/s per core for each, their ratio, and the agreement of keep/drop decisions. datatrove
runs in its own environment (see benchmarks/datatrove_quality.py) so lmforge's does not carry
it; without one, only lmforge's figures are printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.corpus import web_documents
from infra.settings import prepare_environment
from tasks.base import run_steps
from tasks.filters.quality import QualityConfig, build_quality_steps
from tasks.report import Tally
from tasks.schema import Document


def lmforge_chain() -> list:
    """The same four rule families as datatrove's chain, at the same defaults."""
    cfg = QualityConfig(language=None, uppercase_lines_min_letters=None, c4={}, fineweb={})
    return build_quality_steps(cfg)


def run_lmforge(texts: list[str]) -> tuple[float, list[str | None]]:
    docs = [Document.new("commoncrawl", f"bench#{i}", t) for i, t in enumerate(texts)]
    rejected: dict[str, str] = {}
    steps = lmforge_chain()
    start = time.perf_counter()
    for _ in run_steps(docs, steps, Tally("quality"),
                       lambda d, r, v: rejected.__setitem__(d.id, r)):
        pass
    seconds = time.perf_counter() - start
    return seconds, [rejected.get(d.id) for d in docs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--datatrove-python", type=Path, default=Path("/tmp/dtvenv/bin/python"))
    args = parser.parse_args()
    prepare_environment()
    texts = web_documents(args.docs, seed=1)
    mean_kb = sum(map(len, texts)) / len(texts) / 1024
    print(f"corpus: {len(texts)} web pages, mean {mean_kb:.1f} KB")
    lm_s, lm = run_lmforge(texts)
    print(f"lmforge:   {len(texts) / lm_s:8.0f} docs/s per core   kept {lm.count(None)}")
    print("  drops by rule:", dict(Counter(r for r in lm if r).most_common(8)))
    if not args.datatrove_python.exists():
        print(f"datatrove: skipped ({args.datatrove_python} not found; see "
              "benchmarks/datatrove_quality.py)")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
        fh.writelines(json.dumps(t) + "\n" for t in texts)
    done = subprocess.run([str(args.datatrove_python),
                           str(Path(__file__).with_name("datatrove_quality.py")), fh.name],
                          capture_output=True, text=True, check=True)
    dt = json.loads(done.stdout.strip().splitlines()[-1])
    dt_rate = len(texts) / dt["seconds"]
    print(f"datatrove: {dt_rate:8.0f} docs/s per core   kept {dt['decisions'].count(None)}")
    print("  drops by rule:", dict(Counter(r for r in dt["decisions"] if r).most_common(8)))
    agree = sum((a is None) == (b is None) for a, b in zip(lm, dt["decisions"], strict=True))
    print(f"speed ratio lmforge/datatrove: {len(texts) / lm_s / dt_rate:.1f}x")
    print(f"keep/drop agreement: {agree / len(texts):.2%} ({len(texts) - agree} differ)")
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(lm, dt["decisions"], strict=True))
              if (a is None) != (b is None)]
    for i, a, b in differ[:5]:
        print(f"  doc {i}: lmforge {a or 'keep'} | datatrove {b or 'keep'}")


if __name__ == "__main__":
    main()
