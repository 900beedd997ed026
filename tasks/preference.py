"""Preference data for reward modelling and DPO: readers, and rows of (chosen, rejected) pairs.

Readers, detected per record: HH-RLHF (``chosen`` and ``rejected`` transcripts in the
"\\n\\nHuman: ... \\n\\nAssistant: ..." form; the shared turns are the prompt, the differing last
reply is the response) and (prompt, chosen, rejected) triples (the prompt a string or a list of
OpenAI messages, each response a string or a final assistant message). A record without two
distinct, non-empty replies to the same prompt is quarantined with its file, line and reason.
Pairs are decontaminated against the evaluation sets, as every training set.

Rows: (N, 2, 4, L) int32, the chosen then the rejected example, each one row of
``tasks.sft`` (inputs, targets on the reply only, segment 0 / padding -1, prompt flags; or the
encoder-decoder fields), padded rather than packed, since the two of a pair are compared.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lmforge.model.atomic import atomic_path
from lmforge.model.objectives import IGNORE
from lmforge.tasks.decontaminate import overlaps
from lmforge.tasks.sft import (
    FIELDS,
    BadRecord,
    ChatTemplate,
    Message,
    SFTCounts,
    SFTDataConfig,
    _json_records,
    _validated,
    causal_example,
    seq2seq_example,
)

HH_TURN = re.compile(r"\n\n(Human|Assistant):")


@dataclass(frozen=True)
class Pair:
    prompt: list[Message]
    chosen: str
    rejected: str


def _hh_turns(text: str) -> list[tuple[str, str]]:
    parts = HH_TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    turns = []
    for i in range(1, len(parts) - 1, 2):
        turns.append(("user" if parts[i] == "Human" else "assistant", parts[i + 1].strip()))
    return turns


def _reply(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise BadRecord("empty_reply")
    return value.strip()


def to_pair(record: Any) -> Pair:
    if not isinstance(record, dict) or "chosen" not in record or "rejected" not in record:
        raise BadRecord("unknown_format")
    if "prompt" in record:
        prompt = record["prompt"]
        turns = ([(m.get("role"), m.get("content")) for m in prompt if isinstance(m, dict)]
                 if isinstance(prompt, list) else [("user", prompt)])
        chosen, rejected = _reply(record["chosen"]), _reply(record["rejected"])
    else:
        if not isinstance(record["chosen"], str) or not isinstance(record["rejected"], str):
            raise BadRecord("unknown_format")
        a, b = _hh_turns(record["chosen"]), _hh_turns(record["rejected"])
        if not a or not b or a[:-1] != b[:-1] or a[-1][0] != "assistant" \
                or b[-1][0] != "assistant":
            raise BadRecord("not_a_pair")
        turns, chosen, rejected = a[:-1], _reply(a[-1][1]), _reply(b[-1][1])
    if chosen == rejected:
        raise BadRecord("identical_replies")
    messages = _validated([*turns, ("assistant", chosen)])[:-1]
    return Pair(messages, chosen, rejected)


def prompts_of(files: list[Path]) -> list[list[Message]]:
    """The prompts of the valid pairs of ``files`` (PPO's rollout prompts), in file order."""
    out = []
    for path in files:
        for _, value in _json_records(path):
            try:
                if not isinstance(value, BadRecord):
                    out.append(to_pair(value).prompt)
            except BadRecord:
                continue
    return out


def _row(template: ChatTemplate, prompt: list[Message], reply: str, seq_len: int, arch: str
         ) -> np.ndarray | None:
    ids, scored, first = template.encode([*prompt, Message("assistant", reply)])
    if arch == "encoder_decoder":
        return seq2seq_example(ids, scored, seq_len, template.pad)
    example = causal_example(ids, scored, first, seq_len)
    if example is None:
        return None
    row = np.empty((FIELDS, seq_len), dtype=np.int32)
    row[0], row[1], row[2], row[3] = template.pad, IGNORE, -1, 0
    n = len(example[0])
    row[0, :n], row[1, :n], row[2, :n], row[3, :n] = example[0], example[1], 0, example[2]
    return row


def prepare_pairs(files: list[Path], tokenizer_path: str, cfg: SFTDataConfig, out: Path, *,
                  arch: str = "causal") -> dict[str, Any]:
    """``out/{train,val}.npy`` ((pairs, 2, 4, seq_len) int32), ``out/quarantine.jsonl`` and
    ``out/manifest.json`` (every record accounted for); returns the manifest."""
    template = ChatTemplate(tokenizer_path)
    counts, quarantine = SFTCounts(), []
    rows: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for path in files:
        for line, value in _json_records(path):
            counts.records += 1
            try:
                if isinstance(value, BadRecord):
                    raise value
                pair = to_pair(value)
            except BadRecord as bad:
                counts.quarantine(str(bad).split(":")[0])
                quarantine.append({"file": str(path), "line": line, "reason": str(bad)})
                continue
            text = "\n".join([*(m.content for m in pair.prompt), pair.chosen, pair.rejected])
            key = hashlib.sha256(text.encode()).digest()
            split = "val" if int.from_bytes(key[:8], "big") / 2**64 < cfg.val_fraction \
                else "train"
            if split == "train" and cfg.decontaminate and overlaps(text, cfg.decontaminate):
                counts.decontaminated += 1
                continue
            chosen = _row(template, pair.prompt, pair.chosen, cfg.seq_len, arch)
            rejected = _row(template, pair.prompt, pair.rejected, cfg.seq_len, arch)
            if chosen is None or rejected is None:
                counts.too_long += 1
                continue
            counts.examples += 1
            rows[split].append(np.stack([chosen, rejected]))
    out.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        array = np.stack(items) if items else np.empty((0, 2, FIELDS, cfg.seq_len), np.int32)
        with atomic_path(out / f"{split}.npy") as tmp, tmp.open("wb") as f:
            np.save(f, array)
        counts.splits[split] = {"pairs": len(items)}
    with atomic_path(out / "quarantine.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(q) + "\n" for q in quarantine))
    manifest = {"files": [str(p) for p in files], "tokenizer": tokenizer_path, "arch": arch,
                "seq_len": cfg.seq_len, "records": counts.records, "pairs": counts.examples,
                "quarantined": counts.quarantined, "decontaminated": counts.decontaminated,
                "too_long": counts.too_long, "splits": counts.splits,
                "vocab_size": template.tok.get_vocab_size()}
    if counts.examples + counts.decontaminated + counts.too_long + sum(
            counts.quarantined.values()) != counts.records:
        raise AssertionError(f"preference records unaccounted for: {manifest}")
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest
