"""Tokenization throughput: lmforge's Dask packing against a single-process loop.

    python -m benchmarks.tokenization [--mb 60] [--workers 2] [--shards 8]

Both tokenize the same curated shards with the same trained byte-level BPE: lmforge with
``pack_shard`` mapped over the shards on a Dask LocalCluster (batched encoding, split, index,
checksums), the baseline with ``tokenizer.encode`` per document in one process writing one
flat file. Prints tokens/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from lmforge.infra.settings import prepare_environment
from lmforge.tasks.dataset import DatasetConfig, pack_shard
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import DocumentWriter, iter_documents
from lmforge.tasks.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer

from benchmarks.corpus import web_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    prepare_environment()
    root = Path(tempfile.mkdtemp(prefix="lmforge-bench-tok-"))
    texts = web_documents(int(args.mb * 1024 * 1024 / 2000), seed=4)
    shards = []
    for k in range(args.shards):
        path = root / f"part-{k:05d}.parquet"
        with DocumentWriter(path) as out:
            for i, text in enumerate(texts[k::args.shards]):
                out.write(Document.new("commoncrawl", f"{k}#{i}", text))
        shards.append(path)
    tok = train_tokenizer(shards[:2], TokenizerConfig(vocab_size=8192), root / "tok.json")
    print(f"corpus: {len(texts)} documents, {sum(map(len, texts)) / 2**20:.0f} MB in "
          f"{args.shards} shards; BPE vocabulary 8192")

    start = time.perf_counter()
    tokenizer = load_tokenizer(str(tok))
    with (root / "baseline.bin").open("wb") as out:
        base_tokens = 0
        for path in shards:
            for doc in iter_documents(path):
                ids = [*tokenizer.encode(doc.text).ids, 0]
                out.write(np.asarray(ids, dtype="<u2").tobytes())
                base_tokens += len(ids)
    base_s = time.perf_counter() - start

    import dask
    from distributed import Client, LocalCluster

    cfg = DatasetConfig(val_fraction=0.05)
    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
            n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(load_tokenizer, str(tok))  # as in the flow, loaded once per worker
        start = time.perf_counter()
        results = client.gather(client.map(
            pack_shard, shards, range(len(shards)), [str(tok)] * len(shards),
            [cfg] * len(shards), [root / "out"] * len(shards), pure=False))
        lm_s = time.perf_counter() - start
    lm_tokens = sum(sum(r.tokens.values()) for r in results)
    assert lm_tokens == base_tokens, (lm_tokens, base_tokens)
    print(f"single-process loop: {base_tokens / base_s:12,.0f} tokens/s ({base_s:.1f} s)")
    print(f"lmforge on Dask ({args.workers} workers): {lm_tokens / lm_s:12,.0f} tokens/s "
          f"({lm_s:.1f} s)   ratio {base_s / lm_s:.2f}x")


if __name__ == "__main__":
    main()
