"""The generation engine: a paged key/value cache (``model.kv_cache``) and continuous batching,
for every architecture and fine-tuning method the trainer builds.

Decoding is kept apart from the training forward: the engine runs the model's weights through
its own per-layer path (norm, projections, rotary, attention over the paged cache, cross-
attention, MLP), so the model's ``forward`` knows nothing of caches.

* Requests join between steps while blocks and batch slots allow; each step prefills the newly
  admitted requests as one batch, then decodes one token for every running request in one batch;
  finished requests leave at once and free their blocks. Greedy, temperature, top-k, top-p
  (``model.sampling.pick``), stop ids and stop strings; ``stream`` yields tokens as they come.
* A causal decoder's prompts with a common start share its full blocks (in a prefix decoder
  every prompt position depends on the whole prompt, so it never shares).
* Encoder-decoders: a request's source is encoded once at admission and the cross-attention
  keys/values of every decoder layer go into blocks of their own; the decoder starts from
  ``decoder_start`` (the padding token in training).
* Prefix tuning's per-layer keys/values lead every row's keys; P-tuning's virtual tokens are a
  decoder request's first cache positions (an encoder-decoder's lead its source, in ``encode``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from lmforge.model.kv_cache import CacheFull, PagedKVCache
from lmforge.model.layers import apply_rotary
from lmforge.model.sampling import Sampling, budget, pick, virtual_tokens
from torch import nn

__all__ = ["CacheFull", "Engine", "Event", "PagedKVCache", "Request", "blocks_needed",
           "generate_many"]


@dataclass
class Request:
    id: int
    prompt: list[int]  # the decoder's tokens: the prompt, or [decoder_start]
    sampling: Sampling
    stop_strings: tuple[str, ...] = ()
    source: list[int] | None = None  # an encoder-decoder's input
    generated: list[int] = field(default_factory=list)
    table: list[int] = field(default_factory=list)
    cross_table: list[int] = field(default_factory=list)
    cached: int = 0  # positions in the cache (virtual tokens included)
    finish_reason: str | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)
    logits: torch.Tensor | None = None  # for the next token


@dataclass(frozen=True)
class Event:
    request: int
    token: int
    finished: str | None  # None, "stop" (id or string) or "length"


def blocks_needed(model: nn.Module, prompt_len: int, sampling: Sampling, block_tokens: int
                  ) -> tuple[int, int]:
    """(self-attention, cross-attention) blocks a request holds from admission to the end:
    its whole prompt (virtual tokens included) and every new token, so a running request
    never waits for blocks."""
    def blocks(n: int) -> int:
        return -(-n // block_tokens)

    virtual = virtual_tokens(model)
    if model.cfg.arch == "encoder_decoder":  # type: ignore[union-attr]
        return blocks(1 + sampling.max_new_tokens), blocks(virtual + prompt_len)
    return blocks(virtual + prompt_len + sampling.max_new_tokens), 0


class Engine:
    """Continuous batching over a paged KV cache."""

    def __init__(self, model: nn.Module, *, num_blocks: int = 512, block_tokens: int = 16,
                 max_batch: int = 32, decode: Callable[[list[int]], str] | None = None,
                 decoder_start: int = 0) -> None:
        cfg = model.cfg  # type: ignore[union-attr]
        self.model, self.cfg = model.eval(), cfg
        self.encoder_decoder = cfg.arch == "encoder_decoder"
        # P-tuning: a decoder's virtual tokens take its first cache positions
        self.virtual = 0 if self.encoder_decoder else virtual_tokens(model)
        self.source_virtual = virtual_tokens(model) if self.encoder_decoder else 0
        param = next(model.parameters())
        self.device = param.device
        self.cache = PagedKVCache(cfg.n_layer, _local_heads(model), cfg.head_size,
                                  num_blocks, block_tokens, dtype=param.dtype,
                                  device=param.device,
                                  share_prefixes=cfg.arch == "causal" and not self.virtual)
        with torch.no_grad():  # prefix tuning: fixed while the engine runs
            self.prefix_kv = [(b.attn.kv_prefix(1) if b.attn.kv_prefix is not None else None)
                              for b in model.layers.values()]  # type: ignore[union-attr]
        self.max_batch, self.decode, self.decoder_start = max_batch, decode, decoder_start
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.finished: dict[int, Request] = {}
        self._next_id = 0

    # -- requests ------------------------------------------------------------------------------

    def blocks_needed(self, prompt_len: int, sampling: Sampling) -> tuple[int, int]:
        return blocks_needed(self.model, prompt_len, sampling, self.cache.block_tokens)

    def add(self, prompt: list[int], sampling: Sampling, stop_strings: tuple[str, ...] = ()
            ) -> int:
        if stop_strings and self.decode is None:
            raise ValueError("stop strings need the engine's decode function")
        tokens = budget(self.model, list(prompt), sampling)
        need = sum(self.blocks_needed(len(tokens), sampling))
        if need > self.cache.num_blocks:
            raise CacheFull(f"the request needs {need} KV blocks, the cache has "
                            f"{self.cache.num_blocks}")
        req = Request(self._next_id, tokens, sampling, tuple(stop_strings))
        if self.encoder_decoder:
            req.source, req.prompt = tokens, [self.decoder_start]
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
            head = self.cache.chain(req.prompt[:-1], self.cache.block_tokens)[:1] \
                if self.cache.share_prefixes else []
            if head and head[0] in starts and head[0] not in self.cache.by_hash:
                self._prefill(group)
                group, starts = [], set()
                continue
            shared = self.cache.shared_prefix(req.prompt)
            own, cross = self.blocks_needed(len(req.source or req.prompt), req.sampling)
            if own - len(shared) + cross > len(self.cache.free):
                for block in shared:
                    self.cache.release(block)
                break
            self.waiting.popleft()
            req.table = shared + [self.cache.allocate() for _ in range(own - len(shared))]
            req.cross_table = [self.cache.allocate() for _ in range(cross)]
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
        for block in req.table + req.cross_table:
            self.cache.release(block)
        req.table, req.cross_table, req.logits = [], [], None
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
        if self.encoder_decoder:
            self._encode(reqs)
        new = [r.prompt[max(0, r.cached - self.virtual):] for r in reqs]
        tokens = _padded(new, self.device)
        # real tokens sit after the virtual ones; a short row's padding columns may lie past
        # the block: any valid position will do
        where = (torch.tensor([r.cached for r in reqs], device=self.device)[:, None]
                 + self.virtual + torch.arange(tokens.shape[1], device=self.device)
                 ).clamp(max=self.cfg.block_size - 1)
        x = self.model.embed(tokens, where)  # type: ignore[operator]
        if self.virtual:  # sharing is off with virtual tokens: every row starts at 0
            x = torch.cat([self.model.prompt(len(reqs)).to(x.dtype), x], dim=1)  # type: ignore
        lengths = [len(ids) + (self.virtual if r.cached == 0 else 0)
                   for r, ids in zip(reqs, new, strict=True)]
        both = [(self.virtual, self.virtual + len(r.prompt)) if self.cfg.arch == "prefix"
                else (0, 0) for r in reqs]
        logits = self._forward(x, reqs, lengths, both)
        for r, row in zip(reqs, logits, strict=True):
            r.cached, r.logits = self.virtual + len(r.prompt), row
            self.cache.register(r.table, r.prompt)
            self.running.append(r)

    def _encode(self, reqs: list[Request]) -> None:
        """Encode the sources once; every decoder layer's cross keys/values go to the rows'
        cross blocks."""
        sources = [r.source or [] for r in reqs]
        src = _padded(sources, self.device)
        src_mask = torch.arange(src.shape[1], device=self.device)[None, :] < torch.tensor(
            [len(s) for s in sources], device=self.device)[:, None]
        memory = self.model.encode(src, src_mask)  # type: ignore[operator]
        lengths = [self.source_virtual + len(s) for s in sources]
        slots = self.cache.slots([r.cross_table for r in reqs], [0] * len(reqs), lengths)
        store = getattr(self.model, "layer_store", None)
        for i, block in enumerate(self.model.layers.values()):  # type: ignore[union-attr]
            if store is not None:
                store.fetch(i)
            cross = block.cross
            self.cache.write(i, slots, cross._heads(cross.k(memory)),
                             cross._heads(cross.v(memory)))

    def _decode(self, reqs: list[Request]) -> None:
        tokens = torch.tensor([[r.generated[-1]] for r in reqs], device=self.device)
        where = torch.tensor([[r.cached] for r in reqs], device=self.device)
        x = self.model.embed(tokens, where)  # type: ignore[operator]
        logits = self._forward(x, reqs, [1] * len(reqs), [(0, 0)] * len(reqs))
        for r, row in zip(reqs, logits, strict=True):
            r.cached += 1
            r.logits = row

    def _forward(self, x: torch.Tensor, reqs: list[Request], lengths: list[int],
                 both: list[tuple[int, int]]) -> torch.Tensor:
        """Logits (B, vocab) after each row's last new column; ``x`` (B, T, C) holds the
        rows' new columns from cache position ``cached`` on (``lengths`` of them real), whose
        keys and values are written to the rows' blocks first. ``both``: cache positions
        [lo, hi) that see each other both ways (a prefix decoder's prompt)."""
        model, B, T = self.model, x.shape[0], x.shape[1]
        dev = self.device
        starts = [r.cached for r in reqs]
        query_pos = torch.tensor(starts, device=dev)[:, None] + torch.arange(T, device=dev)
        where = query_pos.clamp(max=self.cfg.block_size - 1)
        rope = model.embed.rope()  # type: ignore[operator]
        totals = [s + n for s, n in zip(starts, lengths, strict=True)]
        S = max(totals)
        mask = _mask(query_pos, totals, both)  # (B, 1, T, S)
        tables = [r.table for r in reqs]
        slots = self.cache.slots(tables, starts, lengths)
        pages = self.cache.pages(tables, totals)
        if self.encoder_decoder:
            cross_lens = [self.source_virtual + len(r.source or []) for r in reqs]
            cross_pages = self.cache.pages([r.cross_table for r in reqs], cross_lens)
            Sc = max(cross_lens)
            cross_mask = (torch.arange(Sc, device=dev)[None, :] < torch.tensor(
                cross_lens, device=dev)[:, None])[:, None, None]  # (B, 1, 1, Sc)
        store = getattr(model, "layer_store", None)  # offloaded blocks (model.offload)
        for i, block in enumerate(model.layers.values()):  # type: ignore[union-attr]
            if store is not None:
                store.fetch(i)
            attn = block.attn
            h = block.ln_1(x)
            q, k, v = attn._heads(attn.q(h)), attn._heads(attn.k(h)), attn._heads(attn.v(h))
            if rope is not None:
                q, k = apply_rotary(q, *rope, where), apply_rotary(k, *rope, where)
            self.cache.write(i, slots, k, v)
            keys, values = self.cache.gather(i, pages, S)
            layer_mask = mask
            if self.prefix_kv[i] is not None:  # prefix tuning: seen by every query
                pk, pv = self.prefix_kv[i]  # type: ignore[misc]
                keys = torch.cat([pk.expand(B, -1, -1, -1).to(keys.dtype), keys], dim=2)
                values = torch.cat([pv.expand(B, -1, -1, -1).to(values.dtype), values], dim=2)
                layer_mask = torch.cat([mask.new_ones(B, 1, T, pk.shape[2]), mask], dim=-1)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=layer_mask)
            x = x + attn.proj(y.transpose(1, 2).reshape(B, T, -1))
            if block.cross is not None:
                cross = block.cross
                q = cross._heads(cross.q(block.ln_x(x)))
                keys, values = self.cache.gather(i, cross_pages, Sc)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=cross_mask)
                x = x + cross.proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + block.mlp(block.ln_2(x))
        last = torch.tensor(lengths, device=dev) - 1
        h = model.ln_f(x[torch.arange(B, device=dev), last])  # type: ignore[operator]
        return model.lm_head(h).float()  # type: ignore[operator]


def _local_heads(model: nn.Module) -> int:
    """Heads this process computes: all of them, or its share under tensor parallelism (the
    query projection's weight is then a DTensor sharded by output rows)."""
    cfg = model.cfg  # type: ignore[union-attr]
    q = next(iter(model.layers.values())).attn.q  # type: ignore[union-attr]
    weight = getattr(q, "weight", None)
    if weight is not None and hasattr(weight, "to_local"):
        return int(weight.to_local().shape[0]) // cfg.head_size
    return int(cfg.n_head)


def _mask(query_pos: torch.Tensor, totals: list[int], both: list[tuple[int, int]]
          ) -> torch.Tensor:
    """(B, 1, T, S) keys each new column sees: the earlier ones and itself, none past a row's
    end, and in a prefix decoder's prompt ([lo, hi) of ``both``) each other both ways."""
    dev = query_pos.device
    key_pos = torch.arange(max(totals), device=dev)[None, None, :]
    q_pos = query_pos[:, :, None]
    mask = key_pos <= q_pos  # (B, T, S)
    if any(hi for _, hi in both):
        lo, hi = (torch.tensor(c, device=dev)[:, None, None] for c in zip(*both, strict=True))
        inside = lambda p: (p >= lo) & (p < hi)  # noqa: E731
        mask = mask | (inside(key_pos) & inside(q_pos))
    return (mask & (key_pos < torch.tensor(totals, device=dev)[:, None, None]))[:, None]


def _padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    """(B, W) token ids right-padded with 0."""
    out = torch.zeros(len(rows), max(1, *map(len, rows)), dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out.to(device)


def generate_many(model: nn.Module, prompts: list[list[int]], sampling: Sampling, *,
                  seeds: list[int] | None = None, max_batch: int = 32, block_tokens: int = 16,
                  decoder_start: int = 0) -> list[list[int]]:
    """Every prompt through one engine (continuous batching); the new ids per prompt.
    ``seeds``: one per prompt (default ``sampling.seed``) make each row's draws its own."""
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    if not prompts:
        return []
    per = [sum(blocks_needed(model, len(budget(model, p, sampling)), sampling, block_tokens))
           for p in prompts]
    # at most max_batch requests hold blocks at once: the cache never needs more than that
    eng = Engine(model, num_blocks=min(sum(per), max_batch * max(per)),
                 block_tokens=block_tokens, max_batch=max_batch, decoder_start=decoder_start)
    # shortest first: a prefill group holds prompts of similar length (less padding)
    ids = {i: eng.add(prompts[i], replace(sampling, seed=seeds[i]) if seeds is not None
                      else sampling) for i in sorted(range(len(prompts)),
                                                     key=lambda i: len(prompts[i]))}
    out = eng.run()
    return [out[ids[i]] for i in range(len(prompts))]
