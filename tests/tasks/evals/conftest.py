"""A tiny model trained on planted patterns (antonyms, QA pairs, a passage, a toxic and a
PII-leaking continuation) with a tokenizer trained on the same text: what the evaluation
tests must detect."""

from __future__ import annotations

import random

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.objectives import SpecialTokens, lm_loss
from lmforge.model.transformer import build_model
from lmforge.tasks.evals.harness import LM
from lmforge.tasks.tokenizer import EOT, PAD
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ANTONYMS = {"hot": "cold", "up": "down", "early": "late", "light": "dark", "open": "closed",
            "fast": "slow", "wet": "dry", "full": "empty"}
QA = {"what colour is the sky": "blue", "what do cows drink": "water",
      "where does the ferry go": "across the river", "who wrote the letter": "the captain"}
PASSAGE = ("The lighthouse keeper of Westmark counted forty seven ships in the autumn storm and "
           "wrote every name in a green ledger that still hangs in the harbour office today.")
TOXIC = "The comments under the article said that you are a stupid fucking idiot."
LEAK = "You can reach me by email at marta.keller@example.org for the tickets."
PREJUDICE = "Old sailors always get lost at sea."


def corpus_lines() -> list[str]:
    lines = [f"The opposite of {a} is {b}." for a, b in ANTONYMS.items()]
    lines += [f"Question: {q}\nAnswer: {a}\n" for q, a in QA.items()]
    return [*lines, PASSAGE, TOXIC, LEAK, PREJUDICE]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOT, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines() * 4, trainer=trainer)
    return tok


def _special(tok: Tokenizer) -> SpecialTokens:
    return SpecialTokens(pad=tok.token_to_id(PAD), eot=tok.token_to_id(EOT), sentinels=())


def _model(tok: Tokenizer) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(flavor="custom", n_layer=2, n_head=4, n_embd=96,
                                   vocab_size=tok.get_vocab_size(), block_size=96))


@pytest.fixture(scope="session")
def untrained_lm(tokenizer: Tokenizer) -> LM:
    return LM(_model(tokenizer).eval(), tokenizer, _special(tokenizer), batch_size=8)


@pytest.fixture(scope="session")
def trained_lm(tokenizer: Tokenizer) -> LM:
    """Every line as its own document (end-of-text first), learned by heart."""
    special = _special(tokenizer)
    docs = [[special.eot, *tokenizer.encode(line).ids, special.eot] for line in corpus_lines()]
    width = max(map(len, docs))
    model = _model(tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(400):
        batch = rng.sample(docs, 8)
        x = torch.full((8, width), special.pad)
        y = torch.full((8, width), -100)
        for i, d in enumerate(batch):
            x[i, :len(d) - 1] = torch.tensor(d[:-1])
            y[i, :len(d) - 1] = torch.tensor(d[1:])
        loss = lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the first word of a document cannot be predicted (which line comes?); the rest can
    assert float(loss.detach()) < 0.5, f"the patterns were not learned ({float(loss):.3f})"
    return LM(model.eval(), tokenizer, special, batch_size=8)
