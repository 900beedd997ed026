"""The trained model as an MLflow Model: a ``pyfunc`` that carries the weights and the tokenizer
and generates text, so ``mlflow.pyfunc.load_model("models:/NAME@candidate").predict([...])``
works wherever lmforge is installed, and the run's and registry's model pages show it.

Why a ``pyfunc`` and not ``mlflow.pytorch``: the pytorch flavour pickles the whole module (our
classes by reference) and knows nothing of the tokenizer; what users call is text in, text out.
The weights stay in lmforge's own ``model.pt`` (loaded with ``weights_only=True``), so
``torch.load`` users and MLflow users read the same file.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema


def params(chat: bool = False) -> ParamSchema:
    """``chat``: wrap each prompt as a user turn of the chat template (the default of models
    registered by fine-tuning)."""
    return ParamSchema([ParamSpec("max_new_tokens", "long", 32),
                        ParamSpec("temperature", "double", 0.0),
                        ParamSpec("top_p", "double", 1.0),
                        ParamSpec("seed", "long", 0),
                        ParamSpec("chat", "boolean", chat)])


def signature(chat: bool = False) -> ModelSignature:
    # one unnamed string column: a list of prompts, or a one-column DataFrame, is a valid input
    return ModelSignature(inputs=Schema([ColSpec("string")]),
                          outputs=Schema([ColSpec("string")]), params=params(chat))


PARAMS, SIGNATURE = params(), signature()


# model_input is unannotated on purpose: MLflow derives the schema from a predict type hint (a
# `list[Any]` or `list[str]` hint replaces SIGNATURE and drops its params), and warns at class
# creation when there is none (under its own "once" filter, so only recording catches it): that
# one warning is dropped here, any other is passed on.
with warnings.catch_warnings(record=True) as _caught:

    class LmforgeTextModel(PythonModel):
        """Prompts in, completions out (greedy unless ``temperature`` is set)."""

        def load_context(self, context: PythonModelContext) -> None:
            from lmforge.model.checkpoint import load_model
            from lmforge.tasks.evals.harness import LM
            from lmforge.tasks.tokenizer import load_tokenizer
            from lmforge.tasks.training import special_token_ids

            tokenizer = context.artifacts["tokenizer"]
            self.lm = LM(load_model(Path(context.artifacts["model"])), load_tokenizer(tokenizer),
                         special_token_ids(tokenizer))
            self.template = None  # built on the first chat request: a tokenizer without
            self.tokenizer_path = tokenizer  # role tokens still serves raw completions
            config = getattr(context, "model_config", None) or {}
            self.chat_default = bool(config.get("params", {}).get("chat", False))

        def predict(self, context: PythonModelContext, model_input,
                    params: Mapping[str, Any] | None = None) -> list[str]:
            from lmforge.model.generate import Sampling
            from lmforge.tasks.sft import ChatTemplate, Message

            prompts = _prompts(model_input)
            p = {**{s.name: s.default for s in PARAMS.params}, "chat": self.chat_default,
                 **(params or {})}
            sampling = Sampling(max_new_tokens=int(p["max_new_tokens"]),
                                temperature=float(p["temperature"]), top_p=float(p["top_p"]),
                                stop=frozenset({self.lm.special.eot}), seed=int(p["seed"]))
            if p["chat"] and self.template is None:
                self.template = ChatTemplate(self.tokenizer_path)
            ids = [self.template.prompt([Message("user", t)]) if p["chat"] else
                   list(self.lm.context(t)) for t in prompts]
            outs = self.lm.generate(ids, sampling)
            return [self.lm.decode(ids) for ids in outs]
for _w in _caught:
    if "Add type hints to the `predict` method" not in str(_w.message):
        warnings.warn_explicit(_w.message, _w.category, _w.filename, _w.lineno)


def _prompts(model_input: Any) -> list[str]:
    """A one-column DataFrame (what a signature-checked call passes; the column ``prompt``
    where there are several), a list of strings, or one string."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        return [str(v) for v in model_input[column]]
    return [str(v) for v in model_input]


def log_text_model(client: MlflowClient, run_id: str, model_path: Path,
                   tokenizer_path: Path, *, chat: bool = False) -> str:
    """Log the model as an MLflow Model named ``model`` of the run, in the run's experiment
    (models from code: the entry file, not a pickle), through ``client`` alone (no global
    tracking URI is read or changed); returns its ``models:/<id>`` URI."""
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id,
        params={k: v for k, v in run.data.params.items() if k.startswith("model.")})
    entry = Path(__file__).with_name("mlflow_pyfunc_entry.py")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's advice on input examples, in every terminal
        local = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            local, python_model=str(entry), signature=signature(chat),
            model_config={"params": {"chat": chat}},
            artifacts={"model": str(model_path), "tokenizer": str(tokenizer_path)},
            pip_requirements=_requirements(),
            mlflow_model=Model(model_id=logged.model_id, run_id=run_id))
        client.log_model_artifacts(logged.model_id, str(local))
    client.finalize_logged_model(logged.model_id, "READY")
    return f"models:/{logged.model_id}"


def _requirements() -> list[str]:
    """lmforge itself (which brings torch and tokenizers): the loader's imports."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [f"lmforge=={version('lmforge')}"]
    except PackageNotFoundError:  # a source checkout that is not installed
        return ["lmforge"]
