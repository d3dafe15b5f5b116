"""Per-card value checks: ICCID (E.118, Luhn), IMSI (TS 23.003), MSISDN (E.164 national forms), customer, PINs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.protocols.efs import luhn_check_digit, luhn_valid
from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.values import (
    CardValueError,
    CardValues,
    Secret,
    ValueKind,
    ValueSpec,
    check_card_values,
    check_customer,
    check_iccid,
    check_imsi,
    check_msisdn,
    check_pin,
)

LUHN = json.loads((Path(__file__).parent / "vectors" / "efs.json").read_text(encoding="utf-8"))["luhn"]


def reference_luhn(number: str) -> bool:
    """ISO/IEC 7812-1 Annex B written out differently: double every second digit from the right, sum the digits."""
    total = 0
    for position, ch in enumerate(reversed(number), start=1):
        value = int(ch) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return total % 10 == 0


@pytest.mark.parametrize("v", LUHN["vectors"], ids=lambda v: v["id"])
def test_luhn_against_published_iccids(v: dict[str, Any]) -> None:
    assert luhn_valid(v["number"]) is v["valid"]
    assert reference_luhn(v["number"]) is v["valid"]


@pytest.mark.parametrize("v", LUHN["check_digits"], ids=lambda v: v["id"])
def test_luhn_check_digit(v: dict[str, Any]) -> None:
    assert luhn_check_digit(v["payload"]) == v["check"]


@given(st.text(alphabet="0123456789", min_size=1, max_size=25), st.integers(0, 24), st.integers(1, 9))
def test_luhn_appended_digit_passes_and_any_single_change_fails(payload: str, where: int, delta: int) -> None:
    number = payload + str(luhn_check_digit(payload))
    assert luhn_valid(number) and reference_luhn(number)
    index = where % len(number)
    changed = number[:index] + str((int(number[index]) + delta) % 10) + number[index + 1 :]
    assert not luhn_valid(changed)


# --- ICCID ----------------------------------------------------------------------------------------

GOOD_ICCID_20 = "89860012345678901238"


def test_iccid_accepts_19_and_20_digits() -> None:
    assert check_iccid("8988211000000530082") == "8988211000000530082"
    assert check_iccid(GOOD_ICCID_20, prefix="898600") == GOOD_ICCID_20


@pytest.mark.parametrize(
    ("text", "prefix", "match"),
    [
        ("898821100000053008", None, "19 or 20"),
        ("8988211000000530081", None, "Luhn"),
        ("1988211000000530087", None, "industry"),
        ("89882110000005300A2", None, "19 or 20"),
        ("8988211000000530082", "898600", "issuer's range"),
    ],
)
def test_iccid_refusals(text: str, prefix: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_iccid(text, prefix=prefix)


# --- IMSI -----------------------------------------------------------------------------------------


def test_imsi_checks() -> None:
    assert check_imsi("460001234567890", plmns=("46000", "46002")) == "460001234567890"
    assert check_imsi("310410123456789", mnc_length=3, plmns=("310410",)) == "310410123456789"
    with pytest.raises(ValueError, match="15 decimal digits"):
        check_imsi("46000123456789")
    with pytest.raises(ValueError, match="MCC 000"):
        check_imsi("000011234567890")
    with pytest.raises(ValueError, match="MCC 460 MNC 01"):
        check_imsi("460011234567890", plmns=("46000", "46002"))
    with pytest.raises(ValueError, match="MNC length"):
        check_imsi("460011234567890", mnc_length=4)


# --- MSISDN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "country", "nsn"),
    [
        ("13800138000", "86", "13800138000"),
        ("+8613800138000", "86", "13800138000"),
        ("008613800138000", "86", "13800138000"),
        ("8613800138000", "86", "13800138000"),
        ("19912345678", "86", "19912345678"),
        ("07700900123", "44", "7700900123"),
        ("+447700900123", "44", "7700900123"),
        ("+85291234567", "852", "91234567"),
        ("+33612345678", "33", "612345678"),
    ],
)
def test_msisdn_national_forms(text: str, country: str, nsn: str) -> None:
    assert check_msisdn(text, country_code=country) == nsn


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("12800138000", "86"),  # 12x is no mobile range
        ("1380013800", "86"),  # 10 digits
        ("+85291234567", "86"),  # another country
        ("0201234567", "44"),  # a London landline
        ("138-0013-8000", "86"),
        ("+33123", "33"),  # too short
        ("+3312345678901234", "33"),  # more than 15 digits
    ],
)
def test_msisdn_refusals(text: str, country: str) -> None:
    with pytest.raises(ValueError):
        check_msisdn(text, country_code=country)


def test_customer_reference() -> None:
    assert check_customer("C-0001_sh") == "C-0001_sh"
    for bad in ("", "a" * 33, "客户1", "a b"):
        with pytest.raises(ValueError):
            check_customer(bad)


# --- PINs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "12 34", "１２３４"])
def test_pin_refusal_never_echoes_the_digits(pin: str) -> None:
    with pytest.raises(ValueError) as info:
        check_pin(pin)
    assert pin not in str(info.value)


def test_puk_is_eight_digits() -> None:
    assert check_pin("12345678", kind=ValueKind.PUK).reveal() == "12345678"
    with pytest.raises(ValueError, match="8 decimal digits"):
        check_pin("1234", kind=ValueKind.PUK)


def test_secret_never_prints() -> None:
    secret = check_pin("97531")
    assert secret.reveal() == "97531"
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret):  # noqa: UP031 - every formatting path
        assert "97531" not in shown
    assert secret == Secret("97531") and secret != Secret("97530")


# --- a card's values ------------------------------------------------------------------------------

SPECS = (
    ValueSpec("iccid", ValueKind.ICCID, required=True, prefix="898600"),
    ValueSpec("imsi", ValueKind.IMSI, required=True, plmns=("46000",)),
    ValueSpec("msisdn", ValueKind.MSISDN, required=True, country_code="86"),
    ValueSpec("customer", ValueKind.CUSTOMER, required=True),
    ValueSpec("language", ValueKind.TEXT, default="zh", choices=("zh", "en")),
    ValueSpec("branch", ValueKind.TEXT, pattern="[A-Z]{2}[0-9]{3}"),
    ValueSpec("pin1", ValueKind.PIN, required=True),
    ValueSpec("puk1", ValueKind.PUK),
)
GOOD = {
    "iccid": GOOD_ICCID_20,
    "imsi": "460001234567890",
    "msisdn": "+8613800138000",
    "customer": "C-0001",
    "pin1": "2468",
}


def test_card_values_defaults_and_normal_forms() -> None:
    values = check_card_values(SPECS, GOOD)
    assert values.msisdn == "13800138000"
    assert values["language"] == "zh"
    assert values.get("branch") is None
    assert values.secret("pin1") == Secret("2468")
    assert "pin1" not in values.values
    assert values.iccid == GOOD_ICCID_20 and values.imsi == "460001234567890" and values.customer == "C-0001"


def test_card_values_repr_masks_pins() -> None:
    values = check_card_values(SPECS, {**GOOD, "pin1": "864209", "puk1": "13572468"})
    for shown in (repr(values), str(values)):
        assert "864209" not in shown and "13572468" not in shown
        assert "pin1" in shown


def test_every_bad_value_is_named_with_the_row_and_no_pin() -> None:
    given_values = {**GOOD, "imsi": "460011234567890", "pin1": "12x", "language": "fr", "colour": "red"}
    del given_values["customer"]
    with pytest.raises(CardValueError) as info:
        check_card_values(SPECS, given_values, row=17)
    error = info.value
    assert isinstance(error, ProvisioningError)
    assert error.row == 17
    assert [name for name, _ in error.problems] == ["colour", "imsi", "customer", "language", "pin1"]
    assert error.name == "colour"
    assert str(error).startswith("row 17: colour: not a value this profile declares; imsi: ")
    assert "12x" not in str(error)


def test_extra_columns_may_be_allowed_for_a_batch() -> None:
    assert isinstance(check_card_values(SPECS, {**GOOD, "notes": "vip"}, allow_extra=True), CardValues)


def test_text_pattern_is_whole_match() -> None:
    assert check_card_values(SPECS, {**GOOD, "branch": "SH001"})["branch"] == "SH001"
    with pytest.raises(CardValueError, match="branch"):
        check_card_values(SPECS, {**GOOD, "branch": "SH0011"})


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (lambda: ValueSpec("pin1", ValueKind.PIN, default="1234"), "no default"),
        (lambda: ValueSpec("note", ValueKind.TEXT), "choices or a pattern"),
        (lambda: ValueSpec("msisdn", ValueKind.MSISDN), "country_code"),
        (lambda: ValueSpec("code", ValueKind.TEXT, pattern="("), "does not compile"),
    ],
)
def test_value_spec_refusals(spec: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spec()


def test_kind_by_name() -> None:
    assert [ValueKind.for_name(n) for n in ("iccid", "pin2", "puk1", "msisdn", "nickname")] == [
        ValueKind.ICCID,
        ValueKind.PIN,
        ValueKind.PUK,
        ValueKind.MSISDN,
        ValueKind.TEXT,
    ]
