"""A byte-level BPE tokenizer trained on the curated corpus with HF ``tokenizers``.

Saved as ``tokenizer.json``, which ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``
loads as is. Special tokens: end of document (also the packing separator), padding, chat roles,
and T5-style denoising sentinels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from lmforge.model.atomic import atomic_path
from lmforge.tasks.shards import iter_documents
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
PAD = "<|pad|>"
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]


def special_tokens(sentinels: int) -> list[str]:
    return [EOT, PAD, *ROLES, *(f"<extra_id_{i}>" for i in range(sentinels))]


class TokenizerConfig(BaseModel):
    """Train a tokenizer on the curated text, or load one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str | None = Field(None, description="an existing tokenizer.json to use instead of "
                             "training one")
    vocab_size: int = Field(4096, ge=300, le=262_144, description="BPE vocabulary size, "
                            "special tokens included")
    min_frequency: int = Field(2, ge=1, description="pairs seen fewer times are not merged")
    sample_docs: int = Field(200_000, ge=1, description="most documents read for training")
    sentinels: int = Field(32, ge=0, description="denoising sentinels <extra_id_0..N-1>")


def _sample(curated: list[Path], limit: int) -> Iterator[str]:
    """Up to ``limit`` documents, taken round-robin over shards so every source is seen."""
    iterators = [iter_documents(p) for p in curated]
    taken = 0
    while iterators and taken < limit:
        for it in list(iterators):
            doc = next(it, None)
            if doc is None:
                iterators.remove(it)
                continue
            yield doc.text
            taken += 1
            if taken >= limit:
                return


def train_tokenizer(curated: list[Path], cfg: TokenizerConfig, out: Path) -> Path:
    """Train byte-level BPE on a sample of the curated shards and save ``out``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
        special_tokens=special_tokens(cfg.sentinels),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_sample(curated, cfg.sample_docs), trainer=trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tokenizer.save(str(tmp))
    return out


@lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Tokenizer:
    """Load once per process (per Dask worker)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"tokenizer file {path} does not exist; train one with "
                                "`lmforge tokenize` or set tokenizer.path to a tokenizer.json")
    return Tokenizer.from_file(path)


def tokenizer_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
