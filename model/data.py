"""Packed token sequences read straight from the token shards (memory-mapped, never loaded).

The shards of one split form one token stream; sequence ``i`` is the window
``stream[i*L : i*L + L + 1]`` (inputs and shifted targets), so every token is used and windows
cross document and shard boundaries like a packed dataset. The loader's order is a seeded
permutation per epoch; its position is part of the training checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch


class TokenStream:
    """Several flat token files viewed as one array."""

    def __init__(self, files: Sequence[Path], dtype: str) -> None:
        self.arrays = [np.memmap(f, dtype=np.dtype(dtype), mode="r")
                       for f in files if Path(f).stat().st_size > 0]
        self.ends = np.cumsum([len(a) for a in self.arrays], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        while start < stop:
            k = int(np.searchsorted(self.ends, start, side="right"))
            base = int(self.ends[k - 1]) if k else 0
            take = min(stop, int(self.ends[k])) - start
            out.append(np.asarray(self.arrays[k][start - base:start - base + take]))
            start += take
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


class PackedSequences:
    """Fixed-length windows (length ``seq_len + 1``) over a token stream."""

    def __init__(self, stream: TokenStream, seq_len: int) -> None:
        self.stream, self.seq_len = stream, seq_len

    def __len__(self) -> int:
        return max(0, (len(self.stream) - 1) // self.seq_len)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.seq_len
        return self.stream.read(start, start + self.seq_len + 1)


class SequenceLoader:
    """Batches of (inputs, targets) in a seeded order; rank ``r`` of ``w`` takes its own slice
    of every global batch. ``state_dict()`` is the exact position for resuming."""

    def __init__(self, data: PackedSequences, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1, shuffle: bool = True) -> None:
        if len(data) < batch_size * world:
            raise ValueError(f"only {len(data)} sequences of length {data.seq_len}: fewer than "
                             f"one global batch ({batch_size} x {world} ranks); lower the batch "
                             "size or sequence length, or add data")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.epoch, self.index = 0, 0  # index = global batches consumed in this epoch

    @property
    def batches_per_epoch(self) -> int:
        return len(self.data) // (self.batch_size * self.world)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.data))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            order = self._order()
            while self.index < self.batches_per_epoch:
                g = self.index * self.batch_size * self.world + self.rank * self.batch_size
                rows = np.stack([self.data[int(i)] for i in order[g:g + self.batch_size]])
                self.index += 1
                batch = torch.from_numpy(rows.astype(np.int64))
                yield batch[:, :-1], batch[:, 1:]
            self.epoch, self.index = self.epoch + 1, 0
