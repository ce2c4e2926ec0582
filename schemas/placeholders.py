"""The tokens anonymisation writes into text, which the tokenizer must know as units.

* PII placeholders: ``<EMAIL>``, ``<PHONE>``, … (one per PII type).
* Mentions of a known author: ``<@u0123456789abcdef>``, the author's pseudonym inside ``<@…>``.
"""

import re

PII_TYPES = ("EMAIL", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL", "PERSON")
PLACEHOLDERS = {t: f"<{t}>" for t in PII_TYPES}

PSEUDONYM_PREFIX = "u"
PSEUDONYM_HEX = 16  # 64 bits of HMAC-SHA256: collisions negligible below ~10^9 authors
PSEUDONYM_RE = re.compile(rf"{PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_HEX}}}")
MENTION_RE = re.compile(rf"<@({PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_HEX}}})>")


def mention(pseudonym: str) -> str:
    return f"<@{pseudonym}>"
