"""The STK wallet applet: a toolkit applet personalized by STORE DATA, talking to the backend in secured SMS.

Spec: GlobalPlatform Card Specification v2.3 §11.11 (STORE DATA through the
issuer security domain, P1 b7-b6 = 11 for the DEK-encrypted DGIs), ETSI
TS 102 223 (the proactive sessions of :mod:`.wallet_flows`; §7.1.1 / TS 31.111
§7.1.1.2 SMS-PP data download), ETSI TS 102 225 §5.1 (command packets: CC,
ciphering and a counter that must be higher, both ways) and §5.2 (the PoR),
3GPP TS 31.115 §4.2 (the packet in one short message, UDH IEI 70), 3GPP
TS 23.040 §9.2.2.2 (SMS-SUBMIT), TS 31.102 §4.2.1 (EF.LI).

Theory of operation
-------------------
Personalization (DGIs of :mod:`simwallet.applet.protocols.wallet_perso`) gives
the applet its service number, TAR, menu, PIN and key set. Until it has the
first four it offers no menu: a card leaves the service hall personalized,
and an entry that can only say "not activated" would take a line of the
handset's menu for nothing.

A request: the flow gathers the fields and checks the PIN (the try counter
is decremented and persisted before the comparison, and restored after a
right PIN: pulling the card mid-check costs a try, never gains one; at zero
the wallet is locked until the service hall sends DGI 0107). Then the
request counter is incremented and *persisted*, and only then is the command
packet wrapped with it and put in an SMS-SUBMIT to the service number, so a
counter never goes out twice, even across a crash. The SMS-SUBMIT is a
normal MO short message: TP-PID 00 (SME-to-SME; ``7F`` "(U)SIM data download"
means something only to a receiving MS, TS 23.040 §9.2.3.9), TP-DCS ``F6``
(8-bit data, class 2: the binary coding of TS 31.115 §4.2, so that both
directions carry the same shape), UDHI with the Command Packet Identifier
``70 00``; no status report, no validity period, TP-MR left to the ME.

An answer arrives as SMS-PP DOWNLOAD to the wallet's TAR. It is unwrapped
with the applet's keys against the last counter accepted *from the backend*
(kept apart from the applet's own sending counter) and a minimum security
level of CC, ciphering and "counter higher"; the new counter is persisted
before anything is shown. A forged, replayed or under-secured packet is
refused: nothing is displayed, ``refused`` counts it, and if the packet's SPI
asks for a PoR it carries the codec's status. The applet asks for no PoR on
its own requests (:data:`~simwallet.applet.protocols.wallet_messages.WALLET_SPI`):
the backend's answer is the acknowledgement.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, runtime_checkable

from simwallet.applet.card.app import AppState, CardServices
from simwallet.applet.card.toolkit import AppletMenu, Session, SmsPpResult, ToolkitContext
from simwallet.applet.card.wallet_flows import DEFAULT_MENU, DEFAULT_MENU_TITLES, UI_LANGUAGES, session, show_response
from simwallet.applet.errors import AppletError, CardStatusError, CodecError
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.applet.protocols.cat import Item
from simwallet.applet.protocols.efs import LanguageList
from simwallet.applet.protocols.gp import StoreDataEncryption, StoreDataP1, StoreDataStructure, is_sensitive_dgi, parse_dgis
from simwallet.applet.protocols.secured import (
    COUNTER_MAX,
    ChecksumType,
    CounterMode,
    KeySet,
    Kic,
    Kid,
    MinimumSecurityLevel,
    OtaSecurityError,
    PorMode,
    ResponseStatus,
    Spi,
    Tar,
    unwrap_command,
    wrap_command,
    wrap_response,
)
from simwallet.applet.protocols.sms import DCS_SIM_DATA_DOWNLOAD, PID_DEFAULT, RawIe, SmsDeliver, SmsSubmit, UserData, UserDataHeader
from simwallet.applet.protocols.sms_udh import IEI_CPI
from simwallet.applet.protocols.tlv import Tlv
from simwallet.applet.protocols.wallet_messages import (
    WALLET_SPI,
    MenuTexts,
    Operation,
    WalletDgis,
    WalletKeySet,
    WalletRequest,
    WalletResponse,
    parse_wallet_dgis,
    request_id_for,
    service_number_address,
)

# The proprietary (RID-less, ISO/IEC 7816-5 category F) AIDs of the wallet: load file, module, instance.
WALLET_LOAD_FILE_AID: Final = bytes.fromhex("F073696D77616C6C6574")
WALLET_MODULE_AID: Final = bytes.fromhex("F073696D77616C6C657401")
WALLET_INSTANCE_AID: Final = bytes.fromhex("F073696D77616C6C65740101")
# The version of the state layout export_state() writes.
STATE_VERSION: Final = 1
# TS 31.102 §4.2.1: EF.LI, the user's language preference, under ADF.USIM (path as the card type names it).
EF_LI_PATH: Final = "ADF.USIM/EF.LI"
# TS 102 225 / TS 102 226: the applet processes only packets with CC, ciphering and a counter that must be higher.
MINIMUM_SECURITY: Final = MinimumSecurityLevel(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER)
# ISO/IEC 7816-4 §5.1.3 status words the applet answers.
SW_OK: Final = 0x9000
SW_INS_NOT_SUPPORTED: Final = 0x6D00
SW_INCORRECT_DATA: Final = 0x6A80
_PIN_SALT_LABEL: Final = b"simwallet:wallet-pin"


@runtime_checkable
class FileReader(Protocol):
    """The card services that also read a file by path (what the wallet uses for EF.LI when the UICC offers it)."""

    def read_file(self, path: str) -> bytes: ...


@dataclass(frozen=True)
class PinCheck:
    ok: bool
    tries_left: int


@dataclass(frozen=True)
class WalletState:
    """Everything the applet keeps; ``repr`` shows no key and no PIN digest."""

    service_number: str | None = None
    tar: bytes | None = None
    languages: tuple[str, ...] = ()
    menu: tuple[tuple[int, Operation], ...] = ()
    texts: tuple[MenuTexts, ...] = ()
    pin_digest: bytes | None = None
    pin_try_limit: int = 3
    pin_tries_left: int = 3
    keys: WalletKeySet | None = None
    # The CNTR of the last request sent (the next one goes out above it).
    request_counter: int = 0
    # The last CNTR accepted from the backend.
    server_counter: int = 0
    # Responses refused: forged, replayed, under-secured or malformed.
    refused: int = 0

    def __repr__(self) -> str:
        return (
            f"WalletState(tar={self.tar.hex().upper() if self.tar else None}, personalized={self.keys is not None}, "
            f"tries={self.pin_tries_left}/{self.pin_try_limit}, counters={self.request_counter}/{self.server_counter}, "
            f"refused={self.refused})"
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "service_number": self.service_number,
            "tar": None if self.tar is None else self.tar.hex().upper(),
            "languages": list(self.languages),
            "menu": [[item_id, int(operation)] for item_id, operation in self.menu],
            "texts": [{"language": t.language, "title": t.title, "items": [list(i) for i in t.items]} for t in self.texts],
            "pin_digest": None if self.pin_digest is None else self.pin_digest.hex(),
            "pin_try_limit": self.pin_try_limit,
            "pin_tries_left": self.pin_tries_left,
            "keys": None if self.keys is None else self.keys.to_bytes().hex(),
            "request_counter": self.request_counter,
            "server_counter": self.server_counter,
            "refused": self.refused,
        }

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> WalletState:
        """Read back :meth:`to_mapping`; CodecError for a state this code did not write."""
        try:
            if m["version"] != STATE_VERSION:
                raise CodecError(f"wallet state version {m['version']!r} is not {STATE_VERSION}")
            texts = tuple(MenuTexts(t["language"], t["title"], tuple((int(i), str(x)) for i, x in t["items"])) for t in m["texts"])
            return cls(
                service_number=m["service_number"],
                tar=None if m["tar"] is None else bytes.fromhex(m["tar"]),
                languages=tuple(m["languages"]),
                menu=tuple((int(i), Operation(op)) for i, op in m["menu"]),
                texts=texts,
                pin_digest=None if m["pin_digest"] is None else bytes.fromhex(m["pin_digest"]),
                pin_try_limit=int(m["pin_try_limit"]),
                pin_tries_left=int(m["pin_tries_left"]),
                keys=None if m["keys"] is None else WalletKeySet.from_bytes(bytes.fromhex(m["keys"])),
                request_counter=int(m["request_counter"]),
                server_counter=int(m["server_counter"]),
                refused=int(m["refused"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecError(f"wallet state is garbled ({type(exc).__name__})") from None


class WalletApplet:
    """The wallet: an :class:`~simwallet.applet.card.app.Application`, a ``Personalizable`` and a toolkit applet."""

    def __init__(self, aid: bytes, services: CardServices, state: AppState | None = None) -> None:
        self._aid = aid
        self._services = services
        self._state = WalletState() if state is None else WalletState.from_mapping(state)
        self._staged: list[tuple[int, bytes]] = []
        self._revision = 0

    def __repr__(self) -> str:
        return f"WalletApplet(aid={self._aid.hex().upper()}, {self._state!r})"

    # -- inspection --

    @property
    def state(self) -> WalletState:
        return self._state

    @property
    def personalized(self) -> bool:
        s = self._state
        return None not in (s.service_number, s.tar, s.pin_digest, s.keys)

    @property
    def locked(self) -> bool:
        return self._state.pin_tries_left == 0

    # -- Application --

    @property
    def aid(self) -> bytes:
        return self._aid

    def select(self, command: CommandApdu) -> ResponseApdu:
        # ISO/IEC 7816-4 §5.3.3: an FCI template with the DF name; the applet has no APDU interface beyond it.
        return ResponseApdu(Tlv(0x6F, Tlv(0x84, self._aid).to_bytes()).to_bytes(), SW_OK)

    def deselect(self) -> None:
        pass

    def process(self, command: CommandApdu) -> ResponseApdu:
        return ResponseApdu.status(SW_INS_NOT_SUPPORTED)

    def power_off(self) -> None:
        self._staged = []

    def export_state(self) -> dict[str, Any]:
        return self._state.to_mapping()

    def _save(self, state: WalletState) -> None:
        self._state = state
        self._services.persist()

    # -- Personalizable --

    def store_data(self, p1: int, block_number: int, data: bytes, decrypt: Callable[[bytes], bytes]) -> bytes:
        flags = StoreDataP1.from_byte(p1)
        if flags.structure is not StoreDataStructure.DGI:
            raise CardStatusError(SW_INCORRECT_DATA, "the wallet takes its data as DGIs")
        if block_number == 0:
            self._staged = []
        block: list[tuple[int, bytes]] = []
        for dgi in parse_dgis(data):
            if is_sensitive_dgi(dgi.tag):
                if flags.encryption is not StoreDataEncryption.ENCRYPTED:
                    raise CardStatusError(SW_INCORRECT_DATA, f"DGI {dgi.tag:04X} must come encrypted")
                block.append((dgi.tag, decrypt(dgi.value)))
            else:
                block.append((dgi.tag, dgi.value))
        parse_wallet_dgis(block)  # refuse a bad block at once, not at the last one
        self._staged += block
        if flags.last:
            staged, self._staged = self._staged, []
            self._apply(parse_wallet_dgis(staged))
        return b""

    def _apply(self, dgis: WalletDgis) -> None:
        s = self._state
        limit = s.pin_try_limit if dgis.pin_try_limit is None else dgis.pin_try_limit
        tries = min(s.pin_tries_left, limit)
        if dgis.pin is not None or dgis.pin_reset:
            tries = limit
        texts = {t.language: t for t in s.texts} | {t.language: t for t in dgis.menu_texts}
        self._save(
            replace(
                s,
                service_number=dgis.service_number or s.service_number,
                tar=dgis.tar or s.tar,
                languages=dgis.languages or s.languages,
                menu=dgis.menu or s.menu,
                texts=tuple(texts.values()),
                pin_digest=s.pin_digest if dgis.pin is None else self._digest(dgis.pin),
                pin_try_limit=limit,
                pin_tries_left=tries,
                keys=dgis.keys or s.keys,
                # A counter never moves back: a re-personalization cannot make the card reuse one.
                request_counter=max(s.request_counter, dgis.request_counter or 0),
            )
        )
        self._revision += 1

    # -- the PIN and the requests (WalletActions) --

    def _digest(self, pin: str) -> bytes:
        return hmac.new(_PIN_SALT_LABEL + self._aid + self._services.iccid, pin.encode("ascii"), hashlib.sha256).digest()

    def verify_pin(self, pin: str) -> PinCheck:
        s = self._state
        if s.pin_digest is None or s.pin_tries_left == 0:
            return PinCheck(False, 0)
        self._save(replace(s, pin_tries_left=s.pin_tries_left - 1))
        if hmac.compare_digest(self._digest(pin), s.pin_digest):
            self._save(replace(self._state, pin_tries_left=s.pin_try_limit))
            return PinCheck(True, s.pin_try_limit)
        return PinCheck(False, self._state.pin_tries_left)

    def change_pin(self, pin: str) -> None:
        self._save(replace(self._state, pin_digest=self._digest(pin), pin_tries_left=self._state.pin_try_limit))

    def prepare_request(self, operation: Operation, language: str, fields: dict[str, Any]) -> bytes | None:
        s = self._state
        if s.keys is None or s.tar is None or s.service_number is None or s.request_counter >= COUNTER_MAX:
            return None
        counter = s.request_counter + 1
        request = WalletRequest(request_id=request_id_for(counter), operation=operation, language=language, **fields)
        # Persisted before the packet exists: whatever happens next, this counter is spent.
        self._save(replace(s, request_counter=counter))
        packet = wrap_command(request.to_bytes(), s.keys.keyset(), spi=WALLET_SPI, tar=s.tar, counter=counter, with_udh=False)
        header = UserDataHeader((RawIe(IEI_CPI),))
        submit = SmsSubmit(
            da=service_number_address(s.service_number), ud=UserData(packet, header), pid=PID_DEFAULT, dcs=DCS_SIM_DATA_DOWNLOAD
        )
        return submit.to_bytes()

    # -- ToolkitApplet --

    @property
    def tars(self) -> tuple[bytes, ...]:
        return () if self._state.tar is None else (self._state.tar,)

    @property
    def menu_revision(self) -> int:
        return self._revision

    def language(self, context: ToolkitContext) -> str:
        """The handset's language if the menu has it, else EF.LI's first that it has, else the personalized default."""
        offered = [lang for lang in self._menu_languages() if lang in UI_LANGUAGES] or self._menu_languages()
        if context.language is not None and context.language in offered:
            return context.language
        for lang in self._preferred_languages():
            if lang in offered:
                return lang
        return self._menu_languages()[0]

    def _menu_languages(self) -> tuple[str, ...]:
        return self._state.languages or tuple(DEFAULT_MENU_TITLES)

    def _preferred_languages(self) -> tuple[str, ...]:
        if not isinstance(self._services, FileReader):
            return ()
        try:
            return LanguageList.from_bytes(self._services.read_file(EF_LI_PATH)).languages
        except (AppletError, LookupError):
            return ()

    def _menu(self, language: str) -> tuple[str, tuple[tuple[int, Operation, str], ...]]:
        s = self._state
        texts = next((t for t in s.texts if t.language == language), None)
        if s.menu and texts is not None:
            names = dict(texts.items)
            return texts.title, tuple((i, op, names[i]) for i, op in s.menu if i in names)
        title = DEFAULT_MENU_TITLES.get(language, DEFAULT_MENU_TITLES["en"])
        return title, tuple((i, op, titles.get(language, titles["en"])) for i, op, titles in DEFAULT_MENU)

    def toolkit_menu(self, context: ToolkitContext) -> AppletMenu | None:
        if not self.personalized:
            return None
        title, items = self._menu(self.language(context))
        return AppletMenu(title, tuple(Item(i, text) for i, _, text in items))

    def menu_selection(self, item: int, help_request: bool, context: ToolkitContext) -> Session | None:
        if not self.personalized:
            return None
        language = self.language(context)
        operation = next((op for i, op, _ in self._menu(language)[1] if i == item), None)
        if operation is None:
            return None
        return session(self, operation, language if language in UI_LANGUAGES else "en")

    def sms_pp_download(self, deliver: SmsDeliver, packet: bytes, context: ToolkitContext) -> SmsPpResult:
        s = self._state
        keyset = None if s.keys is None else s.keys.keyset()

        def lookup(tar: Tar, kic: Kic, kid: Kid) -> KeySet | None:
            return keyset if s.tar is not None and tar.to_bytes() == s.tar else None

        try:
            command = unwrap_command(packet, lookup, last_counter=s.server_counter, minimum_security=MINIMUM_SECURITY)
        except OtaSecurityError as exc:
            self._save(replace(s, refused=s.refused + 1))
            return SmsPpResult(_por(exc.spi, exc.tar, exc.counter or 0, exc.status, keyset))
        except CodecError:
            self._save(replace(s, refused=s.refused + 1))
            return SmsPpResult()
        # The backend's counter is spent before anything is shown.
        self._save(replace(s, server_counter=command.last_counter))
        por = _por(command.spi, command.tar, command.counter, ResponseStatus.POR_OK, keyset)
        try:
            response = WalletResponse.from_bytes(command.data)
        except CodecError:
            self._save(replace(self._state, refused=self._state.refused + 1))
            return SmsPpResult(por)
        return SmsPpResult(por, show_response(response))


def _por(spi: Spi | None, tar: Tar | None, counter: int, status: ResponseStatus, keyset: KeySet | None) -> bytes:
    """The PoR the packet's SPI asks for (TS 102 225 §5.2), secured when it can be; empty when none is asked for."""
    if spi is None or tar is None or spi.por is PorMode.NONE or (spi.por is PorMode.ON_ERROR and status is ResponseStatus.POR_OK):
        return b""
    for keys in (keyset, None):
        try:
            return wrap_response(b"", keys, spi=spi, tar=tar, counter=counter, status=status)
        except CodecError:
            # No key set, or a PoR security it cannot give: then the unsecured status-only form of an error.
            continue
    return b""


def wallet_factory(instance_aid: bytes, install_params: bytes, services: CardServices, state: AppState | None) -> WalletApplet:
    """The :class:`~simwallet.applet.card.registry.AppletFactory` of module :data:`WALLET_MODULE_AID` (install parameters unused)."""
    return WalletApplet(instance_aid, services, state)
