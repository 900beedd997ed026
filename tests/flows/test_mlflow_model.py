"""The trained model as an MLflow Model, on a SQLite store (no server): logged under its run,
registered as versions of one name, loaded by ``mlflow.pyfunc`` and generating text, the same
text as lmforge's own generator; ``model.pt`` loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from lmforge.flows.tracking import Tracker
from lmforge.model.checkpoint import load_model, save_model
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling
from lmforge.model.transformer import build_model
from lmforge.tasks.evals.harness import LM
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import DocumentWriter
from lmforge.tasks.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from lmforge.tasks.training import special_token_ids
from mlflow.tracking import MlflowClient

TEXT = ("The river runs past the old mill and the bridge. A function returns a value. "
        "Readers of the history of the town remember the flood. ") * 20


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    with DocumentWriter(tmp_path / "curated" / "part-00000.parquet") as w:
        for i in range(20):
            w.write(Document.new("books", f"b#{i}", TEXT))
    tok = train_tokenizer([tmp_path / "curated" / "part-00000.parquet"],
                          TokenizerConfig(vocab_size=300), tmp_path / "tokenizer.json")
    cfg = ModelConfig(flavor="debug", vocab_size=load_tokenizer(str(tok)).get_vocab_size(),
                      block_size=64)
    torch.manual_seed(0)
    return save_model(tmp_path / "model.pt", build_model(cfg), cfg, step=1, tokens_seen=0), tok


def test_registered_versions_load_with_pyfunc_and_generate(trained, tmp_path,
                                                           monkeypatch) -> None:
    model_path, tok = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("models", artifact_location=(tmp_path / "a").as_uri())
    versions = []
    for _ in range(2):  # two runs of one config: two versions of one registered model
        run = client.create_run(experiment, run_name="train")
        versions.append(Tracker(client, run.info.run_id, experiment).register_model(
            "models-causal", model_path, tok, "candidate"))
    assert versions == ["1", "2"]
    alias = client.get_model_version_by_alias("models-causal", "candidate")
    assert str(alias.version) == "2" and alias.run_id == run.info.run_id
    assert [m.source_run_id for m in client.search_logged_models([experiment])
            if m.source_run_id == run.info.run_id]  # the run page lists its model

    loaded = mlflow.pyfunc.load_model("models:/models-causal@candidate")  # $MLFLOW_TRACKING_URI
    got = loaded.predict(["The river", "A function"], params={"max_new_tokens": 6})
    lm = LM(load_model(model_path), load_tokenizer(str(tok)), special_token_ids(str(tok)))
    ids = lm.generate([list(lm.context(p)) for p in ("The river", "A function")],
                      Sampling(max_new_tokens=6, stop=frozenset({lm.special.eot})))
    assert got == [lm.decode(i) for i in ids]
    import pandas as pd

    assert loaded.predict(pd.DataFrame({"prompt": ["The river"]}),
                          params={"max_new_tokens": 6}) == got[:1]


def test_model_file_loads_without_pickled_code(trained) -> None:
    model_path, _ = trained
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    assert set(state) == {"model", "model_config", "step", "tokens_seen"}
    assert load_model(model_path)(torch.zeros(1, 4, dtype=torch.long)).shape[-1] == \
        state["model_config"]["vocab_size"]


def test_a_chat_model_wraps_prompts_in_the_chat_template(trained, tmp_path, monkeypatch) -> None:
    """Registered by fine-tuning (chat=True), the model reads each prompt as a user turn;
    ``chat: false`` gives the raw continuation again."""
    from lmforge.tasks.sft import ChatTemplate, Message

    model_path, tok = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("chat", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment, run_name="finetune")
    Tracker(client, run.info.run_id, experiment).register_model("chat-causal", model_path, tok,
                                                                "sft", chat=True)
    loaded = mlflow.pyfunc.load_model("models:/chat-causal@sft")
    lm = LM(load_model(model_path), load_tokenizer(str(tok)), special_token_ids(str(tok)))
    sampling = Sampling(max_new_tokens=6, stop=frozenset({lm.special.eot}))
    [chat] = lm.generate([ChatTemplate(str(tok)).prompt([Message("user", "The river")])],
                         sampling)
    [raw] = lm.generate([list(lm.context("The river"))], sampling)
    assert chat != raw  # the two paths are told apart
    assert loaded.predict(["The river"], params={"max_new_tokens": 6}) == [lm.decode(chat)]
    assert loaded.predict(["The river"], params={"max_new_tokens": 6, "chat": False}) == \
        [lm.decode(raw)]


def test_models_resolve_from_the_registry_a_run_or_a_folder_and_export(trained, tmp_path,
                                                                       monkeypatch) -> None:
    """``lmforge export NAME@ALIAS`` (and runs:/ID, models:/NAME/N, a folder) writes a
    transformers folder with our logits; ``lmforge import-hf`` reads it back; a reference
    that names nothing is one error line and exit 2."""
    import os
    import subprocess
    import sys

    from lmforge.flows.models import resolve_model
    from transformers import AutoModelForCausalLM

    model_path, tok = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("export", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment, run_name="train")
    Tracker(client, run.info.run_id, experiment).register_model("export-causal", model_path,
                                                                tok, "candidate")
    for ref in ("export-causal@candidate", "models:/export-causal/1",
                f"runs:/{run.info.run_id}"):
        found = resolve_model(ref, cache=tmp_path / "cache")
        assert found.model.read_bytes() == model_path.read_bytes(), ref
        assert found.tokenizer.read_bytes() == tok.read_bytes()
        assert found.source["mlflow_run_id"] == run.info.run_id
    assert resolve_model(str(model_path.parent)).model == model_path.resolve()

    cli = str(Path(sys.executable).parent / "lmforge")
    env = {**os.environ, "LMFORGE_HOME": str(tmp_path / "home")}
    done = subprocess.run([cli, "export", "export-causal@candidate", "--to",
                           str(tmp_path / "hf")], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, hf.config.vocab_size, (2, 16))
    with torch.no_grad():
        assert (hf(x).logits - load_model(model_path)(x)).abs().max() <= 1e-4
    done = subprocess.run([cli, "import-hf", str(tmp_path / "hf"), "--to",
                           str(tmp_path / "back" / "model.pt")], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    a, b = (load_model(p).state_dict() for p in (model_path, tmp_path / "back" / "model.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    done = subprocess.run([cli, "export", "no-such-model@candidate", "--to",
                           str(tmp_path / "x")], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 2 and done.stdout.startswith("error: "), done.stdout
    assert not (tmp_path / "x").exists()


def test_lmforge_serve_answers_on_loopback_until_interrupted(trained, tmp_path) -> None:
    """``lmforge serve FOLDER --port 0`` prints its URL, answers /v1/completions, and stops
    cleanly on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    model_path, _ = trained
    cli = str(Path(sys.executable).parent / "lmforge")
    env = {**os.environ, "LMFORGE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([cli, "serve", str(model_path), "--port", "0", "--name", "tiny"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Serving "), line
        base = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert base.startswith("http://127.0.0.1:")
        for _ in range(100):
            try:
                if httpx.get(base.removesuffix("/v1") + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                import time

                time.sleep(0.1)
        r = httpx.post(f"{base}/completions", json={"model": "tiny", "prompt": "The river",
                                                    "max_tokens": 4, "temperature": 0},
                       timeout=60)
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
