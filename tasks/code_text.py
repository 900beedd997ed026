"""The natural-language parts of a source file: its comments and string literals.

PII in code lives there (an author's e-mail in a header, a phone number in a docstring); the
code itself (``127.0.0.0/8`` in a test of ``ipaddress``, a version tuple) is not personal data,
and rewriting it would change what the program does. One lexer per comment family, scanning
left to right so that a ``#`` inside a string is not a comment and a quote inside a comment
does not open a string; files whose language has no lexer here (Markdown, reStructuredText,
HTML, plain text) are prose and are scanned whole.
"""

from __future__ import annotations

import re
from functools import lru_cache

_STRINGS = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\''
_TRIPLE = r'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
_BLOCK = r"/\*[\s\S]*?(?:\*/|\Z)"
_FAMILIES = {
    "python": (_TRIPLE, r"#[^\n]*", _STRINGS),
    "c": (_BLOCK, r"//[^\n]*", _STRINGS + r"|`(?:[^`\\]|\\.)*`"),
    "hash": (r"#[^\n]*", _STRINGS),
    "sql": (_BLOCK, r"--[^\n]*", _STRINGS),
    "lua": (r"--\[\[[\s\S]*?(?:\]\]|\Z)", r"--[^\n]*", _STRINGS),
    "haskell": (r"\{-[\s\S]*?(?:-\}|\Z)", r"--[^\n]*", _STRINGS),
}
LANGUAGE_FAMILY = {
    "python": "python",
    **dict.fromkeys(("c", "c++", "cpp", "java", "javascript", "typescript", "tsx", "jsx", "go",
                     "rust", "swift", "kotlin", "scala", "c#", "csharp", "objective-c", "dart",
                     "php", "css", "scss", "less"), "c"),
    **dict.fromkeys(("shell", "bash", "ruby", "perl", "r", "yaml", "toml", "julia", "elixir",
                     "makefile", "dockerfile", "powershell", "coffeescript"), "hash"),
    "sql": "sql", "plsql": "sql", "lua": "lua", "haskell": "haskell",
}


@lru_cache(maxsize=16)
def _lexer(family: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in _FAMILIES[family]))


def text_spans(code: str, language: str | None) -> list[tuple[int, int]] | None:
    """(start, end) of the comments and string literals of ``code``; None when the language
    is prose (or unknown) and the whole file is text."""
    family = LANGUAGE_FAMILY.get((language or "").lower())
    if family is None:
        return None
    return [m.span() for m in _lexer(family).finditer(code)]
