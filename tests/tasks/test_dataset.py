from __future__ import annotations

import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from tasks.dataset import DatasetConfig, pack_shard, split_of, write_dataset_manifest
from tasks.schema import Document
from tasks.shards import DocumentWriter
from tasks.tokenizer import EOT, TokenizerConfig, load_tokenizer, train_tokenizer
from tests.tasks.test_curate import curate

SAMPLES = {
    "wikipedia": "Arvel is a town on the river Senna.\n\nHistory\n- item one",
    "reddit": "I visited Arvel last summer 🙂 and the mill was worth it!",
    "books": "\"We must reach Ilsby before dark,\" said Anna.",
    "code": "def f(x: int) -> int:\n    return x * 2  # double\n",
    "commoncrawl": "Café prices: 3,50 € — tabs\tand  spaces.",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    curate(root)
    curated = sorted((root / "curated").glob("part-*.parquet"))
    tok = train_tokenizer(curated, TokenizerConfig(vocab_size=1024), root / "tokenizer.json")
    return root, curated, tok


def test_tokenizer_round_trips_every_source(corpus) -> None:
    _, _, tok = corpus
    tokenizer = load_tokenizer(str(tok))
    for source, text in SAMPLES.items():
        ids = tokenizer.encode(text).ids
        assert tokenizer.decode(ids) == text, source
    assert tokenizer.get_vocab_size() == 1024
    assert tokenizer.token_to_id(EOT) == 0 and tokenizer.token_to_id("<extra_id_0>") is not None


def test_tokenizer_loads_in_transformers(corpus) -> None:
    _, _, tok = corpus
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tok))
    assert hf.decode(hf("Arvel lies on the Senna.")["input_ids"]) == "Arvel lies on the Senna."


def test_packing_loses_no_token_and_split_is_disjoint(corpus, tmp_path) -> None:
    _, curated, tok = corpus
    cfg = DatasetConfig(seq_len=64, val_fraction=0.2)
    tokenizer = load_tokenizer(str(tok))
    results = [pack_shard(p, i, str(tok), cfg, tmp_path) for i, p in enumerate(curated)]
    manifest = write_dataset_manifest(tmp_path, results, seq_len=64, vocab_size=1024,
                                      tokenizer=str(tok), tokenizer_sha="x", curated_version="y")
    from tasks.shards import iter_documents

    expected = {"train": 0, "val": 0}
    seen = {"train": set(), "val": set()}
    for path in curated:
        for doc in iter_documents(path):
            split = split_of(doc.id, 0.2)
            expected[split] += len(tokenizer.encode(doc.text).ids) + 1
            seen[split].add(doc.id)
    assert not seen["train"] & seen["val"]
    assert seen["val"]  # the held-out split is not empty
    for split in ("train", "val"):
        on_disk = sum(np.fromfile(tmp_path / s["files"][split], dtype="<u2").size
                      for s in manifest["shards"])
        assert on_disk == expected[split] == manifest["splits"][split]["tokens"]
    eot = tokenizer.token_to_id(EOT)
    biggest = max(results, key=lambda r: r.tokens["train"])
    tokens = np.fromfile(tmp_path / biggest.files["train"], dtype="<u2")
    assert tokens[-1] == eot and (tokens == eot).sum() == biggest.documents["train"]


def test_split_is_deterministic_by_id() -> None:
    ids = [Document.new("books", f"b#{i}", "x").id for i in range(2000)]
    val = [i for i in ids if split_of(i, 0.1) == "val"]
    assert val == [i for i in ids if split_of(i, 0.1) == "val"]
    assert 120 < len(val) < 280


def test_empty_shard_packs_to_empty_files(corpus, tmp_path) -> None:
    _, _, tok = corpus
    with DocumentWriter(tmp_path / "part-00000.parquet"):
        pass
    result = pack_shard(tmp_path / "part-00000.parquet", 0, str(tok), DatasetConfig(),
                        tmp_path / "out")
    assert result.tokens == {"train": 0, "val": 0}
