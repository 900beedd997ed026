"""Answer and text metrics: SQuAD exact match and token F1 (the official normalisation:
lower case, no punctuation, no articles, single spaces), corpus BLEU through sacrebleu,
ROUGE-1/2/L through Google's rouge-score, and the two multiple-choice decisions (sum of
log-probabilities; the same per character of the choice, lm-evaluation-harness' acc_norm)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = set(string.punctuation)
COT_ANSWER = re.compile(r"the answer is\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 evaluation script's normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    return float(max(normalize_answer(prediction) == normalize_answer(r) for r in references))


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best bag-of-tokens F1 over the references (SQuAD)."""
    return max(_f1(prediction, r) for r in references)


def extract_answer(generated: str, chain_of_thought: bool) -> str:
    """The answer part of a generation: its first line, or with chain of thought the text
    after the last 'the answer is' (falling back to the last non-empty line)."""
    if not chain_of_thought:
        return generated.strip().split("\n")[0].strip()
    found = COT_ANSWER.findall(generated)
    if found:
        return found[-1].strip()
    lines = [line.strip() for line in generated.split("\n") if line.strip()]
    return lines[-1] if lines else ""


def majority_answer(answers: Sequence[str]) -> str:
    """Self-consistency's vote: the answer whose SQuAD-normalised form is most frequent; ties go
    to the form seen first; the first answer with that form is returned as written."""
    forms = [normalize_answer(a) for a in answers]
    counts = Counter(forms)
    best = max(counts, key=lambda form: (counts[form], -forms.index(form)))
    return answers[forms.index(best)]


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing), 0-100."""
    import sacrebleu

    width = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else r[0] for r in references] for k in range(width)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams).score)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measure, best reference per type (Porter stemming, as in the paper)."""
    scorer = _rouge()
    best: dict[str, float] = {}
    for ref in references:
        for kind, score in scorer.score(ref, prediction).items():
            best[kind] = max(best.get(kind, 0.0), score.fmeasure)
    return best


def choose(logprobs: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(argmax of log-probability, argmax of log-probability per character of the choice):
    lm-evaluation-harness's ``acc`` and ``acc_norm``, which divide by ``len(choice)``, the
    choice without the delimiter before it (the lm-eval cross-check found our earlier
    ``len(" " + choice)``: on a random model it flipped 2 of the sample's 30 items, one
    each in PIQA and ARC)."""
    raw = max(range(len(logprobs)), key=lambda i: logprobs[i])
    norm = max(range(len(logprobs)), key=lambda i: logprobs[i] / max(1, len(choices[i])))
    return raw, norm
