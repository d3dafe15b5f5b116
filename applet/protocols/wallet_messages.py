"""The STK wallet's application messages: requests from the card and responses from the backend.

Spec: simwallet's own application protocol, version 1, carried as the secured
data of ETSI TS 102 225 §5.1 command packets in the SMS-PP form of 3GPP
TS 31.115 §4.2 (one short message, UDH ``02 70 00``), both ways: the card
sends a request to the backend's short code (SMS-SUBMIT) with its own counter
in CNTR, the backend answers with a command packet to the wallet's TAR
(SMS-DELIVER, SMS-PP data download, TS 31.111 §7.1.1.2). Texts follow ETSI
TS 102 223 §8.15 (a data coding scheme byte, then the text); digit strings
are swapped BCD as in 3GPP TS 23.040 §9.1.2.3. The personalization DGIs are
in :mod:`.wallet_perso` and re-exported here.

Theory of operation
-------------------
A message is a fixed head followed by compact TLVs (one tag byte, one length
byte, the value), tags strictly ascending, so that every message has exactly
one encoding and parse(build(x)) == x and build(parse(b)) == b::

    request   version(1) ‖ request id(4) ‖ operation(1) ‖ TLVs
    response  version(1) ‖ request id(4) ‖ status(1)    ‖ TLVs

The request id is the low 32 bits of the card's CNTR for that request (the
card's counter already sits in CNTR; the id lets the backend's answer be
matched without it). Amounts are integer fen (minor units), big-endian in as
few octets as hold them. The wallet PIN never travels: the applet checks it
on the card, and a PIN change is only notified.

Every message fits one SMS secured with AES-CBC ciphering and an 8-octet
AES-CMAC CC (:data:`WALLET_PAYLOAD_OCTETS_MAX`); the builders refuse a
longer one, so the card never has to concatenate.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.cat import Dcs, TextString
from simwallet.applet.protocols.secured import ChecksumType, CounterMode, PorMode, Spi
from simwallet.applet.protocols.wallet_common import (
    AMOUNT_FEN_MAX,
    AMOUNT_OCTETS_MAX,
    LANGUAGE_OCTETS,
    Operation,
    check_language,
    decode_amount,
    decode_digits,
    decode_language,
    encode_amount,
    encode_digits,
)
from simwallet.applet.protocols.wallet_perso import (
    ACTION_NAMES,
    LANGUAGES_MAX,
    MENU_ITEMS_MAX,
    PIN_DIGITS_MAX,
    PIN_DIGITS_MIN,
    PIN_TRY_LIMIT_MAX,
    MenuTexts,
    WalletDgi,
    WalletDgis,
    WalletKeySet,
    WalletMenuItem,
    WalletPersonalization,
    operation_for_action,
    parse_wallet_dgis,
    pin_reset_dgi,
    service_number_address,
    wallet_personalization_dgis,
)

__all__ = [
    "ACCOUNT_DIGITS_MAX",
    "ACTION_NAMES",
    "AMOUNT_FEN_MAX",
    "AMOUNT_OCTETS_MAX",
    "CODE_DIGITS_MAX",
    "HISTORY_COUNT_MAX",
    "LANGUAGES_MAX",
    "LANGUAGE_OCTETS",
    "MENU_ITEMS_MAX",
    "MSISDN_DIGITS_MAX",
    "MSISDN_DIGITS_MIN",
    "PIN_DIGITS_MAX",
    "PIN_DIGITS_MIN",
    "PIN_TRY_LIMIT_MAX",
    "REQUEST_ID_MAX",
    "WALLET_PAYLOAD_OCTETS_MAX",
    "WALLET_PROTOCOL_VERSION",
    "WALLET_SPI",
    "MenuTexts",
    "Operation",
    "RequestField",
    "ResponseField",
    "WalletDgi",
    "WalletDgis",
    "WalletKeySet",
    "WalletMenuItem",
    "WalletPersonalization",
    "WalletRequest",
    "WalletResponse",
    "WalletStatus",
    "check_language",
    "decode_amount",
    "decode_digits",
    "decode_language",
    "encode_amount",
    "encode_digits",
    "known_status",
    "operation_for_action",
    "parse_wallet_dgis",
    "pin_reset_dgi",
    "request_id_for",
    "service_number_address",
    "wallet_personalization_dgis",
]

# The version octet of both messages; another value is refused (a new layout gets a new number).
WALLET_PROTOCOL_VERSION: Final = 1
# TS 31.115 §4.2 / TS 102 225 §5.1.1: 140 octets of TP-UD less UDH (3), CPL (2) and CHL..TAR (8) leave 127;
# AES-CBC ciphers whole 16-octet blocks from CNTR on (112), less CNTR (5), PCNTR (1) and the CC (8): 98.
WALLET_PAYLOAD_OCTETS_MAX: Final = 98
# The request id is four octets.
REQUEST_ID_MAX: Final = 0xFFFF_FFFF
# ITU-T E.164: at most 15 digits; 3 covers service short numbers.
MSISDN_DIGITS_MIN: Final = 3
MSISDN_DIGITS_MAX: Final = 15
# Merchant and biller codes, bank and utility account numbers: digits, bounded so a bill fits one SMS.
CODE_DIGITS_MAX: Final = 20
ACCOUNT_DIGITS_MAX: Final = 32
# HISTORY asks for at most this many transactions (one SMS of text shows a handful).
HISTORY_COUNT_MAX: Final = 20

_HEAD: Final = 6
_VERSION_AT, _ID_AT, _KIND_AT = 0, 1, 5

# The SPI of both directions: CC and ciphering with the wallet's key set, counter "must be higher", no PoR.
# No PoR: the backend's answer is itself the acknowledgement, secured as strongly as a PoR could be;
# a PoR would cost a second SMS each way. TS 102 225 §5.1.1: 16 00.
WALLET_SPI: Final = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER, PorMode.NONE)


class WalletStatus(enum.IntEnum):
    """The backend's verdict (the status octet); other values are kept as plain ints."""

    OK = 0x00
    DECLINED = 0x01
    INSUFFICIENT_FUNDS = 0x02
    LIMIT_EXCEEDED = 0x03
    UNKNOWN_PAYEE = 0x04
    NOT_REGISTERED = 0x05
    TRY_LATER = 0x06
    BANK_UNAVAILABLE = 0x07
    INVALID_REQUEST = 0x08


class RequestField(enum.IntEnum):
    """Tags of the request TLVs."""

    LANGUAGE = 0x01
    AMOUNT = 0x02
    MSISDN = 0x03
    MERCHANT = 0x04
    BILLER = 0x05
    ACCOUNT = 0x06
    COUNT = 0x07


class ResponseField(enum.IntEnum):
    """Tags of the response TLVs."""

    # TS 102 223 §8.15 Text string value (DCS 04 or 08, then the text): what the handset shows. Mandatory.
    TEXT = 0x10
    # The wallet's balance after the operation, fen, minimal big-endian (zero is one 00 octet). Optional.
    BALANCE = 0x11


# --- field codecs ----------------------------------------------------------------------------------


def _check_id(request_id: int) -> None:
    if isinstance(request_id, bool) or not isinstance(request_id, int) or not 0 <= request_id <= REQUEST_ID_MAX:
        raise CodecError(f"request id {request_id!r} is outside 0..{REQUEST_ID_MAX}")


def _encode_tlvs(fields: Sequence[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((tag, len(value))) + value for tag, value in fields)


def _split(data: bytes, what: str) -> tuple[int, int, int, list[tuple[int, bytes, int]]]:
    """Version, id, kind octet and the TLVs (tag, value, offset) of a message; CodecError if malformed."""
    if len(data) > WALLET_PAYLOAD_OCTETS_MAX:
        raise CodecError(f"{what} of {len(data)} octets exceeds {WALLET_PAYLOAD_OCTETS_MAX}", WALLET_PAYLOAD_OCTETS_MAX)
    if len(data) < _HEAD:
        raise TruncatedError(f"{what} needs {_HEAD} octets of head, got {len(data)}", len(data))
    if data[_VERSION_AT] != WALLET_PROTOCOL_VERSION:
        raise CodecError(f"{what} version {data[_VERSION_AT]} is not {WALLET_PROTOCOL_VERSION}", _VERSION_AT)
    fields: list[tuple[int, bytes, int]] = []
    pos = _HEAD
    while pos < len(data):
        if pos + 2 > len(data):
            raise TruncatedError(f"{what}: TLV at {pos} lacks its length", len(data))
        tag, length = data[pos], data[pos + 1]
        if fields and tag <= fields[-1][0]:
            raise CodecError(f"{what}: tag {tag:02X} is not above the one before (tags are strictly ascending)", pos)
        if pos + 2 + length > len(data):
            raise TruncatedError(f"{what}: tag {tag:02X} announces {length} octets, {len(data) - pos - 2} left", len(data))
        fields.append((tag, bytes(data[pos + 2 : pos + 2 + length]), pos))
        pos += 2 + length
    return data[_VERSION_AT], int.from_bytes(data[_ID_AT:_KIND_AT], "big"), data[_KIND_AT], fields


def _finish(head: bytes, fields: Sequence[tuple[int, bytes]], what: str) -> bytes:
    data = head + _encode_tlvs(fields)
    if len(data) > WALLET_PAYLOAD_OCTETS_MAX:
        raise CodecError(f"{what} of {len(data)} octets does not fit one secured SMS ({WALLET_PAYLOAD_OCTETS_MAX})")
    return data


# --- requests ------------------------------------------------------------------------------------------

_Encoder = Callable[[Any], bytes]
_Decoder = Callable[[bytes], Any]


def _digits_codec(what: str, minimum: int, maximum: int) -> tuple[_Encoder, _Decoder]:
    def enc(value: Any) -> bytes:
        return encode_digits(value, what, minimum, maximum)

    def dec(value: bytes) -> Any:
        return decode_digits(value, what, minimum, maximum)

    return enc, dec


def _encode_count(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= HISTORY_COUNT_MAX:
        raise CodecError(f"history count must be 1..{HISTORY_COUNT_MAX}")
    return bytes((value,))


def _decode_count(value: bytes) -> int:
    if len(value) != 1:
        raise CodecError(f"history count is 1 octet, got {len(value)}")
    _encode_count(value[0])
    return value[0]


def _encode_language(value: Any) -> bytes:
    return check_language(value).encode("ascii")


def _encode_request_amount(value: Any) -> bytes:
    return encode_amount(value, "amount")


def _decode_request_amount(value: bytes) -> int:
    return decode_amount(value, "amount")


# Request TLVs: tag, the WalletRequest attribute, encoder and decoder of the value.
_REQUEST_FIELDS: Final[tuple[tuple[RequestField, str, _Encoder, _Decoder], ...]] = (
    # ISO 639 language of the texts the card wants back.
    (RequestField.LANGUAGE, "language", _encode_language, decode_language),
    # The amount in fen, minimal big-endian, at least 1.
    (RequestField.AMOUNT, "amount_fen", _encode_request_amount, _decode_request_amount),
    # The other party's MSISDN (top-up of another number, payment to a person): BCD digits.
    (RequestField.MSISDN, "msisdn", *_digits_codec("MSISDN", MSISDN_DIGITS_MIN, MSISDN_DIGITS_MAX)),
    # A merchant's code (payment at a shop): BCD digits.
    (RequestField.MERCHANT, "merchant", *_digits_codec("merchant code", 1, CODE_DIGITS_MAX)),
    # A biller's code (utility bill): BCD digits.
    (RequestField.BILLER, "biller", *_digits_codec("biller code", 1, CODE_DIGITS_MAX)),
    # The customer's account number at the biller: BCD digits.
    (RequestField.ACCOUNT, "account", *_digits_codec("account number", 1, ACCOUNT_DIGITS_MAX)),
    # HISTORY: how many recent transactions.
    (RequestField.COUNT, "count", _encode_count, _decode_count),
)
_BY_TAG: Final[dict[int, tuple[str, _Encoder, _Decoder]]] = {int(tag): (name, enc, dec) for tag, name, enc, dec in _REQUEST_FIELDS}

# Which fields each operation requires and allows (the language is allowed everywhere).
_REQUIRED: Final[dict[Operation, frozenset[str]]] = {
    Operation.BALANCE: frozenset(),
    Operation.TOP_UP: frozenset({"amount_fen"}),
    Operation.PAY: frozenset({"amount_fen"}),
    Operation.BILL: frozenset({"biller", "account", "amount_fen"}),
    Operation.BANK_BALANCE: frozenset(),
    Operation.PIN_CHANGED: frozenset(),
    Operation.HISTORY: frozenset(),
}
_OPTIONAL: Final[dict[Operation, frozenset[str]]] = {
    Operation.TOP_UP: frozenset({"msisdn"}),
    Operation.PAY: frozenset({"msisdn", "merchant"}),
    Operation.HISTORY: frozenset({"count"}),
}


@dataclass(frozen=True, kw_only=True)
class WalletRequest:
    """A request from the card; the fields an operation does not take are None."""

    request_id: int
    operation: Operation
    language: str | None = None
    amount_fen: int | None = None
    msisdn: str | None = None
    merchant: str | None = None
    biller: str | None = None
    account: str | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        _check_id(self.request_id)
        if not isinstance(self.operation, Operation):
            raise CodecError(f"operation {self.operation!r} is not an Operation")
        present = {name for _, name, _, _ in _REQUEST_FIELDS if getattr(self, name) is not None} - {"language"}
        required = _REQUIRED[self.operation]
        allowed = required | _OPTIONAL.get(self.operation, frozenset())
        if not required <= present:
            raise CodecError(f"{self.operation.name} needs {', '.join(sorted(required - present))}")
        if present - allowed:
            raise CodecError(f"{self.operation.name} takes no {', '.join(sorted(present - allowed))}")
        if self.operation is Operation.PAY and (self.msisdn is None) == (self.merchant is None):
            raise CodecError("PAY names exactly one payee: an MSISDN or a merchant code")
        self.to_bytes()

    def to_bytes(self) -> bytes:
        fields = [(tag, enc(getattr(self, name))) for tag, name, enc, _ in _REQUEST_FIELDS if getattr(self, name) is not None]
        head = bytes((WALLET_PROTOCOL_VERSION,)) + self.request_id.to_bytes(4, "big") + bytes((self.operation,))
        return _finish(head, fields, "wallet request")

    @classmethod
    def from_bytes(cls, data: bytes) -> WalletRequest:
        _, request_id, kind, fields = _split(data, "wallet request")
        try:
            operation = Operation(kind)
        except ValueError:
            raise CodecError(f"operation {kind:02X} is not known", _KIND_AT) from None
        values: dict[str, Any] = {}
        for tag, value, pos in fields:
            known = _BY_TAG.get(tag)
            if known is None:
                raise CodecError(f"wallet request: unknown tag {tag:02X}", pos)
            name, _, dec = known
            try:
                values[name] = dec(value)
            except CodecError as exc:
                raise CodecError(exc.message, pos) from None
        return cls(request_id=request_id, operation=operation, **values)


# --- responses -----------------------------------------------------------------------------------------

# TS 102 223 §8.15 via TextString.auto: the unpacked default alphabet or UCS2, nothing else.
_TEXT_DCS: Final = frozenset({Dcs.GSM_8BIT, Dcs.UCS2})


@dataclass(frozen=True, kw_only=True)
class WalletResponse:
    """The backend's answer: the request it answers, a status, a text to display, optionally a balance in fen."""

    request_id: int
    status: int
    text: TextString
    balance_fen: int | None = None

    def __post_init__(self) -> None:
        _check_id(self.request_id)
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 0 <= self.status <= 0xFF:
            raise CodecError(f"status {self.status!r} is not an octet")
        if self.text.text is None or not self.text.text or self.text.dcs not in _TEXT_DCS:
            raise CodecError("the response text is a non-empty GSM 8-bit or UCS2 text string")
        self.to_bytes()

    @classmethod
    def make(cls, request_id: int, status: int, text: str, balance_fen: int | None = None) -> WalletResponse:
        """The response with ``text`` coded as :meth:`TextString.auto` codes it."""
        return cls(request_id=request_id, status=status, text=TextString.auto(text), balance_fen=balance_fen)

    @property
    def ok(self) -> bool:
        return self.status == WalletStatus.OK

    def to_bytes(self) -> bytes:
        fields = [(ResponseField.TEXT.value, self.text.to_value())]
        if self.balance_fen is not None:
            fields.append((ResponseField.BALANCE.value, encode_amount(self.balance_fen, "balance", minimum=0)))
        head = bytes((WALLET_PROTOCOL_VERSION,)) + self.request_id.to_bytes(4, "big") + bytes((self.status,))
        return _finish(head, fields, "wallet response")

    @classmethod
    def from_bytes(cls, data: bytes) -> WalletResponse:
        _, request_id, status, fields = _split(data, "wallet response")
        text: TextString | None = None
        balance: int | None = None
        for tag, value, pos in fields:
            try:
                if tag == ResponseField.TEXT:
                    text = TextString.from_value(value)
                elif tag == ResponseField.BALANCE:
                    balance = decode_amount(value, "balance", minimum=0)
                else:
                    raise CodecError(f"wallet response: unknown tag {tag:02X}")
            except CodecError as exc:
                raise CodecError(exc.message, pos) from None
        if text is None:
            raise CodecError("wallet response has no text", len(data))
        return cls(request_id=request_id, status=known_status(status), text=text, balance_fen=balance)


def known_status(value: int) -> int:
    """The :class:`WalletStatus` member for ``value`` when there is one, else the plain int."""
    try:
        return WalletStatus(value)
    except ValueError:
        return value


def request_id_for(counter: int) -> int:
    """The request id of the request sent with CNTR ``counter``: its low 32 bits."""
    return counter & REQUEST_ID_MAX
