"""The engine's paged key/value cache: per layer, K and V pools of ``num_blocks`` fixed-size
blocks of ``block_tokens`` positions; a free list; each sequence owns a block table. Full blocks
of a prompt are registered under the hash of the token chain up to them, so a later prompt with
the same start reuses them (reference counted) and computes only its own tail.

Attention gathers each row's blocks into one padded key/value batch for
``scaled_dot_product_attention`` (a paged-attention kernel would read the blocks in place; on CPU
the gather is cheap next to the projections).
"""

from __future__ import annotations

import hashlib
from collections import deque

import torch


class CacheFull(RuntimeError):
    pass


class PagedKVCache:
    def __init__(self, n_layer: int, n_head: int, head_dim: int, num_blocks: int,
                 block_tokens: int = 16, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", share_prefixes: bool = True) -> None:
        # positions before heads: a gathered row of blocks reshapes to (S, nh, hs) as a view,
        # so attention reads the gathered keys without a second copy
        shape = (n_layer, num_blocks, block_tokens, n_head, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_blocks, self.block_tokens = num_blocks, block_tokens
        self.free: deque[int] = deque(range(num_blocks))
        self.refs = [0] * num_blocks
        self.share_prefixes = share_prefixes
        self.by_hash: dict[bytes, int] = {}
        self.hash_of: dict[int, bytes] = {}
        self.peak_used = 0

    @property
    def used(self) -> int:
        return self.num_blocks - len(self.free)

    def bytes_per_token(self) -> int:
        return 2 * self.k[:, 0, 0].numel() * self.k.element_size()

    def allocate(self) -> int:
        if not self.free:
            raise CacheFull("no free KV block")
        block = self.free.popleft()
        self.refs[block] = 1
        self.peak_used = max(self.peak_used, self.used)
        return block

    def release(self, block: int) -> None:
        self.refs[block] -= 1
        if self.refs[block] == 0:
            digest = self.hash_of.pop(block, None)
            if digest is not None and self.by_hash.get(digest) == block:
                del self.by_hash[digest]
            self.free.append(block)

    @staticmethod
    def chain(tokens: list[int], block_tokens: int) -> list[bytes]:
        """Hash of the token chain up to the end of each full block."""
        out, h = [], hashlib.blake2b(digest_size=16)
        for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
            h.update(torch.tensor(tokens[start:start + block_tokens]).numpy().tobytes())
            out.append(h.copy().digest())
        return out

    def shared_prefix(self, tokens: list[int]) -> list[int]:
        """Blocks already holding the leading full blocks of ``tokens`` (reference taken);
        at least one token is always left to compute (its logits start generation)."""
        if not self.share_prefixes:
            return []
        blocks = []
        for digest in self.chain(tokens[:-1], self.block_tokens):
            block = self.by_hash.get(digest)
            if block is None:
                break
            self.refs[block] += 1
            blocks.append(block)
        return blocks

    def register(self, table: list[int], tokens: list[int]) -> None:
        """Offer the full blocks of a prefilled prompt for sharing."""
        if not self.share_prefixes:
            return
        for block, digest in zip(table, self.chain(tokens, self.block_tokens), strict=False):
            if digest not in self.by_hash:
                self.by_hash[digest] = block
                self.hash_of[block] = digest

    def slots(self, tables: list[list[int]], starts: list[int], lengths: list[int]
              ) -> tuple[torch.Tensor, ...]:
        """Where rows' new positions go: (blocks, offsets, rows, columns), computed once per
        forward and used by every layer's ``write``."""
        bt, blocks, offsets, rows, cols = self.block_tokens, [], [], [], []
        for row, (table, start, n) in enumerate(zip(tables, starts, lengths, strict=True)):
            for col, pos in enumerate(range(start, start + n)):
                blocks.append(table[pos // bt])
                offsets.append(pos % bt)
                rows.append(row)
                cols.append(col)
        device = self.k.device
        return tuple(torch.tensor(x, dtype=torch.long, device=device)
                     for x in (blocks, offsets, rows, cols))

    def pages(self, tables: list[list[int]], lengths: list[int]) -> torch.Tensor:
        """(B, blocks) block ids covering each row's first ``lengths`` positions (short rows
        padded with their first block; the caller masks those positions)."""
        width = -(-max(lengths) // self.block_tokens)
        return torch.tensor([t[:width] + [t[0]] * (width - len(t[:width])) for t in tables],
                            dtype=torch.long, device=self.k.device)

    def write(self, layer: int, slots: tuple[torch.Tensor, ...], k: torch.Tensor,
              v: torch.Tensor) -> None:
        """Store rows' new keys/values (B, nh, T, hs) at their ``slots``."""
        blocks, offsets, rows, cols = slots
        self.k[layer, blocks, offsets] = k[rows, :, cols]
        self.v[layer, blocks, offsets] = v[rows, :, cols]

    def gather(self, layer: int, pages: torch.Tensor, width: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, nh, width, hs) keys and values of the rows' ``pages``."""
        def read(pool: torch.Tensor) -> torch.Tensor:
            x = pool[layer][pages]  # (B, blocks, bt, nh, hs)
            B, nb, bt, nh, hs = x.shape
            return x.view(B, nb * bt, nh, hs)[:, :width].transpose(1, 2)

        return read(self.k), read(self.v)
