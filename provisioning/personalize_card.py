"""Talking to the card during personalization: one checked exchange, the PIN commands, the ICCID, and the errors they raise.

Spec: ISO/IEC 7816-4 §5.1.3 and ETSI TS 102 221 §10.2 (status words, 63CX:
X tries left), §9.5.1 (PIN block: ASCII digits padded with FF; key
references 01 PIN1, 81 PIN2, 0A ADM1), §11.1.9 VERIFY PIN (no data: the
retry counter is asked, nothing is presented), §11.1.11/§11.1.12 DISABLE /
ENABLE PIN, §11.1.13 UNBLOCK PIN (no data: the unblock counter), §13.2
EF.ICCID (FID 2FE2 under the MF, swapped BCD).

Theory of operation
-------------------
:class:`CardIo` wraps a :class:`~simwallet.provisioning.reader.CardConnection`
with the card's ICCID and the step being run, and turns every unexpected
status word into a :class:`PersonalizationError` naming card, step, the
masked APDU (:func:`~simwallet.provisioning.trace.mask_command`) and the
status word with its meaning. :class:`~simwallet.provisioning.reader.CardRemovedError`
and the other reader errors pass through untouched.

A PIN, PUK or ADM value is presented only after its retry counter has been
asked with an empty VERIFY (or UNBLOCK) and found at 2 or more: with one try
left a wrong value would block the key, so :class:`TriesTooLowError` is
raised and nothing is presented. The values go on the wire as PIN blocks and
nowhere else: not in messages, logs or errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.apdu import ResponseApdu, describe_sw
from simwallet.applet.protocols.efs import Iccid
from simwallet.applet.protocols.pinblock import PIN_BLOCK_LENGTH
from simwallet.applet.protocols.pinblock import pin_block as encode_pin_block
from simwallet.gateway.errors import GatewayError, RequestError
from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.reader import CardConnection
from simwallet.provisioning.trace import mask_command

log = logging.getLogger(__name__)

# TS 102 221 §9.5.1 Table 9.3: key references.
KEY_PIN1: Final = 0x01
KEY_PIN2: Final = 0x81
KEY_ADM1: Final = 0x0A
KEY_NAMES: Final = {KEY_PIN1: "PIN1", KEY_PIN2: "PIN2", KEY_ADM1: "ADM1"}
# TS 102 221 §9.5.1: a PIN block is 8 bytes, ASCII digits padded with FF.
# Below this many tries left, no value is presented (one wrong try would block the key).
TRIES_MIN: Final = 2
# TS 102 221 §10.2.1.5: 63CX verification failed / X tries left; 6983 blocked; 6985 conditions (ENABLE of an enabled PIN).
SW_OK: Final = 0x9000
SW_TRIES_MASK: Final = 0xFFF0
SW_TRIES: Final = 0x63C0
SW_BLOCKED: Final = 0x6983
SW_CONDITIONS: Final = 0x6985
# TS 102 221 §10.1.2: instruction bytes of the PIN commands.
INS_VERIFY: Final = 0x20
INS_DISABLE: Final = 0x26
INS_ENABLE: Final = 0x28
INS_UNBLOCK: Final = 0x2C
# TS 102 221 §13.2: EF.ICCID, 10 bytes, by path from the MF (P1 08, P2 0C: no data).
SELECT_ICCID: Final = bytes.fromhex("00A4080C022FE2")
READ_ICCID: Final = bytes.fromhex("00B000000A")
ICCID_BYTES: Final = 10
# An error text keeps the APDU readable; a longer one is cut (the journal bounds its records).
APDU_TEXT_MAX: Final = 600


class PersonalizationError(ProvisioningError):
    """A step failed on the card or in the backend: names the card, the step, the (masked) APDU and the status word.

    ``apdu`` is the masked C-APDU in hex (None when no command was at
    fault), ``sw`` the status word (None when the card did not refuse),
    ``meaning`` the status word's reading, ``field`` the registration field
    in conflict when the backend refused.
    """

    def __init__(
        self,
        iccid: str | None,
        step: str,
        message: str,
        *,
        apdu: str | None = None,
        sw: int | None = None,
        meaning: str | None = None,
        field: str | None = None,
    ) -> None:
        self.iccid = iccid
        self.step = step
        self.apdu = apdu
        self.sw = sw
        self.meaning = meaning if meaning is not None or sw is None else describe_sw(sw)
        self.field = field
        self.detail = message
        parts = [f"card {iccid or '(unknown)'}: step {step}: {message}"]
        if apdu is not None:
            parts.append(f"APDU {apdu}")
        if sw is not None:
            parts.append(f"SW {sw:04X} ({self.meaning})")
        super().__init__("; ".join(parts))

    @classmethod
    def from_backend(cls, iccid: str | None, step: str, exc: GatewayError) -> PersonalizationError:
        """The backend's refusal or failure as the step's error; a refusal names the field in conflict."""
        return cls(iccid, step, str(exc), field=exc.field if isinstance(exc, RequestError) else None)

    def to_json(self) -> dict[str, object]:
        return {
            "iccid": self.iccid,
            "step": self.step,
            "apdu": self.apdu,
            "sw": None if self.sw is None else f"{self.sw:04X}",
            "meaning": self.meaning,
        }


class WrongCardError(PersonalizationError):
    """The card in the reader is not the job's card (its EF.ICCID differs); nothing was written. ``found``: the card's ICCID."""

    def __init__(self, iccid: str, found: str) -> None:
        super().__init__(iccid, "identify", f"the card in the reader is {found}, not the job's {iccid}: nothing written")
        self.found = found


class TriesTooLowError(PersonalizationError):
    """A PIN, PUK or ADM key (or an issuer key) has fewer than 2 tries left: nothing was presented.

    ``key`` names the key (``ADM1``, ``PUK of PIN1`` …), ``tries_left`` its counter.
    """

    def __init__(self, iccid: str | None, step: str, key: str, tries_left: int, *, apdu: str | None, sw: int | None) -> None:
        super().__init__(
            iccid,
            step,
            f"{key} has {tries_left} tries left (at least {TRIES_MIN} needed): nothing presented",
            apdu=apdu,
            sw=sw,
        )
        self.key = key
        self.tries_left = tries_left


def _apdu_text(capdu: bytes) -> str:
    text = mask_command(capdu)
    return text if len(text) <= APDU_TEXT_MAX else text[:APDU_TEXT_MAX] + "…"


class CardIo:
    """One connection, the card it is expected to be and the step running; every exchange checked."""

    def __init__(self, connection: CardConnection, iccid: str | None, *, step: str = "identify") -> None:
        self.connection = connection
        self.iccid = iccid
        self.step = step

    def error(self, message: str, *, capdu: bytes | None = None, sw: int | None = None, meaning: str | None = None) -> PersonalizationError:
        return PersonalizationError(
            self.iccid, self.step, message, apdu=None if capdu is None else _apdu_text(capdu), sw=sw, meaning=meaning
        )

    def send(self, capdu: bytes, *, what: str, accept: Callable[[int], bool] | None = None) -> ResponseApdu:
        """Send ``capdu``; a status word that is not normal processing (or not ``accept``-ed) raises PersonalizationError."""
        response = self.connection.transmit(capdu)
        ok = accept(response.sw) if accept is not None else response.is_success()
        if not ok:
            raise self.error(f"{what} refused", capdu=capdu, sw=response.sw)
        return response


def pin_block(digits: str) -> bytes:
    """The TS 102 221 §9.5.1 block of a 4- to 8-digit value (ADM1 codes of 8 digits fill it exactly); ValueError otherwise."""
    if not digits.isascii():
        raise ValueError("a PIN, PUK or ADM code is 4 to 8 decimal digits")
    return encode_pin_block(digits.encode("ascii"))


def _tries_answer(sw: int) -> bool:
    return sw in (SW_OK, SW_BLOCKED) or sw & SW_TRIES_MASK == SW_TRIES


def query_tries(io: CardIo, reference: int) -> int | None:
    """VERIFY with no data (§11.1.9): the tries left, or None when the key is verified already (or disabled)."""
    capdu = bytes([0x00, INS_VERIFY, 0x00, reference])
    sw = io.send(capdu, what=f"VERIFY {KEY_NAMES.get(reference, hex(reference))} (tries query)", accept=_tries_answer).sw
    if sw == SW_OK:
        return None
    return 0 if sw == SW_BLOCKED else sw & 0x0F


def query_unblock_tries(io: CardIo, reference: int) -> int:
    """UNBLOCK PIN with no data (§11.1.13): the unblock key's tries left."""
    capdu = bytes([0x00, INS_UNBLOCK, 0x00, reference])
    sw = io.send(capdu, what=f"UNBLOCK {KEY_NAMES.get(reference, hex(reference))} (tries query)", accept=_tries_answer).sw
    return 0 if sw in (SW_BLOCKED, SW_OK) else sw & 0x0F


def verify(io: CardIo, reference: int, block: bytes) -> bool:
    """Present ``block`` for ``reference`` after the tries check; False when the key was verified already (nothing sent)."""
    name = KEY_NAMES.get(reference, f"key {reference:02X}")
    query = bytes([0x00, INS_VERIFY, 0x00, reference])
    tries = query_tries(io, reference)
    if tries is None:
        return False
    if tries < TRIES_MIN:
        raise TriesTooLowError(io.iccid, io.step, name, tries, apdu=_apdu_text(query), sw=SW_TRIES | tries)
    capdu = bytes([0x00, INS_VERIFY, 0x00, reference, PIN_BLOCK_LENGTH]) + block
    io.send(capdu, what=f"VERIFY {name}")
    log.debug("card %s: %s verified", io.iccid, name)
    return True


def unblock(io: CardIo, reference: int, puk_block: bytes, new_block: bytes) -> None:
    """UNBLOCK PIN (§11.1.13) with the PUK, setting ``new_block``; the PUK counter is checked first."""
    name = f"PUK of {KEY_NAMES.get(reference, f'key {reference:02X}')}"
    tries = query_unblock_tries(io, reference)
    if tries < TRIES_MIN:
        raise TriesTooLowError(
            io.iccid, io.step, name, tries, apdu=_apdu_text(bytes([0x00, INS_UNBLOCK, 0x00, reference])), sw=SW_TRIES | tries
        )
    capdu = bytes([0x00, INS_UNBLOCK, 0x00, reference, 2 * PIN_BLOCK_LENGTH]) + puk_block + new_block
    io.send(capdu, what=f"UNBLOCK {KEY_NAMES.get(reference, hex(reference))}")


def set_enabled(io: CardIo, reference: int, block: bytes, enabled: bool) -> bool:
    """ENABLE or DISABLE PIN (§11.1.11-12) proven with ``block``; False when it was in that state already (6985).

    Called right after :func:`unblock` set ``block``, which reset the PIN's
    counter to its maximum (§11.1.13): the tries check is met.
    """
    ins = INS_ENABLE if enabled else INS_DISABLE
    capdu = bytes([0x00, ins, 0x00, reference, PIN_BLOCK_LENGTH]) + block
    what = f"{'ENABLE' if enabled else 'DISABLE'} {KEY_NAMES.get(reference, hex(reference))}"
    sw = io.send(capdu, what=what, accept=lambda sw: sw in (SW_OK, SW_CONDITIONS)).sw
    return sw == SW_OK


def read_iccid_with(io: CardIo) -> str:
    """SELECT EF.ICCID by path from the MF, READ BINARY its 10 bytes, decode (TS 102 221 §13.2)."""
    io.send(SELECT_ICCID, what="SELECT EF.ICCID")
    response = io.send(READ_ICCID, what="READ BINARY EF.ICCID")
    try:
        if len(response.data) != ICCID_BYTES:
            raise CodecError(f"EF.ICCID read back {len(response.data)} bytes, not {ICCID_BYTES}")
        return Iccid.from_bytes(response.data).iccid
    except CodecError as exc:
        raise io.error(f"EF.ICCID does not hold an ICCID: {exc}", capdu=READ_ICCID) from exc
