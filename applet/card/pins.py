"""PIN1, PIN2 and ADM1 of the virtual UICC: values as salted digests, retry counters, and the PIN commands.

Spec: ETSI TS 102 221 §9.5 (PIN, key references 01/81/0A, PS_DO), §9.5.1 (the
8-byte PIN block: ASCII digits padded with FF), §11.1.9 VERIFY PIN, §11.1.10
CHANGE PIN, §11.1.11 DISABLE PIN, §11.1.12 ENABLE PIN, §11.1.13 UNBLOCK PIN;
status words §10.2.1.

Theory of operation
-------------------
The card keeps no PIN, PUK or ADM value: each is stored as
HMAC-SHA256(per-card random salt, kind || key reference || PIN block) and a
presented block is compared by digest with :func:`hmac.compare_digest`. A
wrong value costs one try before anything else is answered; at zero tries the
key is blocked (6983) until UNBLOCK PIN with the PUK, whose own counter
blocks the same way. ADM1 has neither a PUK nor a disabled state.

Every command returns its status word; :attr:`Pins.changed` tells the card that
persistent state (counters, values, enabled flags) moved and must be written
before the status word goes out. Verified keys are volatile: they live for
one power session (:meth:`Pins.clear_session`).

Status words where TS 102 221 leaves a choice: VERIFY or CHANGE of a disabled
PIN answers 6984 (referenced data invalidated), DISABLE of a disabled or
ENABLE of an enabled PIN 6985, a malformed PIN block 6A80 without costing a
try, an unknown key reference 6A88, DISABLE/UNBLOCK of ADM1 6A86.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from simwallet.applet.card.spec import KEY_ADM1, KEY_PIN1, KEY_PIN2, AccessRule, PinSpec
from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.apdu import CommandApdu, Ins, ResponseApdu
from simwallet.applet.protocols.fcp import PinStatus, PinStatusTemplate
from simwallet.applet.protocols.pinblock import PIN_BLOCK_LENGTH, PIN_DIGITS_MAX, PIN_DIGITS_MIN, is_pin_block, pin_block

# TS 102 221 §9.5.1: the UNBLOCK PIN (PUK) is 8 digits (the PIN block itself: applet/protocols/pinblock.py).
PUK_DIGITS: Final = 8
# Per-card salt of the PIN digests (a SHA-256 block of entropy is more than enough).
SALT_LENGTH: Final = 16
_DIGITS = frozenset(b"0123456789")
_KIND_PIN = b"PIN"
_KIND_PUK = b"PUK"

SW_OK: Final = 0x9000
SW_WRONG_LENGTH: Final = 0x6700
SW_BLOCKED: Final = 0x6983
SW_INVALIDATED: Final = 0x6984
SW_CONDITIONS: Final = 0x6985
SW_BAD_DATA: Final = 0x6A80
SW_BAD_P1P2: Final = 0x6A86
SW_NOT_FOUND: Final = 0x6A88
SW_TRIES: Final = 0x63C0


def adm_block(value: bytes) -> bytes:
    """ADM1 as a block: 4 to 8 ASCII digits padded like a PIN, or 8 raw bytes (the hex ADM keys card vendors issue)."""
    if len(value) == PIN_BLOCK_LENGTH:
        return value
    return pin_block(value)


@dataclass(frozen=True, repr=False)
class CardSecrets:
    """The per-card PIN, PUK and ADM values handed to the card maker; never shown by ``repr``."""

    pin1: bytes = field(repr=False)
    puk1: bytes = field(repr=False)
    adm1: bytes = field(repr=False)
    pin2: bytes | None = field(default=None, repr=False)
    puk2: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Messages name the field only: the values must not reach logs.
        for name in ("pin1", "puk1", "adm1", "pin2", "puk2"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bytes):
                raise TypeError(f"CardSecrets.{name} must be bytes")
        for name in ("pin1", "pin2"):
            value = getattr(self, name)
            if value is not None and not _is_pin(value):
                raise CodecError(f"CardSecrets.{name} must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} ASCII digits")
        for name in ("puk1", "puk2"):
            value = getattr(self, name)
            if value is not None and (len(value) != PUK_DIGITS or not set(value) <= _DIGITS):
                raise CodecError(f"CardSecrets.{name} must be {PUK_DIGITS} ASCII digits")
        if (self.pin2 is None) != (self.puk2 is None):
            raise CodecError("CardSecrets.pin2 and puk2 go together")
        if len(self.adm1) != PIN_BLOCK_LENGTH and not _is_pin(self.adm1):
            raise CodecError(f"CardSecrets.adm1 must be 4 to 8 ASCII digits or {PIN_BLOCK_LENGTH} bytes")

    def __repr__(self) -> str:
        return "CardSecrets(<redacted>)"

    def values(self, key_reference: int) -> tuple[bytes, bytes | None] | None:
        """(PIN block, PUK block or None) of a key reference, None if these secrets have no such key."""
        if key_reference == KEY_PIN1:
            return pin_block(self.pin1), pin_block(self.puk1)
        if key_reference == KEY_PIN2 and self.pin2 is not None and self.puk2 is not None:
            return pin_block(self.pin2), pin_block(self.puk2)
        if key_reference == KEY_ADM1:
            return adm_block(self.adm1), None
        return None


def _is_pin(value: bytes) -> bool:
    return isinstance(value, bytes) and PIN_DIGITS_MIN <= len(value) <= PIN_DIGITS_MAX and set(value) <= _DIGITS


@dataclass(eq=False)
class PinState:
    """The persistent state of one key; the digests are kept out of ``repr``."""

    spec: PinSpec
    digest: bytes = field(repr=False)
    unblock_digest: bytes | None = field(repr=False)
    tries_left: int
    unblock_tries_left: int | None
    enabled: bool

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0


class Pins:
    """The card's keys and which of them the cardholder verified this session."""

    def __init__(self, salt: bytes, states: Iterable[PinState]) -> None:
        self._salt = salt
        self._states = {s.spec.key_reference: s for s in states}
        self._verified: set[int] = set()
        self.changed = False

    def __repr__(self) -> str:
        return f"Pins({sorted(self._states)!r}, verified={sorted(self._verified)!r})"

    # -- making and keeping ------------------------------------------------------------

    @classmethod
    def manufacture(cls, specs: Iterable[PinSpec], secrets: CardSecrets, salt: bytes) -> Pins:
        if len(salt) != SALT_LENGTH:
            raise CodecError(f"the PIN salt is {SALT_LENGTH} bytes")
        states = []
        for spec in specs:
            values = secrets.values(spec.key_reference)
            if values is None:
                raise CodecError(f"CardSecrets has no value for {spec.name}, which the card type has")
            pin, puk = values
            unblock = None if spec.unblock_tries is None or puk is None else _digest(salt, _KIND_PUK, spec.key_reference, puk)
            digest = _digest(salt, _KIND_PIN, spec.key_reference, pin)
            states.append(PinState(spec, digest, unblock, spec.tries, spec.unblock_tries, spec.enabled))
        return cls(salt, states)

    @property
    def salt(self) -> bytes:
        return self._salt

    def export(self) -> dict[str, Any]:
        """JSON-able persistent state: digests, counters, enabled flags (no values)."""
        return {
            f"{ref:02X}": {
                "digest": s.digest.hex(),
                "unblock_digest": None if s.unblock_digest is None else s.unblock_digest.hex(),
                "tries": s.tries_left,
                "unblock_tries": s.unblock_tries_left,
                "enabled": s.enabled,
            }
            for ref, s in self._states.items()
        }

    @classmethod
    def restore(cls, specs: Iterable[PinSpec], salt: bytes, data: Mapping[str, Any]) -> Pins:
        """Rebuild from :meth:`export`; CodecError if the data does not fit the card type's keys."""
        states = []
        for spec in specs:
            entry = data.get(f"{spec.key_reference:02X}")
            if not isinstance(entry, Mapping):
                raise CodecError(f"card image has no state for {spec.name}")
            try:
                digest = bytes.fromhex(entry["digest"])
                unblock = None if entry["unblock_digest"] is None else bytes.fromhex(entry["unblock_digest"])
                tries, unblock_tries, enabled = entry["tries"], entry["unblock_tries"], entry["enabled"]
            except (KeyError, TypeError, ValueError) as exc:
                raise CodecError(f"card image state of {spec.name} is malformed") from exc
            if not isinstance(tries, int) or not 0 <= tries <= spec.tries or not isinstance(enabled, bool):
                raise CodecError(f"card image state of {spec.name}: tries or enabled out of range")
            if (unblock is None) != (spec.unblock_tries is None) or (unblock is None) != (unblock_tries is None):
                raise CodecError(f"card image state of {spec.name}: PUK does not match the card type")
            if unblock_tries is not None and (not isinstance(unblock_tries, int) or not 0 <= unblock_tries <= (spec.unblock_tries or 0)):
                raise CodecError(f"card image state of {spec.name}: unblock tries out of range")
            states.append(PinState(spec, digest, unblock, tries, unblock_tries, enabled))
        return cls(salt, states)

    # -- the session -----------------------------------------------------------------------

    def clear_session(self) -> None:
        """Power off or reset: nothing stays verified."""
        self._verified.clear()

    def is_verified(self, key_reference: int) -> bool:
        return key_reference in self._verified

    def state(self, key_reference: int) -> PinState | None:
        return self._states.get(key_reference)

    def satisfies(self, rule: AccessRule) -> bool:
        """Whether the session meets ``rule``: a disabled PIN counts as met (TS 102 221 §9.5.1), ADM1 must be verified."""
        if rule is AccessRule.ALWAYS:
            return True
        reference = rule.key_reference
        state = self._states.get(reference) if reference is not None else None
        if state is None:
            return False
        return reference in self._verified or (reference != KEY_ADM1 and not state.enabled)

    def status_template(self, key_references: Iterable[int]) -> PinStatusTemplate:
        """The PIN status template DO (C6) listing ``key_references`` that exist, with their enabled bits."""
        pins = [PinStatus(ref, self._states[ref].enabled) for ref in key_references if ref in self._states]
        return PinStatusTemplate(tuple(pins))

    # -- commands (each returns a status word) ---------------------------------------------------

    def verify(self, key_reference: int, data: bytes) -> int:
        """VERIFY PIN (§11.1.9); empty data asks for the tries left."""
        state = self._states.get(key_reference)
        if state is None:
            return SW_NOT_FOUND
        if not data:
            if key_reference in self._verified or not state.enabled:
                return SW_OK
            return SW_TRIES | state.tries_left
        sw = self._check_blocks(state, data, 1)
        if sw != SW_OK:
            return sw
        if not state.enabled:
            return SW_INVALIDATED
        return self._present(state, data)

    def change(self, key_reference: int, data: bytes) -> int:
        """CHANGE PIN (§11.1.10): old block then new block."""
        state = self._states.get(key_reference)
        if state is None:
            return SW_NOT_FOUND
        sw = self._check_blocks(state, data, 2)
        if sw != SW_OK:
            return sw
        if not state.enabled:
            return SW_INVALIDATED
        sw = self._present(state, data[:PIN_BLOCK_LENGTH])
        if sw == SW_OK:
            state.digest = _digest(self._salt, _KIND_PIN, key_reference, data[PIN_BLOCK_LENGTH:])
            self.changed = True
        return sw

    def set_enabled(self, key_reference: int, data: bytes, enabled: bool) -> int:
        """ENABLE PIN (§11.1.12) or DISABLE PIN (§11.1.11), both proven with the PIN."""
        state = self._states.get(key_reference)
        if state is None:
            return SW_NOT_FOUND
        if key_reference == KEY_ADM1:
            return SW_BAD_P1P2
        sw = self._check_blocks(state, data, 1)
        if sw != SW_OK:
            return sw
        if state.enabled == enabled:
            return SW_CONDITIONS
        sw = self._present(state, data)
        if sw == SW_OK:
            state.enabled = enabled
            self.changed = True
        return sw

    def unblock(self, key_reference: int, data: bytes) -> int:
        """UNBLOCK PIN (§11.1.13): PUK block then new PIN block; empty data asks for the PUK tries left."""
        state = self._states.get(key_reference)
        sw = self._unblock_checks(state, data)
        if sw != SW_OK or state is None or state.unblock_digest is None or state.unblock_tries_left is None or not data:
            return sw
        state.unblock_tries_left -= 1
        self.changed = True
        candidate = _digest(self._salt, _KIND_PUK, key_reference, data[:PIN_BLOCK_LENGTH])
        if not hmac.compare_digest(candidate, state.unblock_digest):
            return SW_TRIES | state.unblock_tries_left
        state.unblock_tries_left = state.spec.unblock_tries
        state.tries_left = state.spec.tries
        state.digest = _digest(self._salt, _KIND_PIN, key_reference, data[PIN_BLOCK_LENGTH:])
        self._verified.add(key_reference)
        return SW_OK

    # -- shared steps ----------------------------------------------------------------------

    @staticmethod
    def _unblock_checks(state: PinState | None, data: bytes) -> int:
        """The status word UNBLOCK PIN answers before comparing: 9000 to go on (or, with no data, the PUK tries query)."""
        if state is None:
            return SW_NOT_FOUND
        if state.unblock_digest is None or state.unblock_tries_left is None:
            return SW_BAD_P1P2
        if not data:
            return SW_TRIES | state.unblock_tries_left
        if len(data) != 2 * PIN_BLOCK_LENGTH:
            return SW_WRONG_LENGTH
        if not (is_pin_block(data[:PIN_BLOCK_LENGTH]) and is_pin_block(data[PIN_BLOCK_LENGTH:])):
            return SW_BAD_DATA
        return SW_BLOCKED if state.unblock_tries_left == 0 else SW_OK

    def _check_blocks(self, state: PinState, data: bytes, count: int) -> int:
        if len(data) != count * PIN_BLOCK_LENGTH:
            return SW_WRONG_LENGTH
        adm = state.spec.key_reference == KEY_ADM1
        for i in range(count):
            if not adm and not is_pin_block(data[i * PIN_BLOCK_LENGTH : (i + 1) * PIN_BLOCK_LENGTH]):
                return SW_BAD_DATA
        if state.blocked:
            return SW_BLOCKED
        return SW_OK

    def _present(self, state: PinState, block: bytes) -> int:
        """Spend a try, compare, and give it back on success (the order a card uses against tearing)."""
        before = state.tries_left
        state.tries_left -= 1
        candidate = _digest(self._salt, _KIND_PIN, state.spec.key_reference, block)
        if not hmac.compare_digest(candidate, state.digest):
            self.changed = True
            self._verified.discard(state.spec.key_reference)
            return SW_TRIES | state.tries_left
        state.tries_left = state.spec.tries
        self.changed = self.changed or before != state.tries_left
        self._verified.add(state.spec.key_reference)
        return SW_OK


def pin_command(pins: Pins, command: CommandApdu) -> ResponseApdu:
    """Run VERIFY, CHANGE, DISABLE, ENABLE or UNBLOCK PIN (P1 00, key reference in P2) against ``pins``."""
    # DISABLE with P1 80 (replace by the universal PIN) is not offered: this card has no universal PIN.
    if command.p1 != 0x00:
        return ResponseApdu.status(SW_BAD_P1P2)
    reference, data = command.p2, command.data
    if command.ins == Ins.VERIFY:
        sw = pins.verify(reference, data)
    elif command.ins == Ins.CHANGE:
        sw = pins.change(reference, data)
    elif command.ins in (Ins.DISABLE, Ins.ENABLE):
        sw = pins.set_enabled(reference, data, enabled=command.ins == Ins.ENABLE)
    elif command.ins == Ins.UNBLOCK:
        sw = pins.unblock(reference, data)
    else:
        raise ValueError(f"INS {command.ins:02X} is not a PIN command")
    return ResponseApdu.status(sw)


def _digest(salt: bytes, kind: bytes, key_reference: int, block: bytes) -> bytes:
    return hmac.new(salt, kind + bytes([key_reference]) + block, hashlib.sha256).digest()
