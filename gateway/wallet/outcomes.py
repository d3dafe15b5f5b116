"""Values of the wallet service: requests, replies, outcomes, the package's errors, and stored reply parameters.

A :class:`ServiceRequest` is what a channel (SMS, USSD, the STK applet's
secured packets) hands to :class:`~simwallet.gateway.wallet.service.WalletService`
after parsing; a :class:`ServiceReply` is what it gets back: a catalogue
message id and its parameters (:mod:`simwallet.gateway.sms.catalogue`), which
the channel renders, plus what happened (:class:`Outcome`) and the ledger
transfers written.

Stored replies. Every answered request key keeps its reply in
``wallet_replies``; the parameters are stored as JSON by
:func:`encode_params` and read back by :func:`decode_params`, which follow
each message's declared parameter kinds (``money`` as int fen, ``biller`` and
``limit`` as their enum values, ``entries`` as ``[day, kind, fen]`` lists), so
a replayed reply renders exactly as the first one did.

Errors::

    GatewayError
    └── WalletError                      root of this package; ``code`` is machine-readable
        ├── WalletUsageError (ValueError)   the caller: a malformed request, a batch too large, a bad PIN to set
        ├── UnknownCustomer (LookupError)   the caller: a service-hall call naming no registered card
        └── PinKeyMismatch                  the operator: the PIN key is not the one the stored verifiers were made with

None of them ever carries a PIN: messages name fields, never their values.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Final

from simwallet.gateway.errors import GatewayError
from simwallet.gateway.ledger.model import IDEMPOTENCY_KEY_LEN_MAX, Channel
from simwallet.gateway.sms.catalogue import CATALOGUE, Biller, EntryKind, HistoryEntry, Lang, LimitKind, MessageId, ParamKind
from simwallet.gateway.sms.commands import (
    Balance,
    BankBalance,
    Bill,
    ChangePin,
    Command,
    Help,
    History,
    Pay,
    Start,
    Stop,
    TopUp,
)

# The ledger key of a request's transfer is this prefix and the request key (see ledger_key).
LEDGER_KEY_PREFIX: Final = "svc:"
# A channel's request key (``sms:<source addr>:<smsc message id>``): the prefix and the key must fit the
# ledger's idempotency keys, and the stored-replies index stays small.
REQUEST_KEY_LEN_MAX: Final = IDEMPOTENCY_KEY_LEN_MAX - len(LEDGER_KEY_PREFIX)
# The ledger derives keys of caused rows (bonuses) with '#': a request key may not hold one.
_KEY_FORBIDDEN: Final = "#"
# A stored reply's parameters: a history of HISTORY_LINES_MAX lines is about 200 bytes of JSON.
PARAMS_JSON_BYTES_MAX: Final = 1024
# Channels the service answers; the counter, POS and bank have their own front ends.
SERVICE_CHANNELS: Final = frozenset({Channel.SMS, Channel.USSD, Channel.STK})
# ITU-T E.164 §6 numbers without '+', first digit not 0, of 8..15 digits: what the catalogue shows masked
# (a mobile number is never shorter; the card registry also takes 7 digits, which no mobile plan uses).
MSISDN_RE: Final = re.compile(r"[1-9][0-9]{7,14}")
COMMAND_TYPES: Final = (Balance, TopUp, Pay, Bill, BankBalance, History, ChangePin, Stop, Start, Help)


class Outcome(enum.StrEnum):
    """What became of a request. Stable strings: stored with the reply and counted by reports."""

    OK = "ok"
    REFUSED = "refused"  # the ledger or the service said no: funds, limits, payee, bank link
    PIN_WRONG = "pin_wrong"
    LOCKED = "locked"  # too many wrong PINs, until a service hall unlocks the wallet
    NO_PIN = "no_pin"  # the wallet has no PIN yet: a service hall sets one
    UNREGISTERED = "unregistered"
    CARD_BLOCKED = "card_blocked"
    SYNTAX = "syntax"  # a command whose fields break the grammar (built without the parser)
    DUPLICATE = "duplicate"  # the request key was used before for another request
    UNAVAILABLE = "unavailable"  # something unexpected: not stored, a redelivery tries again


class WalletError(GatewayError):
    """Root of every error raised by :mod:`simwallet.gateway.wallet`."""

    code: str = "wallet_error"


class WalletUsageError(WalletError, ValueError):
    """A caller's mistake: a malformed request or batch, a PIN the policy refuses to set."""

    code = "wallet_misuse"

    def __init__(self, message: str, code: str = "wallet_misuse") -> None:
        super().__init__(message)
        self.code = code


class UnknownCustomer(WalletError, LookupError):
    """A service-hall call naming a number or customer that has no registered card."""

    code = "unknown_customer"


class PinKeyMismatch(WalletError):
    """The stored PIN verifier was made under another PIN key: an operator's configuration error."""

    code = "pin_key_mismatch"


def ledger_key(request_key: str) -> str:
    """The idempotency key of the ledger transfer a request makes."""
    return LEDGER_KEY_PREFIX + request_key


def check_msisdn(value: object, what: str = "msisdn") -> str:
    if not isinstance(value, str) or MSISDN_RE.fullmatch(value) is None:
        raise WalletUsageError(f"{what} must be E.164 digits without '+' (8..15, first not 0)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRequest:
    """One parsed command of one subscriber, keyed by the channel's idempotency key.

    ``pin_verified_by_card`` is for the STK channel only: the applet checked
    the wallet PIN and the secured packet authenticated the card, so the
    command's PIN is not checked here.
    """

    key: str
    channel: Channel
    msisdn: str
    command: Command
    lang: Lang
    pin_verified_by_card: bool = False

    def __post_init__(self) -> None:
        key = self.key
        if not isinstance(key, str) or not 0 < len(key) <= REQUEST_KEY_LEN_MAX or not key.isprintable() or _KEY_FORBIDDEN in key:
            raise WalletUsageError(f"request key must be 1..{REQUEST_KEY_LEN_MAX} printable characters without {_KEY_FORBIDDEN!r}")
        try:
            channel = Channel(self.channel)
            lang = Lang(self.lang)
        except ValueError:
            raise WalletUsageError("unknown channel or language") from None
        if channel not in SERVICE_CHANNELS:
            raise WalletUsageError(f"the wallet service answers {', '.join(sorted(SERVICE_CHANNELS))}, not {channel}")
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "lang", lang)
        check_msisdn(self.msisdn)
        if not isinstance(self.command, COMMAND_TYPES):
            raise WalletUsageError(f"command must be one of the sms.commands types, not {type(self.command).__name__}")
        if self.pin_verified_by_card is not False and (self.pin_verified_by_card is not True or channel is not Channel.STK):
            raise WalletUsageError("only the STK channel's authenticated packets may say the card verified the PIN")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceReply:
    """The answer to one request: a catalogue message and its parameters (never a PIN)."""

    message_id: MessageId
    params: Mapping[str, object]
    lang: Lang
    outcome: Outcome
    transfer_ids: tuple[int, ...] = ()
    # True when this is the stored reply of a request key answered before.
    replayed: bool = False
    # Whether the reply is kept as the key's answer (False: unexpected trouble, a redelivery tries again).
    stored: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


def reply(
    message_id: MessageId,
    lang: Lang,
    outcome: Outcome,
    params: Mapping[str, object] | None = None,
    transfer_ids: Sequence[int] = (),
) -> ServiceReply:
    return ServiceReply(message_id=message_id, params=params or {}, lang=lang, outcome=outcome, transfer_ids=tuple(transfer_ids))


def unavailable(lang: Lang) -> ServiceReply:
    """The answer to trouble: not stored, so that a redelivery of the request runs it again."""
    return ServiceReply(message_id=MessageId.UNAVAILABLE, params={}, lang=lang, outcome=Outcome.UNAVAILABLE, stored=False)


# --- parameters as stored ----------------------------------------------------------------------


def encode_params(message_id: MessageId, params: Mapping[str, object]) -> str:
    """The JSON text of a reply's parameters, by the kinds the catalogue declares for ``message_id``."""
    kinds = CATALOGUE[message_id].params
    out: dict[str, object] = {}
    for name, value in params.items():
        kind = kinds.get(name)
        if kind is None or "pin" in name.lower():
            raise WalletError(f"message {message_id} has no parameter {name!r}")
        if kind is ParamKind.ENTRIES:
            if not isinstance(value, Sequence):
                raise WalletError(f"parameter {name} must be a sequence of history entries")
            out[name] = [[e.day.isoformat(), e.kind.value, e.amount_fen] for e in value if isinstance(e, HistoryEntry)]
        elif isinstance(value, enum.Enum):
            out[name] = value.value
        elif isinstance(value, bool) or not isinstance(value, int | str):
            raise WalletError(f"parameter {name} of message {message_id} is a {type(value).__name__}")
        else:
            out[name] = value
    text = json.dumps(out, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > PARAMS_JSON_BYTES_MAX:
        raise WalletError(f"parameters of message {message_id} exceed PARAMS_JSON_BYTES_MAX {PARAMS_JSON_BYTES_MAX}")
    return text


def decode_params(message_id: MessageId, text: str) -> dict[str, object]:
    """The parameters :func:`encode_params` stored, with their enum and entry types restored."""
    kinds = CATALOGUE[message_id].params
    raw = json.loads(text)
    out: dict[str, object] = {}
    for name, value in raw.items():
        kind = kinds[name]
        if kind is ParamKind.ENTRIES:
            out[name] = tuple(HistoryEntry(date.fromisoformat(d), EntryKind(k), int(a)) for d, k, a in value)
        elif kind is ParamKind.BILLER:
            out[name] = Biller(value)
        elif kind is ParamKind.LIMIT:
            out[name] = LimitKind(value)
        else:
            out[name] = value
    return out
