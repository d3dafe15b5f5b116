"""The wallet applet's personalization data: the DGIs STORE DATA brings it through the issuer security domain.

Spec: GlobalPlatform Card Specification v2.3 §11.11 (STORE DATA in DGI
format, EMV CPS v1.1 §3.2 DGI coding) and simwallet's convention that DGIs
``8000``..``8FFF`` carry values encrypted with the static DEK
(:func:`simwallet.applet.protocols.gp.is_sensitive_dgi`, P1 b7-b6 = 11);
3GPP TS 23.040 §9.1.2.5 (the service number: Type-of-Address and BCD, as in
TS 102 223 §8.1); ETSI TS 102 221 Annex A (menu texts in the alpha identifier
coding); ETSI TS 102 225 §5.1.2-5.1.3 (the key set's KIc and KID algorithm
codings); ISO 639-1 (languages).

The DGIs, each value laid out below its number in :class:`WalletDgi`:

====  ===================================================================
0101  service number: TOA ‖ BCD digits (the short code requests go to)
0102  TAR of the wallet (3 octets, TS 102 225 §5.1.1)
0103  languages, 2 octets each, the default first
0104  menu: (item id ‖ operation) per item
011n  menu texts of language n of 0103: language ‖ L ‖ title ‖ (item id ‖ L ‖ text) per item
0105  PIN try limit (1 octet, 1..15)
0106  initial request counter (5 octets, the CNTR of the next request is above it)
0107  PIN reset: ``01`` puts the PIN try counter back to the limit (the service hall's unlock)
8101  wallet PIN, ASCII digits (sensitive)
8102  key set: KVN ‖ KIc algorithm ‖ KID algorithm ‖ L ‖ KIc ‖ L ‖ KID (sensitive)
====  ===================================================================

The provisioning side builds the list with :func:`wallet_personalization_dgis`
and sends it with :func:`simwallet.applet.protocols.gp.store_data_commands`
(which encrypts the sensitive ones); the card reads each DGI with
:func:`parse_wallet_dgis`. ``repr`` never shows the PIN or a key.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import decode_alpha, encode_alpha
from simwallet.applet.protocols.gp import is_sensitive_dgi
from simwallet.applet.protocols.secured import CcAlgorithm, CipherAlgorithm, KeySet
from simwallet.applet.protocols.secured_fields import TAR_LENGTH, check_counter_value
from simwallet.applet.protocols.sms_address import Address, Npi, Ton, parse_toa_value
from simwallet.applet.protocols.wallet_common import Operation, check_language, decode_language

# Menu languages one card carries (one DGI 011n each).
LANGUAGES_MAX: Final = 4
# TS 102 223 §6.6.7: a handset menu; the profile schema allows 16 items.
MENU_ITEMS_MAX: Final = 16
# TS 102 221 Annex A text of a title or item; the profile schema allows 40 characters, which UCS2 makes 81 octets.
MENU_TEXT_OCTETS_MAX: Final = 82
# The wallet PIN: 4 to 6 digits (what GET INPUT asks for).
PIN_DIGITS_MIN: Final = 4
PIN_DIGITS_MAX: Final = 6
# ISO/IEC 7816-4 §6.8-style retry counter: 1..15.
PIN_TRY_LIMIT_MAX: Final = 15
# TS 23.040 §9.1.2.5: at most 20 digits; a short code has at least 3.
SERVICE_NUMBER_DIGITS_MIN: Final = 3
SERVICE_NUMBER_DIGITS_MAX: Final = 20
# DGI 011n: n is the index of the language in DGI 0103.
MENU_TEXTS_LAST: Final = 0x0110 + LANGUAGES_MAX - 1
# Wallet products whose common DGIs (service number, TAR, menu) are kept encoded; a batch has one.
PRODUCTS_CACHED: Final = 16
_PIN_RESET: Final = b"\x01"
_KVN_MAX: Final = 0x0F


class WalletDgi(enum.IntEnum):
    """The DGIs of the wallet applet (the module docstring gives each value's layout)."""

    SERVICE_NUMBER = 0x0101
    TAR = 0x0102
    LANGUAGES = 0x0103
    MENU = 0x0104
    PIN_TRY_LIMIT = 0x0105
    REQUEST_COUNTER = 0x0106
    PIN_RESET = 0x0107
    MENU_TEXTS = 0x0110
    PIN = 0x8101
    KEYS = 0x8102


# The action names of the profile's ``wallet.menu[].action`` (cards/profile.schema.json) and their operations.
ACTION_NAMES: Final[dict[str, Operation]] = {
    "balance": Operation.BALANCE,
    "airtime_topup": Operation.TOP_UP,
    "topup": Operation.TOP_UP,
    "transfer": Operation.PAY,
    "pay": Operation.PAY,
    "bill_payment": Operation.BILL,
    "bills": Operation.BILL,
    "bank_balance": Operation.BANK_BALANCE,
    "change_pin": Operation.PIN_CHANGED,
    "history": Operation.HISTORY,
}


def operation_for_action(name: str) -> Operation:
    """The operation a profile's menu action starts; CodecError for an action the applet does not offer."""
    try:
        return ACTION_NAMES[name]
    except KeyError:
        raise CodecError(f"menu action {name!r} is not one the wallet applet offers ({', '.join(ACTION_NAMES)})") from None


def _octet(value: int, what: str, low: int = 0, high: int = 0xFF) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CodecError(f"{what} {value!r} is outside {low}..{high}")
    return value


def _lv(value: bytes, what: str) -> bytes:
    if len(value) > MENU_TEXT_OCTETS_MAX:
        raise CodecError(f"{what} of {len(value)} octets exceeds {MENU_TEXT_OCTETS_MAX}")
    return bytes((len(value),)) + value


def _take_lv(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    if pos >= len(data):
        raise CodecError(f"{what}: length octet missing", pos)
    end = pos + 1 + data[pos]
    if end > len(data):
        raise CodecError(f"{what}: {data[pos]} octets announced, {len(data) - pos - 1} left", pos)
    return bytes(data[pos + 1 : end]), end


def _text(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise CodecError(f"{what} must be a non-empty text")
    return _lv(encode_alpha(value), what)


@dataclass(frozen=True)
class WalletMenuItem:
    """One item of the wallet's SET UP MENU: identifier, operation, and its text in each language."""

    item_id: int
    operation: Operation
    # (language, text) pairs, in the order of the card's languages.
    titles: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        _octet(self.item_id, "menu item id", 1, 0xFF)
        if not isinstance(self.operation, Operation):
            raise CodecError(f"menu operation {self.operation!r} is not an Operation")

    def title(self, language: str) -> str | None:
        return dict(self.titles).get(language)


@dataclass(frozen=True, repr=False)
class WalletKeySet:
    """The wallet's own TS 102 225 key set as personalization carries it; ``repr`` shows no key."""

    kvn: int
    kic_algorithm: CipherAlgorithm
    kic: bytes
    kid_algorithm: CcAlgorithm
    kid: bytes

    def __post_init__(self) -> None:
        self.keyset()

    def keyset(self) -> KeySet:
        """The :class:`KeySet` for :func:`~simwallet.applet.protocols.secured.wrap_command` (checks every field)."""
        return KeySet(self.kvn, self.kic_algorithm, self.kic, self.kid_algorithm, self.kid)

    def __repr__(self) -> str:
        return f"WalletKeySet(kvn={self.kvn}, kic={self.kic_algorithm.name}, kid={self.kid_algorithm.name})"

    def to_bytes(self) -> bytes:
        return (
            bytes((self.kvn, self.kic_algorithm, self.kid_algorithm))
            + bytes((len(self.kic),))
            + self.kic
            + bytes((len(self.kid),))
            + self.kid
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WalletKeySet:
        if len(data) < 4:
            raise CodecError(f"key set DGI of {len(data)} octets is too short", len(data))
        kvn, kic_algorithm, kid_algorithm = data[0], data[1], data[2]
        if not 1 <= kvn <= _KVN_MAX:
            raise CodecError(f"key version {kvn} is outside 1..{_KVN_MAX}", 0)
        try:
            ciphering, checksum = CipherAlgorithm(kic_algorithm), CcAlgorithm(kid_algorithm)
        except ValueError:
            raise CodecError("key set DGI names an unknown KIc or KID algorithm", 1) from None
        kic, pos = _take_lv(data, 3, "KIc")
        kid, end = _take_lv(data, pos, "KID")
        if end != len(data):
            raise CodecError(f"{len(data) - end} octets after the key set", end)
        return cls(kvn, ciphering, kic, checksum, kid)


def _service_number_address(number: str) -> Address:
    digits = number.removeprefix("+")
    if not digits.isascii() or not digits.isdigit() or not SERVICE_NUMBER_DIGITS_MIN <= len(digits) <= SERVICE_NUMBER_DIGITS_MAX:
        raise CodecError(f"service number must be {SERVICE_NUMBER_DIGITS_MIN}..{SERVICE_NUMBER_DIGITS_MAX} digits, '+' for international")
    return Address(Ton.INTERNATIONAL if number.startswith("+") else Ton.UNKNOWN, Npi.ISDN, digits)


def service_number_address(number: str) -> Address:
    """The TP-DA of the wallet's requests: a leading ``+`` makes it international (TON 001), else TON unknown, NPI ISDN."""
    return _service_number_address(number)


@dataclass(frozen=True)
class WalletPersonalization:
    """Everything the wallet applet is personalized with; ``repr`` shows neither the PIN nor a key.

    ``languages`` lists the menu languages, the card's default first;
    ``menu_titles`` and each item's ``titles`` give a text for every one.
    """

    service_number: str
    tar: bytes
    languages: tuple[str, ...]
    menu_titles: tuple[tuple[str, str], ...]
    menu: tuple[WalletMenuItem, ...]
    pin: str = field(repr=False)
    keys: WalletKeySet
    pin_try_limit: int = 3
    request_counter: int = 0

    def __post_init__(self) -> None:
        self.to_dgis()

    def to_dgis(self) -> list[tuple[int, bytes, bool]]:
        """``(dgi, value, sensitive)`` in the order to send; sensitive values go encrypted with the DEK."""
        out = [
            *_product_dgis(self.service_number, self.tar, self.languages, self.menu_titles, self.menu),
            (WalletDgi.PIN_TRY_LIMIT, bytes((_octet(self.pin_try_limit, "PIN try limit", 1, PIN_TRY_LIMIT_MAX),))),
            (WalletDgi.REQUEST_COUNTER, check_counter_value(self.request_counter).to_bytes(5, "big")),
            (WalletDgi.PIN, _pin(self.pin)),
            (WalletDgi.KEYS, self.keys.to_bytes()),
        ]
        return [(int(dgi), value, is_sensitive_dgi(dgi)) for dgi, value in out]


@functools.lru_cache(maxsize=PRODUCTS_CACHED)
def _product_dgis(
    service_number: str, tar: bytes, languages: tuple[str, ...], titles: tuple[tuple[str, str], ...], menu: tuple[WalletMenuItem, ...]
) -> tuple[tuple[int, bytes], ...]:
    # What every card of one wallet product gets alike (a batch encodes it once): service number, TAR, menu.
    return (
        (WalletDgi.SERVICE_NUMBER, _service_number_address(service_number).to_toa_value()),
        (WalletDgi.TAR, _tar(tar)),
        (WalletDgi.LANGUAGES, _languages(languages)),
        (WalletDgi.MENU, _menu(menu)),
        *((WalletDgi.MENU_TEXTS + i, _menu_texts(lang, titles, menu)) for i, lang in enumerate(languages)),
    )


def wallet_personalization_dgis(params: WalletPersonalization) -> list[tuple[int, bytes, bool]]:
    """The DGIs that personalize the wallet with ``params``: ``(dgi, value, sensitive)``, sensitive ones to encrypt."""
    return params.to_dgis()


def pin_reset_dgi() -> tuple[int, bytes, bool]:
    """The DGI the service hall sends (INSTALL [for personalization], STORE DATA) to unlock a wallet locked by wrong PINs."""
    return int(WalletDgi.PIN_RESET), _PIN_RESET, False


def _tar(tar: bytes) -> bytes:
    if not isinstance(tar, bytes) or len(tar) != TAR_LENGTH:
        raise CodecError(f"TAR must be {TAR_LENGTH} bytes")
    return tar


def _languages(languages: tuple[str, ...]) -> bytes:
    if not 1 <= len(languages) <= LANGUAGES_MAX or len(set(languages)) != len(languages):
        raise CodecError(f"1..{LANGUAGES_MAX} distinct menu languages, the default first")
    return b"".join(check_language(code).encode("ascii") for code in languages)


def _menu(menu: tuple[WalletMenuItem, ...]) -> bytes:
    if not 1 <= len(menu) <= MENU_ITEMS_MAX or len({item.item_id for item in menu}) != len(menu):
        raise CodecError(f"1..{MENU_ITEMS_MAX} menu items with distinct identifiers")
    return b"".join(bytes((item.item_id, item.operation)) for item in menu)


def _menu_texts(language: str, titles: tuple[tuple[str, str], ...], menu: tuple[WalletMenuItem, ...]) -> bytes:
    title = dict(titles).get(language)
    if title is None:
        raise CodecError(f"no menu title in {language!r}")
    out = check_language(language).encode("ascii") + _text(title, "menu title")
    for item in menu:
        text = item.title(language)
        if text is None:
            raise CodecError(f"menu item {item.item_id} has no text in {language!r}")
        out += bytes((item.item_id,)) + _text(text, f"menu item {item.item_id}")
    return out


def _pin(pin: str) -> bytes:
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit() or not PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX:
        raise CodecError(f"the wallet PIN is {PIN_DIGITS_MIN}..{PIN_DIGITS_MAX} digits")
    return pin.encode("ascii")


# --- card side ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MenuTexts:
    """DGI 011n: one language's menu title and item texts (item id to text)."""

    language: str
    title: str
    items: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class WalletDgis:
    """What a set of wallet DGIs carried; a field is None (``pin_reset`` False) when its DGI was not among them."""

    service_number: str | None = None
    tar: bytes | None = None
    languages: tuple[str, ...] | None = None
    menu: tuple[tuple[int, Operation], ...] | None = None
    menu_texts: tuple[MenuTexts, ...] = ()
    pin_try_limit: int | None = None
    request_counter: int | None = None
    pin_reset: bool = False
    pin: str | None = field(default=None, repr=False)
    keys: WalletKeySet | None = None

    def personalization(self) -> WalletPersonalization:
        """The whole personalization these DGIs make up; CodecError naming what is missing or inconsistent."""
        missing = [f.name for f in fields(self) if getattr(self, f.name) is None]
        if missing:
            raise CodecError(f"wallet personalization lacks {', '.join(missing)}")
        assert self.languages is not None and self.menu is not None and self.service_number is not None
        assert self.tar is not None and self.pin is not None and self.keys is not None
        assert self.pin_try_limit is not None and self.request_counter is not None
        texts = {entry.language: entry for entry in self.menu_texts}
        if set(texts) != set(self.languages):
            raise CodecError("menu texts do not match the menu languages")
        items = tuple(
            WalletMenuItem(item_id, operation, tuple((lang, dict(texts[lang].items).get(item_id, "")) for lang in self.languages))
            for item_id, operation in self.menu
        )
        titles = tuple((lang, texts[lang].title) for lang in self.languages)
        return WalletPersonalization(
            self.service_number, self.tar, self.languages, titles, items, self.pin, self.keys, self.pin_try_limit, self.request_counter
        )


def _parse_menu(value: bytes) -> tuple[tuple[int, Operation], ...]:
    if not value or len(value) % 2 or len(value) // 2 > MENU_ITEMS_MAX:
        raise CodecError(f"menu DGI holds 1..{MENU_ITEMS_MAX} pairs of item id and operation")
    items: list[tuple[int, Operation]] = []
    for pos in range(0, len(value), 2):
        try:
            operation = Operation(value[pos + 1])
        except ValueError:
            raise CodecError(f"menu item {value[pos]}: operation {value[pos + 1]:02X} is not known", pos + 1) from None
        items.append((_octet(value[pos], "menu item id", 1, 0xFF), operation))
    if len({item_id for item_id, _ in items}) != len(items):
        raise CodecError("menu item ids repeat")
    return tuple(items)


def _parse_menu_texts(value: bytes) -> MenuTexts:
    language = decode_language(value[:2])
    raw, pos = _take_lv(value, 2, "menu title")
    title = decode_alpha(raw)
    items: list[tuple[int, str]] = []
    while pos < len(value):
        item_id = value[pos]
        raw, pos = _take_lv(value, pos + 1, f"menu item {item_id}")
        items.append((item_id, decode_alpha(raw)))
    if len(items) > MENU_ITEMS_MAX:
        raise CodecError(f"more than {MENU_ITEMS_MAX} menu texts")
    return MenuTexts(language, title, tuple(items))


def _parse_languages(value: bytes) -> tuple[str, ...]:
    if not value or len(value) % 2 or len(value) // 2 > LANGUAGES_MAX:
        raise CodecError(f"languages DGI holds 1..{LANGUAGES_MAX} two-letter codes")
    codes = tuple(decode_language(value[i : i + 2]) for i in range(0, len(value), 2))
    if len(set(codes)) != len(codes):
        raise CodecError("menu languages repeat")
    return codes


def _parse_pin(value: bytes) -> str:
    text = value.decode("ascii", errors="replace")
    _pin(text)
    return text


def _one(value: bytes, what: str, low: int, high: int) -> int:
    if len(value) != 1:
        raise CodecError(f"{what} is 1 octet, got {len(value)}")
    return _octet(value[0], what, low, high)


def parse_wallet_dgis(dgis: Iterable[tuple[int, bytes]]) -> WalletDgis:
    """The wallet DGIs in ``dgis`` (values already decrypted), each at most once; CodecError for anything else."""
    found: dict[str, Any] = {}
    texts: list[MenuTexts] = []
    for dgi, value in dgis:
        if WalletDgi.MENU_TEXTS <= dgi <= MENU_TEXTS_LAST:
            texts.append(_parse_menu_texts(value))
            continue
        name, parsed = _parse_one(dgi, value)
        if name in found:
            raise CodecError(f"DGI {dgi:04X} given twice")
        found[name] = parsed
    if len({entry.language for entry in texts}) != len(texts):
        raise CodecError("menu texts for one language given twice")
    return WalletDgis(menu_texts=tuple(texts), **found)


def _parse_counter(value: bytes) -> int:
    if len(value) != 5:
        raise CodecError(f"request counter is 5 octets, got {len(value)}")
    return int.from_bytes(value, "big")


def _parse_pin_reset(value: bytes) -> bool:
    if value != _PIN_RESET:
        raise CodecError("PIN reset DGI holds 01")
    return True


# Each single DGI: the WalletDgis field it fills and its parser.
_PARSERS: Final[dict[int, tuple[str, Callable[[bytes], Any]]]] = {
    WalletDgi.SERVICE_NUMBER: ("service_number", lambda v: str(_check_service_number(parse_toa_value(v)))),
    WalletDgi.TAR: ("tar", lambda v: _tar(bytes(v))),
    WalletDgi.LANGUAGES: ("languages", _parse_languages),
    WalletDgi.MENU: ("menu", _parse_menu),
    WalletDgi.PIN_TRY_LIMIT: ("pin_try_limit", lambda v: _one(v, "PIN try limit", 1, PIN_TRY_LIMIT_MAX)),
    WalletDgi.REQUEST_COUNTER: ("request_counter", _parse_counter),
    WalletDgi.PIN_RESET: ("pin_reset", _parse_pin_reset),
    WalletDgi.PIN: ("pin", _parse_pin),
    WalletDgi.KEYS: ("keys", WalletKeySet.from_bytes),
}


def _parse_one(dgi: int, value: bytes) -> tuple[str, Any]:
    entry = _PARSERS.get(dgi)
    if entry is None:
        raise CodecError(f"DGI {dgi:04X} is not one of the wallet's")
    name, parse = entry
    return name, parse(value)


def _check_service_number(address: Address) -> Address:
    if address.ton not in (Ton.INTERNATIONAL, Ton.UNKNOWN) or address.npi != Npi.ISDN:
        raise CodecError("the service number is an ISDN number, TON international or unknown")
    return _service_number_address(str(address))
