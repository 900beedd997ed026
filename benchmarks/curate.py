"""The whole ``lmforge curate`` flow against the datatrove pipeline a user would write for the
same crawl, and lmforge's scaling from 1 to 2 Dask workers, in one run on one input.

    python -m benchmarks.curate [--mb 200] [--files 16] [--workers 1 2]
                                [--datatrove-python /tmp/dtvenv/bin/python] [--work DIR]

The input is ``benchmarks.webcorpus``: CommonCrawl-format WARCs of real pages (the Python
documentation's page templates around real paragraphs) with 5% exact and 20% near copies.
lmforge runs as a newcomer runs it: ``lmforge curate -c cfg.yaml`` with the default config
(trafilatura, Gopher/C4/FineWeb rules, language ID, MinHash dedup, PII scrubbing, toxicity)
and ``dask.n_workers`` set. datatrove runs ``benchmarks/datatrove_curate.py`` in its own
environment (WarcReader -> Trafilatura -> Gopher/C4/FineWeb -> MinHash's 4 stages -> PII
formatter -> Parquet) with one task per WARC. Both are timed as whole commands (start-up
included) and compared per core: documents read / (seconds x processes). lmforge's
per-stage seconds are the manifest's (worker seconds summed over shards, so they add up to
more than the wall time when workers run side by side). datatrove does less (e-mail/IP
regexes instead of PII tiers, no toxicity or language step), so the ratio favours it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmforge.infra.settings import prepare_environment

from benchmarks import webcorpus
from benchmarks.corpus import MB

DATATROVE_SCRIPT = Path(__file__).with_name("datatrove_curate.py")
LMFORGE = Path(sys.executable).with_name("lmforge")  # the console script a user runs


def run_lmforge(crawl: Path, work: Path, workers: int) -> dict:
    """One ``lmforge curate`` command on the crawl; its wall seconds and the manifest."""
    out = work / f"lmforge-{workers}w"
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / f"curate-{workers}w.yaml"
    cfg.write_text(json.dumps({
        "output": str(out),
        "sources": [{"kind": "commoncrawl", "paths": [str(crawl / "*.warc.gz")]}],
        "dask": {"n_workers": workers, "dashboard_address": ":0"}}))
    start = time.perf_counter()
    done = subprocess.run([str(LMFORGE), "curate", "-c", str(cfg)],
                          check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"lmforge curate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall": seconds, "manifest": manifest, "processes": workers}


def run_datatrove(python: str, crawl: Path, work: Path, workers: int, tasks: int,
                  bands: int, rows: int) -> dict:
    out = work / f"datatrove-{workers}w"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([python, str(DATATROVE_SCRIPT), str(crawl), str(out), str(tasks),
                           str(workers), str(bands), str(rows)],
                          check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"datatrove failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": seconds, "processes": workers, "stages": result["seconds"],
            **{k: v for k, v in result.items() if k != "seconds"}}


def stage_rows(manifest: dict) -> list[tuple[str, float]]:
    """(stage, seconds) of lmforge's stages, language ID and the other rules split out."""
    rows: list[tuple[str, float]] = []
    for name, stage in manifest["stages"].items():
        steps = stage.get("extra", {}).get("step_seconds")
        if steps:
            rows += [(f"{name}.{step}", float(s)) for step, s in steps.items()]
            rest = stage["seconds"] - sum(steps.values())
            if rest >= 0.05:
                rows.append((f"{name} (rest)", rest))
        else:
            rows.append((name, float(stage["seconds"])))
    return rows


def per_core(docs: int, mb: float, run: dict) -> tuple[float, float]:
    cores = run["wall"] * run["processes"]
    return docs / cores, mb / cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    prepare_environment()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmforge-curate-bench-"))
    crawl = work / "crawl"
    webcorpus.build(crawl, args.mb, files=args.files)
    truth = json.loads((crawl / "truth.json").read_text())
    mb = sum(p.stat().st_size for p in crawl.glob("*.warc.gz")) / MB
    print(f"input: {args.files} WARCs, {mb:.1f} MB compressed, {truth['pages']:,} pages "
          f"({work})")
    lmforge = {w: run_lmforge(crawl, work, w) for w in args.workers}
    first = lmforge[args.workers[0]]["manifest"]
    lsh = first["stages"]["dedup"]["extra"]["lsh"]
    have_dt = Path(args.datatrove_python).exists()
    datatrove = run_datatrove(args.datatrove_python, crawl, work, 1, args.files, lsh["bands"],
                              lsh["rows"]) if have_dt else None

    print(f"\n{'run':<24}{'seconds':>9}{'read':>8}{'out':>8}{'docs/s/core':>13}"
          f"{'MB/s/core':>11}")
    rates = {}
    for w, run in lmforge.items():
        acc = run["manifest"]["accounting"]["sources"]["commoncrawl"]
        rates[w] = per_core(acc["read"], mb, run)
        print(f"{f'lmforge, {w} worker(s)':<24}{run['wall']:>9.1f}{acc['read']:>8,}"
              f"{acc['curated']:>8,}{rates[w][0]:>13.2f}{rates[w][1]:>11.3f}")
    if datatrove:
        dt_rate = per_core(datatrove["read"], mb, datatrove)
        print(f"{'datatrove, 1 worker':<24}{datatrove['wall']:>9.1f}{datatrove['read']:>8,}"
              f"{datatrove['out']:>8,}{dt_rate[0]:>13.2f}{dt_rate[1]:>11.3f}")
        w = args.workers[0]
        print(f"\nlmforge / datatrove per core ({w} worker): {rates[w][0] / dt_rate[0]:.2f}x")
        print("datatrove stages (s): " + ", ".join(
            f"{k} {v:.1f}" for k, v in datatrove["stages"].items()))
    else:
        print(f"\n(datatrove not found at {args.datatrove_python}: ratio not measured)")
    if len(lmforge) > 1:
        lo, hi = min(lmforge), max(lmforge)
        speedup = lmforge[lo]["wall"] / lmforge[hi]["wall"]
        print(f"lmforge {lo} -> {hi} workers: {speedup:.2f}x faster "
              f"({speedup / (hi / lo):.0%} of linear)")
    rows = stage_rows(first)
    if args.workers[0] == 1:  # one worker: the wall time beyond the stages is fixed cost
        rows.append(("start-up, tracking, rest", max(0.0, lmforge[1]["wall"]
                                                     - sum(s for _, s in rows))))
    total = sum(s for _, s in rows) or 1.0
    print(f"\nlmforge stages, {args.workers[0]} worker(s) (worker seconds, share):")
    for name, seconds in rows:
        print(f"  {name:<26}{seconds:>8.1f}  {seconds / total:>5.0%}")
    shards = first["stages"]["ingest"]["shards"]
    print(f"  shards: {shards}; dedup path: {first['stages']['dedup']['extra'].get('path')}")


if __name__ == "__main__":
    main()
