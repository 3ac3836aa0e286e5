"""R25 with national formats: `[phones] default_region` lets agents type numbers as their country writes
them, and customers' profiles in that format are stored in E.164 (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ingest, msg
from warehouse import phones, queries
from warehouse.store import Store


@pytest.fixture
def france() -> Iterator[None]:
    phones.set_default_region("FR")
    yield
    phones.set_default_region(None)


@pytest.mark.parametrize(("typed", "region", "e164"), [
    ("06 12 34 56 78", "FR", "+33612345678"), ("07911 123456", "GB", "+447911123456"),
    ("+33 6 12 34 56 78", "GB", "+33612345678"), ("0033612345678", "FR", "+33612345678"),
    ("33612345678", "FR", "+33612345678"),
])
def test_national_numbers_are_read_in_the_default_region(typed: str, region: str, e164: str) -> None:
    phones.set_default_region(region)
    try:
        assert phones.to_e164(typed) == e164
    finally:
        phones.set_default_region(None)


def test_without_a_default_region_a_national_number_is_not_guessed() -> None:
    assert phones.to_e164("06 12 34 56 78") is None


def test_a_profile_phone_in_national_format_is_stored_in_e164_and_found_as_typed(store: Store, france: None) -> None:
    ingest(store, msg(channel="whatsapp", user="ana-bsuid", name="Ana", phone="06 12 34 56 78"))
    assert store.read(lambda c: c.execute("SELECT phone FROM users").fetchall()) == [("+33612345678",)]
    found = store.read(lambda c: queries.search(c, "06.12.34.56.78"))
    assert [u["name"] for u in found["users"]] == ["Ana"]


def test_an_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phone region"):
        phones.set_default_region("XX")
