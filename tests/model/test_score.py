"""Log-likelihood scoring: hand-computed value, batch-size independence, truncation."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate
from lmforge.model.score import Request, loglikelihood
from lmforge.model.transformer import build_model


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(1)
    cfg = ModelConfig(flavor="custom", n_layer=2, n_head=2, n_embd=32, vocab_size=40,
                      block_size=32, arch=arch, position="rotary")  # type: ignore[arg-type]
    return build_model(cfg).eval()


def _requests(n: int) -> list[Request]:
    rng = random.Random(0)
    return [Request(tuple(rng.randrange(1, 40) for _ in range(rng.randint(1, 40))),
                    tuple(rng.randrange(1, 40) for _ in range(rng.randint(1, 6))))
            for _ in range(n)]


def test_logprob_is_the_sum_of_next_token_log_probabilities() -> None:
    model = _model("causal")
    ctx, cont = [5, 6, 7], [8, 9]
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ctx + cont[:-1]])), dim=-1)[0]
    expected = float(logp[2, 8] + logp[3, 9])
    [scored] = loglikelihood(model, [Request(tuple(ctx), tuple(cont))])
    assert scored.logprob == pytest.approx(expected, abs=1e-5)
    assert scored.tokens == 2
    assert scored.greedy == (int(logp[2].argmax()) == 8 and int(logp[3].argmax()) == 9)


@pytest.mark.parametrize("arch", ["causal", "prefix", "encoder_decoder"])
def test_scores_do_not_depend_on_batch_size(arch: str) -> None:
    model, reqs = _model(arch), _requests(23)
    one = loglikelihood(model, reqs, batch_size=1)
    for size in (4, 23):
        other = loglikelihood(model, reqs, batch_size=size)
        assert [s.greedy for s in other] == [s.greedy for s in one]
        assert [s.logprob for s in other] == pytest.approx([s.logprob for s in one], abs=1e-4)


def test_greedy_flag_agrees_with_greedy_generation() -> None:
    model = _model("causal")
    prompt = [3, 1, 4, 1, 5]
    greedy = generate(model, prompt, Sampling(max_new_tokens=4))
    [hit] = loglikelihood(model, [Request(tuple(prompt), tuple(greedy))])
    other = [greedy[0] % 39 + 1, *greedy[1:]]
    [miss] = loglikelihood(model, [Request(tuple(prompt), tuple(other))])
    assert hit.greedy and not miss.greedy
    assert hit.logprob > miss.logprob


def test_long_context_is_truncated_on_the_left() -> None:
    model = _model("causal")
    context = tuple(range(1, 39)) * 2  # 76 tokens, block 32
    long = Request(context, (3, 4))
    tail = Request(context[-(32 + 1 - 2):], (3, 4))  # what fits with the continuation
    assert loglikelihood(model, [long])[0].logprob == loglikelihood(model, [tail])[0].logprob
    with pytest.raises(ValueError, match="context"):
        loglikelihood(model, [Request((), (1, 2))])
