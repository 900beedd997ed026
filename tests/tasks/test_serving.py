"""The OpenAI-compatible server on loopback, driven by the ``openai`` client: completions and
chat completions answer what the generator answers, also streamed; concurrent requests share
the engine; bad inputs get 4xx and the server keeps serving."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate
from lmforge.model.transformer import build_model
from lmforge.tasks.serving import ServeConfig, Server, uvicorn_server
from lmforge.tasks.sft import ChatTemplate, Message
from lmforge.tasks.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def served(chat_tokenizer):
    tok = load_tokenizer(str(chat_tokenizer))
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=2, n_head=4, n_embd=64,
                      block_size=128, position="rotary")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    server = Server(model, str(chat_tokenizer), "tiny", ServeConfig(
        max_body_bytes=4096, max_queue=64, request_timeout_s=60))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = uvicorn_server(server)
    thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url, model, tok, ChatTemplate(str(chat_tokenizer))
    http.should_exit = True
    thread.join(timeout=10)
    server.worker.close()


def _expected(model, tok, prompt_ids, n):
    eot = tok.token_to_id("<|endoftext|>")
    ids = generate(model, prompt_ids, Sampling(max_new_tokens=n, stop=frozenset({eot})))
    return tok.decode([i for i in ids if i != eot])


def test_openai_client_completions_and_chat_match_the_generator(served) -> None:
    from openai import OpenAI

    url, model, tok, template = served
    client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    prompt = "Rivers carry water to the sea"
    got = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0)
    eot = tok.token_to_id("<|endoftext|>")
    want = _expected(model, tok, [eot, *tok.encode(prompt, add_special_tokens=False).ids], 12)
    assert got.choices[0].text == want and got.usage.prompt_tokens > 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt=prompt, max_tokens=12, temperature=0, stream=True))
    assert streamed == want
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is a delta?"}]
    answer = client.chat.completions.create(model="tiny", messages=chat, max_tokens=10,
                                            temperature=0)
    want = _expected(model, tok, template.prompt([Message(**m) for m in chat]), 10)
    assert answer.choices[0].message.content == want
    assert answer.choices[0].finish_reason in ("stop", "length")
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=chat, max_tokens=10, temperature=0, stream=True)]
    assert "".join(parts) == want and len(parts) > 1


def test_concurrent_requests_answer_as_alone(served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url, model, tok, _ = served
    prompts = [f"The harbour {i} freezes in winter" for i in range(12)]

    def ask(p: str) -> str:
        r = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": p,
                                                      "max_tokens": 8, "temperature": 0},
                       timeout=60)
        return r.json()["choices"][0]["text"]

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(ask, prompts))
    eot = tok.token_to_id("<|endoftext|>")
    assert got == [_expected(model, tok, [eot, *tok.encode(p, add_special_tokens=False).ids],
                             8) for p in prompts]


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, None),
    (b'{"model": "other", "prompt": "x"}', 404, "model_not_found"),
    (b'{"model": "tiny", "prompt": "x", "max_tokens": 500}', 400, "context_length_exceeded"),
    (b'{"model": "tiny", "prompt": "x", "temperature": 9}', 400, None),
    (b'{"model": "tiny", "prompt": "' + b"a" * 5000 + b'"}', 413, None)])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(served, body, status, code) -> None:
    url = served[0]
    r = httpx.post(f"{url}/v1/completions", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"] and r.json()["error"]["code"] == code
    ok = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x",
                                                   "max_tokens": 2})
    assert ok.status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    assert f'lmforge_request_errors{{status="{status}"}}' in metrics
    assert "lmforge_kv_blocks_used 0" in metrics
