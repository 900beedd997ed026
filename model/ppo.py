"""RLHF with PPO (Ouyang et al. 2022; Ziegler et al. 2019): rollouts from the policy with the
KV-cache generator, the reward model's score at the end of each reply minus a per-token KL
penalty to the frozen reference, a value head on the policy's hidden states, GAE, PPO's clipped
policy and value losses, and the adaptive KL coefficient of Ziegler et al.

Metrics per iteration: mean reward (the reward model's score), KL to the reference (summed over
the reply, mean over rollouts), entropy, clip fraction, value loss and the KL coefficient.
This loop runs in one process with its own AdamW (it alternates generation and several epochs
over the rollouts, which the pretraining trainer's step does not); it checkpoints after every
iteration and resumes exactly."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from lmforge.model.atomic import atomic_path
from lmforge.model.generate import Sampling, generate_batch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class PPOConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    iterations: int = Field(20, ge=1, description="rollout + optimisation rounds")
    rollouts: int = Field(16, ge=1, description="prompts sampled per iteration")
    minibatch: int = Field(8, ge=1, description="rollouts per optimizer step")
    epochs: int = Field(2, ge=1, description="passes over each iteration's rollouts")
    lr: float = Field(1e-4, gt=0)
    max_new_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, gt=0)
    kl_coef: float = Field(0.05, ge=0, description="initial KL penalty coefficient")
    kl_target: float | None = Field(6.0, gt=0, description="adaptive KL target (nats per "
                                    "reply); None keeps kl_coef fixed")
    kl_horizon: int = Field(10_000, ge=1, description="adaptive KL horizon (rollouts)")
    clip: float = Field(0.2, gt=0, description="policy ratio clip")
    clip_value: float = Field(0.2, gt=0, description="value clip")
    vf_coef: float = Field(0.1, ge=0, description="value loss weight")
    gamma: float = Field(1.0, gt=0, le=1)
    lam: float = Field(0.95, gt=0, le=1)
    seed: int = 0


def add_value_head(policy: nn.Module) -> nn.Module:
    head = nn.Linear(policy.cfg.n_embd, 1)  # type: ignore[attr-defined]
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    policy.value_head = head
    return policy


@dataclass
class Rollouts:
    tokens: torch.Tensor  # (N, T) prompt + reply, right-padded
    reply: torch.Tensor  # (N, T-1) bool: position t predicts a reply token t+1
    logprobs: torch.Tensor  # (N, T-1) of the policy at sampling time
    ref_logprobs: torch.Tensor  # (N, T-1)
    values: torch.Tensor  # (N, T-1)
    scores: torch.Tensor  # (N,) reward model


def _pad(seqs: Sequence[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def _logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits[:, :-1].float(), -1).gather(
        -1, tokens[:, 1:, None])[..., 0]


def _forward(policy: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, values) of the policy with its value head."""
    h = policy(tokens, features=True)
    return policy.lm_head(h), policy.value_head(h)[..., 0]  # type: ignore[operator]


@torch.no_grad()
def rollout(policy: nn.Module, reference: nn.Module, score: Callable[[torch.Tensor,
            torch.Tensor], torch.Tensor], prompts: Sequence[list[int]], cfg: PPOConfig,
            stop: int, pad: int, seeds: Sequence[int]) -> Rollouts:
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                        stop=frozenset({stop}))
    replies = generate_batch(policy, list(prompts), sampling, seeds=list(seeds))
    seqs = [list(p) + r for p, r in zip(prompts, replies, strict=True)]
    tokens = _pad(seqs, pad)
    reply = torch.zeros(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, replies, strict=True)):
        reply[i, len(p) - 1:len(p) - 1 + len(r)] = True
    policy.eval()
    logits, values = _forward(policy, tokens)
    ref = reference(tokens)
    lengths = torch.tensor([len(s) for s in seqs])
    return Rollouts(tokens, reply, _logprobs(logits, tokens), _logprobs(ref, tokens),
                    values[:, :-1], score(tokens, lengths))


def advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
               lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each reply's positions (masked elsewhere); returns (advantages, returns)."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    next_value = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t].float()
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m + last * (1 - m)
        adv[:, t] = last * m
        next_value = values[:, t] * m + next_value * (1 - m)
    return adv, adv + values


def _whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = x[mask].mean()
    std = x[mask].std().clamp_min(1e-8)
    return torch.where(mask, (x - mean) / std, torch.zeros_like(x))


def _save(path: Path, policy: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
          kl_coef: float, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"policy": policy.state_dict(), "optimizer": opt.state_dict(),
                    "generator": gen.get_state(), "kl_coef": kl_coef, "history": history}, tmp)


def _optimise(policy: nn.Module, opt: torch.optim.Optimizer, params: list[nn.Parameter],
              r: Rollouts, adv: torch.Tensor, returns: torch.Tensor, cfg: PPOConfig,
              gen: torch.Generator) -> tuple[float, float, float]:
    """``cfg.epochs`` passes of clipped policy and value updates over the rollouts; returns the
    mean clip fraction, entropy and value loss."""
    policy.train()
    clipped, entropy, value_loss, steps = 0.0, 0.0, 0.0, 0
    for _ in range(cfg.epochs):
        order = torch.randperm(cfg.rollouts, generator=gen)
        for start in range(0, cfg.rollouts, cfg.minibatch):
            idx = order[start:start + cfg.minibatch]
            mask = r.reply[idx]
            logits, values = _forward(policy, r.tokens[idx])
            logp = _logprobs(logits, r.tokens[idx])
            ratio = torch.exp(logp - r.logprobs[idx])
            a = adv[idx]
            pg = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip, 1 + cfg.clip))
            v = values[:, :-1]
            v_clip = r.values[idx] + (v - r.values[idx]).clamp(-cfg.clip_value,
                                                              cfg.clip_value)
            vf = torch.max((v - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2)
            loss = (pg[mask].mean() + cfg.vf_coef * 0.5 * vf[mask].mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                probs = torch.softmax(logits[:, :-1].float(), -1)
                ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
                entropy += float(ent[mask].mean())
                clipped += float(((ratio - 1).abs() > cfg.clip)[mask].float().mean())
                value_loss += float(vf[mask].mean())
                steps += 1
    return clipped / steps, entropy / steps, value_loss / steps


def ppo(policy: nn.Module, reference: nn.Module,
        score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        prompts: Sequence[list[int]], cfg: PPOConfig, *, stop: int, pad: int,
        log: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint: Path | None = None) -> list[dict[str, float]]:
    """Train ``policy`` (with ``add_value_head``) in place; returns per-iteration metrics.
    With ``checkpoint``, the state after every iteration (policy, optimizer, the sampling
    generator, the KL coefficient, the metrics) is written there, and a rerun resumes from it:
    the same rollouts and updates as an uninterrupted run."""
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    kl_coef, history = cfg.kl_coef, []
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        policy.load_state_dict(state["policy"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        kl_coef, history = float(state["kl_coef"]), list(state["history"])
    for it in range(len(history), cfg.iterations):
        pick = torch.randint(len(prompts), (cfg.rollouts,), generator=gen).tolist()
        seeds = torch.randint(2**31 - 1, (cfg.rollouts,), generator=gen).tolist()
        r = rollout(policy, reference, score, [prompts[i] for i in pick], cfg, stop, pad, seeds)
        kl = (r.logprobs - r.ref_logprobs) * r.reply
        rewards = -kl_coef * kl
        ends = r.reply.float().cumsum(1).argmax(1)  # the reply's last position
        rewards[torch.arange(len(ends)), ends] += r.scores
        adv, returns = advantages(rewards, r.values, r.reply, cfg.gamma, cfg.lam)
        adv = _whiten(adv, r.reply)
        clipped, entropy, value_loss = _optimise(policy, opt, params, r, adv, returns, cfg,
                                                 gen)
        mean_kl = float(kl.sum(1).mean())
        if cfg.kl_target is not None:  # Ziegler et al.: proportional control of the KL
            error = max(-0.2, min(0.2, mean_kl / cfg.kl_target - 1))
            kl_coef *= 1 + error * cfg.rollouts / cfg.kl_horizon
        metrics = {"ppo/reward": float(r.scores.mean()), "ppo/kl": mean_kl,
                   "ppo/entropy": entropy, "ppo/clip_fraction": clipped,
                   "ppo/value_loss": value_loss, "ppo/kl_coef": kl_coef}
        if not math.isfinite(metrics["ppo/kl"]):
            raise FloatingPointError(f"PPO diverged at iteration {it}: {metrics}")
        history.append(metrics)
        if checkpoint is not None:
            _save(checkpoint, policy, opt, gen, kl_coef, history)
        if log is not None:
            log(it + 1, metrics)
    return history


def reward_scorer(reward_model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor],
                                                        torch.Tensor]:
    """Scores (N,) of right-padded sequences of the given lengths: the reward head on the
    final hidden state of each sequence's last token."""
    @torch.no_grad()
    def score(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        reward_model.eval()
        h = reward_model(tokens, features=True)
        last = h[torch.arange(len(lengths)), lengths - 1]
        return reward_model.reward_head(last)[:, 0].float()  # type: ignore[operator]
    return score


def win_rate(policy: nn.Module, reference: nn.Module, score: Callable[[torch.Tensor,
             torch.Tensor], torch.Tensor], prompts: Sequence[list[int]], *, stop: int,
             pad: int, max_new_tokens: int = 16, seed: int = 0) -> float:
    """Share of prompts whose policy reply the reward model scores above the reference's."""
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=1.0, stop=frozenset({stop}))
    seeds = list(range(seed, seed + len(prompts)))
    scores = []
    for model in (policy, reference):
        replies = generate_batch(model, list(prompts), sampling, seeds=seeds)
        seqs = [list(p) + r for p, r in zip(prompts, replies, strict=True)]
        scores.append(score(_pad(seqs, pad), torch.tensor([len(s) for s in seqs])))
    return float((scores[0] > scores[1]).float().mean())

