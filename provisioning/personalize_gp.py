"""The issuer security domain during personalization: key information, the SCP03 channel, and the GP commands sent through it.

Spec: GlobalPlatform Card Specification v2.3 §11.3 (GET DATA: the Key
Information Template ``E0`` and CPLC ``9F7F``, answered without
authentication), §11.4 (GET STATUS), §11.5 (INSTALL), §11.8 (PUT KEY),
§11.11 (STORE DATA); Amendment D (SCP03: INITIALIZE UPDATE, EXTERNAL
AUTHENTICATE, secure messaging; status word 6300 "authentication of host
cryptogram failed").

Theory of operation
-------------------
:class:`IsdChannel` selects the ISD, reads which key sets it holds (GET DATA
``E0``: KVNs, key types and lengths, never key values), and opens an SCP03
session with :func:`~simwallet.applet.protocols.scp03.open_host_session` at
C-MAC + C-DECRYPTION, with R-MAC when the card's ``i`` offers it. Every GP
command then goes through :meth:`IsdChannel.send`: wrapped, sent, unwrapped
(the R-MAC checked), its status word checked. The optional ``trace`` sees the
*plain* side of each secured exchange, masked like the wire trace
(:mod:`simwallet.provisioning.trace`): the wire only shows ciphertext.

Authentication failures, and why nothing is retried: the host checks the
card cryptogram of the INITIALIZE UPDATE answer before it sends EXTERNAL
AUTHENTICATE. A cryptogram that does not verify means the key store's key set
is not the card's; it is reported as status word 6300 (the SCP03
"authentication failed" word) and the session ends there, so the card never
sees a failed EXTERNAL AUTHENTICATE. A card that refuses EXTERNAL
AUTHENTICATE answers 6300 itself. Either way the step fails naming 6300 and
is not retried: GlobalPlatform lets an ISD count failed authentications and
lock itself, so blind retries could brick the card. The virtual card's ISD
(:mod:`simwallet.applet.card.isd`) keeps no such counter and exposes none;
GP defines no command that reads one, so there is no "issuer key tries left"
to check before authenticating: the check is the cryptogram, before the card
counts anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Final

from simwallet.applet.errors import CardStatusError, CodecError, SecureChannelError, SessionStateError
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.applet.protocols.gp import (
    SW_MORE_DATA,
    DataTag,
    KeyInformation,
    RegistryData,
    StatusScope,
    get_data_command,
    get_status_command,
    parse_get_status,
    parse_key_information,
)
from simwallet.applet.protocols.scp03 import (
    SW_AUTHENTICATION_FAILED,
    Scp03Host,
    ScpOption,
    SecurityLevel,
    StaticKeys,
    open_host_session,
    put_key_command,
    verify_put_key_response,
)
from simwallet.gateway.diversify import card_scp03_keys
from simwallet.gateway.errors import GatewayError
from simwallet.gateway.keystore import KeyStore
from simwallet.provisioning.personalize_card import CardIo
from simwallet.provisioning.reader import Trace
from simwallet.provisioning.trace import mask_command, mask_response

# Amendment D: C-MAC and C-DECRYPTION always (keys and PINs travel); R-MAC when the card offers it.
SECURITY_LEVEL: Final = SecurityLevel.C_MAC | SecurityLevel.C_DECRYPTION
SECURITY_LEVEL_RMAC: Final = SECURITY_LEVEL | SecurityLevel.R_MAC
# TS 102 225 §5.1.2-5.1.3: the key index in KIc/KID b8-b5 is 1..15; an OTA key set takes that KVN in the ISD,
# so the ISD's own (SCP03) key sets are the others.
OTA_KVN_MIN: Final = 0x01
OTA_KVN_MAX: Final = 0x0F
# GP CS v2.3 §11.4: GET STATUS continues with 6310; a registry answers in a few rounds at most.
GET_STATUS_ROUNDS_MAX: Final = 16
# ISO/IEC 7816-4 §5.1: short Le 00 asks for up to 256 bytes.
LE_SHORT_ALL: Final = 256
SW_OK: Final = 0x9000
SW_NOT_FOUND: Final = 0x6A88
# ISO/IEC 7816-4 §7.1.1 / GP CS v2.3 §11.9: SELECT by AID, first occurrence, FCI returned (Le 00: one exchange on T=1 and vpcd).
_SELECT_BY_AID: Final = bytes([0x00, 0xA4, 0x04, 0x00])

Rng = Callable[[int], bytes]


def _with_le(capdu: bytes) -> bytes:
    """``capdu`` with Le 00 when it has none: under R-MAC every answer carries data (the MAC), which a command
    without Le would leave to a GET RESPONSE (TS 102 221 §7.3.1.1.4) — one more exchange per command."""
    command = CommandApdu.from_bytes(capdu)
    if command.le is not None:
        return capdu
    return dataclasses.replace(command, le=LE_SHORT_ALL).to_bytes()


def kvns(infos: Iterable[KeyInformation]) -> tuple[int, ...]:
    """The distinct key version numbers in key information, in the card's order."""
    seen: list[int] = []
    for info in infos:
        if info.kvn not in seen:
            seen.append(info.kvn)
    return tuple(seen)


class IsdChannel:
    """The ISD of the card on ``io``: selection, key information, one SCP03 session at a time."""

    def __init__(self, io: CardIo, isd_aid: bytes, *, rng: Rng, trace: Trace | None = None) -> None:
        self.io = io
        self.isd_aid = isd_aid
        self._rng = rng
        self._trace = trace
        self._host: Scp03Host | None = None
        self._keys: StaticKeys | None = None
        self._rmac = False
        self.selected = False

    def __repr__(self) -> str:
        return f"IsdChannel(aid={self.isd_aid.hex().upper()}, open={self._host is not None})"

    @property
    def is_open(self) -> bool:
        return self._host is not None

    @property
    def kvn(self) -> int | None:
        """The KVN of the key set the open session authenticated with."""
        return None if self._keys is None else self._keys.kvn

    @property
    def dek(self) -> bytes:
        """The static Key-DEK of the open session's key set (PUT KEY and sensitive STORE DATA are encrypted with it)."""
        if self._keys is None:
            raise SessionStateError("no SCP03 session is open")
        return self._keys.dek

    def select(self) -> None:
        capdu = _SELECT_BY_AID + bytes([len(self.isd_aid)]) + self.isd_aid + b"\x00"
        self.io.send(capdu, what="SELECT ISD")
        self.selected = True
        self._host, self._keys = None, None

    def key_information(self) -> tuple[KeyInformation, ...]:
        """GET DATA E0 (GP CS v2.3 §11.3.3.1): the ISD's keys, answered without authentication."""
        if not self.selected:
            self.select()
        capdu = get_data_command(DataTag.KEY_INFORMATION)
        response = self.io.send(capdu, what="GET DATA key information")
        try:
            return parse_key_information(response.data)
        except CodecError as exc:
            raise self.io.error(f"the key information template does not decode: {exc}", capdu=capdu, sw=response.sw) from exc

    def open(self, keys: StaticKeys) -> None:
        """INITIALIZE UPDATE and EXTERNAL AUTHENTICATE with ``keys`` (the card's key set ``keys.kvn``)."""
        if not self.selected:
            self.select()
        self._host, self._keys = None, None
        host, capdu = open_host_session(keys, rng=self._rng, kvn=keys.kvn)
        response = self.io.send(capdu, what=f"key set {keys.kvn:#04x}: INITIALIZE UPDATE")
        try:
            card = host.receive_initialize_update(response.to_bytes())
        except SecureChannelError as exc:
            raise self.io.error(
                f"authentication failed: the card cryptogram does not verify with the key store's scp03 key set {keys.kvn:#04x}"
                " (wrong issuer key); EXTERNAL AUTHENTICATE not sent",
                capdu=capdu,
                sw=SW_AUTHENTICATION_FAILED,
                meaning="authentication failed (card cryptogram)",
            ) from exc
        except (CardStatusError, CodecError) as exc:
            raise self.io.error(f"INITIALIZE UPDATE answer unusable: {exc}", capdu=capdu, sw=response.sw) from exc
        level = SECURITY_LEVEL_RMAC if card.i_param & ScpOption.R_MAC else SECURITY_LEVEL
        authenticate = host.external_authenticate(int(level))
        answer = self.io.connection.transmit(authenticate)
        try:
            host.receive_external_authenticate(answer.to_bytes())
        except (SecureChannelError, CardStatusError) as exc:
            raise self.io.error("authentication failed: the card refused the host cryptogram", capdu=authenticate, sw=answer.sw) from exc
        except CodecError as exc:
            raise self.io.error(f"EXTERNAL AUTHENTICATE answer unusable: {exc}", capdu=authenticate, sw=answer.sw) from exc
        self._host, self._keys = host, keys
        self._rmac = SecurityLevel.R_MAC in level

    def send(self, plain: bytes, *, what: str, accept: Callable[[int], bool] | None = None) -> ResponseApdu:
        """One GP command under secure messaging; the plain response, its status word checked."""
        host = self._host
        if host is None:
            raise SessionStateError("no SCP03 session is open")
        try:
            wrapped = host.wrap(_with_le(plain) if self._rmac else plain)
        except (CodecError, SessionStateError) as exc:
            raise self.io.error(f"{what}: cannot be sent under secure messaging: {exc}", capdu=plain) from exc
        answer = self.io.connection.transmit(wrapped)
        try:
            response = ResponseApdu.from_bytes(host.unwrap(answer.to_bytes()))
        except (SecureChannelError, CodecError) as exc:
            self._host = None
            raise self.io.error(f"{what}: the response fails secure messaging: {exc}", capdu=plain, sw=answer.sw) from exc
        if self._trace is not None:
            self._trace(mask_command(plain), mask_response(plain, response.to_bytes()))
        ok = accept(response.sw) if accept is not None else response.sw == SW_OK
        if not ok:
            raise self.io.error(f"{what} refused", capdu=plain, sw=response.sw)
        return response

    def put_key(self, new_keys: StaticKeys, *, replace_kvn: int, what: str) -> None:
        """PUT KEY (GP CS v2.3 §11.8) of an AES key set, encrypted with the session's DEK; the KCVs confirmed."""
        capdu = put_key_command(new_keys, self.dek, replace_kvn=replace_kvn)
        response = self.send(capdu, what=what)
        try:
            verify_put_key_response(response.data, new_keys)
        except SecureChannelError as exc:
            raise self.io.error(f"{what}: the card confirmed other key check values", capdu=capdu, sw=response.sw) from exc

    def registry(self, scope: StatusScope, aid_prefix: bytes = b"") -> list[RegistryData]:
        """GET STATUS (GP CS v2.3 §11.4) in TLV format, following 6310; an empty list when nothing matches (6A88)."""
        entries: list[RegistryData] = []
        more = False
        for _ in range(GET_STATUS_ROUNDS_MAX):
            capdu = get_status_command(scope, aid_prefix, next_occurrence=more)
            response = self.send(capdu, what="GET STATUS", accept=lambda sw: sw in (SW_OK, SW_MORE_DATA, SW_NOT_FOUND))
            if response.sw == SW_NOT_FOUND:
                return entries
            try:
                entries += parse_get_status(response.data)
            except CodecError as exc:
                raise self.io.error(f"GET STATUS answer does not decode: {exc}", capdu=capdu, sw=response.sw) from exc
            more = response.sw == SW_MORE_DATA
            if not more:
                return entries
        raise self.io.error(f"GET STATUS still has more data after {GET_STATUS_ROUNDS_MAX} rounds")


def is_ota_kvn(kvn: int) -> bool:
    return OTA_KVN_MIN <= kvn <= OTA_KVN_MAX


def open_issuer_channel(
    io: CardIo,
    isd_aid: bytes,
    keystore: KeyStore,
    iccid: str,
    *,
    preferred_kvn: int,
    rng: Rng,
    trace: Trace | None = None,
) -> tuple[IsdChannel, list[int]]:
    """Select the ISD, read its KVNs, open SCP03 with the card's issuer key set; the channel and the card's KVNs.

    The key set used is ``preferred_kvn`` when the card has it, else the
    first of the card's issuer key sets (KVN outside 01..0F) that the key
    store holds an ``scp03`` version of; its keys are diversified from that
    version by the ICCID.
    """
    isd = IsdChannel(io, isd_aid, rng=rng, trace=trace)
    card_kvns = list(kvns(isd.key_information()))
    issuer = [kvn for kvn in card_kvns if not is_ota_kvn(kvn)]
    if preferred_kvn in issuer:
        kvn = preferred_kvn
    else:
        known = [kvn for kvn in issuer if _has_scp03(keystore, kvn)]
        if not known:
            shown = ", ".join(f"{k:#04x}" for k in issuer) or "none"
            raise io.error(f"the card's ISD key sets ({shown}) are not versions of the key store's scp03 family")
        kvn = known[0]
    isd.open(card_scp03_keys(keystore.version("scp03", kvn).scp03_keys(), iccid))
    return isd, card_kvns


def _has_scp03(keystore: KeyStore, kvn: int) -> bool:
    try:
        keystore.version("scp03", kvn)
    except GatewayError:
        return False
    return True
