"""The tuning commands of ``lmforge`` (registered on the app by ``flows/cli.py``): fine-tuning,
alignment and compression. Heavy imports wait for the command, as in ``flows/cli.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from lmforge.flows.terminal import out, setup_logging

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="pipeline YAML; "
                                                "default: the embedded sample")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="output folder "
                                                "(overrides the config's `output`)")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v")]


def finetune(config: ConfigOpt = None, output: OutputOpt = None, verbose: Verbose = False
             ) -> None:
    """Fine-tune the trained model (config section finetune: data, method, train), register it
    with the alias sft, and evaluate it."""
    setup_logging(verbose)
    from lmforge.flows.cli_run import load, run_flow
    from lmforge.flows.finetune import finetune_model

    result = run_flow(finetune_model, load(config, output, inputs=False, finetune=True),
                       dask=True)
    out.print(f"Fine-tuned model:  {result['model']} (registered {result['registered']})")
    for key in ("sft/base_response_loss", "sft/response_loss"):
        if key in result["metrics"]:
            out.print(f"{key:>24}: {result['metrics'][key]:.4f}")


def align(config: ConfigOpt = None, output: OutputOpt = None,
          objective: Annotated[str | None, typer.Option(
              help="dpo, reward, ppo or safety (default: the config's align.objective)")]
          = None,
          verbose: Verbose = False) -> None:
    """Align the model (config section align): DPO against a frozen reference, PPO against a
    reward model, or safety tuning (registered with the alias aligned, then evaluated, security
    probes included); or train the reward model (held-out pair accuracy)."""
    setup_logging(verbose)
    from lmforge.flows.align import STAGES, align_model
    from lmforge.flows.cli_run import load, run_flow

    if objective is not None and objective not in STAGES:
        out.print(f"--objective {objective!r}: choose {', '.join(STAGES)}")
        raise typer.Exit(2)
    result = run_flow(align_model, load(config, output, inputs=False, finetune=True),
                       objective,
                       dask=True)
    out.print(f"Aligned model:     {result['model']}"
              + (f" (registered {result['registered']})" if result.get("registered") else ""))
    for key, value in result["metrics"].items():
        if key.startswith(("pairs/", "ppo/", "safety/")):
            out.print(f"{key:>24}: {value:.4f}")


def compress(config: ConfigOpt = None, output: OutputOpt = None,
             method: Annotated[list[str] | None, typer.Option(
                 "--method", "-m", help="a method to run (repeatable; default: the config's "
                 "compress.methods): int8-dynamic, int8-weight, int4-weight, magnitude, "
                 "lowrank, share")] = None,
             verbose: Verbose = False) -> None:
    """Compress the trained model (config section compress): each method makes a variant,
    evaluated with the suite and measured on the serving engine against the base, each
    registered under its own alias."""
    setup_logging(verbose)
    from lmforge.flows.cli_run import load, run_flow
    from lmforge.flows.compress import compress_model
    from lmforge.model.compress import COMPRESSIONS

    cfg = load(config, output, inputs=False)
    if method:
        unknown = [m for m in method if m not in COMPRESSIONS]
        if unknown:
            out.print(f"--method {unknown[0]!r}: choose {', '.join(COMPRESSIONS)}")
            raise typer.Exit(2)
        cfg = cfg.model_copy(update={"compress": cfg.compress.model_copy(update={
            "methods": [m for m in cfg.compress.methods if m.kind in method]
            + [COMPRESSIONS[k].config() for k in method
               if k not in {m.kind for m in cfg.compress.methods}]})})
    result = run_flow(compress_model, cfg, dask=True)
    out.print(f"{'variant':>20} {'size':>7} {'perplexity':>11} {'tokens/s':>9}  registered")
    for row in result["variants"]:
        out.print(f"{row['variant']:>20} {row['size_ratio']:>6.3f}x {row['perplexity']:>11.3f} "
                  f"{row['speed_ratio']:>8.2f}x  {result['registered'].get(row['variant'], '-')}")
