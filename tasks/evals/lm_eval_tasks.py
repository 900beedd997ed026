"""lm-evaluation-harness task folders for the multiple-choice tasks of an evaluation config, so
``lm_eval --model hf --model_args pretrained=EXPORTED --include_path DIR --tasks ...`` scores
the very items our harness scores: the cross-check of our readers, prompts and scoring against
the field's reference.

Each task ``include``s lm-eval's own bundled YAML (its prompt template, choices, target and
metrics) and only swaps the data: the task file rewritten in the Hugging Face dataset layout
that template reads (PIQA's labels file merged in, BoolQ's ``answer`` as SuperGLUE's ``label``,
ARC flattened, MMLU's CSV as ``cais/mmlu`` rows), loaded with the ``json`` builder from local
files. ``description`` carries what the items need around the template: our harness conditions
every context on ``<|endoftext|>`` (the document separator the model was trained with) and
MMLU's subject line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from lmforge.model.atomic import write_text
from lmforge.tasks.evals.config import TaskConfig
from lmforge.tasks.evals.formats import LETTERS, _jsonl, mmlu
from lmforge.tasks.tokenizer import EOT


def _lm_eval_tasks() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def _piqa(path: Path) -> Iterator[dict[str, Any]]:
    labels_file = path.with_name(path.stem + "-labels.lst")
    labels = labels_file.read_text().split() if labels_file.exists() else None
    for i, r in enumerate(_jsonl(path)):
        yield {**r, "label": int(r["label"]) if "label" in r else int(labels[i])}  # type: ignore


def _boolq(path: Path) -> Iterator[dict[str, Any]]:
    for r in _jsonl(path):
        yield {**r, "label": int(bool(r["answer"] if "answer" in r else r["label"]))}


def _arc(path: Path) -> Iterator[dict[str, Any]]:
    for r in _jsonl(path):
        q = r["question"]
        if isinstance(q, dict):
            yield {"id": r.get("id"), "question": q["stem"], "answerKey": r["answerKey"],
                   "choices": {"text": [c["text"] for c in q["choices"]],
                               "label": [c["label"] for c in q["choices"]]}}
        else:
            yield r


def _hellaswag(path: Path) -> Iterator[dict[str, Any]]:
    for r in _jsonl(path):
        yield {**r, "label": str(r["label"])}


def _mmlu(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            yield {"question": row[0], "choices": [o.strip() for o in row[1:-1]],
                   "answer": LETTERS.index(row[-1].strip())}


# format -> (lm-eval's bundled YAML, relative to lm_eval/tasks; the rows it reads)
FORMATS: dict[str, tuple[str, Callable[[Path], Iterator[dict[str, Any]]]]] = {
    "hellaswag": ("hellaswag/hellaswag.yaml", _hellaswag),
    "piqa": ("piqa/piqa.yaml", _piqa),
    "boolq": ("super_glue/boolq/default.yaml", _boolq),
    "arc": ("arc/arc_easy.yaml", _arc),
    "mmlu": ("mmlu/default/_default_template_yaml", _mmlu),
}


def lm_eval_task_name(task: TaskConfig) -> str:
    return f"lmforge_{task.name}".replace("-", "_")


def write_lm_eval_tasks(tasks: list[TaskConfig], out: Path) -> dict[str, TaskConfig]:
    """One YAML and one JSONL per task lm-eval has a bundled template for (``out`` is the
    ``--include_path``); returns lm-eval task name -> our task. Few-shot is left to each side
    (lm-eval and our harness draw examples differently): cross-check at 0 shots."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for task in tasks:
        if task.format not in FORMATS:
            continue
        template, rows = FORMATS[task.format]
        name = lm_eval_task_name(task)
        data = out / f"{name}.jsonl"
        items = list(rows(task.path))[:task.limit] if task.limit else list(rows(task.path))
        write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
        description = EOT
        if task.format == "mmlu":  # the subject line our reader derives from the file name
            description += next(iter(mmlu(task.path))).description + "\n\n"
        spec = {"include": str(_lm_eval_tasks() / template), "task": name,
                "dataset_path": "json", "dataset_name": None,
                "dataset_kwargs": {"data_files": {"test": str(data)}},
                "training_split": None, "validation_split": None, "test_split": "test",
                "fewshot_split": None, "description": description, "tag": [],
                "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                for m in ("acc", "acc_norm")]}
        write_text(out / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False))
        written[name] = task
    return written
