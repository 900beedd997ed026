"""How every ``lmforge`` command loads its config and runs its flow: validation and path
checks before any server starts, the platform endpoints, a Dask cluster for shard work, and
Ctrl-C as one line that says how to resume."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from lmforge.flows.terminal import console, out, print_links
from lmforge.infra.settings import prepare_environment
from rich.markup import escape

if TYPE_CHECKING:
    from lmforge.flows.config import RunConfig


def load(config: Path | None, output: Path | None, *, inputs: bool | None = None,
         finetune: bool = False) -> RunConfig:
    """The validated config; with ``inputs`` set, the paths checked too (``preflight``: the
    inputs when True, the output folder always), all before any server or cluster starts."""
    from lmforge.flows.config import ConfigError, load_config, preflight

    prepare_environment()
    try:
        cfg = load_config(config, output=output)
    except ConfigError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(2) from None
    if inputs is not None and (problems := preflight(cfg, inputs=inputs, finetune=finetune)):
        for problem in problems:
            console.print(f"[red]error:[/red] {escape(problem)}", soft_wrap=True)
        raise typer.Exit(2)
    return cfg


_QUIET_ON_INTERRUPT = ("distributed", "prefect", "asyncio", "tornado")  # shutdown chatter


def run_flow(flow_fn: Callable[..., Any], cfg: RunConfig, *args: Any, dask: bool = False
             ) -> Any:
    """Run one flow with the platform endpoints (and a Dask cluster for shard work); Ctrl-C
    ends it with one line that says how to resume.

    The interrupt is recorded by our own SIGINT handler before ``KeyboardInterrupt`` is raised:
    where it lands inside a library (a pydantic serializer in Prefect's context hand-off wraps
    it as ``PydanticSerializationError``; the flow engine turns it into a Failed state) the
    run still ends as an interruption, not as a failure with a traceback."""
    import signal
    import sys
    import threading

    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if not interrupted.is_set():
            interrupted.set()
            for name in [*logging.root.manager.loggerDict]:  # children with their own level
                if name.split(".")[0] in _QUIET_ON_INTERRUPT:
                    logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = _until_done(flow_fn, cfg, *args, dask=dask, interrupted=interrupted.is_set)
    except BaseException:
        if not interrupted.is_set():
            raise
        result = None
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        command = " ".join(["lmforge", *sys.argv[1:]])
        console.print(f"[yellow]Interrupted.[/yellow] Finished shards and checkpoints are kept: "
                      f"rerun `{escape(command)}` to resume where it stopped.", soft_wrap=True)
        raise typer.Exit(130)
    return result


def _until_done(flow_fn: Callable[..., Any], cfg: RunConfig, *args: Any, dask: bool,
                interrupted: Callable[[], bool]) -> Any:
    from lmforge.flows.launch import platform

    start = time.perf_counter()
    with platform() as endpoints:
        if dask:
            from lmforge.infra.cluster import dask_cluster
            from prefect_dask import DaskTaskRunner

            with dask_cluster(cfg.dask) as info:
                out.print(f"Dask dashboard:    {info.dashboard_link}")
                runner = DaskTaskRunner(address=info.address)
                state = flow_fn.with_options(task_runner=runner)(cfg, *args, return_state=True)
        else:
            state = flow_fn(cfg, *args, return_state=True)
        result = state.result(raise_on_failure=False)
        if interrupted():  # the flow ended Failed on our Ctrl-C: no links, no error line
            raise KeyboardInterrupt
        print_links(endpoints, state.state_details.flow_run_id, result)
    if state.is_failed():
        console.print(f"[red]{state.name}: {escape(str(result))}[/red]")  # brackets in errors
        raise typer.Exit(1)
    out.print(f"Finished in {time.perf_counter() - start:.0f} s")
    return result
