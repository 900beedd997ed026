"""An OpenAI-compatible HTTP server over the generation engine (``model.engine``).

Endpoints: ``POST /v1/completions`` and ``POST /v1/chat/completions`` (the OpenAI request and
response shapes, ``stream: true`` as server-sent events ending in ``data: [DONE]``),
``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus text: requests, tokens,
queue, KV blocks in use).

One engine thread owns the model and steps the engine; HTTP handlers hand it requests through a
queue and read their tokens back, so requests that arrive while others generate join the
running batch (continuous batching). Bounds: body size (413), prompt + max_tokens within the
model's block (400 ``context_length_exceeded``), queue length (429), time per request (504);
bad JSON or fields are 400, an unknown model 404, and none of them stops the server.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from lmforge.model.engine import CacheFull, Engine, Event
from lmforge.model.generate import Sampling
from lmforge.tasks.openai_api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    read_body,
    stop_strings,
)
from lmforge.tasks.sft import ROLE_TOKEN, ChatTemplate, Message
from lmforge.tasks.tokenizer import EOT, load_tokenizer
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field("127.0.0.1", description="interface to listen on (loopback by default)")
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body")
    max_queue: int = Field(256, ge=1, description="requests waiting or running at most")
    max_batch: int = Field(32, ge=1, description="requests decoded together")
    kv_blocks: int = Field(2048, ge=1, description="KV cache blocks of 16 positions")
    request_timeout_s: float = Field(120.0, gt=0)
    default_max_tokens: int = Field(64, ge=1)


@dataclass
class _Job:
    prompt: list[int]
    sampling: Sampling
    stop_strings: tuple[str, ...]
    on_event: Callable[[Event | BaseException], None]
    request: int | None = None


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class EngineThread:
    """The engine stepped by one thread; ``submit`` from any thread."""

    def __init__(self, engine: Engine, max_queue: int) -> None:
        self.engine, self.max_queue = engine, max_queue
        self.inbox: queue.Queue[_Job] = queue.Queue()
        self.jobs: dict[int, _Job] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lmforge-engine", daemon=True)
        self.thread.start()

    @property
    def load(self) -> int:
        return self.inbox.qsize() + len(self.jobs)

    def submit(self, job: _Job) -> None:
        if self.load >= self.max_queue:
            raise ApiError(429, f"the server holds {self.max_queue} requests already; retry "
                           "later", "rate_limit_error")
        self.inbox.put(job)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.inbox.get(timeout=0.05) if self.engine.idle else self.inbox.get_nowait()
            except queue.Empty:
                job = None
            while job is not None:
                try:
                    job.request = self.engine.add(job.prompt, job.sampling, job.stop_strings)
                    self.jobs[job.request] = job
                except (ValueError, CacheFull) as err:
                    job.on_event(err)
                try:
                    job = self.inbox.get_nowait()
                except queue.Empty:
                    job = None
            if self.engine.idle:
                continue
            try:
                events = self.engine.step()
            except Exception as err:
                for waiting in self.jobs.values():
                    waiting.on_event(err)
                self.jobs.clear()
                raise
            for event in events:
                target = self.jobs.get(event.request)
                if target is not None:
                    target.on_event(event)
                    if event.finished:
                        del self.jobs[event.request]
                        self.engine.finished.pop(event.request, None)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


class Server:
    """The model, its tokenizer and the engine thread behind the HTTP app."""

    def __init__(self, model: nn.Module, tokenizer_path: str, name: str,
                 cfg: ServeConfig | None = None) -> None:
        self.cfg = cfg or ServeConfig()
        self.name, self.model = name, model
        self.tok = load_tokenizer(tokenizer_path)
        self.eot = self.tok.token_to_id(EOT)
        self.chat = ChatTemplate(tokenizer_path) if all(
            self.tok.token_to_id(t) is not None for t in ROLE_TOKEN.values()) else None
        self.block_size = int(model.cfg.block_size)  # type: ignore[union-attr]
        engine = Engine(model, num_blocks=self.cfg.kv_blocks, max_batch=self.cfg.max_batch,
                        decode=self._text)
        self.worker = EngineThread(engine, self.cfg.max_queue)
        self.stats = Stats()
        self.created = int(time.time())

    def _text(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i != self.eot])

    # -- requests ------------------------------------------------------------------------------

    def check_model(self, name: str) -> None:
        if name != self.name:
            raise ApiError(404, f"the model {name!r} does not exist; this server has "
                           f"{self.name!r}", code="model_not_found")

    def sampling(self, prompt: list[int], max_tokens: int, temperature: float, top_p: float,
                 top_k: int, seed: int | None) -> Sampling:
        if len(prompt) + max_tokens > self.block_size:
            raise ApiError(400, f"this model's context is {self.block_size} tokens; the "
                           f"prompt has {len(prompt)} and max_tokens asks for {max_tokens}",
                           code="context_length_exceeded")
        if not prompt:
            raise ApiError(400, "the prompt is empty")
        return Sampling(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                        top_k=top_k, stop=frozenset({self.eot}),
                        seed=seed if seed is not None else 0)

    async def generate(self, prompt: list[int], sampling: Sampling, stops: tuple[str, ...]
                       ) -> AsyncIterator[tuple[str, str | None]]:
        """(new text, finish reason) pieces as tokens come: text is held back while it might
        be the start of a stop string or ends inside a UTF-8 character."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self.worker.submit(_Job(prompt, sampling, stops, lambda e: loop.call_soon_threadsafe(
            events.put_nowait, e)))
        ids: list[int] = []
        sent = ""
        deadline = loop.time() + self.cfg.request_timeout_s
        while True:
            try:
                event = await asyncio.wait_for(events.get(), max(0.0, deadline - loop.time()))
            except TimeoutError as err:
                raise ApiError(504, f"no answer within {self.cfg.request_timeout_s} s",
                               "timeout_error") from err
            if isinstance(event, BaseException):
                raise ApiError(400, str(event))
            ids.append(event.token)
            text = self._text(ids)
            if event.finished:
                for s in stops:
                    if s in text:
                        text = text[:text.index(s)]
                self.stats.completion_tokens += len(ids)
                yield text[len(sent):], event.finished
                return
            safe = len(text) - (1 if text.endswith("\ufffd") else 0)
            for s in stops:  # a stop string may be forming at the end
                for k in range(min(len(s) - 1, safe), 0, -1):
                    if text[:safe].endswith(s[:k]):
                        safe -= k
                        break
            if safe > len(sent):
                yield text[len(sent):safe], None
                sent = text[:safe]


def _fail(server: Server, err: ApiError) -> JSONResponse:
    server.stats.errors += 1
    server.stats.by_status[err.status] = server.stats.by_status.get(err.status, 0) + 1
    return JSONResponse(err.body(), status_code=err.status)



async def _respond(server: Server, kind: str, name: str, prompt: list[int], sampling: Sampling,
                   stops: tuple[str, ...], stream: bool) -> Any:
    server.stats.requests += 1
    server.stats.prompt_tokens += len(prompt)
    rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    obj = "chat.completion" if kind == "chat" else "text_completion"

    def choice(text: str, reason: str | None, delta: bool) -> dict[str, Any]:
        if kind == "chat":
            key = "delta" if delta else "message"
            return {"index": 0, key: {"role": "assistant", "content": text},
                    "finish_reason": reason}
        return {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}

    pieces = server.generate(prompt, sampling, stops)
    if not stream:
        text, reason = "", None
        async for piece, done in pieces:
            text += piece
            reason = done
        tokens = len(server.tok.encode(text, add_special_tokens=False).ids)
        return {"id": rid, "object": obj, "created": created, "model": name,
                "choices": [choice(text, reason, False)],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": tokens,
                          "total_tokens": len(prompt) + tokens}}

    first = await anext(pieces)  # errors before the first byte are still a 4xx

    async def events() -> AsyncIterator[bytes]:
        chunk_obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        piece: tuple[str, str | None] | None = first
        while piece is not None:
            body = {"id": rid, "object": chunk_obj, "created": created, "model": name,
                    "choices": [choice(piece[0], piece[1], True)]}
            yield f"data: {json.dumps(body)}\n\n".encode()
            piece = await anext(pieces, None)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def build_app(server: Server) -> Any:
    """The FastAPI app of ``server``."""
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None)

    async def handle(request: Request, kind: str, schema: type[BaseModel],
                     prompt_of: Callable[[Any], tuple[list[int], int, int]]) -> Any:
        try:
            req = await read_body(request, schema, server.cfg.max_body_bytes)
            server.check_model(req.model)
            prompt, max_tokens, top_k = prompt_of(req)
            sampling = server.sampling(prompt, max_tokens, req.temperature, req.top_p, top_k,
                                       req.seed)
            return await _respond(server, kind, req.model, prompt, sampling, stop_strings(req.stop),
                                  req.stream)
        except ApiError as err:
            return _fail(server, err)

    def text_prompt(req: CompletionRequest) -> tuple[list[int], int, int]:
        if isinstance(req.prompt, list) and len(req.prompt) != 1:
            raise ApiError(400, "prompt: one prompt per request")
        text = req.prompt[0] if isinstance(req.prompt, list) else req.prompt
        ids = [server.eot, *server.tok.encode(text, add_special_tokens=False).ids]
        return ids, req.max_tokens, req.top_k

    def chat_prompt(req: ChatRequest) -> tuple[list[int], int, int]:
        if server.chat is None:
            raise ApiError(400, "this model's tokenizer has no chat role tokens; use "
                           "/v1/completions")
        bad = [m.role for m in req.messages if m.role not in ROLE_TOKEN]
        if bad:
            raise ApiError(400, f"messages: unknown role {bad[0]!r} (system, user, assistant)")
        ids = server.chat.prompt([Message(m.role, m.content)  # type: ignore[arg-type]
                                  for m in req.messages])
        return ids, req.max_completion_tokens or req.max_tokens or \
            server.cfg.default_max_tokens, 0

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, "text", CompletionRequest, text_prompt)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await handle(request, "chat", ChatRequest, chat_prompt)

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": server.name, "object": "model",
                                            "created": server.created,
                                            "owned_by": "lmforge"}]}

    @app.get("/health")
    async def health() -> Any:
        alive = server.worker.thread.is_alive()
        return JSONResponse({"status": "ok" if alive else "engine stopped",
                             "model": server.name}, status_code=200 if alive else 503)

    @app.get("/metrics")
    async def metrics() -> Any:
        s, cache = server.stats, server.worker.engine.cache
        lines = [f"lmforge_requests_total {s.requests}",
                 f"lmforge_request_errors_total {s.errors}",
                 f"lmforge_prompt_tokens_total {s.prompt_tokens}",
                 f"lmforge_completion_tokens_total {s.completion_tokens}",
                 f"lmforge_queue_requests {server.worker.load}",
                 f"lmforge_kv_blocks_used {cache.used}",
                 f"lmforge_kv_blocks_total {cache.num_blocks}"]
        lines += [f'lmforge_request_errors{{status="{k}"}} {v}'
                  for k, v in sorted(s.by_status.items())]
        return PlainTextResponse("\n".join(lines) + "\n")

    return app


def uvicorn_server(server: Server, sock: Any = None) -> Any:
    """A ``uvicorn.Server`` for the app (``sock``: an already bound socket, e.g. port 0);
    run it with ``.run(sockets=[sock])`` or ``.run()``; close ``server`` after."""
    import uvicorn

    config = uvicorn.Config(build_app(server), host=server.cfg.host, port=server.cfg.port,
                            log_level="warning", access_log=False,
                            limit_concurrency=server.cfg.max_queue + 16)
    return uvicorn.Server(config)
