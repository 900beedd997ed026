"""A generation engine for the decoders: a paged key/value cache and continuous batching.

Decoding is kept apart from the training forward: the engine runs the model's weights through
its own per-layer path (norm, projections, rotary, attention over the paged cache, MLP), so
``Attention.forward``'s cache arguments are not involved.

* :class:`PagedKVCache`: per layer, K and V pools of ``num_blocks`` fixed-size blocks of
  ``block_tokens`` positions; a free list; each sequence owns a block table. Full blocks of a
  prompt are registered under the hash of the token chain up to them, so a later prompt with
  the same start reuses them (reference counted) and computes only its own tail (causal
  decoders only: in a prefix decoder every prompt position sees the whole prompt).
* :class:`Engine`: requests join between steps while blocks and batch slots allow; each step
  prefills the newly admitted requests, then decodes one token for every running request in one
  batch; finished requests leave at once and free their blocks. Greedy, temperature, top-k,
  top-p (``model.generate.pick``), stop ids and stop strings; ``stream`` yields tokens as they
  are chosen.

Attention gathers each row's blocks into one padded key/value batch for
``scaled_dot_product_attention`` (a paged-attention kernel would read the blocks in place; on CPU
the gather is cheap next to the projections).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from lmforge.model.generate import Sampling, _budget, pick
from lmforge.model.layers import apply_rotary
from torch import nn


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


@dataclass
class Request:
    id: int
    prompt: list[int]
    sampling: Sampling
    stop_strings: tuple[str, ...] = ()
    generated: list[int] = field(default_factory=list)
    table: list[int] = field(default_factory=list)
    cached: int = 0  # positions in the cache
    finish_reason: str | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)
    logits: torch.Tensor | None = None  # for the next token


@dataclass(frozen=True)
class Event:
    request: int
    token: int
    finished: str | None  # None, "stop" (id or string) or "length"


class Engine:
    """Continuous batching over a paged KV cache for a causal or prefix decoder."""

    def __init__(self, model: nn.Module, *, num_blocks: int = 512, block_tokens: int = 16,
                 max_batch: int = 32, decode: Callable[[list[int]], str] | None = None) -> None:
        cfg = model.cfg  # type: ignore[union-attr]
        if not supports(model):
            raise ValueError("the engine serves decoders without prefix/P-tuning modules; "
                             "generate with model.generate")
        self.model = model.eval()
        self.cfg = cfg
        param = next(model.parameters())
        self.device = param.device
        self.cache = PagedKVCache(cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head,
                                  num_blocks, block_tokens, dtype=param.dtype,
                                  device=param.device, share_prefixes=cfg.arch == "causal")
        self.max_batch, self.decode = max_batch, decode
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.finished: dict[int, Request] = {}
        self._next_id = 0

    # -- requests ------------------------------------------------------------------------------

    def add(self, prompt: list[int], sampling: Sampling, stop_strings: tuple[str, ...] = ()
            ) -> int:
        if stop_strings and self.decode is None:
            raise ValueError("stop strings need the engine's decode function")
        tokens = _budget(self.model, list(prompt), sampling)
        need = -(-(len(tokens) + sampling.max_new_tokens) // self.cache.block_tokens)
        if need > self.cache.num_blocks:
            raise CacheFull(f"the request needs {need} KV blocks, the cache has "
                            f"{self.cache.num_blocks}")
        req = Request(self._next_id, tokens, sampling, tuple(stop_strings))
        req.generator.manual_seed(sampling.seed)
        self._next_id += 1
        self.waiting.append(req)
        return req.id

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    # -- scheduling ----------------------------------------------------------------------------

    def _admit(self) -> None:
        """Move waiting requests in while slots and blocks allow, prefilled as one batch; a
        request whose prompt starts like one in the batch so far waits for that batch's
        prefill, so it shares those blocks instead of computing them again."""
        group: list[Request] = []
        starts: set[bytes] = set()
        while self.waiting and len(self.running) + len(group) < self.max_batch:
            req = self.waiting[0]
            head = self.cache.chain(req.prompt[:-1], self.cache.block_tokens)[:1]
            if self.cache.share_prefixes and head and head[0] in starts \
                    and head[0] not in self.cache.by_hash:
                self._prefill(group)
                group, starts = [], set()
                continue
            shared = self.cache.shared_prefix(req.prompt)
            # blocks for the whole prompt and every new token: a running request never waits
            need = -(-(len(req.prompt) + req.sampling.max_new_tokens)
                     // self.cache.block_tokens) - len(shared)
            if need > len(self.cache.free):
                for block in shared:
                    self.cache.release(block)
                break
            self.waiting.popleft()
            req.table = shared + [self.cache.allocate() for _ in range(need)]
            req.cached = len(shared) * self.cache.block_tokens
            group.append(req)
            starts.update(head)
        self._prefill(group)

    @torch.no_grad()
    def step(self) -> list[Event]:
        """Admit and prefill what fits, then choose one token for every running request and
        feed the unfinished ones; returns the chosen tokens."""
        self._admit()
        events, feed = [], []
        greedy = [r for r in self.running if r.sampling.temperature == 0]
        if greedy:  # one argmax for every greedy row
            best = torch.stack([r.logits for r in greedy]).argmax(-1).tolist()  # type: ignore
            chosen = {r.id: t for r, t in zip(greedy, best, strict=True)}
        for req in self.running:
            assert req.logits is not None
            token = chosen[req.id] if req.sampling.temperature == 0 else pick(
                req.logits, req.sampling, req.generator)
            req.generated.append(token)
            reason = self._finish_reason(req, token)
            events.append(Event(req.id, token, reason))
            if reason:
                req.finish_reason = reason
                self._retire(req)
            else:
                feed.append(req)
        self.running = feed
        if feed:
            self._decode(feed)
        return events

    def _finish_reason(self, req: Request, token: int) -> str | None:
        if token in req.sampling.stop:
            return "stop"
        if req.stop_strings and self.decode is not None:
            text = self.decode(req.generated)
            if any(s in text for s in req.stop_strings):
                return "stop"
        if len(req.generated) >= req.sampling.max_new_tokens:
            return "length"
        return None

    def _retire(self, req: Request) -> None:
        for block in req.table:
            self.cache.release(block)
        req.table, req.logits = [], None
        self.finished[req.id] = req

    def run(self) -> dict[int, list[int]]:
        """Step until every request is done; the generated ids per request."""
        while not self.idle:
            self.step()
        return {i: r.generated for i, r in sorted(self.finished.items())}

    def stream(self, request: int) -> Iterator[int]:
        """Tokens of one request as they are chosen (other requests advance too)."""
        sent = 0
        while True:
            req = self.finished.get(request) or next(
                (r for r in (*self.running, *self.waiting) if r.id == request), None)
            if req is None:
                raise KeyError(f"no request {request}")
            yield from req.generated[sent:]
            sent = len(req.generated)
            if req.finish_reason is not None:
                return
            self.step()

    # -- the decode path -----------------------------------------------------------------------

    def _prefill(self, reqs: list[Request]) -> None:
        if not reqs:
            return
        new = [r.prompt[r.cached:] for r in reqs]
        tokens = torch.zeros(len(reqs), max(map(len, new)), dtype=torch.long)
        for row, ids in enumerate(new):
            tokens[row, :len(ids)] = torch.tensor(ids)
        prompt = [len(r.prompt) if self.cfg.arch == "prefix" else 0 for r in reqs]
        logits = self._forward(tokens.to(self.device), reqs, [r.cached for r in reqs],
                               [len(ids) for ids in new], prompt)
        for r, row in zip(reqs, logits, strict=True):
            r.cached, r.logits = len(r.prompt), row
            self.cache.register(r.table, r.prompt)
            self.running.append(r)

    def _decode(self, reqs: list[Request]) -> None:
        tokens = torch.tensor([[r.generated[-1]] for r in reqs], device=self.device)
        logits = self._forward(tokens, reqs, [r.cached for r in reqs], [1] * len(reqs),
                               [0] * len(reqs))
        for r, row in zip(reqs, logits, strict=True):
            r.cached += 1
            r.logits = row

    def _forward(self, tokens: torch.Tensor, reqs: list[Request], starts: list[int],
                 lengths: list[int], prompt_lens: list[int]) -> torch.Tensor:
        """Logits (B, vocab) after each row's last new token; the new tokens' keys and
        values are written to the rows' blocks first."""
        model, B, T = self.model, tokens.shape[0], tokens.shape[1]
        start = torch.tensor(starts, device=self.device)
        query_pos = start[:, None] + torch.arange(T, device=self.device)[None, :]  # (B, T)
        # a short row's padding columns may lie past the block: any valid position will do
        where = query_pos.clamp(max=self.cfg.block_size - 1)
        x = model.embed(tokens, where)  # type: ignore[operator]
        rope = model.embed.rope()  # type: ignore[operator]
        totals = [s + n for s, n in zip(starts, lengths, strict=True)]
        S = max(totals)
        key_pos = torch.arange(S, device=self.device)
        mask = key_pos[None, None, :] <= query_pos[:, :, None]  # (B, T, S)
        if any(prompt_lens):  # prefix decoder: the prompt sees itself both ways
            prompt = torch.tensor(prompt_lens, device=self.device)[:, None, None]
            mask = mask | ((key_pos[None, None, :] < prompt) & (query_pos[:, :, None] < prompt))
        mask = (mask & (key_pos[None, None, :] < torch.tensor(totals, device=self.device)[
            :, None, None]))[:, None]  # (B, 1, T, S)
        tables = [r.table for r in reqs]
        slots = self.cache.slots(tables, starts, lengths)
        pages = self.cache.pages(tables, totals)
        for i, block in enumerate(model.layers.values()):  # type: ignore[union-attr]
            attn = block.attn
            h = block.ln_1(x)
            q, k, v = attn._heads(attn.q(h)), attn._heads(attn.k(h)), attn._heads(attn.v(h))
            if rope is not None:
                q, k = apply_rotary(q, *rope, where), apply_rotary(k, *rope, where)
            self.cache.write(i, slots, k, v)
            keys, values = self.cache.gather(i, pages, S)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            x = x + attn.proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + block.mlp(block.ln_2(x))
        last = torch.tensor(lengths, device=self.device) - 1
        h = model.ln_f(x[torch.arange(B, device=self.device), last])  # type: ignore[operator]
        return model.lm_head(h).float()  # type: ignore[operator]


def supports(model: nn.Module) -> bool:
    """Whether the engine can run ``model`` (a decoder without prefix/P-tuning modules)."""
    return getattr(model.cfg, "arch", "causal") != "encoder_decoder" and getattr(  # type: ignore
        model, "prompt", None) is None and not any(
        getattr(m, "kv_prefix", None) is not None for m in model.modules())


def generate_many(model: nn.Module, prompts: list[list[int]], sampling: Sampling, *,
                  seeds: list[int] | None = None, **engine: Any) -> list[list[int]]:
    """Every prompt through one engine (continuous batching); the new ids per prompt.
    ``seeds``: one per prompt (default ``sampling.seed``), as ``generate_batch`` takes them."""
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    per = [-(-(min(len(p), model.cfg.block_size) + sampling.max_new_tokens)  # type: ignore
            // engine.get("block_tokens", 16)) for p in prompts]
    # at most max_batch requests hold blocks at once: the cache never needs more than that
    slots = engine.get("max_batch", 32)
    blocks = min(sum(per), slots * max(per, default=1))
    eng = Engine(model, **{"num_blocks": max(1, blocks), **engine})
    # shortest first: a prefill group holds prompts of similar length (less padding)
    ids = {i: eng.add(prompts[i], replace(sampling, seed=seeds[i]) if seeds is not None
                      else sampling) for i in sorted(range(len(prompts)),
                                                     key=lambda i: len(prompts[i]))}
    out = eng.run()
    return [out[ids[i]] for i in range(len(prompts))]
