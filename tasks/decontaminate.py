"""Decontamination: training documents that share an n-gram (13 words by default, as in the
GPT-3 paper, Brown et al. 2020, App. C) with an evaluation set are removed from training.

Evaluation files are read from local paths: JSON lines (every string value of a record),
CSV (every cell), or plain text (one passage per paragraph). Only their n-gram hashes are kept.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from lmforge.tasks.dedup.minhash import normalise
from pydantic import BaseModel, ConfigDict, Field


class DecontaminationConfig(BaseModel):
    """Evaluation sets that training data must not overlap."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    paths: tuple[str, ...] = Field(min_length=1,
                                   description="evaluation files (.jsonl, .csv, .txt)")
    ngram: int = Field(13, ge=3, description="words per n-gram (GPT-3 used 13)")


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def eval_passages(path: Path) -> Iterator[str]:
    if path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield " ".join(_strings(json.loads(line)))
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                yield " ".join(row)
    else:
        yield from (p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip())


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of every word n-gram of the normalised text."""
    words = normalise(text).split()
    if len(words) < n:
        return np.zeros(0, dtype=np.uint64)
    ids = pd.util.hash_array(np.asarray(words, dtype=object), categorize=False)
    m = len(ids) - n + 1
    out = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            out = out * np.uint64(0x100000001B3) + ids[k:k + m]
    return out


@lru_cache(maxsize=2)
def eval_ngrams(cfg: DecontaminationConfig) -> np.ndarray:
    """Sorted unique n-gram hashes of every evaluation passage (once per process)."""
    parts = [ngram_hashes(p, cfg.ngram) for path in cfg.paths
             for p in eval_passages(Path(path))]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def overlaps(text: str, cfg: DecontaminationConfig) -> bool:
    table = eval_ngrams(cfg)
    mine = ngram_hashes(text, cfg.ngram)
    if len(table) == 0 or len(mine) == 0:
        return False
    found = np.searchsorted(table, mine)
    found[found == len(table)] = 0
    return bool((table[found] == mine).any())
