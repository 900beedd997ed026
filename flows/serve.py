"""Serving a model: ``lmforge serve MODEL`` and the ``serve`` Prefect flow (deployed by
``lmforge deploy``), both running ``tasks.serving``'s OpenAI-compatible server until stopped.
MODEL is anything ``flows.models.resolve_model`` takes (a registry alias, a run, a folder)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from lmforge.flows.models import resolve_model
from lmforge.model.checkpoint import load_model
from lmforge.tasks.serving import ServeConfig, Server, uvicorn_server
from prefect import flow


def serve(model: str, cfg: ServeConfig, name: str | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Load the model and serve it (blocking); ``on_ready`` gets the base URL once bound."""
    found = resolve_model(model)
    server = Server(load_model(found.model), str(found.tokenizer),
                    name or (model if not Path(model).exists() else found.model.parent.name),
                    cfg)
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.host, cfg.port))
    url = f"http://{cfg.host}:{sock.getsockname()[1]}"
    if on_ready is not None:
        on_ready(url)
    try:
        uvicorn_server(server).run(sockets=[sock])
    finally:
        server.worker.close()


@flow(name="serve")
def serve_flow(config: str | None = None, output: str | None = None, model: str | None = None,
               host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``model`` (default: the newest model of the config's output folder) until the
    flow run is cancelled; the URL is a link artifact of the run."""
    from lmforge.flows.config import load_config
    from prefect.artifacts import create_link_artifact

    ref = model or str(load_config(Path(config) if config else None, output=output)
                       .output.resolve())

    def ready(url: str) -> None:
        create_link_artifact(f"{url}/v1", "OpenAI-compatible API", key="serve-url")

    serve(ref, ServeConfig(host=host, port=port), on_ready=ready)
