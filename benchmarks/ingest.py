"""Reader throughput and memory: lmforge's readers on Dask against a plain single-process loop.

    python -m benchmarks.ingest [--mb 200] [--workers 2] [--rss-mb 24] [--root DIR]

Prints, per source kind, documents/s and MB/s (on-disk input) for lmforge (partitions on a Dask
LocalCluster) and for the obvious baseline (the same libraries in a plain loop over the files),
measured in the same run; then the peak RSS of one process reading a corpus 1x and 4x as large,
which must stay flat because every reader streams.
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import mwparserfromhell
import trafilatura
import zstandard
from lmforge.infra.settings import prepare_environment
from lmforge.tasks.readers import Source, plan_shards, read_partition
from lmforge.tasks.readers.base import ReadContext
from lmforge.tasks.report import Tally
from pydantic import TypeAdapter
from warcio.archiveiterator import ArchiveIterator

from benchmarks.corpus import MB, SHARES, build, raw_bytes

PATTERNS = {"commoncrawl": "*.warc.gz", "wikipedia": "*.xml.bz2", "reddit": "*.zst",
            "books": "*.txt", "code": "*"}


def sources(paths: dict[str, Path], split: dict[str, int] | float) -> dict[str, object]:
    """One source per kind; ``split`` is split_bytes per kind, or one size in MB for all."""
    adapter = TypeAdapter(Source)
    sizes = split if isinstance(split, dict) else dict.fromkeys(paths, int(split * MB))
    return {k: adapter.validate_python({"kind": k, "paths": [str(p / PATTERNS[k])],
                                        "split_bytes": max(1024, sizes[k])})
            for k, p in paths.items()}


def read_count(shard, source) -> tuple[int, int]:
    """Read one shard, discarding documents: (documents, text bytes)."""
    tally = Tally("ingest")
    n = size = 0
    for part in shard.parts:
        ctx = ReadContext(part, tally, lambda *a: None, lambda *a, **k: None)
        for doc in read_partition(part, source, ctx):
            n += 1
            size += doc.nbytes
    return n, size


# --- the baseline: each kind's libraries in a plain loop ------------------------------------

def base_commoncrawl(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.warc.gz")):
        with path.open("rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response":
                    html = record.content_stream().read().decode("utf-8", "replace")
                    n += trafilatura.extract(html) is not None
    return n


def base_wikipedia(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.xml.bz2")):
        with bz2.open(path) as fh:
            for _, elem in ET.iterparse(fh):
                if elem.tag.endswith("}page") or elem.tag == "page":
                    text = elem.findtext(".//{*}text") or ""
                    mwparserfromhell.parse(text).strip_code()
                    n += 1
                    elem.clear()
    return n


def base_reddit(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.zst")):
        with path.open("rb") as fh:
            reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(fh)
            for line in io.TextIOWrapper(reader, encoding="utf-8"):
                json.loads(line)
                n += 1
    return n


def base_books(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        start = text.find("*** START OF")
        end = text.find("*** END OF")
        text[text.find("\n", start) + 1:end].split("\n\n")
        n += 1
    return n


def base_code(folder: Path) -> int:
    n = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                Path(root, name).read_bytes().decode("utf-8")
                n += 1
    return n


BASELINES = {"commoncrawl": base_commoncrawl, "wikipedia": base_wikipedia,
             "reddit": base_reddit, "books": base_books, "code": base_code}


def throughput(paths: dict[str, Path], workers: int, total_mb: float) -> None:
    import dask
    from distributed import Client, LocalCluster

    disk = raw_bytes(paths)
    # split_bytes per reader so that each has about 4 shards per worker to balance
    srcs = sources(paths, {k: v // (4 * workers) for k, v in disk.items()})
    text_mb = {k: total_mb * share for k, share in SHARES.items()}
    rows = []
    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(prepare_environment)
        for kind, folder in paths.items():
            parts = plan_shards([srcs[kind]])
            start = time.perf_counter()
            results = client.gather(client.map(read_count, parts, [srcs[kind]] * len(parts),
                                               pure=False))
            lm_s = time.perf_counter() - start
            docs = sum(r[0] for r in results)
            start = time.perf_counter()
            base_docs = BASELINES[kind](folder)
            base_s = time.perf_counter() - start
            rows.append((kind, len(parts), docs, base_docs, text_mb[kind], lm_s, base_s))
    print(f"\nthroughput ({workers} Dask workers vs 1 plain loop; MB = uncompressed input)")
    print(f"{'reader':<12}{'shards':>7}{'docs':>9}{'lmforge docs/s':>16}{'MB/s':>8}"
          f"{'baseline docs/s':>17}{'MB/s':>8}{'ratio':>7}")
    for kind, parts, docs, base_docs, mb, lm_s, base_s in rows:
        print(f"{kind:<12}{parts:>7}{docs:>9}{docs / lm_s:>16.0f}{mb / lm_s:>8.2f}"
              f"{base_docs / base_s:>17.0f}{mb / base_s:>8.2f}{base_s / lm_s:>7.2f}")


def rss_child(kind: str, folder: str) -> None:
    """In a fresh process: read every partition of the folder, print peak RSS (MiB)."""
    source = sources({kind: Path(folder)}, 1e9)[kind]  # one partition per file
    docs = sum(read_count(p, source)[0] for p in plan_shards([source]))
    print(json.dumps({"docs": docs, "rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited from a
    parent across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(root: Path, rss_mb: float) -> None:
    print(f"\npeak RSS of one process reading the corpus at 1x ({rss_mb:g} MB) and 4x")
    print(f"{'reader':<12}{'docs 1x':>9}{'RSS 1x MiB':>12}{'docs 4x':>9}{'RSS 4x MiB':>12}"
          f"{'ratio':>7}")
    small = build(root / "rss-1x", rss_mb, seed=7)
    big = build(root / "rss-4x", rss_mb * 4, seed=7)
    for kind in small:
        runs = []
        for paths in (small, big):
            out = subprocess.run([sys.executable, __file__, "--rss-child", kind, str(paths[kind])],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{kind:<12}{runs[0]['docs']:>9}{runs[0]['rss_mib']:>12.0f}{runs[1]['docs']:>9}"
              f"{runs[1]['rss_mib']:>12.0f}{runs[1]['rss_mib'] / runs[0]['rss_mib']:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rss-mb", type=float, default=24)
    parser.add_argument("--root", type=Path,
                        default=Path(tempfile.gettempdir()) / "lmforge-bench-ingest")
    parser.add_argument("--rss-child", nargs=2, metavar=("KIND", "FOLDER"))
    args = parser.parse_args()
    prepare_environment()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    start = time.perf_counter()
    paths = build(args.root / f"corpus-{args.mb:g}", args.mb)
    disk = raw_bytes(paths)
    print(f"corpus: {sum(disk.values()) / MB:.0f} MB on disk ({args.mb:g} MB of raw text), "
          f"built in {time.perf_counter() - start:.0f} s: "
          + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in disk.items()))
    throughput(paths, args.workers, args.mb)
    peak_rss(args.root, args.rss_mb)


if __name__ == "__main__":
    main()
