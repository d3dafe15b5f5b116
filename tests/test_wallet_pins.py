"""The wallet PIN (gateway/wallet/pins.py): the key derivation, the keyed verifier, the try counter, secrecy.

Pure: no database. The service's use of these (one transaction for a wrong
PIN and its reply, tries in batch order) is tested in test_wallet_service.py.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.gateway.diversify import LABELS
from simwallet.gateway.wallet.outcomes import PinKeyMismatch, WalletError, WalletUsageError
from simwallet.gateway.wallet.pins import (
    KEY_CHECK_LEN,
    PIN_KEY_LABEL,
    VERIFIER_LEN,
    WALLET_PIN_TRIES,
    PinHasher,
    PinMismatch,
    PinRecord,
    PinResult,
    PinState,
    attempt,
    check_new_pin,
    check_pin_format,
    pin_verification_key,
)

MASTER = bytes(range(16))
KEY = pin_verification_key(MASTER)
PIN = "468135"
OTHER_PIN = "579024"
CUSTOMER = "customer:B0000001"


def _sp800_108_counter_cmac(master: bytes, label: bytes, context: bytes, length_bits: int) -> bytes:
    """NIST SP 800-108r1 §4.1 written out again, independently of gateway/diversify.py."""
    out = b""
    for i in range(1, -(-length_bits // 128) + 1):
        prf = CMAC(algorithms.AES(master))
        prf.update(i.to_bytes(1, "big") + label + b"\x00" + context + length_bits.to_bytes(2, "big"))
        out += prf.finalize()
    return out[: length_bits // 8]


def test_pin_key_is_sp800_108_counter_mode_under_the_wallet_master() -> None:
    assert _sp800_108_counter_cmac(MASTER, b"simwallet:wallet:pin-verifier", b"", 256) == KEY
    assert len(KEY) == 32
    # Its own label: no other recipe of the key diversification derives the same bytes.
    assert PIN_KEY_LABEL not in LABELS.values()
    assert pin_verification_key(bytes(16)) != KEY
    assert pin_verification_key(bytes(range(32))) != pin_verification_key(bytes(range(32))[:16])


def test_verifier_is_hmac_sha256_of_customer_separator_pin() -> None:
    hasher = PinHasher(KEY)
    expected = hmac.new(KEY, b"customer:B0000001\x00468135", hashlib.sha256).digest()
    assert hasher.verifier(CUSTOMER, PIN) == expected
    assert len(expected) == VERIFIER_LEN


def test_verifier_depends_on_customer_key_and_pin() -> None:
    hasher = PinHasher(KEY)
    base = hasher.verifier(CUSTOMER, PIN)
    assert hasher.verifier("customer:B0000002", PIN) != base  # same PIN, other customer
    assert hasher.verifier(CUSTOMER, OTHER_PIN) != base
    assert PinHasher(pin_verification_key(bytes(16))).verifier(CUSTOMER, PIN) != base
    # The 00 separator: moving a character between the reference and the PIN changes the input.
    assert hasher.verifier("customer:A1", "234567") != hasher.verifier("customer:A12", "34567")


def test_verify_raises_on_wrong_pin_and_on_another_key() -> None:
    hasher = PinHasher(KEY)
    record = hasher.record(CUSTOMER, PIN)
    hasher.verify(record, PIN)
    with pytest.raises(PinMismatch):
        hasher.verify(record, OTHER_PIN)
    other = PinHasher(pin_verification_key(bytes(16)))
    assert other.key_check != hasher.key_check and len(other.key_check) == KEY_CHECK_LEN
    with pytest.raises(PinKeyMismatch) as caught:
        other.verify(record, PIN)
    assert isinstance(caught.value, WalletError) and caught.value.code == "pin_key_mismatch"
    assert PIN not in str(caught.value)


def test_keys_and_pins_stay_out_of_repr() -> None:
    hasher = PinHasher(KEY)
    record = hasher.record(CUSTOMER, PIN)
    for text in (repr(hasher), repr(record), str(record)):
        assert KEY.hex() not in text.lower()
        assert record.verifier.hex() not in text.lower()
        assert PIN not in text
    assert hasher.key_check.hex().upper() in repr(hasher)


@pytest.mark.parametrize("key", [b"", bytes(15), "0" * 32, None])
def test_short_or_non_bytes_keys_are_refused(key: object) -> None:
    with pytest.raises(WalletUsageError):
        PinHasher(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("pin", ["12345", "1234567", "12345a", "１２３４５６", "", None, 123456])
def test_pin_format(pin: object) -> None:
    with pytest.raises(WalletUsageError) as caught:
        check_pin_format(pin)
    assert caught.value.code == "pin_format"


@pytest.mark.parametrize("pin", ["111111", "123456", "654321", "890123", "520520"])
def test_weak_pins_cannot_be_set(pin: str) -> None:
    with pytest.raises(WalletUsageError) as caught:
        check_new_pin(pin)
    assert caught.value.code == "pin_weak"
    assert pin not in str(caught.value)
    assert check_new_pin(PIN) == PIN


def test_three_wrong_pins_lock_and_a_right_one_then_does_not_open() -> None:
    hasher = PinHasher(KEY)
    record = hasher.record(CUSTOMER, PIN)
    results = []
    for _ in range(WALLET_PIN_TRIES):
        tried = attempt(hasher, record, OTHER_PIN)
        results.append(tried.result)
        record = tried.record
    assert results == [PinResult.WRONG] * (WALLET_PIN_TRIES - 1) + [PinResult.NOW_LOCKED]
    assert record.locked and record.tries_left == 0
    locked = attempt(hasher, record, PIN)
    assert locked.result is PinResult.LOCKED and locked.record is record
    assert attempt(hasher, record.unlocked(), PIN).result is PinResult.RIGHT


def test_right_pin_resets_the_counter() -> None:
    hasher = PinHasher(KEY)
    record = attempt(hasher, hasher.record(CUSTOMER, PIN), OTHER_PIN).record
    assert record.wrong_tries == 1 and record.tries_left == WALLET_PIN_TRIES - 1
    right = attempt(hasher, record, PIN)
    assert right.result is PinResult.RIGHT and right.record.wrong_tries == 0
    # No change, no new record: the service writes nothing for a right PIN with no wrong tries.
    unchanged = hasher.record(CUSTOMER, PIN)
    assert attempt(hasher, unchanged, PIN).record is unchanged


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=12))
def test_counter_follows_the_policy_for_any_sequence(rights: list[bool]) -> None:
    """Model: consecutive wrong PINs count; WALLET_PIN_TRIES of them lock for good; a right one resets before that."""
    hasher = PinHasher(KEY)
    record = hasher.record(CUSTOMER, PIN)
    wrong_in_a_row = 0
    for right in rights:
        tried = attempt(hasher, record, PIN if right else OTHER_PIN)
        if wrong_in_a_row >= WALLET_PIN_TRIES:
            assert tried.result is PinResult.LOCKED
        elif right:
            assert tried.result is PinResult.RIGHT
            wrong_in_a_row = 0
        else:
            wrong_in_a_row += 1
            assert tried.result is (PinResult.NOW_LOCKED if wrong_in_a_row == WALLET_PIN_TRIES else PinResult.WRONG)
        record = tried.record
        assert record.wrong_tries == min(wrong_in_a_row, WALLET_PIN_TRIES)
        assert record.locked == (wrong_in_a_row >= WALLET_PIN_TRIES)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[0-9]{6}", fullmatch=True), st.from_regex(r"[0-9]{6}", fullmatch=True))
def test_only_the_pin_itself_verifies(pin: str, guess: str) -> None:
    hasher = PinHasher(KEY)
    record = hasher.record(CUSTOMER, pin)
    assert (attempt(hasher, record, guess).result is PinResult.RIGHT) == (pin == guess)


def test_pin_state_of_a_record() -> None:
    hasher = PinHasher(KEY)
    assert PinState.of(CUSTOMER, None) == PinState(CUSTOMER, False, 0, False)
    record = PinRecord(CUSTOMER, hasher.verifier(CUSTOMER, PIN), hasher.key_check, WALLET_PIN_TRIES)
    state = PinState.of(CUSTOMER, record)
    assert state.pin_set and state.locked and state.tries_left == 0
