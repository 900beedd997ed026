"""The reward model's scalar head (Ouyang et al. 2022): a linear layer on the final hidden state
of the reply's last token; the whole model trains with it (Bradley-Terry loss on preference
pairs, ``model.align``). A record here so checkpoints and exports rebuild the head."""

from __future__ import annotations

from typing import Literal

from lmforge.model.finetune.base import Method, MethodConfig
from torch import nn


class RewardConfig(MethodConfig):
    kind: Literal["reward"] = "reward"


def apply(model: nn.Module, cfg: MethodConfig) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    head = nn.Linear(model.cfg.n_embd, 1)  # type: ignore[attr-defined]
    nn.init.normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    model.reward_head = head


METHOD = Method("reward", RewardConfig, apply)
