"""The model interchange commands of ``lmforge`` (registered on the app by ``flows/cli.py``):
``export`` to a Hugging Face folder, ``import-hf`` back, and ``serve``. Heavy imports wait for the
command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from lmforge.flows.terminal import out, setup_logging

ModelArg = Annotated[str, typer.Argument(help="NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID, "
                                         "a pipeline output folder, or a model.pt")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v")]


def export(model: ModelArg,
           to: Annotated[Path, typer.Option("--to", "-t", help="folder to write (replaced)")],
           verbose: Verbose = False) -> None:
    """Write the model as a transformers folder (AutoModelForCausalLM, AutoTokenizer with the
    chat template): GPT-2 layout for learned/sinusoidal positions, GPT-NeoX for rotary."""
    setup_logging(verbose)
    from lmforge.flows.models import resolve_model
    from lmforge.tasks.hf_export import export_hf

    try:
        found = resolve_model(model)
        folder = export_hf(found.model, found.tokenizer, to.resolve(), found.source)
    except (FileNotFoundError, ValueError) as err:
        out.print(f"error: {err}")
        raise typer.Exit(2) from err
    out.print(f"Exported {found.model} -> {folder}")
    out.print(f"  AutoModelForCausalLM.from_pretrained({str(folder)!r})")


def import_hf(folder: Annotated[Path, typer.Argument(help="a transformers GPT-2 or GPT-NeoX "
                                                     "folder (config.json + safetensors)")],
              to: Annotated[Path, typer.Option("--to", "-t", help="model.pt to write")],
              verbose: Verbose = False) -> None:
    """Read a transformers folder back into lmforge's model.pt (tokenizer.json beside it)."""
    setup_logging(verbose)
    from lmforge.tasks.hf_export import import_hf as read

    try:
        path = read(folder.resolve(), to.resolve())
    except (FileNotFoundError, ValueError) as err:
        out.print(f"error: {err}")
        raise typer.Exit(2) from err
    out.print(f"Imported {folder} -> {path}")


def serve(model: ModelArg,
          host: Annotated[str, typer.Option(help="interface (loopback by default)")]
          = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port (0: any free one)")] = 8000,
          name: Annotated[str | None, typer.Option(help="the model id clients send "
                                                   "(default: MODEL)")] = None,
          max_batch: Annotated[int, typer.Option(help="requests decoded together")] = 32,
          verbose: Verbose = False) -> None:
    """Serve the model over HTTP with the OpenAI completions and chat/completions shapes
    (streaming included), /health and /metrics, until Ctrl-C."""
    setup_logging(verbose)
    from lmforge.flows.serve import serve as run
    from lmforge.tasks.serving import ServeConfig

    def ready(url: str) -> None:
        out.print(f"Serving {model} at {url}/v1 (OpenAI API; /health, /metrics); Ctrl-C stops")

    try:
        run(model, ServeConfig(host=host, port=port, max_batch=max_batch), name, ready)
    except (FileNotFoundError, ValueError, OSError) as err:
        out.print(f"error: {err}")
        raise typer.Exit(2) from err
