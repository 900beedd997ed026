from __future__ import annotations

import numpy as np
import pytest
from lmforge.model.data import PackedSequences, SequenceLoader, TokenStream


@pytest.fixture
def stream(tmp_path) -> TokenStream:
    files = []
    for i, n in enumerate([10, 0, 25]):  # an empty shard in the middle
        path = tmp_path / f"part-{i}.bin"
        np.arange(sum([10, 0, 25][:i]), sum([10, 0, 25][:i]) + n, dtype="<u2").tofile(path)
        files.append(path)
    return TokenStream(files, "<u2")


def test_stream_reads_across_shards(stream) -> None:
    assert len(stream) == 35
    assert stream.read(8, 13).tolist() == [8, 9, 10, 11, 12]


def test_windows_overlap_by_one_and_use_every_token(stream) -> None:
    data = PackedSequences(stream, seq_len=8)
    assert len(data) == 4  # (35 - 1) // 8
    assert data[0].tolist() == list(range(9))
    assert data[1][0] == data[0][-1]
    with pytest.raises(IndexError):
        data[4]


def test_resume_gives_the_same_batches(stream) -> None:
    data = PackedSequences(stream, seq_len=4)
    it = iter(SequenceLoader(data, 2, seed=3))
    batches = [next(it).tolist() for _ in range(10)]  # crosses an epoch boundary
    first = SequenceLoader(data, 2, seed=3)
    it = iter(first)
    for _ in range(4):
        next(it)
    again = SequenceLoader(data, 2, seed=3)
    again.load_state_dict(first.state_dict())
    it = iter(again)
    assert [next(it).tolist() for _ in range(6)] == batches[4:]


def test_resume_on_a_different_number_of_ranks_continues_the_same_stream(stream) -> None:
    """2 ranks read 2 global batches; resumed on 1 rank, the stream goes on where they were."""
    data = PackedSequences(stream, seq_len=2)
    single = iter(SequenceLoader(data, 2, seed=1))
    reference = [row for _ in range(4) for row in next(single).tolist()]
    ranks = [SequenceLoader(data, 1, seed=1, rank=r, world=2) for r in range(2)]
    its = [iter(r) for r in ranks]
    seen = [row for _ in range(2) for it in its for row in next(it).tolist()]
    assert seen == reference[:4]
    resumed = SequenceLoader(data, 2, seed=1)
    resumed.load_state_dict(ranks[0].state_dict())
    it = iter(resumed)
    assert [row for _ in range(2) for row in next(it).tolist()] == reference[4:8]


def test_ranks_read_disjoint_sequences(stream) -> None:
    data = PackedSequences(stream, seq_len=2)
    seen = []
    for rank in range(2):
        it = iter(SequenceLoader(data, 2, seed=0, rank=rank, world=2))
        for _ in range(4):
            x = next(it)
            seen.append({tuple(r) for r in x.tolist()})
    rank0, rank1 = set().union(*seen[:4]), set().union(*seen[4:])
    assert not rank0 & rank1


def test_too_little_data_is_a_clear_error(stream) -> None:
    with pytest.raises(ValueError, match="fewer than one global batch"):
        SequenceLoader(PackedSequences(stream, seq_len=16), 4)
