"""The wallet PIN: its verifier, the key it is made with, and the try counter that locks a wallet.

Specs: RFC 2104 / FIPS 198-1 (HMAC) with SHA-256 (FIPS 180-4); NIST SP
800-108r1 §4.1 counter mode with AES-CMAC (:func:`~simwallet.gateway.diversify.kdf_counter_cmac`)
for the key.

Theory of operation
-------------------
**The verifier** stored for a customer is
``HMAC-SHA256(pin_key, customer_ref || 00 || PIN)``. A six-digit PIN has
10^6 values: a plain or salted hash in a stolen database falls to 10^6
guesses on a laptop in a second. Under a keyed hash whose key lives outside
the database (in the key store), a dump alone tells nothing. The customer
reference binds the verifier to its wallet, so two customers with the same
PIN have different verifiers; the ``00`` separator keeps ``customer:A1`` +
``23456…`` apart from ``customer:A12`` + ``3456…`` (a reference never holds
a 00 byte). Verifiers are compared with :func:`hmac.compare_digest`.

**The key** is :func:`pin_verification_key` of a wallet master key: SP 800-108
counter mode under that master with the label :data:`PIN_KEY_LABEL` (the
labels of :data:`simwallet.gateway.diversify.LABELS` name the other wallet
keys) and an empty context, 256 bits: the HMAC key of one operator, not of
one card. Rotating the wallet master keys of the cards must not change it:
the operator keeps deriving it from the version the PINs were set under. Each
verifier row carries :attr:`PinHasher.key_check` (the first bytes of an HMAC
of a fixed text under the key), so a service started with another key fails
loudly (:class:`~.outcomes.PinKeyMismatch`) instead of counting every right
PIN as wrong and locking every wallet.

**The policy.** :data:`WALLET_PIN_TRIES` wrong PINs in a row lock the
wallet; a right PIN resets the count; a locked wallet answers ``locked``
whatever PIN is sent (a right PIN then must not tell the guesser he found
it) until a service hall unlocks it (:meth:`PinRecord.unlocked`). This module
is pure: :func:`attempt` maps a record and a PIN to a result and the next
record; the service stores the record in the transaction that stores the
reply.

Nothing here logs, and no value holding a key or a PIN shows it in ``repr``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass, field, replace
from typing import Final

from simwallet.gateway.diversify import kdf_counter_cmac
from simwallet.gateway.sms.commands import PIN_DIGITS, is_weak_pin
from simwallet.gateway.wallet.outcomes import PinKeyMismatch, WalletUsageError

# Wrong PINs in a row that lock the wallet.
WALLET_PIN_TRIES: Final = 3
# SP 800-108 label of the PIN key (ASCII, no 00 byte), named like the key diversification recipes.
PIN_KEY_LABEL: Final = b"simwallet:wallet:pin-verifier"
# The derived HMAC key: as long as SHA-256's output.
PIN_KEY_BITS: Final = 256
# A shorter HMAC key would be the weakest part; 16 bytes is the AES-128 strength of the key store.
PIN_KEY_LEN_MIN: Final = 16
# Bytes of the key check stored beside each verifier: enough to tell two keys apart, useless to an attacker.
KEY_CHECK_LEN: Final = 4
VERIFIER_LEN: Final = hashlib.sha256().digest_size
_KEY_CHECK_TEXT: Final = b"simwallet wallet PIN key check"


def pin_verification_key(wallet_master: bytes) -> bytes:
    """The HMAC key of the PIN verifiers, derived from a wallet master key (SP 800-108, label :data:`PIN_KEY_LABEL`)."""
    return kdf_counter_cmac(wallet_master, PIN_KEY_LABEL, b"", PIN_KEY_BITS)


def check_pin_format(pin: object) -> str:
    """``pin`` if it is :data:`PIN_DIGITS` ASCII digits; otherwise :class:`WalletUsageError` (code ``pin_format``)."""
    if not isinstance(pin, str) or len(pin) != PIN_DIGITS or not (pin.isascii() and pin.isdigit()):
        raise WalletUsageError(f"a wallet PIN is {PIN_DIGITS} digits", "pin_format")
    return pin


def check_new_pin(pin: object) -> str:
    """A PIN a customer may choose: the format, and not one :func:`~simwallet.gateway.sms.commands.is_weak_pin` refuses."""
    value = check_pin_format(pin)
    if is_weak_pin(value):
        raise WalletUsageError("the PIN is too easy to guess", "pin_weak")
    return value


class PinMismatch(Exception):
    """The PIN is not the customer's (internal to this package: :func:`attempt` turns it into a result)."""


class PinHasher:
    """Makes and checks verifiers under one PIN key; the key shows in no ``repr``."""

    __slots__ = ("_key", "key_check")

    def __init__(self, pin_key: bytes) -> None:
        if not isinstance(pin_key, bytes) or len(pin_key) < PIN_KEY_LEN_MIN:
            raise WalletUsageError(f"the PIN key is at least {PIN_KEY_LEN_MIN} bytes")
        self._key = pin_key
        self.key_check = hmac.new(pin_key, _KEY_CHECK_TEXT, hashlib.sha256).digest()[:KEY_CHECK_LEN]

    def __repr__(self) -> str:
        return f"PinHasher(key_check={self.key_check.hex().upper()})"

    def verifier(self, customer_ref: str, pin: str) -> bytes:
        """HMAC-SHA256(key, customer_ref || 00 || PIN)."""
        return hmac.new(self._key, customer_ref.encode() + b"\x00" + pin.encode(), hashlib.sha256).digest()

    def verify(self, record: PinRecord, pin: str) -> None:
        """Raise :class:`PinMismatch` unless ``pin`` is the record's; :class:`PinKeyMismatch` for a record of another key."""
        if not hmac.compare_digest(record.key_check, self.key_check):
            raise PinKeyMismatch(f"the PIN verifier of {record.customer_ref} was made under another PIN key")
        if not hmac.compare_digest(self.verifier(record.customer_ref, pin), record.verifier):
            raise PinMismatch

    def record(self, customer_ref: str, pin: str) -> PinRecord:
        """A fresh record (no wrong tries) for ``pin``."""
        return PinRecord(customer_ref, self.verifier(customer_ref, pin), self.key_check, 0)


@dataclass(frozen=True, slots=True)
class PinRecord:
    """One customer's row of ``wallet_pins``."""

    customer_ref: str
    verifier: bytes = field(repr=False)
    key_check: bytes = field(repr=False)
    wrong_tries: int

    @property
    def locked(self) -> bool:
        return self.wrong_tries >= WALLET_PIN_TRIES

    @property
    def tries_left(self) -> int:
        return max(WALLET_PIN_TRIES - self.wrong_tries, 0)

    def unlocked(self) -> PinRecord:
        return replace(self, wrong_tries=0)


class PinResult(enum.Enum):
    RIGHT = "right"
    WRONG = "wrong"  # wrong, tries left
    NOW_LOCKED = "now_locked"  # wrong, and that was the last try
    LOCKED = "locked"  # locked before this attempt: the PIN was not even checked


@dataclass(frozen=True, slots=True)
class PinAttempt:
    result: PinResult
    record: PinRecord  # the record to store (unchanged for LOCKED)


def attempt(hasher: PinHasher, record: PinRecord, pin: str) -> PinAttempt:
    """Check ``pin`` against ``record`` under the policy; the counter moves as the module docstring says."""
    if record.locked:
        return PinAttempt(PinResult.LOCKED, record)
    try:
        hasher.verify(record, pin)
    except PinMismatch:
        wrong = replace(record, wrong_tries=record.wrong_tries + 1)
        return PinAttempt(PinResult.NOW_LOCKED if wrong.locked else PinResult.WRONG, wrong)
    return PinAttempt(PinResult.RIGHT, record if record.wrong_tries == 0 else record.unlocked())


@dataclass(frozen=True, slots=True)
class PinState:
    """What a service hall sees of a customer's PIN: set or not, wrong tries, locked."""

    customer_ref: str
    pin_set: bool
    wrong_tries: int
    locked: bool

    @property
    def tries_left(self) -> int:
        return max(WALLET_PIN_TRIES - self.wrong_tries, 0)

    @classmethod
    def of(cls, customer_ref: str, record: PinRecord | None) -> PinState:
        if record is None:
            return cls(customer_ref, False, 0, False)
        return cls(customer_ref, True, record.wrong_tries, record.locked)
