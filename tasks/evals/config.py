"""The ``evaluate:`` section of the pipeline config: which tasks, which probes, which
checkpoints, validated with errors that name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskFormat = Literal["hellaswag", "piqa", "boolq", "mmlu", "arc", "mc", "qa", "squad", "generate"]
MULTIPLE_CHOICE = ("hellaswag", "piqa", "boolq", "mmlu", "arc", "mc")


class TaskConfig(BaseModel):
    """One benchmark read from its published file format at a local path."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="metric prefix, e.g. 'hellaswag'")
    format: TaskFormat = Field(description="file format: hellaswag/piqa/boolq/arc/mc JSONL, "
                               "mmlu CSV (scored by log-likelihood); qa JSONL (NQ-open, "
                               "TriviaQA style), squad JSON (generated, EM/F1); generate JSONL "
                               "(prompt + reference, BLEU/ROUGE)")
    path: Path = Field(description="the task file (relative paths: to the config file)")
    fewshot_path: Path | None = Field(None, description="file the k-shot examples come from "
                                      "(default: the task file, never the scored item itself)")
    shots: int = Field(0, ge=0, le=32, description="in-context examples per prompt")
    seed: int = Field(1234, description="draw of the few-shot examples")
    limit: int | None = Field(None, ge=1, description="score only the first N items")
    chain_of_thought: bool = Field(False, description="qa/squad/generate: ask for reasoning "
                                   "first ('Let's think step by step.'), then take the text "
                                   "after 'the answer is'")
    max_new_tokens: int = Field(32, ge=1, description="generated tokens per item")
    self_consistency: int = Field(
        1, ge=1, le=64, description="qa/squad: sample this many answers (reasoning paths with "
        "chain_of_thought) and take the most frequent normalised answer (Wang et al. 2022); "
        "1 = one greedy answer")
    temperature: float = Field(0.7, gt=0, description="sampling temperature of "
                               "self_consistency > 1")

    @model_validator(mode="after")
    def _generation_options(self) -> TaskConfig:
        for option, used in (("chain_of_thought", self.chain_of_thought),
                             ("self_consistency", self.self_consistency > 1)):
            if used and self.format in MULTIPLE_CHOICE:
                raise ValueError(f"{option} applies to formats qa, squad, generate, not "
                                 f"{self.format!r} (scored by log-likelihood)")
        if self.self_consistency > 1 and self.format == "generate":
            raise ValueError("self_consistency votes over short answers (formats qa, squad); "
                             "free-form 'generate' outputs have no majority to take")
        return self


class MemorisationConfig(BaseModel):
    """Carlini et al. 2023 (Quantifying Memorization): prompt with k tokens of a training
    document, count exact greedy m-token continuations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    samples: int = Field(64, ge=1, description="training documents probed")
    prefix_tokens: int = Field(32, ge=1, description="k: prompt length in tokens")
    continuation_tokens: int = Field(16, ge=1, description="m: tokens that must match")
    seed: int = Field(0, description="which documents")


class SecurityConfig(BaseModel):
    """Security evaluation of the model's generations and likelihoods."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    toxicity_prompts: Path | None = Field(None, description="RealToxicityPrompts-style JSONL "
                                          "({'prompt': {'text': ...}} or {'prompt': ...})")
    generations_per_prompt: int = Field(4, ge=1, description="samples per toxicity prompt "
                                        "(Gehman et al. 2020 used 25)")
    pii_prompts: Path | None = Field(None, description="JSONL of prompts inviting personal "
                                     "data ({'prompt': ...}); generations scanned by presidio")
    bias_pairs: Path | None = Field(None, description="CrowS-Pairs CSV (sent_more, sent_less, "
                                    "bias_type) or JSONL ({'group', 'more', 'less'})")
    memorisation: MemorisationConfig | None = Field(default_factory=MemorisationConfig,
                                                    description="null disables")
    max_new_tokens: int = Field(20, ge=1, description="tokens per generation (RTP used 20)")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling of the probes")


class EvaluateConfig(BaseModel):
    """Evaluation of the trained model (and optionally its intermediate checkpoints)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    batch_size: int = Field(16, ge=1, description="sequences / requests per batch")
    max_batches: int | None = Field(None, ge=1, description="cap on held-out batches; "
                                    "null = whole split")
    checkpoints: Literal["final", "all"] = Field(
        "final", description="final = the exported model; all = also every kept sharded "
        "checkpoint (one Dask task each)")
    tasks: list[TaskConfig] = Field(default_factory=list, description="benchmark tasks")
    security: SecurityConfig = Field(default_factory=SecurityConfig, description="probes")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="where models run")
