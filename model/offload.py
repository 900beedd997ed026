"""Layer-by-layer weight offload (BMInf's memory scheduling, Zhang et al. 2022): a model whose
weights exceed a memory budget still generates. Each block's weights are written once to a
safetensors file of its own; the blocks that fit in ``budget_bytes`` (with embeddings, norms
and head, which always stay) are kept, the others are read back just before their layer runs
and released after it (the most recently used stay while they fit). The engine and the
training forward both call :meth:`LayerStore.fetch` before each block (the engine directly,
the forward through block hooks); a fetched block stays until a later fetch needs its room."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from lmforge.model.atomic import atomic_path
from torch import nn


def _bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


class LayerStore:
    """The offloaded blocks of one model and which of them are resident now."""

    def __init__(self, model: nn.Module, folder: Path, budget_bytes: int) -> None:
        from safetensors.torch import save_file

        self.blocks = list(model.layers.values())  # type: ignore[union-attr]
        always = _bytes(model) - sum(_bytes(b) for b in self.blocks)
        self.block_bytes = [_bytes(b) for b in self.blocks]
        if always + max(self.block_bytes) > budget_bytes:
            raise ValueError(f"a budget of {budget_bytes} bytes cannot hold the embeddings and "
                             f"head ({always} bytes) plus one block ({max(self.block_bytes)})")
        self.budget = budget_bytes - always
        folder.mkdir(parents=True, exist_ok=True)
        self.files = []
        for i, block in enumerate(self.blocks):
            path = folder / f"block-{i:03d}.safetensors"
            with atomic_path(path) as tmp:
                save_file({k: v.contiguous() for k, v in block.state_dict().items()}, str(tmp))
            self.files.append(path)
        self.resident: OrderedDict[int, None] = OrderedDict()
        self.reads = 0
        for i in range(len(self.blocks)):
            self._evict(i)
        for i in range(len(self.blocks)):  # warm start: the first blocks that fit
            if self.used + self.block_bytes[i] <= self.budget:
                self.fetch(i)

    @property
    def used(self) -> int:
        return sum(self.block_bytes[i] for i in self.resident)

    def index(self, block: nn.Module) -> int:
        return next(i for i, b in enumerate(self.blocks) if b is block)

    def fetch(self, i: int) -> None:
        """Block ``i``'s weights in memory (read from its file unless resident)."""
        if i in self.resident:
            self.resident.move_to_end(i)
            return
        from safetensors.torch import load_file

        while self.resident and self.used + self.block_bytes[i] > self.budget:
            self._evict(next(iter(self.resident)))
        tensors = load_file(str(self.files[i]))
        for name, t in self.blocks[i].state_dict(keep_vars=True).items():
            t.data = tensors[name].to(t.device)
        self.resident[i] = None
        self.reads += 1

    def _evict(self, i: int) -> None:
        for t in self.blocks[i].state_dict(keep_vars=True).values():
            t.data = torch.empty(0, dtype=t.dtype, device=t.device)
        self.resident.pop(i, None)


def offload(model: nn.Module, folder: Path, budget_bytes: int) -> LayerStore:
    """Offload ``model``'s blocks beyond ``budget_bytes`` (in place); the training forward
    fetches each block through hooks, the engine through ``model.layer_store``."""
    store = LayerStore(model, folder, budget_bytes)

    def before(block: nn.Module, args: Any) -> None:
        store.fetch(store.index(block))

    for block in store.blocks:
        block.register_forward_pre_hook(before)
    model.layer_store = store  # type: ignore[assignment]
    return store
