"""The STK channel: the wallet applet's secured requests in (deliver_sm), secured answers out (submit_sm).

Spec: ETSI TS 102 225 §5.1 (command packets: CC, ciphering, the counter that
"must be higher"), §5.2 (the PoR); 3GPP TS 31.115 §4.2 (one packet in one short
message, UDH ``02 70 00``); 3GPP TS 31.111 §7.1.1.2 and TS 23.040 §9.2.3.9
(SMS-PP data download: TP-PID 7F); SMPP 3.4 §5.2.12 (esm_class UDHI 0x40),
§5.2.19 (data_coding); the wallet's messages (:mod:`simwallet.applet.protocols.wallet_messages`).

Theory of operation
-------------------
The applet sends each request as an ordinary MO SMS-SUBMIT to the service
number (TP-PID 00, TP-DCS F6, UDHI), which reaches the gateway as a deliver_sm
with esm_class 0x40, data_coding F6 and the user data ``02 70 00`` ‖ packet.
:meth:`StkChannel.receive` checks, in order, with the :class:`StkRejectReason`
of each failure:

1. the shape (``MALFORMED``): at most 140 octets, UDHI, 8-bit data, the
   Command Packet Identifier alone, a packet that frames; its SPI must be
   ``WALLET_SPI`` (``INSECURE``) and its TAR the wallet's (``UNKNOWN_TAR``);
2. the card of the source MSISDN (``UNKNOWN_CARD``) and its wallet keys,
   diversified by ICCID from the master version recorded at registration
   (``UNKNOWN_KEY``);
3. in one transaction holding the card's ``stk_counters`` row: CC and
   ciphering (``FORGED``), then the counter (``REPLAY``). Higher than the last
   accepted one: accepted, stored with the SMSC's message id. The same counter
   with the same SMSC id: the SMSC's redelivery, accepted again (the wallet
   service's stored reply answers it the same, posting nothing);
4. a :class:`WalletRequest` whose id is its counter's low 32 bits
   (``INVALID_REQUEST``; the counter stays spent).

An accepted request becomes a :class:`StkServe` with the :class:`ServiceRequest`
(key ``stk:<iccid>:<counter>``, ``pin_verified_by_card``) for the wallet
service, or with the reply itself where the service has nothing to do: a PIN
change is only a notice, answered ``pin_changed``; a biller code the catalogue
lacks is answered ``biller_invalid``. :meth:`StkChannel.respond` makes the reply
a :class:`WalletResponse` (status, the catalogue text in the reply's language,
the wallet balance where there is one), secured with the card's keys under the
card's next gateway counter to the TAR the request came from (:class:`StkSubmit`).

Decisions, where the brief leaves room:

* No PoR, ever. TS 102 225 §5.1.1 (SPI octet 2) and §5.2 send one when the
  SPI asks; the wallet's SPI asks for none either way (the answer is the
  acknowledgement), so a packet asking for one is not the wallet's (``INSECURE``). A rejected packet
  is acknowledged to the SMSC and dropped: an unauthenticated packet may name
  a number that did not send it, and answering would let anyone make the
  gateway message any phone.
* A text longer than one secured SMS holds (44 UCS2 or 89 GSM characters) is
  cut with an ellipsis; the balance field, which the applet does not show,
  goes first.
* Fields: a typed mobile number is read as the SMS parser reads it (``138…``
  → ``86138…``, else the digits as E.164); merchant ``123456`` is ``M123456``;
  biller codes 1..4 are water, electricity, gas, phone (the SMS help's 01..04).
* Only the last accepted counter can be redelivered: a redelivery after a
  later request was accepted is a replay (its first delivery was answered).

Rejections are logged without secrets (reason, ICCID or source, SMSC id,
length, error class and status code) and returned with the reason for the
caller's metrics. A database failure raises
:class:`~simwallet.gateway.errors.StoreError`: leave the deliver_sm unanswered
and the SMSC delivers it again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols import secured
from simwallet.applet.protocols.cat import TextString
from simwallet.applet.protocols.gsm7 import can_encode_gsm7
from simwallet.applet.protocols.secured import CommandFrame, CommandPacket, KeySet, Kic, Kid, OtaSecurityError, Tar
from simwallet.applet.protocols.wallet_messages import (
    AMOUNT_FEN_MAX,
    WALLET_PAYLOAD_OCTETS_MAX,
    WALLET_SPI,
    Operation,
    WalletRequest,
    WalletResponse,
    WalletStatus,
    encode_amount,
    request_id_for,
)
from simwallet.gateway.cards import RegisteredCard
from simwallet.gateway.errors import GatewayError, RequestError
from simwallet.gateway.esme import stk_store
from simwallet.gateway.esme.stk_store import WalletMasters, card_keyset
from simwallet.gateway.ledger.ledger import wall_clock_us
from simwallet.gateway.ledger.model import Channel
from simwallet.gateway.sms.catalogue import Biller, Lang, MessageId, render
from simwallet.gateway.sms.commands import Balance, BankBalance, Bill, Command, History, Pay, PayeeKind, TopUp, normalise_msisdn
from simwallet.gateway.sms.segments import ESM_CLASS_UDHI
from simwallet.gateway.store.tx import run_in_transaction
from simwallet.gateway.wallet.outcomes import Outcome, ServiceReply, ServiceRequest, WalletUsageError, check_msisdn, reply

logger = logging.getLogger(__name__)
T = TypeVar("T")

# TS 23.040 §9.2.3.9 / TS 31.111 §7.1.1.2: (U)SIM data download; TS 23.038 §4: F6 = 8-bit data, class 2.
PROTOCOL_ID_SIM_DATA_DOWNLOAD: Final = 0x7F
DATA_CODING_SIM_DATA_DOWNLOAD: Final = 0xF6
# SMPP 3.4 §5.2.19 (02, 04: 8-bit binary) and TS 23.038 §4 (F4..F7: 8-bit data with a message class).
BINARY_DATA_CODINGS: Final = frozenset({0x02, 0x04, 0xF4, 0xF5, 0xF6, 0xF7})
# The SMSC's message id is kept in stk_counters.smsc_id (the ESME keeps at most 64 characters of it too).
SMSC_ID_LEN_MAX: Final = 64
# The wallet TARs personalization writes (cards/profiles/wallet-cmcc-zh.yaml B00010, wallet-en.yaml B00011).
WALLET_TARS_DEFAULT: Final = (bytes.fromhex("B00010"), bytes.fromhex("B00011"))
# TS 102 225 / TS 102 226: what the wallet's packets must carry at least (the applet asks the same of ours).
MINIMUM_SECURITY: Final = secured.MinimumSecurityLevel(secured.ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, secured.CounterMode.HIGHER)
# Attempts of one counter transaction after a conflict, and the first back-off.
TX_ATTEMPTS_MAX: Final = 8
TX_BACKOFF_S: Final = 0.002
# The response's head (version, request id, status) and each TLV's tag and length octets.
_RESPONSE_HEAD_OCTETS: Final = 6
_TLV_HEAD_OCTETS: Final = 2
# Biller codes of the STK menu, as the SMS help numbers them (01 water .. 04 phone).
BILLER_CODES: Final = {1: Biller.WATER, 2: Biller.ELECTRICITY, 3: Biller.GAS, 4: Biller.PHONE}
# The operations that only read: their command has no field but the (card-verified, so empty) PIN.
_READINGS: Final[dict[Operation, type[Balance] | type[BankBalance] | type[History]]] = {
    Operation.BALANCE: Balance,
    Operation.BANK_BALANCE: BankBalance,
    Operation.HISTORY: History,
}
# The request's ISO 639 code to the reply language; any other language gets English, as the applet's own texts do.
_LANGS: Final = {lang.value: lang for lang in Lang}
# Replies whose balance_fen is the wallet's (BANK_BALANCE's is the bank card's).
_WALLET_BALANCE_REPLIES: Final = frozenset(
    {MessageId.BALANCE, MessageId.TOPUP_OK, MessageId.TOPUP_OK_BONUS, MessageId.PAY_OK, MessageId.BILL_OK, MessageId.INSUFFICIENT_FUNDS}
)
_STATUS_BY_MESSAGE: Final = {
    MessageId.INSUFFICIENT_FUNDS: WalletStatus.INSUFFICIENT_FUNDS,
    MessageId.LIMIT_EXCEEDED: WalletStatus.LIMIT_EXCEEDED,
    MessageId.PAYEE_UNKNOWN: WalletStatus.UNKNOWN_PAYEE,
    MessageId.UNREGISTERED: WalletStatus.NOT_REGISTERED,
    MessageId.NOT_CUSTOMER: WalletStatus.NOT_REGISTERED,
    MessageId.UNAVAILABLE: WalletStatus.TRY_LATER,
}


class StkError(GatewayError):
    """Root of the STK channel's errors (remote trouble is an :class:`StkReject`, never raised)."""

    code: str = "stk_error"


class StkUsageError(StkError, ValueError):
    """The caller's mistake: answering a serve this database never accepted, a wrong argument."""

    code = "stk_misuse"


class StkCounterExhausted(StkError):
    """The gateway's counter for a card has reached 2^40 - 1: the card can take no more answers."""

    code = "stk_counter_exhausted"


class StkRejectReason(enum.StrEnum):
    """Why a packet was dropped. Stable strings: metrics label them."""

    MALFORMED = "malformed"  # no single-SMS command packet, or the SMSC id is unusable
    INSECURE = "insecure"  # an SPI other than the wallet's (less security, or a PoR asked for)
    UNKNOWN_TAR = "unknown_tar"  # not addressed to the wallet
    UNKNOWN_CARD = "unknown_card"  # no registered card has the source number
    UNKNOWN_KEY = "unknown_key"  # the key source lacks the card's wallet key version
    FORGED = "forged"  # the CC does not verify or the packet does not decipher
    REPLAY = "replay"  # counter not higher, and not a redelivery of the last one
    INVALID_REQUEST = "invalid_request"  # authentic, but no wallet request (its counter is spent)


# TS 102 225 §5.2 Response Status Codes of a failed check, as reasons (any other: forged).
_REASON_BY_STATUS: Final = {
    secured.ResponseStatus.COUNTER_LOW: StkRejectReason.REPLAY,
    secured.ResponseStatus.COUNTER_HIGH: StkRejectReason.REPLAY,
    secured.ResponseStatus.COUNTER_BLOCKED: StkRejectReason.REPLAY,
    secured.ResponseStatus.TAR_UNKNOWN: StkRejectReason.UNKNOWN_TAR,
    secured.ResponseStatus.INSUFFICIENT_SECURITY_LEVEL: StkRejectReason.INSECURE,
}


class CardLookup(Protocol):
    """What the channel needs of :class:`~simwallet.gateway.cards.CardRegistry`."""

    def by_msisdn(self, msisdn: str) -> RegisteredCard | None: ...


@dataclass(frozen=True, slots=True)
class StkInbound:
    """One deliver_sm as the channel reads it; ``token`` is the driver's handle for answering it."""

    token: Hashable
    smsc_id: str
    source: str
    destination: str
    data_coding: int
    esm_class: int
    protocol_id: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StkServe:
    """An accepted request: serve ``request`` with the wallet service, or answer ``answer`` (exactly one is set)."""

    token: Hashable
    msisdn: str  # the card's number: the answer's destination
    reply_to: str  # the service number the card wrote to: the answer's source
    iccid: str
    key_version: int
    tar: bytes
    counter: int
    request_id: int
    operation: Operation
    lang: Lang
    request: ServiceRequest | None
    answer: ServiceReply | None
    redelivery: bool = False

    @property
    def key(self) -> str:
        """The request's idempotency key, also when it is answered without the service (the answer's client reference)."""
        return request_key(self.iccid, self.counter)


@dataclass(frozen=True, slots=True)
class StkReject:
    """A dropped packet: acknowledge the deliver_sm, send nothing, count ``reason``."""

    token: Hashable
    reason: StkRejectReason
    detail: str  # the error class and status: never a key, a PIN or packet bytes


@dataclass(frozen=True, slots=True)
class StkSubmit:
    """The submit_sm of an answer: SMS-PP data download of one secured command packet to the wallet's TAR."""

    destination: str
    source: str
    counter: int
    short_message: bytes = field(repr=False)
    protocol_id: int = PROTOCOL_ID_SIM_DATA_DOWNLOAD
    data_coding: int = DATA_CODING_SIM_DATA_DOWNLOAD
    esm_class: int = ESM_CLASS_UDHI


class _Refused(Exception):
    def __init__(self, reason: StkRejectReason, detail: str, who: str = "") -> None:
        super().__init__(reason.value)
        self.reason, self.detail, self.who = reason, detail, who


class StkChannel:
    """Verifies the wallet's secured requests against the card's keys and counters; secures the answers.

    ``clock`` gives microseconds since the epoch (UTC) for ``stk_counters.updated_at``; ``tars`` are the
    wallet TARs the channel answers to.
    """

    def __init__(
        self,
        engine: Engine,
        registry: CardLookup,
        masters: WalletMasters,
        *,
        clock: Callable[[], int] = wall_clock_us,
        tars: Collection[bytes] = WALLET_TARS_DEFAULT,
    ) -> None:
        self.engine = engine
        self._registry = registry
        self._masters = masters
        self._clock = clock
        self._tars = frozenset(Tar(t) for t in tars)

    # -- in --------------------------------------------------------------------------------------

    def receive(self, inbound: StkInbound) -> StkServe | StkReject:
        """What to do with one deliver_sm (see the module docstring for the checks and their order)."""
        try:
            return self._receive(inbound)
        except _Refused as refused:
            logger.warning(
                "stk: dropped a packet from %s (smsc id %r, %d octets): %s, %s",
                refused.who or _shown(inbound.source),
                _shown(inbound.smsc_id),
                len(inbound.payload) if isinstance(inbound.payload, bytes) else -1,
                refused.reason.value,
                refused.detail,
            )
            return StkReject(inbound.token, refused.reason, refused.detail)

    def _receive(self, inbound: StkInbound) -> StkServe:
        frame = _check_shape(inbound)
        if frame.spi != WALLET_SPI:
            raise _Refused(StkRejectReason.INSECURE, "SPI is not the wallet's")
        if frame.tar not in self._tars:
            raise _Refused(StkRejectReason.UNKNOWN_TAR, f"TAR {frame.tar.value.hex().upper()}")
        card = self._card(inbound.source)
        keyset = self._keyset(card)
        packet, redelivery = self._verify(inbound, card, keyset)
        try:
            request = WalletRequest.from_bytes(packet.data)
        except CodecError as exc:
            raise _Refused(StkRejectReason.INVALID_REQUEST, f"{type(exc).__name__} at {exc.offset}", card.iccid) from None
        if request.request_id != request_id_for(packet.counter):
            raise _Refused(StkRejectReason.INVALID_REQUEST, "request id is not its counter's", card.iccid)
        lang = _LANGS.get(request.language or "", Lang.EN)
        command = command_for(request, lang)
        service_request, answer = None, None
        if isinstance(command, MessageId):
            answer = reply(command, lang, Outcome.OK if command is MessageId.PIN_CHANGED else Outcome.SYNTAX)
        else:
            key = request_key(card.iccid, packet.counter)
            service_request = ServiceRequest(
                key=key, channel=Channel.STK, msisdn=card.msisdn, command=command, lang=lang, pin_verified_by_card=True
            )
        logger.debug("stk: accepted counter %d of card %s%s", packet.counter, card.iccid, " (redelivery)" if redelivery else "")
        return StkServe(
            token=inbound.token,
            msisdn=card.msisdn,
            reply_to=inbound.destination,
            iccid=card.iccid,
            key_version=card.wallet_key_version,
            tar=packet.tar.to_bytes(),
            counter=packet.counter,
            request_id=request.request_id,
            operation=request.operation,
            lang=lang,
            request=service_request,
            answer=answer,
            redelivery=redelivery,
        )

    def _card(self, source: str) -> RegisteredCard:
        try:
            card = self._registry.by_msisdn(source)
            if card is not None:
                check_msisdn(card.msisdn)
        except (RequestError, WalletUsageError) as exc:
            raise _Refused(StkRejectReason.UNKNOWN_CARD, f"source is no wallet number ({exc.code})") from None
        if card is None:
            raise _Refused(StkRejectReason.UNKNOWN_CARD, "no card has the source number")
        return card

    def _keyset(self, card: RegisteredCard) -> KeySet:
        keyset = card_keyset(self._masters, card.iccid, card.wallet_key_version)
        if keyset is None:
            raise _Refused(StkRejectReason.UNKNOWN_KEY, f"wallet key version {card.wallet_key_version}", card.iccid)
        return keyset

    def _verify(self, inbound: StkInbound, card: RegisteredCard, keyset: KeySet) -> tuple[CommandPacket, bool]:
        """Check the packet and its counter in one transaction holding the card's row; store an accepted counter."""
        tars = self._tars

        def lookup(tar: Tar, kic: Kic, kid: Kid) -> KeySet | None:
            return keyset if tar in tars else None

        def work(conn: sa.Connection) -> tuple[CommandPacket, bool]:
            row = stk_store.lock_row(conn, card.iccid)
            last = 0 if row is None else row.card_counter
            # The same SMSC message id as the last accepted packet: its counter may come again (a redelivery).
            again = row is not None and row.smsc_id == inbound.smsc_id and last > 0
            packet = secured.unwrap_command(
                inbound.payload, lookup, last_counter=last - 1 if again else last, minimum_security=MINIMUM_SECURITY
            )
            if packet.counter > last:
                stk_store.accept(conn, row, card.iccid, packet.counter, inbound.smsc_id, self._clock())
            return packet, packet.counter == last

        try:
            return run_in_transaction(self.engine, work, attempts_max=TX_ATTEMPTS_MAX, backoff_s=TX_BACKOFF_S, what="STK counter check")
        except OtaSecurityError as exc:
            raise _Refused(_reason(exc), f"{type(exc).__name__} (status {exc.status:02X})", card.iccid) from None
        except CodecError as exc:
            raise _Refused(StkRejectReason.MALFORMED, f"{type(exc).__name__} at {exc.offset}", card.iccid) from None

    # -- out -------------------------------------------------------------------------------------

    def respond(self, serve: StkServe, answer: ServiceReply) -> StkSubmit:
        """The secured answer to ``serve``: ``answer`` as a :class:`WalletResponse` under the card's next gateway counter."""
        if not isinstance(serve, StkServe) or not isinstance(answer, ServiceReply):
            raise StkUsageError("respond takes the StkServe that receive returned and the ServiceReply to it")
        keyset = card_keyset(self._masters, serve.iccid, serve.key_version)
        if keyset is None:
            raise StkUsageError(f"wallet key version {serve.key_version} of card {serve.iccid} is not in the key source")
        data = wallet_response(serve.request_id, answer).to_bytes()

        def work(conn: sa.Connection) -> int:
            row = stk_store.lock_row(conn, serve.iccid)
            if row is None:
                raise StkUsageError(f"card {serve.iccid} never had a request accepted here")
            if row.gateway_counter >= secured.COUNTER_MAX:
                raise StkCounterExhausted(f"the gateway's counter of card {serve.iccid} is at 2^40 - 1")
            stk_store.set_gateway_counter(conn, serve.iccid, row.gateway_counter + 1, self._clock())
            return row.gateway_counter + 1

        counter = run_in_transaction(self.engine, work, attempts_max=TX_ATTEMPTS_MAX, backoff_s=TX_BACKOFF_S, what="STK answer counter")
        packet = secured.wrap_command(data, keyset, spi=WALLET_SPI, tar=serve.tar, counter=counter, with_udh=True)
        return StkSubmit(destination=serve.msisdn, source=serve.reply_to, counter=counter, short_message=packet)


# --- the pure parts ---------------------------------------------------------------------------------


def request_key(iccid: str, counter: int) -> str:
    """``stk:<ICCID>:<counter>``: a card's request by its counter, the same in every redelivery of its packet."""
    return f"stk:{iccid}:{counter}"


def _check_shape(inbound: StkInbound) -> CommandFrame:
    """The command frame of a deliver_sm that is one SMS of 8-bit data with the Command Packet Identifier alone."""
    payload, smsc_id = inbound.payload, inbound.smsc_id
    if not isinstance(smsc_id, str) or not 0 < len(smsc_id) <= SMSC_ID_LEN_MAX or not smsc_id.isprintable():
        raise _Refused(StkRejectReason.MALFORMED, f"SMSC id is not 1..{SMSC_ID_LEN_MAX} printable characters")
    if not isinstance(payload, bytes) or len(payload) > secured.SMS_USER_DATA_MAX_OCTETS:
        raise _Refused(StkRejectReason.MALFORMED, f"user data is not bytes of at most {secured.SMS_USER_DATA_MAX_OCTETS} octets")
    if not inbound.esm_class & ESM_CLASS_UDHI or inbound.data_coding not in BINARY_DATA_CODINGS:
        raise _Refused(StkRejectReason.MALFORMED, f"esm_class {inbound.esm_class:#04x}, data_coding {inbound.data_coding:#04x}")
    if payload[: len(secured.COMMAND_UDH)] != secured.COMMAND_UDH:
        raise _Refused(StkRejectReason.MALFORMED, "the header is not the Command Packet Identifier alone")
    try:
        return CommandFrame.from_bytes(payload)
    except CodecError as exc:
        raise _Refused(StkRejectReason.MALFORMED, f"{type(exc).__name__} at {exc.offset}") from None


def _reason(exc: OtaSecurityError) -> StkRejectReason:
    return _REASON_BY_STATUS.get(exc.status, StkRejectReason.FORGED)


def _shown(value: object) -> str:
    """A remote value for a log line: printable, at most 64 characters."""
    text = value if isinstance(value, str) else type(value).__name__
    return "".join(c if c.isprintable() else "?" for c in text[:SMSC_ID_LEN_MAX])


def _number(digits: str) -> str:
    """A number typed on the handset as the SMS parser reads it: Chinese mobiles become 86…, others stay E.164 digits."""
    return normalise_msisdn(digits) or digits


def _need(value: T | None) -> T:
    # WalletRequest has checked that each operation carries its fields.
    assert value is not None
    return value


def command_for(request: WalletRequest, lang: Lang) -> Command | MessageId:
    """The sms.commands command of a wallet request, or the reply when no service call is needed.

    The PIN fields are empty: the card verified the PIN (``pin_verified_by_card``).
    """
    op = request.operation
    if op in _READINGS:
        return _READINGS[op](lang=lang, pin="")
    if op is Operation.PIN_CHANGED:
        return MessageId.PIN_CHANGED
    amount = _need(request.amount_fen)
    if op is Operation.TOP_UP:
        target = None if request.msisdn is None else _number(request.msisdn)
        return TopUp(lang=lang, amount_fen=amount, target=target, pin="")
    if op is Operation.PAY:
        kind, payee = (
            (PayeeKind.MSISDN, _number(_need(request.msisdn))) if request.merchant is None else (PayeeKind.MERCHANT, "M" + request.merchant)
        )
        return Pay(lang=lang, payee_kind=kind, payee=payee, amount_fen=amount, pin="")
    biller = BILLER_CODES.get(int(_need(request.biller)))
    if biller is None:
        return MessageId.BILLER_INVALID
    return Bill(lang=lang, biller=biller, account=_need(request.account), amount_fen=amount, pin="")


def wallet_status(answer: ServiceReply) -> WalletStatus:
    """The response's status octet for a service reply."""
    if answer.outcome is Outcome.OK:
        return WalletStatus.OK
    if answer.outcome is Outcome.SYNTAX:
        return WalletStatus.INVALID_REQUEST
    return _STATUS_BY_MESSAGE.get(answer.message_id, WalletStatus.DECLINED)


def wallet_response(request_id: int, answer: ServiceReply) -> WalletResponse:
    """The reply as a response that fits one secured SMS: the text cut if it must be, the balance only if it fits."""
    text = render(answer.message_id, answer.lang, **answer.params)
    balance = answer.params.get("balance_fen") if answer.message_id in _WALLET_BALANCE_REPLIES else None
    status = wallet_status(answer)
    if (
        isinstance(balance, int)
        and not isinstance(balance, bool)
        and 0 <= balance <= AMOUNT_FEN_MAX
        and _value_octets(text) <= _text_budget(encode_amount(balance, "balance", minimum=0))
    ):
        return WalletResponse.make(request_id, status, text, balance)
    return WalletResponse.make(request_id, status, _fit(text, _text_budget(None)))


def _text_budget(balance: bytes | None) -> int:
    """Octets left for the TEXT value (its DCS octet and the text) after the head and the other TLVs."""
    budget = WALLET_PAYLOAD_OCTETS_MAX - _RESPONSE_HEAD_OCTETS - _TLV_HEAD_OCTETS
    return budget if balance is None else budget - _TLV_HEAD_OCTETS - len(balance)


def _value_octets(text: str) -> int:
    return len(TextString.auto(text).to_value())


def _fit(text: str, budget: int) -> str:
    """``text`` if its TEXT value fits ``budget`` octets, else its longest prefix with an ellipsis that does."""
    if _value_octets(text) <= budget:
        return text
    for end in range(len(text) - 1, 0, -1):
        head = text[:end].rstrip()
        cut = head + ("..." if can_encode_gsm7(head) else "…")
        if _value_octets(cut) <= budget:
            return cut
    return "…"
