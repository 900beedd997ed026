"""Instruction and chat data for supervised fine-tuning: readers, the chat template, packing.

Readers for the common local formats, detected per record: Alpaca (``instruction``, optional
``input`` and ``system``, ``output``; a JSON array or JSON lines), ShareGPT (``conversations`` of
``{"from": "human"|"gpt"|"system", "value"}``) and OpenAI messages (``messages`` of
``{"role", "content"}``). A record that is not valid JSON, has no known shape, empty turns or
turns out of order (system first, then user/assistant alternating, ending with the assistant)
is quarantined with its file, line and reason, never silently dropped.

The chat template uses the tokenizer's role tokens: ``<|system|>`` text, ``<|user|>`` text,
``<|assistant|>`` text ``<|endoftext|>``; loss is taken on the assistant's tokens and its closing
end-of-text only (the prompt carries none). Examples are packed first-fit into rows of
``seq_len`` tokens with a segment id per example: the model restarts positions at each example
and attends only within it (``model.layers.segment_mask``), so a packed example gives what it
would alone. Encoder-decoder rows are not packed: prompt to the encoder, reply to the decoder.
Training examples that share an n-gram with an evaluation set are removed, as in pretraining.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lmforge.model.atomic import atomic_path
from lmforge.model.objectives import IGNORE
from lmforge.tasks.decontaminate import DecontaminationConfig, overlaps
from lmforge.tasks.tokenizer import EOT, PAD, ROLES, load_tokenizer
from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
ROLE_TOKEN = dict(zip(("system", "user", "assistant"), ROLES, strict=True))
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "system": "system"}
FIELDS = 4  # per row: inputs, targets, segment ids (-1: padding), prompt flags / source mask


class SFTDataConfig(BaseModel):
    """The instruction/chat files of a fine-tuning run and how they become rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    paths: tuple[str, ...] = Field(min_length=1, description="Alpaca JSON/JSONL, ShareGPT or "
                                   "OpenAI-messages JSONL files (globs allowed)")
    seq_len: int = Field(256, ge=8, description="tokens per packed row")
    pack: bool = Field(True, description="pack several examples into a row (with attention "
                       "boundaries); false = one example per row, padded")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="share of examples held out, "
                                "chosen by a hash of the example")
    decontaminate: DecontaminationConfig | None = Field(
        None, description="evaluation sets whose n-grams must not appear in training")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass
class SFTCounts:
    """Everything the preparation was given, accounted for."""

    records: int = 0
    examples: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    decontaminated: int = 0
    too_long: int = 0
    truncated: int = 0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)

    def quarantine(self, reason: str) -> None:
        self.quarantined[reason] = self.quarantined.get(reason, 0) + 1


class BadRecord(ValueError):
    """A record that cannot be one training example; the message is the reason."""


# -- readers ------------------------------------------------------------------------------------

def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or item number, parsed value) of a JSON-lines file or a JSON array, streamed; an
    unparsable line yields a ``BadRecord`` in place of its value."""
    with path.open(encoding="utf-8", errors="replace") as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
        if head == "[":
            yield from _json_array(f)
            return
        for n, line in enumerate((head + f.readline(), *f), start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, BadRecord(f"invalid_json: {exc.msg}")


def _json_array(f: Any, chunk: int = 1 << 16) -> Iterator[tuple[int, Any]]:
    """The items of a JSON array one by one, without reading the whole file."""
    decoder, buffer, n = json.JSONDecoder(), "", 0
    while True:
        buffer = buffer.lstrip().lstrip(",").lstrip()
        if buffer.startswith("]"):
            return
        try:
            value, end = decoder.raw_decode(buffer)
        except json.JSONDecodeError as exc:
            more = f.read(chunk)
            if not more:
                if buffer.strip():
                    yield n + 1, BadRecord(f"invalid_json: {exc.msg}")
                return
            buffer += more
            continue
        n += 1
        yield n, value
        buffer = buffer[end:]


def to_messages(record: Any) -> list[Message]:
    """One record of any supported format as a validated chat."""
    if not isinstance(record, dict):
        raise BadRecord("not_an_object")
    if "messages" in record:
        turns = [(m.get("role"), m.get("content")) for m in record["messages"]
                 if isinstance(m, dict)]
    elif "conversations" in record:
        turns = [(SHAREGPT_ROLES.get(str(m.get("from", "")).lower()), m.get("value"))
                 for m in record["conversations"] if isinstance(m, dict)]
    elif "instruction" in record and "output" in record:
        prompt = str(record["instruction"]).strip()
        if str(record.get("input") or "").strip():
            prompt += "\n\n" + str(record["input"]).strip()
        turns = ([("system", record["system"])] if record.get("system") else []) + [
            ("user", prompt), ("assistant", record["output"])]
    else:
        raise BadRecord("unknown_format")
    return _validated(turns)


def _validated(turns: list[tuple[Any, Any]]) -> list[Message]:
    if not turns:
        raise BadRecord("no_turns")
    messages = []
    for role, content in turns:
        if role not in ROLE_TOKEN:
            raise BadRecord("unknown_role")
        if not isinstance(content, str) or not content.strip():
            raise BadRecord("empty_turn")
        messages.append(Message(role, content.strip()))
    body = messages[1:] if messages[0].role == "system" else messages
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    if not body or [m.role for m in body] != expected[:len(body)] or body[-1].role != "assistant":
        raise BadRecord("turn_order")
    return messages


def read_chats(path: Path, counts: SFTCounts, quarantine: list[dict[str, Any]]
               ) -> Iterator[list[Message]]:
    """Every valid chat of ``path``; the rest quarantined (file, line, reason) and counted."""
    for line, value in _json_records(path):
        counts.records += 1
        try:
            if isinstance(value, BadRecord):
                raise value
            yield to_messages(value)
        except BadRecord as bad:
            reason = str(bad).split(":")[0]
            counts.quarantine(reason)
            quarantine.append({"file": str(path), "line": line, "reason": str(bad)})


# -- template -----------------------------------------------------------------------------------

class ChatTemplate:
    """Token ids of a chat and which of them the loss is taken on."""

    def __init__(self, tokenizer_path: str) -> None:
        self.tok = load_tokenizer(tokenizer_path)
        ids = {name: self.tok.token_to_id(name) for name in (*ROLES, EOT, PAD)}
        if None in ids.values():
            raise ValueError(f"tokenizer {tokenizer_path} lacks the chat tokens "
                             f"{[k for k, v in ids.items() if v is None]}")
        self.role = {role: ids[token] for role, token in ROLE_TOKEN.items()}
        self.eot, self.pad = ids[EOT], ids[PAD]

    def _text(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def _turn(self, m: Message) -> list[int]:
        return [self.role[m.role], *self._text("\n" + m.content),
                *([self.eot] if m.role == "assistant" else [])]

    def encode(self, messages: list[Message]) -> tuple[list[int], list[bool], int]:
        """(ids, scored per id, length of the first prompt: system + first user turn and the
        assistant marker). Scored: the assistant's text and its closing end-of-text."""
        ids: list[int] = []
        scored: list[bool] = []
        prompt = 0
        for m in messages:
            turn = self._turn(m)
            if m.role == "assistant" and not prompt:
                prompt = len(ids) + 1
            ids += turn
            scored += [False] + [m.role == "assistant"] * (len(turn) - 1)
        return ids, scored, prompt

    def prompt(self, messages: list[Message]) -> list[int]:
        """What generation starts from: the chat so far, then the assistant's marker."""
        return [i for m in messages for i in self._turn(m)] + [self.role["assistant"]]


# -- rows ---------------------------------------------------------------------------------------

def causal_example(ids: list[int], scored: list[bool], prompt: int, seq_len: int
                   ) -> tuple[np.ndarray, ...] | None:
    """(inputs, targets, prompt flags) of one example for a decoder: next-token targets where
    the predicted token is scored, IGNORE elsewhere; cut to ``seq_len`` (None when not even the
    prompt and one scored token fit)."""
    if prompt + 1 > seq_len:
        return None
    ids_a, scored_a = np.asarray(ids[:seq_len + 1]), np.asarray(scored[:seq_len + 1])
    inputs = ids_a[:-1]
    targets = np.where(scored_a[1:], ids_a[1:], IGNORE)
    flags = np.arange(len(inputs)) < prompt
    return inputs, targets, flags


def pack(examples: list[tuple[np.ndarray, ...]], seq_len: int, pad: int, packed: bool
         ) -> np.ndarray:
    """(rows, FIELDS, seq_len) int32: first-fit decreasing packing of the examples (each keeps
    its own segment id), or one per row; padding has segment -1 and no targets."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = len(examples[i][0])
        slot = next((r for r, room in enumerate(free) if room >= n), None) if packed else None
        if slot is None:
            rows.append([])
            free.append(seq_len)
            slot = len(rows) - 1
        rows[slot].append(i)
        free[slot] -= n
    out = np.empty((len(rows), FIELDS, seq_len), dtype=np.int32)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = pad, IGNORE, -1, 0
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(sorted(members)):
            inputs, targets, flags = examples[i]
            n = len(inputs)
            out[r, 0, at:at + n], out[r, 1, at:at + n] = inputs, targets
            out[r, 2, at:at + n], out[r, 3, at:at + n] = seg, flags
            at += n
    return out


def seq2seq_example(ids: list[int], scored: list[bool], seq_len: int, pad: int
                    ) -> np.ndarray | None:
    """(FIELDS, seq_len) of an encoder-decoder row: source (the chat up to the last reply),
    decoder inputs (padding token, then the reply shifted), targets (the reply), source mask."""
    last = len(ids) - 1
    while last > 0 and scored[last - 1]:
        last -= 1  # the last reply: its scored run, after its role marker
    src, reply = ids[:last], ids[last:]
    if len(src) > seq_len or not reply:
        return None
    reply = reply[:seq_len]
    row = np.empty((FIELDS, seq_len), dtype=np.int32)
    row[0], row[1], row[2], row[3] = pad, pad, IGNORE, 0
    row[0, :len(src)], row[3, :len(src)] = src, 1
    row[1, 1:len(reply)] = reply[:-1]
    row[2, :len(reply)] = reply
    return row


def _split(messages: list[Message], val_fraction: float) -> str:
    key = hashlib.sha256(json.dumps([[m.role, m.content] for m in messages]).encode()).digest()
    return "val" if int.from_bytes(key[:8], "big") / 2**64 < val_fraction else "train"


class _RowWriter:
    """One split's rows, packed ``window`` examples at a time and appended to a raw file, then
    written as one ``.npy``: memory stays bounded by the window, whatever the data's size."""

    def __init__(self, path: Path, cfg: SFTDataConfig, pad: int, arch: str,
                 window: int) -> None:
        self.path, self.cfg, self.pad, self.arch, self.window = path, cfg, pad, arch, window
        self.raw = path.with_suffix(".raw")
        self.raw.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.raw.open("wb")
        self.buffer: list[Any] = []
        self.stats = {"examples": 0, "rows": 0, "scored_tokens": 0, "tokens": 0}

    def add(self, example: Any) -> None:
        self.buffer.append(example)
        self.stats["examples"] += 1
        if len(self.buffer) >= self.window:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        rows = np.stack(self.buffer) if self.arch == "encoder_decoder" else pack(
            self.buffer, self.cfg.seq_len, self.pad, self.cfg.pack)
        self.buffer = []
        seq2seq = self.arch == "encoder_decoder"
        self.stats["rows"] += len(rows)
        self.stats["scored_tokens"] += int((rows[:, 2 if seq2seq else 1] != IGNORE).sum())
        self.stats["tokens"] += int((rows[:, 3] != 0).sum() if seq2seq
                                    else (rows[:, 2] >= 0).sum())
        rows.astype(np.int32).tofile(self.file)

    def close(self) -> dict[str, int]:
        self._flush()
        self.file.close()
        shape = (self.stats["rows"], FIELDS, self.cfg.seq_len)
        raw = np.memmap(self.raw, dtype=np.int32, mode="r", shape=shape) if shape[0] else None
        with atomic_path(self.path) as tmp:
            rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=shape)
            for start in range(0, shape[0], 4096):
                rows[start:start + 4096] = raw[start:start + 4096]  # type: ignore[index]
            rows.flush()
            del rows
        del raw
        self.raw.unlink()
        return self.stats


def prepare_sft(files: list[Path], tokenizer_path: str, cfg: SFTDataConfig, out: Path, *,
                arch: str = "causal", window: int = 8192) -> dict[str, Any]:
    """Read, validate, decontaminate, template and pack the chats of ``files`` into
    ``out/{train,val}.npy`` ((rows, 4, seq_len) int32), ``out/quarantine.jsonl`` and
    ``out/manifest.json`` (every record accounted for); returns the manifest. Streams: examples
    are packed ``window`` at a time."""
    template = ChatTemplate(tokenizer_path)
    counts, quarantine = SFTCounts(), []
    writers = {split: _RowWriter(out / f"{split}.npy", cfg, template.pad, arch, window)
               for split in ("train", "val")}
    for path in files:
        for messages in read_chats(path, counts, quarantine):
            split = _split(messages, cfg.val_fraction)
            if split == "train" and cfg.decontaminate and overlaps(
                    "\n".join(m.content for m in messages), cfg.decontaminate):
                counts.decontaminated += 1
                continue
            ids, scored, prompt = template.encode(messages)
            if arch == "encoder_decoder":
                example = seq2seq_example(ids, scored, cfg.seq_len, template.pad)
            else:
                example = causal_example(ids, scored, prompt, cfg.seq_len)
            if example is None:
                counts.too_long += 1
                continue
            counts.truncated += len(ids) - 1 > cfg.seq_len
            counts.examples += 1
            writers[split].add(example)
    counts.splits = {split: writer.close() for split, writer in writers.items()}
    with atomic_path(out / "quarantine.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(q) + "\n" for q in quarantine))
    kept = counts.examples + counts.decontaminated + counts.too_long
    manifest = {"files": [str(p) for p in files], "tokenizer": tokenizer_path, "arch": arch,
                "seq_len": cfg.seq_len, "packed": cfg.pack and arch != "encoder_decoder",
                "records": counts.records, "examples": counts.examples,
                "quarantined": counts.quarantined, "decontaminated": counts.decontaminated,
                "too_long": counts.too_long, "truncated": counts.truncated,
                "splits": counts.splits, "vocab_size": template.tok.get_vocab_size()}
    if kept + sum(counts.quarantined.values()) != counts.records:
        raise AssertionError(f"SFT records unaccounted for: {manifest}")
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest
