"""Packed token sequences read straight from the token shards (memory-mapped, never loaded).

A split is one token stream: the token files in order (:class:`TokenStream`), or the document
segments of a mixture plan (:class:`PlanStream`). Sequence ``i`` is the window
``stream[i*L : i*L + L + 1]`` (inputs and shifted targets), so every token is used and windows
cross document and shard boundaries like a packed dataset. The loader's order is a seeded
permutation of the windows per epoch, independent of the number of ranks; its position (epoch
and sequences consumed, i.e. a segment and offset in the stream) is part of the checkpoint, so a
resumed run continues exactly where it stopped, also on a different number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch


class _Segments:
    """Segments (token array, offset, length) of memory-mapped token files, viewed as one
    array in order."""

    def __init__(self, arrays: Sequence[np.ndarray], file_index: Sequence[int],
                 offsets: Sequence[int], lengths: Sequence[int]) -> None:
        self.arrays = list(arrays)
        self.file_index = np.asarray(file_index, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.ends = np.cumsum(np.asarray(lengths, dtype=np.int64), dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _segment(self, position: int) -> tuple[int, int]:
        """(segment, offset of ``position`` in its array)."""
        k = int(np.searchsorted(self.ends, position, side="right"))
        base = int(self.ends[k - 1]) if k else 0
        return k, int(self.offsets[k]) + position - base

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        while start < stop:
            k, first = self._segment(start)
            take = min(stop, int(self.ends[k])) - start
            out.append(np.asarray(self.arrays[self.file_index[k]][first:first + take]))
            start += take
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


class TokenStream(_Segments):
    """Several flat token files viewed as one array."""

    def __init__(self, files: Sequence[Path], dtype: str) -> None:
        arrays = [np.memmap(f, dtype=np.dtype(dtype), mode="r")
                  for f in files if Path(f).stat().st_size > 0]
        super().__init__(arrays, range(len(arrays)), [0] * len(arrays), [len(a) for a in arrays])


class PlanStream(_Segments):
    """The segments of a mixture plan (file, offset, length rows) viewed as one array."""

    def __init__(self, root: Path, plan: Path, dtype: str) -> None:
        table = pq.read_table(plan, columns=["file", "offset", "length"])
        files = table.column("file").to_pylist()
        self.names = sorted(set(files))
        arrays = [np.memmap(root / n, dtype=np.dtype(dtype), mode="r")
                  if (root / n).stat().st_size else np.empty(0, np.dtype(dtype))
                  for n in self.names]
        lookup = {n: i for i, n in enumerate(self.names)}
        super().__init__(arrays, [lookup[f] for f in files],
                         table.column("offset").to_numpy(), table.column("length").to_numpy())

    def locate(self, position: int) -> tuple[str, int]:
        """(token file, offset in it) of a stream position: the reader's place on disk."""
        k, offset = self._segment(position)
        return self.names[self.file_index[k]], offset


class PackedSequences:
    """Fixed-length windows (length ``seq_len + 1``) over a token stream."""

    def __init__(self, stream: TokenStream | PlanStream, seq_len: int) -> None:
        self.stream, self.seq_len = stream, seq_len

    def __len__(self) -> int:
        return max(0, (len(self.stream) - 1) // self.seq_len)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.seq_len
        return self.stream.read(start, start + self.seq_len + 1)


class Rows:
    """Fixed-shape training rows kept in one ``.npy`` file (``tasks.sft``: (N, 4, L) fine-tuning
    rows), memory-mapped: what ``SequenceLoader`` reads in place of token windows."""

    stream = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = np.load(path, mmap_mode="r")
        self.seq_len = int(self.rows.shape[-1])

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.rows[i])


class SequenceLoader:
    """Batches of token windows. The windows of an epoch are visited in a seeded order
    that does not depend on the number of ranks; a global batch is ``batch_size x world``
    consecutive windows of that order and rank ``r`` takes its own ``batch_size`` of them.
    ``state_dict()`` is the exact position: (epoch, windows consumed)."""

    def __init__(self, data: PackedSequences | Rows, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1, shuffle: bool = True) -> None:
        if len(data) < batch_size * world:
            raise ValueError(f"only {len(data)} sequences of length {data.seq_len}: fewer than "
                             f"one global batch ({batch_size} x {world} ranks); lower the batch "
                             "size or sequence length, or add data")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.epoch, self.consumed = 0, 0  # windows consumed by all ranks in this epoch
        self._order: tuple[int, np.ndarray] | None = None
        # (epoch, place in the epoch's order) of each row of the last batch: the same for a
        # window whatever the number of ranks, so per-row random draws can be keyed by it
        self.last_rows: list[tuple[int, int]] = []

    def order(self) -> np.ndarray:
        if self._order is None or self._order[0] != self.epoch:
            order = (np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data))
                     if self.shuffle else np.arange(len(self.data)))
            self._order = (self.epoch, order)
        return self._order[1]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    def position(self) -> dict[str, object]:
        """Where the next global batch starts, in windows and (for plans) on disk."""
        place: dict[str, object] = dict(self.state_dict())
        stream = self.data.stream
        if isinstance(stream, PlanStream) and self.consumed < len(self.data):
            start = int(self.order()[self.consumed]) * self.data.seq_len
            place["file"], place["offset"] = stream.locate(start)
        return place

    def __iter__(self) -> Iterator[torch.Tensor]:
        """(batch_size, seq_len + 1) windows: inputs and shifted targets, split by the
        objective (``model.objectives.make_batch``)."""
        step = self.batch_size * self.world
        while True:
            order = self.order()
            while self.consumed + step <= len(self.data):
                first = self.consumed + self.rank * self.batch_size
                rows = np.stack([self.data[int(i)] for i in order[first:first + self.batch_size]])
                self.last_rows = [(self.epoch, first + i) for i in range(self.batch_size)]
                self.consumed += step
                yield torch.from_numpy(rows.astype(np.int64))
            self.epoch, self.consumed = self.epoch + 1, 0
