"""lm-evaluation-harness, run as a user runs it (``HFLM`` over the exported transformers folder,
its own bundled task templates fed the sample's files), scores every multiple-choice item of
the sample suite as our harness does: the same log-likelihood per choice, the same acc and
acc_norm, item by item."""

from __future__ import annotations

import pytest
import torch
from lmforge.flows.config import load_config
from lmforge.infra.settings import SAMPLE_DIR
from lmforge.model.checkpoint import load_model, save_model
from lmforge.model.config import ModelConfig
from lmforge.model.transformer import build_model
from lmforge.tasks.evals.harness import LM, run_task
from lmforge.tasks.evals.lm_eval_tasks import FORMATS, write_lm_eval_tasks
from lmforge.tasks.hf_export import export_hf
from lmforge.tasks.tokenizer import load_tokenizer
from lmforge.tasks.training import special_token_ids


@pytest.fixture(scope="module")
def crosscheck(chat_tokenizer, tmp_path_factory):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tmp = tmp_path_factory.mktemp("lm-eval")
    cfg = ModelConfig(vocab_size=load_tokenizer(str(chat_tokenizer)).get_vocab_size(),
                      n_layer=2, n_head=4, n_embd=64, block_size=512, position="rotary")
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # spread the choices' log-likelihoods apart
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_model(tmp / "model.pt", model, cfg, step=0, tokens_seen=0)
    folder = export_hf(path, chat_tokenizer, tmp / "hf")
    tasks = [t.model_copy(update={"shots": 0, "fewshot_path": None})
             for t in load_config(SAMPLE_DIR / "pipeline.yaml").evaluate.tasks
             if t.format in FORMATS]
    names = write_lm_eval_tasks(tasks, tmp / "tasks")
    results = simple_evaluate(
        model=HFLM(pretrained=str(folder), batch_size=8, device="cpu", dtype="float32"),
        tasks=sorted(names), num_fewshot=0, log_samples=True,
        task_manager=TaskManager(include_path=str(tmp / "tasks")))
    lm = LM(load_model(path), load_tokenizer(str(chat_tokenizer)),
            special_token_ids(str(chat_tokenizer)))
    ours = {name: run_task(lm, task) for name, task in names.items()}
    return names, results, ours


def test_every_multiple_choice_format_is_cross_checked(crosscheck) -> None:
    names, results, _ = crosscheck
    assert {t.format for t in names.values()} == set(FORMATS)
    assert set(results["results"]) >= set(names)


def test_lm_eval_and_our_harness_agree_item_by_item(crosscheck) -> None:
    names, results, ours = crosscheck
    for name in names:
        samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
        rows = ours[name].predictions
        assert len(samples) == len(rows) > 0, name
        for sample, row in zip(samples, rows, strict=True):
            theirs = [float(r[0]) for r in sample["filtered_resps"]]
            assert theirs == pytest.approx(row["logprobs"], abs=2e-3), (name, row["id"])
            assert sample["acc"] == float(row["pred"] == row["gold"]), (name, row["id"])
            assert sample["acc_norm"] == float(row["pred_norm"] == row["gold"]), (
                name, row["id"])
        for metric in ("acc", "acc_norm"):
            assert results["results"][name][f"{metric},none"] == pytest.approx(
                ours[name].metrics[metric]), (name, metric)
