"""Runs inside the datatrove environment (see benchmarks/datatrove_quality.py): datatrove's four
MinHash stages on a JSON-lines corpus with the given bands x rows, one task, one worker.
Prints JSON: seconds per stage, the cluster id of every clustered document, removed ids."""

from __future__ import annotations

import json
import sys
import tempfile
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
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.word_tokenizers import SpaCyTokenizer


def main() -> None:
    corpus, bands, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cfg = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows)
    tok = SpaCyTokenizer("en")
    work = Path(tempfile.mkdtemp(prefix="dt-minhash-"))
    stages = {
        "signatures": [JsonlReader(corpus, text_key="text", id_key="id"),
                       MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg,
                                             language=tok)],
        "buckets": [MinhashDedupBuckets(input_folder=str(work / "sigs"),
                                        output_folder=str(work / "buckets"), config=cfg)],
        "cluster": [MinhashDedupCluster(input_folder=str(work / "buckets"),
                                        output_folder=str(work / "remove"), config=cfg,
                                        save_cluster_id=True)],
        "filter": [JsonlReader(corpus, text_key="text", id_key="id"),
                   MinhashDedupFilter(input_folder=str(work / "remove"), load_cluster_ids=True,
                                      exclusion_writer=JsonlWriter(str(work / "removed"),
                                                                   compression=None)),
                   JsonlWriter(str(work / "out"), compression=None)],
    }
    seconds = {}
    for name, pipeline in stages.items():
        tasks = bands if name == "buckets" else 1
        start = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=str(work / "logs" / name)).run()
        seconds[name] = time.perf_counter() - start
    clusters, removed = {}, []
    for folder in ("out", "removed"):
        for path in (work / folder).glob("*.jsonl"):
            for line in path.open():
                doc = json.loads(line)
                cid = doc.get("metadata", {}).get("minhash_cluster_id", -1)
                if cid != -1:
                    clusters[doc["id"]] = cid
                if folder == "removed":
                    removed.append(doc["id"])
    print(json.dumps({"seconds": seconds, "clusters": clusters, "removed": removed}))


if __name__ == "__main__":
    main()
