"""Phone numbers in E.164, so R25's search finds a user whatever common format is typed."""

from __future__ import annotations

import re

import phonenumbers

_PHONEISH = re.compile(r"^[+()\d][\d\s().\-/]{4,}$")
# The country whose national format ("06 12 34 56 78" in France, "07911 123456" in the UK) agents
# and customers type ([phones] default_region). None: only international numbers are understood.
_default_region: str | None = None


def check_region(region: str | None) -> str | None:
    """The region as phonenumbers names it, or ValueError if it knows no such country."""
    if region and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r} (an ISO 3166 code such as FR, GB, US)")
    return region.upper() if region else None


def set_default_region(region: str | None) -> None:
    """Read numbers written in this country's national format (an ISO 3166 code such as "FR")."""
    global _default_region
    _default_region = check_region(region)


def looks_like_phone(text: str) -> bool:
    return bool(_PHONEISH.match(text.strip())) and sum(c.isdigit() for c in text) >= 6


def to_e164(raw: str | None) -> str | None:
    """'+33 6 12 34 56 78', '0033612345678' and '33612345678' all give '+33612345678'; None if not a number.

    Channels send international numbers without a '+' (WhatsApp's wa_id), so a bare run of digits
    is read as international; '00' is the international call prefix. A number with one leading '0'
    is national: read in the default region when one is set ('06 12 34 56 78' in FR).
    """
    if not raw:
        return None
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if not digits:
        return None
    region = None
    if text.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif digits.startswith("0") and _default_region:
        candidate, region = digits, _default_region
    else:
        candidate = "+" + digits
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
