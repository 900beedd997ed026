"""Runs inside a separate environment that has datatrove (and spaCy) installed:

    python -m venv /tmp/dtvenv
    /tmp/dtvenv/bin/pip install datatrove spacy regex tokenizers orjson xxhash

Reads documents (JSON lines) and prints, as JSON, datatrove's keep/drop decision per document
for its GopherRepetition → GopherQuality → C4Quality → FineWebQuality chain (their defaults)
and the seconds it took. datatrove's English word tokenizer needs NLTK's punkt data, which
cannot be downloaded here, so its own spaCy tokenizer (offline) is passed in instead.
"""

from __future__ import annotations

import json
import sys
import time

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.word_tokenizers import SpaCyTokenizer


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        texts = [json.loads(line) for line in fh]
    tok = SpaCyTokenizer("en")
    chain = [GopherRepetitionFilter(language=tok), GopherQualityFilter(language=tok),
             C4QualityFilter(language=tok, filter_no_terminal_punct=True),
             FineWebQualityFilter(language=tok)]
    tok.word_tokenize("warm up")
    decisions = []
    start = time.perf_counter()
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        reason = None
        for f in chain:
            result = f.filter(doc)
            ok, why = (result, None) if isinstance(result, bool) else result
            if not ok:
                reason = f"{f.name}:{why}"
                break
        decisions.append(reason)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "decisions": decisions}))


if __name__ == "__main__":
    main()
