from __future__ import annotations

import numpy as np
import pytest
import torch
from lmforge.model.objectives import (
    IGNORE,
    ObjectiveConfig,
    SpecialTokens,
    corrupt,
    denoise_lengths,
    forward_loss,
    make_batch,
    span_mask,
)

SPECIAL = SpecialTokens(pad=0, eot=1, sentinels=tuple(range(100, 132)))


def test_span_mask_has_the_t5_density_and_span_count() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = span_mask(200, 0.15, 3.0, rng)
        assert mask.sum() == 30
        starts = mask & ~np.concatenate([[False], mask[:-1]])
        assert starts.sum() == 10
        assert not mask[0]  # a non-noise run comes first


def test_corruption_round_trips_to_the_original() -> None:
    rng = np.random.default_rng(1)
    row = rng.integers(2, 90, 64)
    src, tgt = corrupt(row, span_mask(64, 0.15, 3.0, rng), SPECIAL.sentinels, SPECIAL.eot)
    assert (len(src), len(tgt)) == denoise_lengths(64, ObjectiveConfig(kind="denoise"))
    assert tgt[-1] == SPECIAL.eot
    # splice each sentinel's span back into the input: the original row again
    spans: dict[int, list[int]] = {}
    current = None
    for t in tgt[:-1]:
        if t in SPECIAL.sentinels:
            current = int(t)
            spans[current] = []
        else:
            spans[current].append(int(t))
    rebuilt = [x for t in src for x in (spans[int(t)] if t in SPECIAL.sentinels else [int(t)])]
    assert rebuilt == row.tolist()


def test_lm_batches_shift_by_one_and_prefix_lm_scores_only_after_the_prefix() -> None:
    window = torch.arange(2, 2 + 2 * 17).view(2, 17)
    rng = np.random.default_rng(0)
    lm = make_batch(window, "causal", ObjectiveConfig(), None, rng)
    assert torch.equal(lm.targets, window[:, 1:]) and lm.prefix_len is None
    prefix = make_batch(window, "prefix", ObjectiveConfig(), None, rng)
    assert prefix.prefix_len is not None
    for row, p in enumerate(prefix.prefix_len.tolist()):
        assert 1 <= p <= 8
        scored = (prefix.targets[row] != IGNORE).nonzero().flatten()
        assert scored.min() == p - 1  # the first prediction is the token right after the prefix
        assert prefix.targets[row, -1] == window[row, -1]


@pytest.mark.parametrize("arch", ["encoder_decoder", "prefix"])
def test_denoise_batches(arch: str) -> None:
    window = torch.randint(2, 90, (3, 33))
    batch = make_batch(window, arch, ObjectiveConfig(kind="denoise"), SPECIAL,
                       np.random.default_rng(0))
    src_len, tgt_len = denoise_lengths(32, ObjectiveConfig(kind="denoise"))
    if arch == "encoder_decoder":
        assert batch.inputs.shape == (3, src_len) and batch.targets.shape == (3, tgt_len)
        assert torch.equal(batch.decoder_inputs[:, 1:], batch.targets[:, :-1])
        assert (batch.decoder_inputs[:, 0] == SPECIAL.pad).all()
    else:
        assert batch.inputs.shape == (3, src_len + tgt_len)
        assert (batch.prefix_len == src_len).all()
        assert batch.tokens == 3 * tgt_len  # only the target is scored
        # the token predicted at the last prefix position is the first target token
        assert torch.equal(batch.targets[:, src_len - 1], batch.inputs[:, src_len])


def test_denoise_needs_sentinels() -> None:
    with pytest.raises(ValueError, match="sentinel"):
        make_batch(torch.zeros(1, 9, dtype=torch.long), "prefix",
                   ObjectiveConfig(kind="denoise"), None, np.random.default_rng(0))
    few = SpecialTokens(pad=0, eot=1, sentinels=(100,))
    with pytest.raises(ValueError, match="sentinel"):
        make_batch(torch.randint(2, 90, (1, 101)), "prefix",
                   ObjectiveConfig(kind="denoise"), few, np.random.default_rng(0))


def test_loss_ignores_unscored_positions() -> None:
    class Fixed(torch.nn.Module):
        def forward(self, idx: torch.Tensor, prefix_len: torch.Tensor | None = None
                    ) -> torch.Tensor:
            logits = torch.zeros(*idx.shape, 4)
            logits[..., 0] = 10.0  # always predicts token 0
            return logits

    window = torch.tensor([[0, 0, 3, 3, 3]])
    batch = make_batch(window, "prefix", ObjectiveConfig(), None, np.random.default_rng(0))
    batch.prefix_len = torch.tensor([3])
    batch.targets[0, :2] = IGNORE  # the wrong predictions at positions 2.. stay scored
    full = forward_loss(Fixed(), batch, reduction="sum")
    assert float(full) == pytest.approx(2 * 10.0, rel=0.01)
