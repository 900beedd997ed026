"""The Gopher + C4 + FineWeb rule set: lmforge against datatrove on the same documents.

    python -m benchmarks.quality [--docs 3000] [--datatrove-python /tmp/dtvenv/bin/python]
                                 [--cache .cache/real-corpora]

Two corpora: generated 2 KB web pages, and the real documents of the judgment set (Wikipedia
articles, novels, web pages and the Python documentation that ``python -m
lmforge.infra.real_corpora`` fetches). lmforge runs in two modes: datatrove parity
(``DATATROVE_PARITY``: its word tokenizer, counting and thresholds) and its default (the papers'
whitespace words, logical lines, markup and code lines not counted as repeats). Prints documents/s
per core on one core, their ratio, the keep/drop agreement of each mode with datatrove, and the
documents on which they differ. datatrove runs in its own environment (see
benchmarks/datatrove_quality.py) so lmforge's does not carry it; without one, only lmforge's
figures are printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from lmforge.infra.settings import prepare_environment
from lmforge.tasks.base import run_steps
from lmforge.tasks.filters.quality import DATATROVE_PARITY, QualityConfig, build_quality_steps
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document

from benchmarks.corpus import web_documents

MODES = ("datatrove parity", "lmforge default")


def lmforge_chain(mode: str = "datatrove parity") -> list:
    """The same four rule families as datatrove's chain: Gopher repetition, Gopher quality,
    C4 and FineWeb, in datatrove's settings or lmforge's defaults."""
    families: dict = {"repetition": {}, "gopher": {}, "c4": {}, "fineweb": {}}
    if mode == "datatrove parity":
        families = {k: {**v, **DATATROVE_PARITY.get(k, {})} for k, v in families.items()}
    cfg = QualityConfig(language=None, uppercase_lines=None, **families)
    return build_quality_steps(cfg)


def run_lmforge(texts: list[str], mode: str) -> tuple[float, list[str | None]]:
    docs = [Document.new("commoncrawl", f"bench#{i}", t) for i, t in enumerate(texts)]
    rejected: dict[str, str] = {}
    steps = lmforge_chain(mode)
    start = time.perf_counter()
    for _ in run_steps(docs, steps, Tally("quality"),
                       lambda d, r, v: rejected.__setitem__(d.id, r)):
        pass
    seconds = time.perf_counter() - start
    return seconds, [rejected.get(d.id) for d in docs]


def run_datatrove(texts: list[str], python: Path) -> dict | None:
    if not python.exists():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
        fh.writelines(json.dumps(t) + "\n" for t in texts)
    done = subprocess.run([str(python), str(Path(__file__).with_name("datatrove_quality.py")),
                           fh.name], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def real_texts(cache: Path) -> list[str]:
    """The judgment set's prose documents as lmforge's readers produce them (no code)."""
    from benchmarks.decisions import judged_documents, load_judgments

    judged = load_judgments()
    return [d.text for d in judged_documents(cache)
            if d.source != "code" and f"{d.source}:{d.location}" in judged]


def compare(name: str, texts: list[str], python: Path, show: int = 4) -> None:
    mean_kb = sum(map(len, texts)) / len(texts) / 1024
    print(f"\n{name}: {len(texts)} documents, mean {mean_kb:.1f} KB")
    dt = run_datatrove(texts, python)
    results = {mode: run_lmforge(texts, mode) for mode in MODES}
    for mode, (seconds, decisions) in results.items():
        print(f"  lmforge {mode:<17} {len(texts) / seconds:8.0f} docs/s per core   kept "
              f"{decisions.count(None)}")
        print("    drops by rule:", dict(Counter(r for r in decisions if r).most_common(6)))
    if dt is None:
        print(f"  datatrove: skipped ({python} not found; see benchmarks/datatrove_quality.py)")
        return
    dt_rate = len(texts) / dt["seconds"]
    print(f"  datatrove                 {dt_rate:8.0f} docs/s per core   kept "
          f"{dt['decisions'].count(None)}")
    print("    drops by rule:", dict(Counter(r for r in dt["decisions"] if r).most_common(6)))
    parity_seconds = results[MODES[0]][0]
    print(f"  speed ratio lmforge (parity) / datatrove: "
          f"{len(texts) / parity_seconds / dt_rate:.1f}x")
    for mode, (_, decisions) in results.items():
        pairs = list(zip(decisions, dt["decisions"], strict=True))
        agree = sum((a is None) == (b is None) for a, b in pairs)
        print(f"  keep/drop agreement, {mode} vs datatrove: {agree / len(texts):.2%} "
              f"({len(texts) - agree} differ)")
        differ = [(i, a, b) for i, (a, b) in enumerate(pairs) if (a is None) != (b is None)]
        for i, a, b in differ[:show]:
            print(f"    doc {i}: lmforge {a or 'keep'} | datatrove {b or 'keep'} | "
                  f"{texts[i][:70]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--datatrove-python", type=Path, default=Path("/tmp/dtvenv/bin/python"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/real-corpora"))
    args = parser.parse_args()
    prepare_environment()
    compare("generated web pages", web_documents(args.docs, seed=1), args.datatrove_python)
    if (args.cache / "sources.json").exists():
        compare("real documents of the judgment set", real_texts(args.cache),
                args.datatrove_python)
    else:
        print(f"\nreal documents: skipped ({args.cache} has no corpora; run "
              "python -m lmforge.infra.real_corpora)")


if __name__ == "__main__":
    main()
