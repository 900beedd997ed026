"""Every Prefect ``@task`` of lmforge: the plain functions of ``tasks/`` wrapped where the flows
submit them (to the Dask task runner, or in the flow's process for training). ``tasks/`` never
imports Prefect; each task name is unique, so the Prefect UI tells them apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.model.config import ModelConfig
from lmforge.model.distributed import init_runtime
from lmforge.model.train_config import LogMetrics, TrainConfig, TrainResult
from lmforge.tasks.curate import (
    CurateConfig,
    classifier_model,
    dedup_corpus,
    filter_shard,
    scrub_shard,
    webtext_list,
)
from lmforge.tasks.dataset import DatasetConfig, ShardTokens, build_plan, pack_shard
from lmforge.tasks.dedup import DedupConfig
from lmforge.tasks.evals.config import EvaluateConfig
from lmforge.tasks.evals.suite import Outcome, Target, evaluate_target, share_cores
from lmforge.tasks.pii import PiiConfig
from lmforge.tasks.readers import Shard
from lmforge.tasks.readers.base import SourceBase
from lmforge.tasks.report import StageReport
from lmforge.tasks.tokenizer import TokenizerConfig, train_tokenizer
from lmforge.tasks.toxicity import ToxicityConfig
from lmforge.tasks.training import train
from prefect import task
from prefect.cache_policies import NO_CACHE

# --- curate ---------------------------------------------------------------------------------


@task(name="filter-shard", task_run_name="filter-{shard.kind}-{shard.index:05d}",
      cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def filter_shard_task(shard: Shard, source: SourceBase, cfg: CurateConfig,
                      root: Path) -> dict[str, StageReport]:
    return filter_shard(shard, source, cfg, root)


@task(name="dedup-corpus", cache_policy=NO_CACHE)
def dedup_corpus_task(shard_keys: list[str], cfg: DedupConfig, root: Path,
                      run: dict[str, Any] | None = None) -> StageReport:
    return dedup_corpus(shard_keys, cfg, root, run)


@task(name="scrub-shard", task_run_name="scrub-{shard:05d}", cache_policy=NO_CACHE)
def scrub_shard_task(shard: int, upstream_key: str, cfg: CurateConfig, root: Path,
                     model: str | None = None) -> dict[str, StageReport]:
    return scrub_shard(shard, upstream_key, cfg, root, model)


@task(name="train-quality-classifier", cache_policy=NO_CACHE)
def classifier_model_task(shard_keys: list[str], cfg: CurateConfig, root: Path) -> str | None:
    return classifier_model(shard_keys, cfg, root)


@task(name="merge-webtext-urls", cache_policy=NO_CACHE)
def webtext_list_task(root: Path) -> Path | None:
    return webtext_list(root)


# --- tokenize -------------------------------------------------------------------------------


@task(name="train-tokenizer", cache_policy=NO_CACHE)
def train_tokenizer_task(curated: list[Path], cfg: TokenizerConfig, out: Path) -> Path:
    return train_tokenizer(curated, cfg, out)


@task(name="pack-shard", task_run_name="pack-{shard:05d}", cache_policy=NO_CACHE)
def pack_shard_task(curated: Path, shard: int, tokenizer_path: str, cfg: DatasetConfig,
                    out: Path) -> ShardTokens:
    return pack_shard(curated, shard, tokenizer_path, cfg, out)


@task(name="build-mixture", cache_policy=NO_CACHE)
def build_plan_task(out: Path, cfg: DatasetConfig, shards: list[int]) -> dict[str, Any]:
    return build_plan(out, cfg, shards)


# --- train and evaluate ---------------------------------------------------------------------


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(tokens_dir: Path, model_cfg: ModelConfig, cfg: TrainConfig, out_dir: Path,
               log_metrics: LogMetrics, run_id: str | None = None,
               on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Single-process training inside the flow's process."""
    return train(tokens_dir, model_cfg, cfg, out_dir, init_runtime(cfg.device),
                 log_metrics=log_metrics, run_id=run_id, on_step=on_step)


@task(name="prepare-sft", cache_policy=NO_CACHE)
def prepare_sft_task(files: list[Path], tokenizer: Path, cfg: Any, out: Path, arch: str
                     ) -> dict[str, Any]:
    """Instruction files -> packed fine-tuning rows (``tasks.sft``)."""
    from lmforge.tasks.sft import prepare_sft

    return prepare_sft(files, str(tokenizer), cfg, out, arch=arch)


@task(name="finetune-model", cache_policy=NO_CACHE)
def finetune_task(sft_dir: Path, base: Path, method: Any, cfg: TrainConfig, out_dir: Path,
                  log_metrics: LogMetrics, run_id: str | None = None,
                  base_info: dict[str, Any] | None = None,
                  on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Single-process fine-tuning inside the flow's process."""
    from lmforge.tasks.finetuning import finetune

    return finetune(sft_dir, base, method, cfg, out_dir, init_runtime(cfg.device),
                    log_metrics=log_metrics, run_id=run_id, base=base_info, on_step=on_step)


@task(name="prepare-pairs", cache_policy=NO_CACHE)
def prepare_pairs_task(files: list[Path], tokenizer: Path, cfg: Any, out: Path, arch: str
                       ) -> dict[str, Any]:
    """Preference files -> (chosen, rejected) rows (``tasks.preference``)."""
    from lmforge.tasks.preference import prepare_pairs

    return prepare_pairs(files, str(tokenizer), cfg, out, arch=arch)


@task(name="align-model", cache_policy=NO_CACHE)
def align_task(pairs_dir: Path, base: Path, objective: Any, cfg: TrainConfig, out_dir: Path,
               method: Any, beta: float, log_metrics: LogMetrics, run_id: str | None = None,
               on_step: Callable[[int], None] | None = None) -> TrainResult:
    """DPO or a reward model in the flow's process (``tasks.alignment``)."""
    from lmforge.tasks.alignment import align

    return align(pairs_dir, base, objective, cfg, out_dir, init_runtime(cfg.device),
                 method=method, beta=beta, log_metrics=log_metrics, run_id=run_id,
                 on_step=on_step)


@task(name="evaluate-model", task_run_name="evaluate-{target.label}", cache_policy=NO_CACHE)
def evaluate_target_task(target: Target, tokens_dir: Path, cfg: EvaluateConfig, out: Path,
                         toxicity: ToxicityConfig | None = None, pii: PiiConfig | None = None
                         ) -> Outcome:
    share_cores()
    return evaluate_target(target, tokens_dir, cfg, out, toxicity=toxicity, pii=pii)


@task(name="compress-variant", task_run_name="compress-{spec[kind]}", cache_policy=NO_CACHE)
def compress_variant_task(base: Path, spec: dict[str, Any], tokens_dir: Path, out: Path,
                          section: Any, train: TrainConfig, special: Any) -> Any:
    """One compressed variant of the model (``tasks.compression``)."""
    from lmforge.tasks.compression import compress_variant

    share_cores()
    return compress_variant(base, spec, tokens_dir, out, section, train, special)
