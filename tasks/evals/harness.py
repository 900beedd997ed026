"""Run one benchmark task on a model: build the (k-shot) prompts, score choices by
log-likelihood or generate answers, and return metrics plus one prediction row per item.

Every context starts with the end-of-text token, as every training document does. Few-shot
examples are drawn per item from a generator seeded by (task seed, item id), so the prompts
do not depend on item order, batch size or which items a ``limit`` keeps.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lmforge.model.generate import Sampling, generate_batch
from lmforge.model.objectives import SpecialTokens
from lmforge.model.score import Request, loglikelihood
from lmforge.tasks.evals.config import MULTIPLE_CHOICE, TaskConfig
from lmforge.tasks.evals.formats import Choice, Generation, read_items
from lmforge.tasks.evals.metrics import (
    bleu,
    choose,
    exact_match,
    extract_answer,
    majority_answer,
    rouge,
    token_f1,
)
from tokenizers import Tokenizer
from torch import nn

COT_TRIGGER = " Let's think step by step."  # Kojima et al. 2022, zero-shot chain of thought
DELIMITER = " "  # between a query and its answer


@dataclass(frozen=True)
class LM:
    """A model with what is needed to feed it text."""

    model: nn.Module
    tokenizer: Tokenizer
    special: SpecialTokens
    batch_size: int = 16

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def context(self, text: str) -> tuple[int, ...]:
        return (self.special.eot, *self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i != self.special.eot])

    def generate(self, prompts: list[list[int]], sampling: Sampling,
                 seeds: list[int] | None = None) -> list[list[int]]:
        """New tokens for every prompt through the paged-KV engine (``batch_size`` requests
        decoded at once); each row generates what it would alone."""
        return generate_batch(self.model, prompts, sampling, seeds=seeds,
                              decoder_start=self.special.pad, max_batch=self.batch_size)


@dataclass(frozen=True)
class TaskResult:
    metrics: dict[str, float]
    predictions: list[dict[str, Any]]


class FewShot:
    """The k-shot examples of each item: a draw seeded by (seed, item id) from the pool sorted
    once by id, so it depends neither on file order nor on the other items; the item itself is
    never its own example when the pool is the task file. O(k) per item."""

    def __init__(self, pool: list[Any], k: int, seed: int, same_file: bool) -> None:
        self.pool = sorted(pool, key=lambda p: p.id)
        self.ids = {p.id for p in self.pool}
        self.k, self.seed, self.same_file = k, seed, same_file

    def draw(self, item_id: str) -> list[Any]:
        if self.k == 0:
            return []
        own = self.same_file and item_id in self.ids
        if self.k > len(self.pool) - own:
            raise ValueError(f"{self.k}-shot needs {self.k} examples but the few-shot pool "
                             f"has {len(self.pool) - own}")
        picks = random.Random(f"{self.seed}:{item_id}").sample(
            range(len(self.pool)), min(len(self.pool), self.k + own))
        return [self.pool[i] for i in picks if not (own and self.pool[i].id == item_id)][:self.k]


def choice_prompt(item: Choice, shots: list[Choice]) -> str:
    examples = [s.query + DELIMITER + s.choices[s.gold] for s in shots]
    head = [item.description] if item.description else []
    return "\n\n".join(head + examples + [item.query])


def generation_prompt(item: Generation, shots: list[Generation], cot: bool) -> str:
    prompt = "\n\n".join([s.example for s in shots] + [item.prompt])
    return prompt + COT_TRIGGER if cot else prompt


def run_multiple_choice(lm: LM, items: list[Choice], pool: list[Choice],
                        cfg: TaskConfig) -> TaskResult:
    shots = FewShot(pool, cfg.shots, cfg.seed, same_file=cfg.fewshot_path is None)
    prompts = [choice_prompt(it, shots.draw(it.id)) for it in items]
    requests = [Request(lm.context(p), tuple(lm.encode(DELIMITER + c)))
                for p, it in zip(prompts, items, strict=True) for c in it.choices]
    scores = iter(loglikelihood(lm.model, requests, batch_size=lm.batch_size,
                                pad=lm.special.pad))
    rows, acc, acc_norm = [], 0, 0
    for it in items:
        logprobs = [next(scores).logprob for _ in it.choices]
        raw, norm = choose(logprobs, list(it.choices))
        acc += raw == it.gold
        acc_norm += norm == it.gold
        rows.append({"id": it.id, "gold": it.gold, "pred": raw, "pred_norm": norm,
                     "correct": raw == it.gold, "logprobs": [round(x, 4) for x in logprobs]})
    n = max(1, len(items))
    return TaskResult({"acc": acc / n, "acc_norm": acc_norm / n, "items": float(len(items))},
                      rows)


def _seed(task_seed: int, item_id: str, sample: int) -> int:
    digest = hashlib.blake2b(f"{task_seed}:{item_id}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@lru_cache(maxsize=4)
def _newline_tokens(tokenizer: Tokenizer, marker: str) -> frozenset[int]:
    return frozenset(i for i in range(tokenizer.get_vocab_size())
                     if marker in tokenizer.decode([i]))


def run_generation(lm: LM, items: list[Generation], pool: list[Generation], fmt: str,
                   cfg: TaskConfig) -> TaskResult:
    # answers end at a line break; reasoning (chain of thought) at a blank line
    marker = "\n\n" if cfg.chain_of_thought else "\n"
    stop = _newline_tokens(lm.tokenizer, marker) | {lm.special.eot}
    k = cfg.self_consistency  # 1: one greedy answer; more: sampled answers, majority vote
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens, stop=frozenset(stop),
                        temperature=cfg.temperature if k > 1 else 0.0)
    rows, preds, refs = [], [], []
    shots = FewShot(pool, cfg.shots, cfg.seed, same_file=cfg.fewshot_path is None)
    prompts = [list(lm.context(generation_prompt(it, shots.draw(it.id), cfg.chain_of_thought)))
               for it in items]
    # each sample's seed comes from (task seed, item id, sample): independent of order/batch
    generated = lm.generate([p for p in prompts for _ in range(k)], sampling,
                            seeds=[_seed(cfg.seed, it.id, j) for it in items for j in range(k)])
    for i, it in enumerate(items):
        texts = [lm.decode(g).split(marker)[0] for g in generated[i * k:(i + 1) * k]]
        answers = [extract_answer(t, cfg.chain_of_thought) for t in texts]
        answer = majority_answer(answers)
        preds.append(answer)
        refs.append(it.references)
        row: dict[str, Any] = {"id": it.id, "generation": texts[answers.index(answer)],
                               "answer": answer, "references": list(it.references),
                               "exact_match": exact_match(answer, it.references),
                               "f1": token_f1(answer, it.references)}
        if k > 1:
            row["sampled_answers"] = answers
        rows.append(row)
    n = max(1, len(items))
    metrics = {"exact_match": sum(r["exact_match"] for r in rows) / n,
               "f1": sum(r["f1"] for r in rows) / n, "items": float(len(items))}
    if fmt == "generate" and items:
        metrics["bleu"] = bleu(preds, refs)
        for row, pred, ref in zip(rows, preds, refs, strict=True):
            row.update(rouge(pred, ref))
        for kind in ("rouge1", "rouge2", "rougeL"):
            metrics[kind] = sum(r[kind] for r in rows) / n
    return TaskResult(metrics, rows)


def run_task(lm: LM, cfg: TaskConfig) -> TaskResult:
    """Score one task; paths in ``cfg`` must already be absolute or relative to the cwd."""
    items = read_items(cfg.format, cfg.path)
    pool = read_items(cfg.format, cfg.fewshot_path) if cfg.fewshot_path else items
    items = items[:cfg.limit] if cfg.limit else items
    if cfg.format in MULTIPLE_CHOICE:
        return run_multiple_choice(lm, items, pool, cfg)  # type: ignore[arg-type]
    return run_generation(lm, items, pool, cfg.format, cfg)  # type: ignore[arg-type]
