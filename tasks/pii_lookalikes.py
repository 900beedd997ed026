"""Strings that pattern recognisers take for personal data but are not: book numbers, DOIs,
version strings, section numbers, network ranges and masks, numbers of every kind (decimals,
timestamps, seeds, ranges), identifiers, message ids, issue references. Each test looks at the
match and a few characters around it, as a reader does ("ISBN 0-87338-546-2" is a book,
"(>=3.7.4.3)" a version constraint, "127.0.0.0/8" a network, "3.3.2.1. Customizing" a section,
"0.479425538604" a decimal, "(#1642, #1641)" two issues). ``benchmarks/decisions.py`` scores
the result on labelled real text.
"""

from __future__ import annotations

import re

_ISBN_CONTEXT = re.compile(r"ISBN(?:-1[03])?[\s:]*$", re.IGNORECASE)
_ISBN_SHAPE = re.compile(r"^(?:97[89][-\s]?)?\d{1,5}[-\s]\d{1,7}[-\s]\d{1,7}[-\s][\dX]$")
_DOI_CONTEXT = re.compile(r"(?:doi[\s:]*|doi\.org/)10\.\d{4,9}/\S*$", re.IGNORECASE)
_VERSION_CONTEXT = re.compile(
    r"(?:\bv(?:ersion)?\s?|[<>=!~^]=?\s*|\b(?:release|python|gcc|zlib|build|spec|specs|"
    r"section|sections|rfc\d*)\s?[\"#-]?|[A-Za-z][\w.]*[/-]|\b[a-z][\w-]*\s\()$",
    re.IGNORECASE)  # ... "novas (3.1.1.3)"
_ISSUE_CONTEXT = re.compile(r"(?:#|\bissue\s|\bbpo-|\bgh-|\bPR\s|issuecomment-|\bRFC\s)$",
                            re.IGNORECASE)
_PHONE_FORMAT = re.compile(r"^\+|\(\d{2,4}\)|\d[\s.-]\d{2,4}[\s.-]\d")
_PHONE_WORDS = re.compile(r"(?:tel|phone|call|fax|mobile|cell)\W{0,3}$", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|35|6(?:011|[245]))")


def _isbn_checksum(digits: str) -> bool:
    if len(digits) == 10:
        total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(digits))
        return total % 11 == 0
    if len(digits) == 13 and digits.isdigit():
        return sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(digits)) % 10 == 0
    return False


def is_isbn(text: str, start: int, end: int) -> bool:
    value = text[start:end].strip()
    before = text[max(0, start - 12):start]
    digits = re.sub(r"[-\s]", "", value).upper()
    return bool(_ISBN_CONTEXT.search(before)) or (
        bool(_ISBN_SHAPE.match(value)) and _isbn_checksum(digits))


def _in_word(before: str, after: str) -> bool:
    """The match continues a word or an identifier ("aix-6107-1415-32", "image-1643...jpg")."""
    return bool(re.search(r"[A-Za-z_][-_]?$", before) or re.match(r"[-_][A-Za-z]|[A-Za-z_]",
                                                                    after))


def _number(value: str, before: str, after: str) -> str | None:
    """Why a digit string is a number rather than a phone number."""
    if re.search(r"\d[.,]$|\.$", before) or re.match(r"[.,]\d", after) or \
            re.fullmatch(r"[+-]?\(?\d*\.\d+\)?", value.strip()) or \
            re.search(r"\d[.,]\d{1,2}$", value.strip()) or value.startswith("."):
        return "decimal_number"  # 0.4794, 123 456 789.00, .018-1.042
    if "/" in value or after.startswith("/") or before.endswith("/"):
        return "path_or_handle"
    if _DATE.search(value):
        return "date_or_time"
    if re.fullmatch(r"\(?\d{2,4}[-–]\d{4,}|\(?\d{5,}[-–]\d{3,}", value.strip()):
        return "number_range"
    if not _PHONE_FORMAT.search(value.strip()) and not _PHONE_WORDS.search(before):
        return "plain_number"  # a digit run: a count, id, seed, timestamp or hash
    return None


def _ip_lookalike(value: str, before: str, after: str) -> str | None:
    before = re.sub(r"(?:<[^<>]*>\s*)+$", " ", before)  # "<td>5.188.210.101": a tag, no ">="
    if "/" in value or re.match(r"/\d{1,3}\b", after):
        return "network_range"
    if ":" not in value:
        octets = value.split(".")
        if all(o in ("0", "255") for o in octets if o.isdigit()):
            return "netmask"
        if re.match(r"\.\s+[A-Z]", after) or re.match(r"\.[\da-z]", after) or \
                re.search(r"\d\.$", before):
            return "section_or_oid"  # "3.3.2.1. Customizing", "1.3.6.1.5.5.7", ".in-addr"
        if _VERSION_CONTEXT.search(before) or re.match(r"\.(?:tar|zip|whl)|[-_][A-Za-z]",
                                                        after):
            return "version_string"
    elif re.fullmatch(r"\d*::\d*", value):
        return "slice"  # m[::2], b[1::2]
    return None


def _phone(text: str, start: int, end: int) -> str | None:
    value, before, after = text[start:end], text[max(0, start - 16):start], text[end:end + 8]
    checks = (
        ("isbn", lambda: is_isbn(text, start, end)),
        ("doi", lambda: bool(_DOI_CONTEXT.search(text[max(0, start - 40):end]))),
        ("issue_reference", lambda: bool(_ISSUE_CONTEXT.search(before))),
        ("ip_address_not_phone",
         lambda: bool(re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}(?:/\d+)?", value.strip("() ")))),
        ("identifier", lambda: _in_word(before, after)),
    )
    found = next((why for why, test in checks if test()), None)
    return found or _number(value, before, after)


def _card(text: str, start: int, end: int) -> str | None:
    before, after = text[max(0, start - 16):start], text[end:end + 8]
    if re.search(r"\d\.$|\.$", before) or re.match(r"\.\d", after):
        return "decimal_number"
    return None if _CARD_PREFIX.match(re.sub(r"\D", "", text[start:end])) \
        else "not_a_card_issuer"


def _email(text: str, start: int, end: int) -> str | None:
    value, before, after = text[start:end], text[max(0, start - 16):start], text[end:end + 8]
    if re.search(r"<$", before) and re.match(r"^\d{8,}\.", value):
        return "message_id"
    if re.search(r"[\w.-]+:$", before) and not re.search(r"mailto:$", before, re.IGNORECASE):
        return "url_userinfo"  # "user:pass@example.com", "joe:password@python.org"
    if re.match(r":[\w~./-]+\.git\b|:[\w~-]+/", after):
        return "ssh_user_host"  # git@example.com:foo/bar.git
    return None


def _ip(text: str, start: int, end: int) -> str | None:
    return _ip_lookalike(text[start:end], text[max(0, start - 16):start], text[end:end + 8])


_CHECKS = {"PHONE_NUMBER": _phone, "CREDIT_CARD": _card, "EMAIL_ADDRESS": _email,
           "IP_ADDRESS": _ip}


def lookalike(text: str, start: int, end: int, entity: str) -> str | None:
    """Why the match ``text[start:end]`` of ``entity`` is not personal data, or None."""
    check = _CHECKS.get(entity)
    return check(text, start, end) if check else None
