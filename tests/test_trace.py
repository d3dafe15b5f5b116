"""APDU traces: PIN, PUK, ADM and key material never appear; everything else stays readable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simwallet.provisioning.trace import command_is_secret, mask_command, mask_response

PIN_BLOCK = bytes.fromhex("31323334FFFFFFFF")


@pytest.mark.parametrize("ins", [0x20, 0x24, 0x26, 0x28, 0x2C, 0xD8, 0xE2])
def test_secret_commands_are_masked(ins: int) -> None:
    capdu = bytes([0x00, ins, 0x00, 0x01, len(PIN_BLOCK)]) + PIN_BLOCK
    shown = mask_command(capdu)
    assert "31323334" not in shown
    assert shown == f"00{ins:02X}0001 08 <8 bytes masked>"
    assert command_is_secret(capdu)


def test_extended_length_and_le_stay_visible() -> None:
    secret = bytes(range(16)) * 20
    capdu = bytes([0x80, 0xE2, 0x80, 0x00, 0x00]) + len(secret).to_bytes(2, "big") + secret + b"\x00\x00"
    shown = mask_command(capdu)
    assert shown == "80E28000 000140 <320 bytes masked> 0000"
    assert secret.hex().upper() not in shown


def test_plain_commands_and_verify_queries_are_shown() -> None:
    assert mask_command(bytes.fromhex("00A40004023F00")) == "00A40004023F00"
    assert mask_command(bytes.fromhex("0020000A")) == "0020000A"  # retry-counter query: no data


def test_authenticate_response_is_masked() -> None:
    assert mask_response(bytes.fromhex("00880081"), bytes.fromhex("DB08AABBCCDDEEFF00119000")) == "<10 bytes masked> 9000"
    assert mask_response(bytes.fromhex("00B00000"), bytes.fromhex("01029000")) == "01029000"


@given(st.integers(0, 255), st.binary(min_size=1, max_size=255))
def test_no_secret_command_data_ever_shows(ins: int, data: bytes) -> None:
    capdu = bytes([0x00, ins, 0, 0, len(data)]) + data
    shown = mask_command(capdu)
    if command_is_secret(capdu):
        assert shown == f"00{ins:02X}0000 {len(data):02X} <{len(data)} bytes masked>"
    else:
        assert shown == capdu.hex().upper()
