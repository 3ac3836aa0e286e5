"""Payment card numbers in end-user messages are redacted before they are stored, as Zendesk does."""

from __future__ import annotations

import re

# 13 to 19 digits, optionally grouped by spaces or dashes.
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def redact_cards(text: str) -> tuple[str, int]:
    """The text with every Luhn-valid card number masked but its last four digits, and how many."""
    if _CARD.search(text) is None:  # most messages: nothing that even looks like a card number
        return text, 0
    count = 0

    def mask(m: re.Match[str]) -> str:
        nonlocal count
        digits = re.sub(r"\D", "", m.group(0))
        if not _luhn(digits):
            return m.group(0)
        count += 1
        return "▇" * (len(digits) - 4) + digits[-4:]

    return _CARD.sub(mask, text), count
