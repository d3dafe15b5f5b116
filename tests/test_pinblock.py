"""The TS 102 221 §9.5.1 PIN block: built by the host, checked by the card."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.pinblock import is_pin_block, pin_block


def test_published_layout() -> None:
    assert pin_block(b"1234") == bytes.fromhex("31323334FFFFFFFF")
    assert pin_block(b"12345678") == b"12345678"


@given(st.text(alphabet="0123456789", min_size=4, max_size=8))
def test_every_pin_makes_a_block_the_card_accepts(pin: str) -> None:
    block = pin_block(pin.encode())
    assert is_pin_block(block) and block.rstrip(b"\xff") == pin.encode()


@pytest.mark.parametrize("bad", [b"123", b"123456789", b"12a4", b"12 4"])
def test_malformed_pins_are_refused_without_naming_the_digits(bad: bytes) -> None:
    with pytest.raises(CodecError) as info:
        pin_block(bad)
    assert bad.decode() not in str(info.value)


@given(st.binary(min_size=0, max_size=10))
def test_the_card_accepts_only_blocks_the_host_builds(block: bytes) -> None:
    if is_pin_block(block):
        assert pin_block(block.rstrip(b"\xff")) == block
