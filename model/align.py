"""Alignment objectives on preference pairs (``objectives.pair_batch``: chosen rows, then
rejected rows): the reward model's Bradley-Terry loss and DPO against a frozen reference.

* reward model: r = head(h_last), the final hidden state at the reply's last scored token;
  loss = -log sigmoid(r_chosen - r_rejected) (Ouyang et al. 2022, eq. 1).
* DPO (Rafailov et al. 2023, eq. 7): with log-ratios rho = log pi(y|x) - log pi_ref(y|x) summed
  over the reply's tokens, loss = -log sigmoid(beta (rho_chosen - rho_rejected)). The reference
  log-probabilities are computed once per distinct pair and cached (``ReferenceCache``): from the
  second epoch on, a step costs the policy's forward and backward only.

Losses are summed over pairs (the trainer scales by the global number of pairs)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lmforge.model.objectives import IGNORE, Batch, batch_output
from torch import nn

PairLoss = Callable[[nn.Module, Batch, str], torch.Tensor]


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) summed log-probability of each row's scored targets."""
    scored = targets != IGNORE
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    return (picked * scored).sum(-1)


def last_scored(targets: torch.Tensor) -> torch.Tensor:
    """(N,) position of each row's last scored token (the reply's end)."""
    positions = torch.arange(targets.shape[1], device=targets.device).expand_as(targets)
    return torch.where(targets != IGNORE, positions, -1).amax(-1).clamp_min(0)


def rewards(model: nn.Module, batch: Batch) -> torch.Tensor:
    """(2B,) scalar rewards of the batch's rows (the model carries ``reward_head``)."""
    inner = getattr(model, "module", model)
    h = batch_output(model, batch, features=True)  # (N, T, C)
    last = h[torch.arange(h.shape[0], device=h.device), last_scored(batch.targets)]
    return inner.reward_head(last.to(inner.reward_head.weight.dtype))[:, 0].float()


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return values.sum() if reduction == "sum" else values.mean()


def reward_loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    r = rewards(model, batch)
    chosen, rejected = r[:batch.pairs], r[batch.pairs:]
    return _reduce(-F.logsigmoid(chosen - rejected), reduction)


class ReferenceCache:
    """Reference log-probabilities per distinct row, computed by the frozen reference once."""

    def __init__(self, reference: nn.Module) -> None:
        self.reference = reference.eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.values: dict[bytes, float] = {}
        self.computed = 0

    @torch.no_grad()
    def __call__(self, batch: Batch) -> torch.Tensor:
        keys = [hashlib.blake2b(torch.cat([batch.inputs[i], batch.targets[i]]).cpu().numpy()
                                .tobytes(), digest_size=16).digest()
                for i in range(batch.inputs.shape[0])]
        missing = [i for i, k in enumerate(keys) if k not in self.values]
        if missing:
            device = next(self.reference.parameters()).device
            sub = Batch(*(t[missing].to(device) if t is not None else None for t in (
                batch.inputs, batch.targets, batch.decoder_inputs, batch.prefix_len,
                batch.segments, batch.bidirectional, batch.src_mask)))
            logps = sequence_logprobs(batch_output(self.reference, sub), sub.targets)
            for i, value in zip(missing, logps.tolist(), strict=True):
                self.values[keys[i]] = value
            self.computed += len(missing)
        return torch.tensor([self.values[k] for k in keys], device=batch.inputs.device)


def dpo_margins(model: nn.Module, batch: Batch, reference: ReferenceCache, beta: float
                ) -> torch.Tensor:
    """(B,) beta (rho_chosen - rho_rejected): DPO's implicit reward margin per pair."""
    logps = sequence_logprobs(batch_output(model, batch), batch.targets)
    rho = logps - reference(batch)
    return beta * (rho[:batch.pairs] - rho[batch.pairs:])


def dpo_loss(reference: ReferenceCache, beta: float) -> PairLoss:
    def loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        return _reduce(-F.logsigmoid(dpo_margins(model, batch, reference, beta)), reduction)

    return loss
