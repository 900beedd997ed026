from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from lmforge.infra.make_sample import Prose
from lmforge.model.data import PackedSequences, PlanStream, SequenceLoader
from lmforge.tasks.dataset import (
    DatasetConfig,
    build_plan,
    pack_shard,
    split_of,
    write_dataset_manifest,
)
from lmforge.tasks.decontaminate import DecontaminationConfig, overlaps
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import DocumentWriter, iter_documents
from lmforge.tasks.tokenizer import EOT, TokenizerConfig, load_tokenizer, train_tokenizer
from transformers import PreTrainedTokenizerFast

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


def pack(curated, tok, cfg, out):
    results = [pack_shard(p, i, str(tok), cfg, out) for i, p in enumerate(curated)]
    mixture = build_plan(out, cfg, [r.shard for r in results])
    manifest = write_dataset_manifest(out, results, seq_len=cfg.seq_len, vocab_size=1024,
                                      tokenizer=str(tok), tokenizer_sha="x", curated_version="y",
                                      mixture=mixture)
    return results, manifest


def test_tokenizer_round_trips_every_source(corpus) -> None:
    _, _, tok = corpus
    tokenizer = load_tokenizer(str(tok))
    for source, text in SAMPLES.items():
        assert tokenizer.decode(tokenizer.encode(text).ids) == text, source
    assert tokenizer.get_vocab_size() == 1024
    assert tokenizer.token_to_id(EOT) == 0 and tokenizer.token_to_id("<extra_id_0>") is not None


def test_tokenizer_loads_in_transformers(corpus) -> None:
    _, _, tok = corpus
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tok))
    assert hf.decode(hf("Arvel lies on the Senna.")["input_ids"]) == "Arvel lies on the Senna."


def test_packing_loses_no_token_and_split_is_disjoint(corpus, tmp_path) -> None:
    _, curated, tok = corpus
    cfg = DatasetConfig(seq_len=64, val_fraction=0.2)
    _, manifest = pack(curated, tok, cfg, tmp_path)
    tokenizer = load_tokenizer(str(tok))
    expected, seen = {"train": 0, "val": 0}, {"train": set(), "val": set()}
    for path in curated:
        for doc in iter_documents(path):
            split = split_of(doc.id, 0.2)
            expected[split] += len(tokenizer.encode(doc.text).ids) + 1
            seen[split].add(doc.id)
    assert not seen["train"] & seen["val"] and seen["val"]
    for split in ("train", "val"):
        stream = PlanStream(tmp_path, tmp_path / manifest["plans"][split], manifest["dtype"])
        assert len(stream) == expected[split] == manifest["splits"][split]["tokens"]
        plan = pq.read_table(tmp_path / manifest["plans"][split]).to_pandas()
        assert set(plan.id) == seen[split]
        # the stream is made of whole documents, each ending with the end-of-text token
        assert (stream.read(0, len(stream)) == 0).sum() == len(plan)


def test_mixture_weights_are_met_within_one_percent(tmp_path) -> None:
    prose = Prose(3)
    with DocumentWriter(tmp_path / "part-00000.parquet") as out:
        for i in range(400):
            out.write(Document.new("wikipedia", f"w#{i}", " ".join(prose.article("Arvel", 2))))
            out.write(Document.new("commoncrawl", f"c#{i}", prose.paragraph(
                __import__("lmforge.infra.make_sample").infra.make_sample.CHAT, 3)))
    tok = train_tokenizer([tmp_path / "part-00000.parquet"], TokenizerConfig(vocab_size=512),
                          tmp_path / "tok.json")
    cfg = DatasetConfig(seq_len=32, val_fraction=0.0, mixture={"wikipedia": 3.0,
                                                               "commoncrawl": 0.6})
    _, manifest = pack([tmp_path / "part-00000.parquet"], tok, cfg, tmp_path / "out")
    mix = manifest["mixture"]
    assert mix["wikipedia"]["tokens"] == 3 * mix["wikipedia"]["available_tokens"]
    assert abs(mix["commoncrawl"]["error"]) < 0.01
    plan = pq.read_table(tmp_path / "out" / manifest["plans"]["train"]).to_pandas()
    assert plan[plan.source == "wikipedia"].groupby("id").size().eq(3).all()
    assert sorted(plan.id.head(20)) != sorted(plan.sort_values("id").id.head(20))  # mixed


def test_decontamination_removes_a_planted_test_passage(tmp_path) -> None:
    passage = ("the quick brown ferryman carried seven baskets of pears across the wide "
               "river before the bells of the chapel rang at noon")
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": "Who carried pears?", "context": passage}) + "\n")
    cfg = DecontaminationConfig(paths=[str(evals)])
    leaked = Document.new("commoncrawl", "c#1", "Some intro. " + passage.upper() + " More.")
    clean = Document.new("commoncrawl", "c#2", " ".join(Prose(1).article("Arvel", 2)))
    assert overlaps(leaked.text, cfg) and not overlaps(clean.text, cfg)
    with DocumentWriter(tmp_path / "part-00000.parquet") as out:
        out.write(leaked)
        out.write(clean)
    tok = train_tokenizer([tmp_path / "part-00000.parquet"], TokenizerConfig(vocab_size=300),
                          tmp_path / "tok.json")
    result = pack_shard(tmp_path / "part-00000.parquet", 0, str(tok),
                        DatasetConfig(val_fraction=0.0, decontaminate=cfg), tmp_path / "o")
    assert result.contaminated == {"commoncrawl": 1} and result.documents["train"] == 1


def test_training_reader_resumes_and_reports_its_place_on_disk(corpus, tmp_path) -> None:
    _, curated, tok = corpus
    cfg = DatasetConfig(seq_len=16, val_fraction=0.1)
    _, manifest = pack(curated, tok, cfg, tmp_path)
    data = PackedSequences(PlanStream(tmp_path, tmp_path / manifest["plans"]["train"],
                                      manifest["dtype"]), 16)
    loader = SequenceLoader(data, 4, seed=2)
    it = iter(loader)
    for _ in range(3):
        next(it)
    place = loader.position()
    assert place["consumed"] == 12 and place["file"].startswith("train/part-")
    resumed = SequenceLoader(data, 4, seed=2)
    resumed.load_state_dict(loader.state_dict())
    assert np.array_equal(next(iter(resumed)), next(it))


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


def test_packing_resumes_and_recomputes_corrupted_shards(corpus, tmp_path) -> None:
    _, curated, tok = corpus
    cfg = DatasetConfig(seq_len=64, val_fraction=0.2)
    first = pack_shard(curated[0], 0, str(tok), cfg, tmp_path)
    token_file = tmp_path / first.files["train"]
    before = token_file.stat().st_mtime_ns
    assert pack_shard(curated[0], 0, str(tok), cfg, tmp_path) == first  # from its record
    assert token_file.stat().st_mtime_ns == before
    token_file.write_bytes(token_file.read_bytes()[:-2])  # truncated by a dying worker
    again = pack_shard(curated[0], 0, str(tok), cfg, tmp_path)
    assert again == first and token_file.stat().st_size == first.tokens["train"] * 2
    other = pack_shard(curated[0], 0, str(tok), cfg.model_copy(update={"val_fraction": 0.5}),
                       tmp_path)  # another config: recomputed
    assert other.documents != first.documents


def test_plan_covers_only_the_shards_of_this_dataset(corpus, tmp_path) -> None:
    """Packed shards of another dataset version left in the folder never leak into the plan."""
    _, curated, tok = corpus
    assert len(curated) >= 2
    cfg = DatasetConfig(seq_len=64, val_fraction=0.2)
    results, _ = pack(curated, tok, cfg, tmp_path)  # every shard packed
    build_plan(tmp_path, cfg, [results[0].shard])  # a dataset of the first shard only
    plan = pd.concat(pq.read_table(tmp_path / f"plan-{s}.parquet").to_pandas()
                     for s in ("train", "val"))
    first = {d.id for d in iter_documents(curated[0])}
    assert set(plan.id) == first
