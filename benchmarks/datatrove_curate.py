"""Runs inside the datatrove environment (see benchmarks/curate.py): the pipeline a datatrove
user writes for a crawl, as FineWeb's example does, on a folder of WARCs.

    python datatrove_curate.py WARC_DIR WORK_DIR TASKS WORKERS BANDS ROWS

1. WarcReader -> Trafilatura -> GopherRepetition -> GopherQuality -> C4Quality -> FineWebQuality
   -> JsonlWriter (one task per WARC, ``WORKERS`` processes);
2. MinHash signatures, 3. buckets (one task per band), 4. clusters, 5. the filter -> PIIFormatter
   (e-mail and IP addresses) -> ParquetWriter.

Prints JSON: seconds per stage, documents read, kept after the filters, and in the output.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.readers import JsonlReader, WarcReader
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
from datatrove.utils.word_tokenizers import SpaCyTokenizer


def main() -> None:
    warcs, work = sys.argv[1], Path(sys.argv[2])
    tasks, workers, bands, rows = map(int, sys.argv[3:7])
    cfg = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows)
    tok = SpaCyTokenizer("en")
    filtered = str(work / "filtered")
    stages = {
        "read+extract+filter": ([
            WarcReader(warcs, glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True),
            GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
            FineWebQualityFilter(),
            JsonlWriter(filtered, compression=None)], tasks),
        "minhash signatures": ([JsonlReader(filtered, compression=None),
                                MinhashDedupSignature(output_folder=str(work / "sigs"),
                                                      config=cfg, language=tok)], tasks),
        "minhash buckets": ([MinhashDedupBuckets(input_folder=str(work / "sigs"),
                                                 output_folder=str(work / "buckets"),
                                                 config=cfg)], bands),
        "minhash clusters": ([MinhashDedupCluster(input_folder=str(work / "buckets"),
                                                  output_folder=str(work / "remove"),
                                                  config=cfg)], 1),
        "dedup filter+PII+write": ([JsonlReader(filtered, compression=None),
                                    MinhashDedupFilter(input_folder=str(work / "remove")),
                                    PIIFormatter(),
                                    ParquetWriter(str(work / "out"), compression="zstd")], tasks),
    }
    seconds = {}
    for name, (pipeline, n) in stages.items():
        start = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=n, workers=min(workers, n),
                              logging_dir=str(work / "logs" / name.replace(" ", "_"))).run()
        seconds[name] = time.perf_counter() - start
    kept = sum(1 for path in Path(filtered).glob("*.jsonl") for _ in path.open())
    import pyarrow.parquet as pq

    out = sum(pq.read_metadata(p).num_rows for p in (work / "out").glob("*.parquet"))
    stats = json.loads((work / "logs" / "read+extract+filter" / "stats.json").read_text())
    read = next((s["stats"].get("documents", {}).get("total", 0) for s in stats
                 if "READER" in s["name"]), 0)
    print(json.dumps({"seconds": seconds, "read": read, "filtered": kept, "out": out}))


if __name__ == "__main__":
    main()
