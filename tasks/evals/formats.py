"""Readers for the published file formats of common benchmarks, each turned into one of two
item kinds: multiple choice (a query, choices, the gold index) or generation (a prompt and
reference answers). Prompt templates follow lm-evaluation-harness so numbers are comparable.

Formats: HellaSwag JSONL (``ctx_a``/``ctx_b``/``endings``/``label``), PIQA JSONL with its
``*-labels.lst`` file (or a ``label`` field), BoolQ JSONL (``passage``/``question``/``answer``
or SuperGLUE's ``label``), MMLU CSV (no header: question, A-D, answer letter; subject from the
file name), ARC JSONL (AI2's nested ``question.stem``/``choices`` or the flat HF layout),
generic multiple-choice JSONL (``query``, ``choices``, ``gold``), open-domain QA JSONL
(NQ-open/TriviaQA: ``question`` and ``answer`` as string or list), SQuAD v1/v2 JSON, and
generation JSONL (``prompt``/``source`` with ``reference``/``references``/``target``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Choice:
    """A multiple-choice item: the continuation scored is ``delimiter + choices[i]``."""

    id: str
    query: str
    choices: tuple[str, ...]
    gold: int
    description: str = ""  # task preamble shown once before the examples (MMLU)


@dataclass(frozen=True)
class Generation:
    """A generation item: free text after ``prompt``, compared with ``references``."""

    id: str
    prompt: str
    references: tuple[str, ...]
    example: str = ""  # the prompt + answer as a few-shot example


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(path: Path) -> Iterator[Choice]:
    for i, r in enumerate(_jsonl(path)):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize() if "ctx_a" in r else r["ctx"]
        query = _hellaswag_clean(r.get("activity_label", "") + ": " + ctx)
        yield Choice(str(r.get("ind", i)), query,
                     tuple(_hellaswag_clean(e) for e in r["endings"]), int(r["label"]))


def piqa(path: Path) -> Iterator[Choice]:
    labels_file = path.with_name(path.stem + "-labels.lst")
    labels = labels_file.read_text().split() if labels_file.exists() else None
    for i, r in enumerate(_jsonl(path)):
        label = int(r["label"]) if "label" in r else int(labels[i]) if labels else None
        if label is None:
            raise ValueError(f"{path}: record {i} has no 'label' and {labels_file.name} is "
                             "missing")
        yield Choice(str(r.get("id", i)), f"Question: {r['goal']}\nAnswer:",
                     (r["sol1"], r["sol2"]), label)


def boolq(path: Path) -> Iterator[Choice]:
    for i, r in enumerate(_jsonl(path)):
        answer = r["answer"] if "answer" in r else r["label"]
        question = r["question"].rstrip("?")
        yield Choice(str(r.get("idx", i)), f"{r['passage']}\nQuestion: {question}?\nAnswer:",
                     ("no", "yes"), int(bool(answer)))


def mmlu(path: Path) -> Iterator[Choice]:
    subject = re.sub(r"_(test|dev|val)$", "", path.stem).replace("_", " ")
    description = f"The following are multiple choice questions (with answers) about {subject}."
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            question, options, answer = row[0], row[1:-1], row[-1].strip()
            lines = [question.strip()] + [f"{LETTERS[k]}. {o.strip()}"
                                          for k, o in enumerate(options)]
            yield Choice(f"{path.stem}-{i}", "\n".join(lines) + "\nAnswer:",
                         tuple(LETTERS[:len(options)]), LETTERS.index(answer),
                         description=description)


def arc(path: Path) -> Iterator[Choice]:
    for i, r in enumerate(_jsonl(path)):
        q = r["question"]
        if isinstance(q, dict):  # AI2's release
            stem, texts = q["stem"], [c["text"] for c in q["choices"]]
            labels = [c["label"] for c in q["choices"]]
        else:  # the flat Hugging Face layout
            stem, texts, labels = q, r["choices"]["text"], r["choices"]["label"]
        key = str(r["answerKey"])
        yield Choice(str(r.get("id", i)), f"Question: {stem}\nAnswer:", tuple(texts),
                     labels.index(key))


def generic_mc(path: Path) -> Iterator[Choice]:
    for i, r in enumerate(_jsonl(path)):
        gold = next(r[k] for k in ("gold", "label", "answer") if k in r)
        yield Choice(str(r.get("id", i)), r.get("query") or r["question"],
                     tuple(r["choices"]), int(gold))


def _answers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, dict):  # TriviaQA: {"value": ..., "aliases": [...]}
        both = [value.get("value", ""), *value.get("aliases", [])]
        return tuple(a for a in dict.fromkeys(both) if a)
    return tuple(str(v) for v in value)


def qa(path: Path) -> Iterator[Generation]:
    for i, r in enumerate(_jsonl(path)):
        answers = _answers(r.get("answer", r.get("answers")))
        prompt = f"Question: {r['question'].strip()}\nAnswer:"
        yield Generation(str(r.get("id", i)), prompt, answers, f"{prompt} {answers[0]}")


def squad(path: Path) -> Iterator[Generation]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    for article in data:
        for paragraph in article["paragraphs"]:
            for q in paragraph["qas"]:
                if q.get("is_impossible") or not q["answers"]:
                    continue  # SQuAD 2.0 unanswerable questions are not scored here
                answers = tuple(dict.fromkeys(a["text"] for a in q["answers"]))
                prompt = (f"Title: {article.get('title', '')}\n\nBackground: "
                          f"{paragraph['context']}\n\nQuestion: {q['question']}\n\nAnswer:")
                yield Generation(str(q["id"]), prompt, answers, f"{prompt} {answers[0]}")


def generation(path: Path) -> Iterator[Generation]:
    for i, r in enumerate(_jsonl(path)):
        prompt = r.get("prompt") or r["source"]
        refs = _answers(next(r[k] for k in ("references", "reference", "target") if k in r))
        yield Generation(str(r.get("id", i)), prompt, refs, f"{prompt} {refs[0]}")


READERS = {"hellaswag": hellaswag, "piqa": piqa, "boolq": boolq, "mmlu": mmlu, "arc": arc,
           "mc": generic_mc, "qa": qa, "squad": squad, "generate": generation}


def read_items(fmt: str, path: Path) -> list[Choice] | list[Generation]:
    """Every item of a task file (tasks are small: thousands of items, not a corpus)."""
    if not path.exists():
        raise FileNotFoundError(f"evaluation task file {path} not found (format {fmt!r}); "
                                "download the benchmark and point evaluate.tasks[].path at it")
    try:
        return list(READERS[fmt](path))  # type: ignore[return-value]
    except (KeyError, ValueError, IndexError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not in {fmt!r} format: {exc!r}") from exc
