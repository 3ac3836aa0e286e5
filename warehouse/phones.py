"""Phone numbers in E.164, so R25's search finds a user whatever common format is typed."""

from __future__ import annotations

import re

import phonenumbers

_PHONEISH = re.compile(r"^[+()\d][\d\s().\-/]{4,}$")


def looks_like_phone(text: str) -> bool:
    return bool(_PHONEISH.match(text.strip())) and sum(c.isdigit() for c in text) >= 6


def to_e164(raw: str | None) -> str | None:
    """'+33 6 12 34 56 78', '0033612345678' and '33612345678' all give '+33612345678'; None if not a number.

    Channels send international numbers without a '+' (WhatsApp's wa_id), so a bare run of digits
    is read as international; '00' is the international call prefix.
    """
    if not raw:
        return None
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if not digits:
        return None
    if text.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    else:
        candidate = "+" + digits
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
