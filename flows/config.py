"""The pipeline's ``RunConfig``: every component's config composed, validated before any work.

YAML keys mirror the fields below. Unknown keys and bad values fail with a message that names
the key, the bad value and the allowed values or fields.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, get_args

import yaml
from lmforge.infra.cluster import DaskConfig
from lmforge.infra.settings import DEFAULT_CONFIG
from lmforge.model.atomic import write_text
from lmforge.model.config import ModelConfig
from lmforge.model.train_config import TrainConfig
from lmforge.tasks.alignment import AlignConfig
from lmforge.tasks.compression import CompressSection
from lmforge.tasks.curate import CurateConfig
from lmforge.tasks.dataset import DatasetConfig
from lmforge.tasks.evals.config import EvaluateConfig
from lmforge.tasks.finetuning import FinetuneConfig
from lmforge.tasks.readers import Source, source_config
from lmforge.tasks.tokenizer import TokenizerConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class TrackingConfig(BaseModel):
    """Where experiments are recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    experiment: str = Field("lmforge", description="MLflow experiment name")


class RunConfig(BaseModel):
    """Everything one pipeline run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    output: Path = Field(Path("lmforge-out"), description="output folder of all stages")
    sources: list[Source] = Field(min_length=1, description="inputs, one entry per source")
    curate: CurateConfig = Field(default_factory=CurateConfig, description="curation stages")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="tokenizer")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="token shards")
    model: ModelConfig = Field(default_factory=ModelConfig, description="model shape")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="evaluation")
    dask: DaskConfig = Field(default_factory=DaskConfig, description="Dask cluster")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow")
    finetune: FinetuneConfig | None = Field(None, description="supervised / parameter-"
                                            "efficient fine-tuning of the trained model")
    align: AlignConfig | None = Field(None, description="DPO or a reward model on preference "
                                      "pairs, after fine-tuning")
    compress: CompressSection = Field(default_factory=CompressSection, description=(
        "compressed variants of the trained model (quantization, pruning, low rank, sharing)"))

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.dataset.seq_len > self.model.block_size:
            raise ValueError(f"dataset.seq_len={self.dataset.seq_len} exceeds "
                             f"model.block_size={self.model.block_size}; raise model.block_size "
                             "or lower dataset.seq_len")
        return self

    def digest(self) -> str:
        """Hash of the resolved config (the manifest's ``config_hash``)."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A config file that does not validate; the message lists every problem."""


def _allowed_fields(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model that holds the key at ``loc`` (for 'unknown key' errors)."""
    model: Any = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in getattr(model, "model_fields", {}):
            annotation = model.model_fields[part].annotation
            model = _model_in(annotation)
        else:  # a discriminated-union tag, e.g. sources.0.reddit
            model = _union_member(model, part)
    return sorted(model.model_fields) if model is not None else None


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _union_member(model: Any, tag: str) -> Any:
    return source_config(tag) or model


def format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(e["loc"])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
        else:
            value = e.get("input")
            shown = repr(value) if not isinstance(value, dict) else "{...}"
            lines.append(f"  {key or '(top level)'}: {e['msg']} (got {shown})")
    return "\n".join(lines)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative local paths (sources, evaluation sets, probes) are relative to the config
    file's folder."""
    def fix(p: Any) -> Any:
        if not isinstance(p, str) or "://" in p or Path(p).is_absolute():
            return p
        return str(base / p)

    def fix_keys(section: Any, keys: tuple[str, ...]) -> None:
        if isinstance(section, dict):
            for key in (k for k in keys if k in section):
                value = section[key]
                section[key] = [fix(v) for v in value] if isinstance(value, list) else fix(value)

    for source in data.get("sources") or []:
        fix_keys(source, ("paths",))
    fix_keys((data.get("dataset") or {}).get("decontaminate"), ("paths",))
    evaluate = data.get("evaluate") or {}
    for task in evaluate.get("tasks") or []:
        fix_keys(task, ("path", "fewshot_path"))
    fix_keys(evaluate.get("security"), ("toxicity_prompts", "pii_prompts", "bias_pairs"))
    finetune = data.get("finetune") or {}
    fix_keys(finetune.get("data"), ("paths",))
    fix_keys((finetune.get("data") or {}).get("decontaminate"), ("paths",))
    fix_keys(finetune, ("base",))
    align = data.get("align") or {}
    fix_keys(align.get("data"), ("paths",))
    fix_keys((align.get("data") or {}).get("decontaminate"), ("paths",))
    fix_keys(align, ("base", "reward_model"))
    fix_keys(align.get("safety"), ("refusals", "eval_prompts", "distill_prompts",
                                   "instructions"))
    return data


def save_config(cfg: RunConfig, path: Path) -> Path:
    """The resolved config beside the outputs it produced (``lmforge explain`` reads it)."""
    # the nodes of a multi-node launch may save into one shared folder: the writer's own
    # temporary name keeps them apart
    return write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def load_config(path: Path | None = None, **overrides: Any) -> RunConfig:
    """Load and validate a YAML config (default: the embedded sample), with top-level overrides
    such as ``output=...``."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys, not {type(data).__name__}")
    data = _resolve_paths(data, path.resolve().parent)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, str(path))) from None


def preflight(cfg: RunConfig, *, inputs: bool = True, finetune: bool = False) -> list[str]:
    """What would make the run fail, found before any service or cluster starts: local input
    patterns that match no file (and why: a missing folder, an empty one) and an output folder
    that cannot be created or written (with ``finetune``, the instruction files and the base
    model of the finetune section too). One line per problem, saying what to do."""
    from lmforge.tasks.readers.base import expand_paths, glob_root

    problems = []
    for index, source in enumerate(cfg.sources if inputs else []):
        for pattern in source.paths:
            if "://" in pattern and not pattern.startswith("file://"):
                continue  # remote: listed when the run plans its partitions
            if expand_paths(pattern, want_dirs=True):
                continue
            local = pattern.removeprefix("file://")
            root = Path(glob_root(local) or ".") if any(c in local for c in "*?[") \
                else Path(local)
            if not root.exists():
                why = f"{root} does not exist"
            elif root.is_dir() and not any(root.iterdir()):
                why = f"the folder {root} is empty"
            else:
                why = "no file there matches it"
            problems.append(f"sources.{index}.paths: {pattern} matches no input ({why}); fix "
                            "the path in the config")
    problems += _tuning_problems(cfg) if finetune else []
    problems += _output_problems(cfg.output.resolve())
    return problems



def _tuning_problems(cfg: RunConfig) -> list[str]:
    """The files of the finetune and align sections that match nothing."""
    from lmforge.tasks.readers.base import expand_paths

    problems = []
    for name, section in (("finetune", cfg.finetune), ("align", cfg.align)):
        if section is None:
            continue
        for pattern in section.data.paths:
            if not expand_paths(pattern, want_dirs=False):
                problems.append(f"{name}.data.paths: {pattern} matches no file; fix the path "
                                "in the config")
        if section.base is not None and not section.base.is_file():
            problems.append(f"{name}.base: {section.base} does not exist; train a model "
                            "first or fix the path")
    safety = cfg.align.safety if cfg.align is not None else None
    for key, pattern in ([("refusals", p) for p in safety.refusals] + [
            ("eval_prompts", safety.eval_prompts), ("distill_prompts", safety.distill_prompts)]
            if safety else []):
        if pattern and not expand_paths(pattern, want_dirs=False):
            problems.append(f"align.safety.{key}: {pattern} matches no file; fix the path")
    return problems

def _output_problems(out: Path) -> list[str]:
    if out.exists() and not out.is_dir():
        return [f"output {out} is a file, not a folder: choose another with --output"]
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return [f"output {out} cannot be created: {existing} is a file; choose another "
                "with --output"]
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == out else f"cannot be created in {existing}"
        return [f"output {out} {what} (permission denied for uid {os.getuid()}): choose "
                "another with --output"]
    return []
