"""The issuer security domain (ISD) of the virtual UICC: SCP03, key sets, and card content management.

Spec: GP Card Specification v2.3 §7 (Security Domains), §11.9.3.1 (SELECT
response: Security Domain FCI), §11.3 (GET DATA), §11.8 (PUT KEY), §11.5
(INSTALL), §11.11 (STORE DATA), §11.4 (GET STATUS), §11.10 (SET STATUS),
§11.2 (DELETE); Amendment D (SCP03: INITIALIZE UPDATE, EXTERNAL
AUTHENTICATE, secure messaging, the DEK).

Theory of operation
-------------------
The ISD keeps its key sets by KVN (the first is the default that
INITIALIZE UPDATE with KVN 00 picks) and one sequence counter for the whole
security domain. Each INITIALIZE UPDATE starts a new
:class:`~simwallet.applet.protocols.scp03.Scp03Card` for the key set asked
for, from the current counter, and the counter it leaves is persisted: one
counter for all key sets means a card challenge never repeats, even when a
key set is replaced by the same keys. Every other command passes through
the session's ``unwrap_command`` and its answer through ``wrap_response``,
so secure messaging is checked before the command is looked at.

Access: GET DATA (CPLC, key information, card data, IIN, CIN, sequence
counter, KDD) is answered outside a secure channel, as cards do, and inside
one when it comes wrapped. PUT KEY, INSTALL, STORE DATA, GET STATUS,
SET STATUS and DELETE need an authenticated session (every SCP03 level
includes C-MAC); outside one they answer 6982. LOAD answers 6A81: the
card's modules are pre-loaded in ROM.

The key diversification data is the card's ICCID as stored in EF.ICCID
(10 bytes), so the backend derives the keys with
:func:`~simwallet.applet.protocols.scp03.card_keys` from the ICCID alone.
Keys are in :meth:`export_state` (the card image is the card's memory) and
nowhere else: not in ``repr``, messages or logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NoReturn

from simwallet.applet.card.app import CardServices
from simwallet.applet.card.isd_spec import (
    IDENTIFIER_MAX,
    KEY_SETS_MAX,
    KVN_REPLACEABLE_MAX,
    IsdSpec,
    IsdSpecError,
    IsdState,
    LoadFileSpec,
    hex_field,
    int_field,
)
from simwallet.applet.errors import AppletError, CardStatusError, CodecError, SecureChannelError
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.applet.protocols.gp import (
    INSTALL_UNSUPPORTED_BITS,
    KEY_TYPE_AES,
    SW_MORE_DATA,
    CardLifeCycle,
    CardRecognitionData,
    DataTag,
    DeleteCommand,
    GetStatusCommand,
    GpIns,
    InstallCommand,
    InstallFor,
    KeyInformation,
    RegistryData,
    SecurityDomainFci,
    SetStatusCommand,
    StatusScope,
    StatusType,
    StoreDataP1,
    StoreDataStructure,
    build_cplc,
    build_key_information,
    data_object,
    sensitive_decryptor,
)
from simwallet.applet.protocols.scp03 import (
    KDD_LENGTH,
    PLAIN_RESPONSE_MAX_ENC,
    PLAIN_RESPONSE_MAX_MAC,
    SEQUENCE_COUNTER_LENGTH,
    SEQUENCE_COUNTER_MAX,
    SHORT_RESPONSE_DATA_MAX,
    ChallengeRng,
    Scp03Card,
    ScpOption,
    SecurityLevel,
    StaticKeys,
    parse_put_key_data,
    put_key_response,
)
from simwallet.applet.protocols.tlv import parse_tlvs

if TYPE_CHECKING:
    from simwallet.applet.card.registry import GpRegistry, Personalizable

__all__ = ["KEY_SETS_MAX", "IsdSpec", "IsdSpecError", "IsdState", "IssuerSecurityDomain", "LoadFileSpec", "hex_field", "int_field"]

# PUT KEY P2 = 81: several keys, the first with identifier 1 (what put_key_command sends).
PUT_KEY_P2: Final = 0x81
# Amendment D: Key-ENC, Key-MAC, Key-DEK are key identifiers 1, 2, 3 of a key set.
_KEY_IDS: Final = (1, 2, 3)

# ISO/IEC 7816-4 §5.1.3 and GP CS v2.3 §11: status words the ISD answers.
SW_OK: Final = 0x9000
SW_WRONG_LENGTH: Final = 0x6700
SW_SECURITY_STATUS_NOT_SATISFIED: Final = 0x6982
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
SW_INCORRECT_DATA: Final = 0x6A80
SW_FUNCTION_NOT_SUPPORTED: Final = 0x6A81  # LOAD (modules are pre-loaded); content changes while CARD_LOCKED
SW_NOT_ENOUGH_MEMORY: Final = 0x6A84
SW_INCORRECT_P1P2: Final = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND: Final = 0x6A88
SW_INS_NOT_SUPPORTED: Final = 0x6D00
SW_CLA_NOT_SUPPORTED: Final = 0x6E00
SW_TECHNICAL_PROBLEM: Final = 0x6F00
# GP CS v2.3 §11.5.3 / §11.2.3: INSTALL and DELETE answer one byte 00 (no receipt).
_NO_RECEIPT: Final = b"\x00"


def _refuse(sw: int, meaning: str | None = None) -> NoReturn:
    raise CardStatusError(sw, meaning)


def _secure_messaging(cla: int) -> bool:
    # ISO/IEC 7816-4 §5.4.1 (and GP CS v2.3 §11.1.3): channels 0..3 flag secure
    # messaging in b3, channels 4..19 in b6; 001x xxxx classes and FF have no such bit.
    if cla == 0xFF or cla & 0x60 == 0x20:
        return False
    return bool(cla & (0x20 if cla & 0x40 else 0x04))


class IssuerSecurityDomain:
    """The ISD as an :class:`~simwallet.applet.card.app.Application`; created by :class:`~simwallet.applet.card.registry.GpRegistry`."""

    def __init__(
        self,
        spec: IsdSpec,
        registry: GpRegistry,
        initial_keys: StaticKeys,
        state: Mapping[str, Any] | None = None,
        *,
        challenge_rng: ChallengeRng | None = None,
    ) -> None:
        if challenge_rng is None and not spec.scp_i & ScpOption.PSEUDO_RANDOM_CHALLENGE:
            raise IsdSpecError("scp_i", "random card challenges (i without 10) need a challenge_rng")
        self._spec = spec
        self._registry = registry
        self._challenge_rng = challenge_rng
        self._key_sets: dict[int, StaticKeys] = {initial_keys.kvn: initial_keys}
        self._sequence_counter = 0
        self._iin, self._cin = spec.iin, spec.cin
        if state is not None:
            saved = IsdState.from_mapping(state)
            self._key_sets, self._sequence_counter = {keys.kvn: keys for keys in saved.key_sets}, saved.sequence_counter
            self._iin = saved.iin if saved.iin is not None else self._iin
            self._cin = saved.cin if saved.cin is not None else self._cin
        self._kdd: bytes | None = None
        self._scp: Scp03Card | None = None
        self._session_keys: StaticKeys | None = None
        self._store_target: Personalizable | None = None
        self._next_block = 0
        self._pending_status: tuple[StatusScope, list[RegistryData]] | None = None

    def __repr__(self) -> str:
        kvns = ",".join(f"{kvn:02X}" for kvn in self._key_sets)
        return f"IssuerSecurityDomain(aid={self.aid.hex().upper()}, kvns=[{kvns}], sequence_counter={self._sequence_counter})"

    __str__ = __repr__

    @property
    def aid(self) -> bytes:
        return self._spec.isd_aid

    @property
    def key_versions(self) -> tuple[int, ...]:
        """The KVNs of the key sets, the default first."""
        return tuple(self._key_sets)

    @property
    def sequence_counter(self) -> int:
        return self._sequence_counter

    def attach(self, services: CardServices) -> None:
        kdd = services.iccid
        if len(kdd) != KDD_LENGTH:
            raise IsdSpecError("iccid", f"the ICCID serves as the {KDD_LENGTH}-byte KDD, not {len(kdd)} bytes")
        self._kdd = kdd

    # -- state --

    def export_state(self) -> dict[str, Any]:
        """Key sets (keys included: the card image is the card's memory), sequence counter, IIN, CIN."""
        return IsdState(tuple(self._key_sets.values()), self._sequence_counter, self._iin, self._cin).to_mapping()

    # -- Application --

    def select(self, command: CommandApdu) -> ResponseApdu:
        """GP CS v2.3 §11.9.3.1: the Security Domain FCI; selecting the ISD ends any secure channel session."""
        self._end_session()
        management = CardRecognitionData(scp=0x03, scp_i=self._spec.scp_i)
        return ResponseApdu(SecurityDomainFci(self.aid, management).to_bytes(), SW_OK)

    def deselect(self) -> None:
        self._end_session()

    def power_off(self) -> None:
        self._end_session()

    def _end_session(self) -> None:
        self._scp = None
        self._session_keys = None
        self._store_target = None
        self._next_block = 0
        self._pending_status = None

    def process(self, command: CommandApdu) -> ResponseApdu:
        if self._kdd is None:
            raise RuntimeError("the ISD's registry was not attached to the card")
        if command.ins == GpIns.INITIALIZE_UPDATE:
            return self._initialize_update(command, self._kdd)
        scp = self._scp
        if command.ins == GpIns.EXTERNAL_AUTHENTICATE:
            if scp is None:
                return ResponseApdu.status(SW_CONDITIONS_NOT_SATISFIED)
            return ResponseApdu.from_bytes(scp.process_external_authenticate(command.to_bytes()))
        if scp is not None:
            return self._process_in_session(scp, command)
        if _secure_messaging(command.cla):
            return ResponseApdu.status(SW_SECURITY_STATUS_NOT_SATISFIED)
        return self._dispatch(command, authenticated=False)

    def _process_in_session(self, scp: Scp03Card, command: CommandApdu) -> ResponseApdu:
        # Secure messaging is verified (and stripped) before the command is looked at.
        try:
            plain = CommandApdu.from_bytes(scp.unwrap_command(command.to_bytes()))
        except SecureChannelError as exc:
            self._session_keys = None
            return ResponseApdu.status(exc.sw)
        response = self._dispatch(plain, authenticated=scp.security_level is not None)
        try:
            return ResponseApdu.from_bytes(scp.wrap_response(response.to_bytes()))
        except CodecError:  # response data too long for the security level: a bug here, not the host's
            return ResponseApdu.from_bytes(scp.wrap_response(SW_TECHNICAL_PROBLEM.to_bytes(2, "big")))

    # -- SCP03 --

    def _initialize_update(self, command: CommandApdu, kdd: bytes) -> ResponseApdu:
        if self._registry.card_life_cycle is CardLifeCycle.TERMINATED:
            return ResponseApdu.status(SW_FUNCTION_NOT_SUPPORTED)
        default = next(iter(self._key_sets.values()))
        # An unknown KVN goes to the default key set, which refuses it with 6A88.
        keys = self._key_sets.get(command.p1, default)
        scp = Scp03Card(
            keys,
            kdd=kdd,
            aid=self.aid,
            i_param=self._spec.scp_i,
            sequence_counter=self._sequence_counter,
            challenge_rng=self._challenge_rng,
        )
        self._end_session()
        self._scp, self._session_keys = scp, keys
        response = ResponseApdu.from_bytes(scp.process_initialize_update(command.to_bytes()))
        if scp.sequence_counter != self._sequence_counter:
            self._sequence_counter = scp.sequence_counter
            self._registry.persist()
        return response

    def _response_limit(self) -> int:
        level = self._scp.security_level if self._scp is not None else None
        if level is not None and SecurityLevel.R_ENCRYPTION in level:
            return PLAIN_RESPONSE_MAX_ENC
        if level is not None and SecurityLevel.R_MAC in level:
            return PLAIN_RESPONSE_MAX_MAC
        return SHORT_RESPONSE_DATA_MAX

    def _dek(self) -> bytes:
        if self._session_keys is None:  # pragma: no cover - authenticated commands have a session
            _refuse(SW_SECURITY_STATUS_NOT_SATISFIED)
        return self._session_keys.dek

    # -- dispatch: each handler answers, or raises CardStatusError with the status word --

    def _dispatch(self, command: CommandApdu, *, authenticated: bool) -> ResponseApdu:
        try:
            handler = _HANDLERS.get(command.ins)
            if handler is None:
                _refuse(SW_INS_NOT_SUPPORTED)
            if not command.cla & 0x80 and command.ins != GpIns.GET_DATA:
                _refuse(SW_CLA_NOT_SUPPORTED)
            life_cycle = self._registry.card_life_cycle
            if life_cycle is CardLifeCycle.TERMINATED and command.ins != GpIns.GET_DATA:
                _refuse(SW_FUNCTION_NOT_SUPPORTED, "the card is TERMINATED")
            if life_cycle is CardLifeCycle.CARD_LOCKED and command.ins in _LOCKED_CARD_REFUSES:
                _refuse(SW_FUNCTION_NOT_SUPPORTED, "the card is CARD_LOCKED")
            if command.ins not in _WITHOUT_AUTHENTICATION and not authenticated:
                _refuse(SW_SECURITY_STATUS_NOT_SATISFIED)
            return handler(self, command)
        except CardStatusError as exc:
            return ResponseApdu.status(exc.sw)

    def _get_data(self, command: CommandApdu) -> ResponseApdu:
        if command.data:
            _refuse(SW_WRONG_LENGTH)
        tag = command.p1 << 8 | command.p2
        kdd = self._kdd or b""
        if tag == DataTag.CPLC:
            data = build_cplc(self._spec.cplc)
        elif tag == DataTag.KEY_INFORMATION:
            keys = tuple(
                KeyInformation(key_id, keys.kvn, ((KEY_TYPE_AES, len(key)),))
                for keys in self._key_sets.values()
                for key_id, key in zip(_KEY_IDS, (keys.enc, keys.mac, keys.dek), strict=True)
            )
            data = build_key_information(keys)
        elif tag == DataTag.CARD_DATA:
            data = CardRecognitionData(scp=0x03, scp_i=self._spec.scp_i).to_bytes()
        elif tag == DataTag.SEQUENCE_COUNTER:
            counter = min(self._sequence_counter, SEQUENCE_COUNTER_MAX)
            data = data_object(DataTag.SEQUENCE_COUNTER, counter.to_bytes(SEQUENCE_COUNTER_LENGTH, "big"))
        elif tag == DataTag.KEY_DIVERSIFICATION_DATA:
            data = data_object(DataTag.KEY_DIVERSIFICATION_DATA, kdd)
        elif tag == DataTag.IIN and self._iin is not None:
            data = data_object(DataTag.IIN, self._iin)
        elif tag == DataTag.CIN:
            data = data_object(DataTag.CIN, kdd if self._cin is None else self._cin)
        else:
            _refuse(SW_REFERENCED_DATA_NOT_FOUND)
        return ResponseApdu(data, SW_OK)

    def _put_key(self, command: CommandApdu) -> ResponseApdu:
        # GP CS v2.3 §11.8: P1 = KVN replaced (00 adds a key set), P2 = 81; the response confirms KVN and KCVs.
        replaced = command.p1
        if replaced > KVN_REPLACEABLE_MAX or command.p2 != PUT_KEY_P2:
            _refuse(SW_INCORRECT_P1P2)
        try:
            new = parse_put_key_data(command.data, self._dek())
        except SecureChannelError as exc:  # a key check value that does not match its key: 9485
            _refuse(exc.sw)
        except CodecError:
            _refuse(SW_INCORRECT_DATA)
        if replaced and replaced not in self._key_sets:
            _refuse(SW_REFERENCED_DATA_NOT_FOUND, "no key set to replace")
        if new.kvn in self._key_sets and new.kvn != replaced:
            _refuse(SW_INCORRECT_DATA, "that KVN is taken")
        if not replaced and len(self._key_sets) >= KEY_SETS_MAX:
            _refuse(SW_NOT_ENOUGH_MEMORY)
        if replaced:
            # The new set takes the old one's place, so a replaced default stays the default.
            self._key_sets = {
                (new.kvn if kvn == replaced else kvn): (new if kvn == replaced else keys) for kvn, keys in self._key_sets.items()
            }
        else:
            self._key_sets[new.kvn] = new
        self._registry.persist()
        return ResponseApdu(put_key_response(new), SW_OK)

    def _install(self, command: CommandApdu) -> ResponseApdu:
        if command.p1 & INSTALL_UNSUPPORTED_BITS:
            _refuse(SW_FUNCTION_NOT_SUPPORTED, "no LOAD, extradition or registry update: the modules are pre-loaded in ROM")
        if command.p1 & 0x7F not in set(InstallFor) or command.p2 != 0:
            _refuse(SW_INCORRECT_P1P2)
        try:
            install = InstallCommand.from_fields(command.p1, command.p2, command.data)
        except CodecError:
            _refuse(SW_INCORRECT_DATA)
        if install.kind is InstallFor.PERSONALIZATION:
            self._store_target = self._registry.personalization_target(install.application_aid)
            self._next_block = 0
        elif install.kind is InstallFor.MAKE_SELECTABLE:
            self._registry.make_selectable(install)
        else:
            self._registry.install(install)
        return ResponseApdu(_NO_RECEIPT, SW_OK)

    def _load(self, command: CommandApdu) -> ResponseApdu:
        # GP CS v2.3 §11.6: LOAD is not offered; the executable modules are pre-loaded in ROM.
        _refuse(SW_FUNCTION_NOT_SUPPORTED, "LOAD is not supported: the executable modules are pre-loaded in ROM")

    def _store_data(self, command: CommandApdu) -> ResponseApdu:
        # GP CS v2.3 §11.11: blocks numbered from 00 in P2; a wrong number is refused and the sequence stays.
        try:
            p1 = StoreDataP1.from_byte(command.p1)
        except CodecError:
            _refuse(SW_INCORRECT_P1P2)
        if command.p2 != self._next_block:
            _refuse(SW_INCORRECT_P1P2, f"block {self._next_block:02X} is expected")
        if not command.data:
            _refuse(SW_WRONG_LENGTH)
        target = self._store_target
        try:
            if target is None:
                response = self._store_own_data(p1, command.data)
            else:
                response = target.store_data(command.p1, command.p2, command.data, sensitive_decryptor(self._dek()))
        except CardStatusError:
            raise
        except CodecError:
            _refuse(SW_INCORRECT_DATA)
        except AppletError:
            _refuse(SW_TECHNICAL_PROBLEM)
        if len(response) > self._response_limit():
            _refuse(SW_TECHNICAL_PROBLEM, "the application answered more than the secure channel can carry")
        if p1.last:
            self._store_target, self._next_block = None, 0
        else:
            self._next_block += 1
        self._registry.persist()
        return ResponseApdu(response, SW_OK)

    def _store_own_data(self, p1: StoreDataP1, data: bytes) -> bytes:
        # GP CS v2.3 §11.11 without INSTALL [for personalization]: the ISD's own data, BER-TLV IIN (42) and CIN (45).
        if p1.structure is StoreDataStructure.DGI:
            _refuse(SW_INCORRECT_DATA, "the ISD takes its own data as BER-TLV")
        updates: dict[int, bytes] = {}
        for tlv in parse_tlvs(data):
            if tlv.tag not in (DataTag.IIN, DataTag.CIN) or not 0 < len(tlv.value) <= IDENTIFIER_MAX:
                _refuse(SW_INCORRECT_DATA, "the ISD stores only IIN (42) and CIN (45)")
            updates[tlv.tag] = tlv.value
        self._iin = updates.get(DataTag.IIN, self._iin)
        self._cin = updates.get(DataTag.CIN, self._cin)
        return b""

    def _get_status(self, command: CommandApdu) -> ResponseApdu:
        # GP CS v2.3 §11.4: as many E3 templates as fit, then 6310 and the rest to GET STATUS [next].
        if command.p1 not in set(StatusScope) or command.p2 not in (0x02, 0x03):
            _refuse(SW_INCORRECT_P1P2, "only the TLV format (P2 02, 03) is supported")
        try:
            request = GetStatusCommand.from_fields(command.p1, command.p2, command.data)
        except CodecError:
            _refuse(SW_INCORRECT_DATA)
        if request.next_occurrence:
            if self._pending_status is None or self._pending_status[0] is not request.scope:
                _refuse(SW_REFERENCED_DATA_NOT_FOUND, "no GET STATUS to continue")
            entries = self._pending_status[1]
        else:
            self._pending_status = None
            registry = self._registry.registry_data(request.scope)
            entries = [entry.restricted(request.tag_list) for entry in registry if entry.aid.startswith(request.aid_prefix)]
            if not entries:
                _refuse(SW_REFERENCED_DATA_NOT_FOUND)
        out, limit, count = b"", self._response_limit(), 0
        for entry in entries:
            encoded = entry.to_bytes()
            if len(out) + len(encoded) > limit:
                break
            out += encoded
            count += 1
        rest = entries[count:]
        self._pending_status = (request.scope, rest) if rest else None
        return ResponseApdu(out, SW_MORE_DATA if rest else SW_OK)

    def _set_status(self, command: CommandApdu) -> ResponseApdu:
        if command.p1 not in set(StatusType):
            _refuse(SW_INCORRECT_P1P2)
        try:
            request = SetStatusCommand.from_fields(command.p1, command.p2, command.data)
        except CodecError:
            _refuse(SW_INCORRECT_DATA)
        if request.status_type is StatusType.ISSUER_SECURITY_DOMAIN:
            if request.aid not in (b"", self.aid):
                _refuse(SW_INCORRECT_DATA)
            self._registry.set_card_life_cycle(request.state)
        elif request.status_type is StatusType.APPLICATION:
            self._registry.set_application_status(request.aid, request.state)
        else:
            self._registry.set_security_domain_status(request.aid)
        return ResponseApdu.status(SW_OK)

    def _delete(self, command: CommandApdu) -> ResponseApdu:
        if command.p1 != 0 or command.p2 not in (0x00, 0x80):
            _refuse(SW_INCORRECT_P1P2)
        try:
            request = DeleteCommand.from_fields(command.p1, command.p2, command.data)
        except CodecError:
            _refuse(SW_INCORRECT_DATA)
        deleted = self._registry.delete(request)
        if self._store_target is not None and id(deleted.app) == id(self._store_target):
            self._store_target, self._next_block = None, 0
        return ResponseApdu(_NO_RECEIPT, SW_OK)


_Handler = Callable[[IssuerSecurityDomain, CommandApdu], ResponseApdu]
_HANDLERS: Final[Mapping[int, _Handler]] = MappingProxyType(
    {
        GpIns.GET_DATA: IssuerSecurityDomain._get_data,
        GpIns.PUT_KEY: IssuerSecurityDomain._put_key,
        GpIns.INSTALL: IssuerSecurityDomain._install,
        GpIns.LOAD: IssuerSecurityDomain._load,
        GpIns.STORE_DATA: IssuerSecurityDomain._store_data,
        GpIns.GET_STATUS: IssuerSecurityDomain._get_status,
        GpIns.SET_STATUS: IssuerSecurityDomain._set_status,
        GpIns.DELETE: IssuerSecurityDomain._delete,
    }
)
# GET DATA is answered outside a secure channel (cards answer CPLC and key information to anyone);
# LOAD is refused the same way inside and outside one.
_WITHOUT_AUTHENTICATION: Final = frozenset({GpIns.GET_DATA, GpIns.LOAD})
# GP CS v2.3 §5.1.1.4: a CARD_LOCKED card changes no content.
_LOCKED_CARD_REFUSES: Final = frozenset({GpIns.INSTALL, GpIns.STORE_DATA, GpIns.DELETE})
