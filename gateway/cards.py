"""Card registration: the cards personalization hands to the backend, and their customers' wallet accounts.

Specs: ETSI TS 102 221 §13.2 and ITU-T E.118 (ICCID, 19..20 digits); 3GPP
TS 23.003 §2.2 (IMSI, at most 15 digits); ITU-T E.164 §6 (MSISDN, at most 15
digits, first digit not 0; stored without ``+``).

Theory of operation
-------------------
:meth:`CardRegistry.register` runs one database transaction that

1. reads, in one statement (one snapshot even at READ COMMITTED), the card
   with this ICCID and any card holding its IMSI or MSISDN. If the card is
   registered with the same values, the call is a repeat (a clerk's retry, a
   batch run again): nothing is written and the result says
   ``created=False``; with other values it is refused
   (``idempotency_conflict`` naming the first field that differs);
2. refuses an IMSI or MSISDN that another card holds (``field_invalid`` on
   ``imsi``/``msisdn``, naming that card's ICCID);
3. opens the customer's wallet accounts (:data:`CUSTOMER_ACCOUNT_KINDS`)
   that are not open yet: a second card of the same customer opens nothing;
4. inserts the card, status ``personalized``.

:meth:`Ledger.open_accounts` runs a transaction of its own, so step 3 inserts
the account rows itself, built by the ledger's own validation and defaults
(``Ledger._account_row``): the card and its accounts commit together or not
at all. Two registrations of one ICCID at once: SQLite serializes writers
(``BEGIN IMMEDIATE``); on PostgreSQL the later insert of the same key waits for
the earlier transaction and then fails on the unique index, and the whole
transaction is run again, which now finds the card (step 1). Exactly one
caller sees ``created=True``.

:meth:`CardRegistry.register_many` does the same for a group of cards (a
batch's, up to :data:`REGISTER_MANY_MAX`) in one transaction of five
statements: one read of every card holding one of the group's ICCIDs, IMSIs or
MSISDNs, one of the customers' accounts, one of the tiers, one insert of the
accounts and one of the cards. It keeps all or, on any refusal, none.

The table holds identifiers and key *versions*, never a PIN, PUK, ADM code,
Ki or key; ``details`` takes non-secret extras only (names that look like a
secret are refused).
"""

from __future__ import annotations

import builtins
import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.gateway.diversify import check_iccid
from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger, wall_clock_us
from simwallet.gateway.ledger.model import Account, AccountKind
from simwallet.gateway.ledger.rows import row_to_account
from simwallet.gateway.store.schema import accounts, cards, product_tiers
from simwallet.gateway.store.sql import one_of
from simwallet.gateway.store.tx import run_in_transaction

# 3GPP TS 23.003 §2.2: MCC (3) + MNC (2..3) + MSIN, 15 digits at most.
IMSI_DIGITS_MIN: Final = 6
IMSI_DIGITS_MAX: Final = 15
# ITU-T E.164 §6: at most 15 digits including the country code.
MSISDN_DIGITS_MIN: Final = 7
MSISDN_DIGITS_MAX: Final = 15
# "customer:<id>" plus "/customer_wallet" must fit the ledger's 64-character account reference.
CUSTOMER_PREFIX: Final = "customer:"
CUSTOMER_ID_LEN_MAX: Final = 64 - len(CUSTOMER_PREFIX) - len("/customer_wallet")
# Column widths of schema.cards.
PROFILE_LEN_MAX: Final = 64
TIER_LEN_MAX: Final = 32  # product_tiers.name
CLERK_LEN_MAX: Final = 64
# GP CS v2.3 §11.8 and the key store: versions 1..127.
KEY_VERSION_MAX: Final = 127
# A card's non-secret extras: a few fields, not a document store.
DETAILS_JSON_BYTES_MAX: Final = 4096
# Cards per page of list().
LIST_LIMIT_MAX: Final = 10_000
# Values per IN (...) of holders(): well under SQLite's (32766) and PostgreSQL's (65535) bound-parameter limits.
LOOKUP_CHUNK_MAX: Final = 500
_IDENTITY_COLUMNS: Final = ("iccid", "imsi", "msisdn")
# Cards per register_many: three IN lists of this many values stay far below any bound-parameter limit.
REGISTER_MANY_MAX: Final = 256
# Attempts of one registration transaction before a conflict becomes a StoreError.
TX_ATTEMPTS_MAX: Final = 8
# First back-off after a conflict; doubles per attempt.
TX_BACKOFF_S: Final = 0.005

# The accounts every customer with a card has.
CUSTOMER_ACCOUNT_KINDS: Final = (AccountKind.CUSTOMER_WALLET,)
# Product tier of a wallet opened by registration: Class I, phone number only.
DEFAULT_TIER: Final = "basic"

_CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Words that mark a details key as a secret (compared per word of the key).
_SECRET_WORDS: Final = frozenset(
    {
        "adm",
        "adm1",
        "pin",
        "pin1",
        "pin2",
        "puk",
        "puk1",
        "puk2",
        "ki",
        "opc",
        "key",
        "keys",
        "kic",
        "kid",
        "dek",
        "secret",
        "password",
        "passphrase",
    }
)

T = TypeVar("T")


class AcceptanceChannel(enum.StrEnum):
    """Where the card was handed to its customer."""

    SERVICE_HALL = "service_hall"
    FIELD = "field"  # a promoter or technician on site
    BATCH = "batch"  # pre-personalized in bulk, sold later
    AGENT = "agent"  # a retail agent


class CardStatus(enum.StrEnum):
    PERSONALIZED = "personalized"  # registered, not yet in use
    ACTIVE = "active"
    BLOCKED = "blocked"  # lost, stolen, or PUK blocked; may come back
    RETIRED = "retired"  # final


# (from, to) pairs set_status allows; a status set again is a no-op.
STATUS_TRANSITIONS: Final = frozenset(
    {
        (CardStatus.PERSONALIZED, CardStatus.ACTIVE),
        (CardStatus.PERSONALIZED, CardStatus.BLOCKED),
        (CardStatus.PERSONALIZED, CardStatus.RETIRED),
        (CardStatus.ACTIVE, CardStatus.BLOCKED),
        (CardStatus.ACTIVE, CardStatus.RETIRED),
        (CardStatus.BLOCKED, CardStatus.ACTIVE),
        (CardStatus.BLOCKED, CardStatus.RETIRED),
    }
)


def _invalid(field_name: str, message: str) -> RequestError:
    return RequestError(RejectCode.FIELD_INVALID, field_name, message)


def _digits(value: object, field_name: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or not low <= len(value) <= high:
        raise _invalid(field_name, f"{field_name} must be {low}..{high} digits")
    return value


def normalize_msisdn(value: str) -> str:
    """E.164 digits without ``+`` (a leading ``+`` is accepted and dropped)."""
    digits = value[1:] if isinstance(value, str) and value.startswith("+") else value
    digits = _digits(digits, "msisdn", MSISDN_DIGITS_MIN, MSISDN_DIGITS_MAX)
    if digits[0] == "0":
        raise _invalid("msisdn", "an E.164 number starts with its country code, never 0")
    return digits


def _text(value: object, field_name: str, length_max: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= length_max or not value.isprintable():
        raise _invalid(field_name, f"{field_name} must be 1..{length_max} printable characters")
    return value


def _version(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= KEY_VERSION_MAX:
        raise _invalid(field_name, f"{field_name} must be 1..{KEY_VERSION_MAX}")
    return value


def _details(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid("details", "details must be a mapping")
    try:
        text = json.dumps(dict(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        raise _invalid("details", "details must be JSON: text, numbers, lists and mappings") from None
    if len(text.encode()) > DETAILS_JSON_BYTES_MAX:
        raise _invalid("details", f"details take at most {DETAILS_JSON_BYTES_MAX} bytes of JSON")
    for key in value:
        if _SECRET_WORDS & set(re.split(r"[^a-z0-9]+", str(key).lower())):
            raise _invalid("details", f"details key {key!r} looks like a secret: PINs, PUKs, ADM codes, Ki and keys are never stored")
    return MappingProxyType(json.loads(text))


@dataclass(frozen=True)
class CardRegistration:
    """What personalization tells the backend about a card. Validated on construction (``RequestError``)."""

    iccid: str
    imsi: str
    msisdn: str
    customer_ref: str  # "customer:<id>"
    profile: str
    channel: AcceptanceChannel
    clerk: str
    scp03_kvn: int
    ota_key_version: int
    wallet_key_version: int
    personalized_at: int  # microseconds since the epoch, UTC
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Product tier of a wallet opened for a new customer (an existing wallet keeps its own).
    tier: str | None = DEFAULT_TIER

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_iccid(self.iccid)
        _digits(self.imsi, "imsi", IMSI_DIGITS_MIN, IMSI_DIGITS_MAX)
        set_(self, "msisdn", normalize_msisdn(self.msisdn))
        ref = self.customer_ref
        if not (
            isinstance(ref, str)
            and ref.startswith(CUSTOMER_PREFIX)
            and len(ref) - len(CUSTOMER_PREFIX) <= CUSTOMER_ID_LEN_MAX
            and _CUSTOMER_ID.fullmatch(ref[len(CUSTOMER_PREFIX) :])
        ):
            raise _invalid("customer_ref", f"customer_ref is {CUSTOMER_PREFIX}<id>, id 1..{CUSTOMER_ID_LEN_MAX} of A-Z a-z 0-9 _ . -")
        _text(self.profile, "profile", PROFILE_LEN_MAX)
        try:
            set_(self, "channel", AcceptanceChannel(self.channel))
        except ValueError:
            raise _invalid("channel", f"channel is one of {', '.join(c.value for c in AcceptanceChannel)}") from None
        _text(self.clerk, "clerk", CLERK_LEN_MAX)
        for name in ("scp03_kvn", "ota_key_version", "wallet_key_version"):
            _version(getattr(self, name), name)
        if isinstance(self.personalized_at, bool) or not isinstance(self.personalized_at, int) or self.personalized_at <= 0:
            raise _invalid("personalized_at", "personalized_at is microseconds since the epoch")
        set_(self, "details", _details(self.details))
        if self.tier is not None:
            _text(self.tier, "tier", TIER_LEN_MAX)


# The registration fields stored on the card row, compared by a repeated registration.
_CARD_FIELDS: Final = tuple(f.name for f in fields(CardRegistration) if f.name != "tier")
# What a registration sent again must repeat (the first personalized_at stays: a resumed run sends its own).
_SAME_FIELDS: Final = tuple(name for name in _CARD_FIELDS if name != "personalized_at")


@dataclass(frozen=True)
class RegisteredCard:
    """A card as stored."""

    iccid: str
    imsi: str
    msisdn: str
    customer_ref: str
    profile: str
    channel: AcceptanceChannel
    clerk: str
    scp03_kvn: int
    ota_key_version: int
    wallet_key_version: int
    status: CardStatus
    personalized_at: int
    registered_at: int  # microseconds since the epoch, UTC, from the registry's clock
    details: Mapping[str, Any]


@dataclass(frozen=True)
class RegistrationResult:
    card: RegisteredCard
    created: bool  # False: the same registration had been made before; nothing was written
    accounts: tuple[Account, ...]  # the customer's wallet accounts (CUSTOMER_ACCOUNT_KINDS), opened now or before
    opened: tuple[Account, ...] = ()  # those of them this call opened


def _row_to_card(row: Any) -> RegisteredCard:
    details = row.details if isinstance(row.details, dict) else json.loads(row.details)
    return RegisteredCard(
        iccid=row.iccid,
        imsi=row.imsi,
        msisdn=row.msisdn,
        customer_ref=row.customer_ref,
        profile=row.profile,
        channel=AcceptanceChannel(row.channel),
        clerk=row.clerk,
        scp03_kvn=row.scp03_kvn,
        ota_key_version=row.ota_key_version,
        wallet_key_version=row.wallet_key_version,
        status=CardStatus(row.status),
        personalized_at=row.personalized_at,
        registered_at=row.registered_at,
        details=MappingProxyType(details),
    )


class CardRegistry:
    """The ``cards`` table, with the ledger whose accounts registration opens (same database).

    ``clock`` gives ``registered_at`` in microseconds since the epoch (UTC).
    """

    def __init__(self, engine: Engine, ledger: Ledger, *, clock: Callable[[], int] = wall_clock_us) -> None:
        if ledger.engine.url != engine.url:
            raise ValueError("the card registry and the ledger must use the same database")
        self.engine = engine
        self.ledger = ledger
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"

    # -- registration ------------------------------------------------------------------

    def register(self, registration: CardRegistration) -> RegistrationResult:
        """Register a card and open its customer's wallet accounts, in one transaction; idempotent.

        A card registered again with the same values is not changed (``created`` False; the first
        ``personalized_at`` is kept, so a resumed personalization may send its own time); any other
        value that differs is an ``idempotency_conflict`` naming the field.
        """
        return self._in_tx(lambda conn: self._register_all(conn, [registration]))[0]

    def register_many(self, registrations: Sequence[CardRegistration]) -> builtins.list[RegistrationResult]:
        """What :meth:`register` does for each card, in one transaction: all of them or, on any refusal, none.

        A batch hands over its finished cards in groups: one commit and five statements for the group instead of
        per card. The results are in the order given; a card given twice is registered once (its second
        result says ``created=False``). A refusal names the field, as :meth:`register`'s does, and keeps none
        of the group: the caller registers those cards one at a time to learn which one it was.
        """
        if not 0 < len(registrations) <= REGISTER_MANY_MAX:
            raise ValueError(f"register_many takes 1 to {REGISTER_MANY_MAX} registrations, not {len(registrations)}")
        return self._in_tx(lambda conn: self._register_all(conn, registrations))

    def _register_all(self, conn: sa.Connection, regs: Sequence[CardRegistration]) -> builtins.list[RegistrationResult]:
        # One statement, so one snapshot even at READ COMMITTED: a card committed meanwhile
        # shows up as itself, never as "its MSISDN is on another card".
        query = sa.select(cards).where(
            sa.or_(
                one_of(conn.dialect, cards.c.iccid, sorted({r.iccid for r in regs})),
                one_of(conn.dialect, cards.c.imsi, sorted({r.imsi for r in regs})),
                one_of(conn.dialect, cards.c.msisdn, sorted({r.msisdn for r in regs})),
            )
        )
        found = {row.iccid: _row_to_card(row) for row in conn.execute(query)}
        new = self._new_cards(regs, found)
        held = self._customer_accounts(conn, {r.customer_ref for r in regs})
        now = self._clock()
        opened = self._open_missing(conn, new, held, now)
        created: dict[str, RegisteredCard] = {}
        if new:
            card_rows = [
                {name: getattr(reg, name) for name in _CARD_FIELDS}
                | {"channel": reg.channel.value, "details": dict(reg.details), "status": CardStatus.PERSONALIZED.value}
                | {"registered_at": now}
                for reg in new
            ]
            for row in conn.execute(cards.insert().returning(*cards.c, sort_by_parameter_order=True), card_rows):
                created[row.iccid] = _row_to_card(row)
        opener = {reg.customer_ref: reg.iccid for reg in reversed(new)}  # each customer's first new card opened its accounts
        results: builtins.list[RegistrationResult] = []
        reported: set[str] = set()  # cards whose created=True result is given (a card given twice is created once)
        for reg in regs:
            owner = reg.customer_ref
            holding = tuple(sorted((*held.get(owner, ()), *opened.get(owner, ())), key=lambda a: a.id))
            if reg.iccid in found or reg.iccid in reported:
                results.append(RegistrationResult(found.get(reg.iccid) or created[reg.iccid], False, holding))
            else:
                reported.add(reg.iccid)
                mine = tuple(sorted(opened.get(owner, ()), key=lambda a: a.id)) if opener[owner] == reg.iccid else ()
                results.append(RegistrationResult(created[reg.iccid], True, holding, mine))
        return results

    def _new_cards(self, regs: Sequence[CardRegistration], found: Mapping[str, RegisteredCard]) -> builtins.list[CardRegistration]:
        """The registrations to insert, each card once; a repeat must match, an IMSI or MSISDN must be free."""
        holders = {(column, getattr(card, column)): card.iccid for card in found.values() for column in ("imsi", "msisdn")}
        new: dict[str, CardRegistration] = {}
        for reg in regs:
            same = found.get(reg.iccid) or new.get(reg.iccid)
            if same is not None:
                self._check_same(same, reg)
                continue
            for column in ("imsi", "msisdn"):
                other = holders.setdefault((column, getattr(reg, column)), reg.iccid)
                if other != reg.iccid:
                    raise _invalid(column, f"{column} {getattr(reg, column)} is already on card {other}")
            new[reg.iccid] = reg
        return builtins.list(new.values())

    @staticmethod
    def _open_missing(
        conn: sa.Connection, new: Sequence[CardRegistration], held: Mapping[str, Sequence[Account]], now: int
    ) -> dict[str, builtins.list[Account]]:
        """Open the accounts the new cards' customers lack (a customer's first new card opens them), by owner."""
        specs: builtins.list[AccountSpec] = []
        opening: set[tuple[str, AccountKind]] = {(owner, a.kind) for owner, have in held.items() for a in have}
        for reg in new:
            for kind in CUSTOMER_ACCOUNT_KINDS:
                if (reg.customer_ref, kind) not in opening:
                    opening.add((reg.customer_ref, kind))
                    specs.append(AccountSpec(kind, reg.customer_ref, tier=reg.tier if kind is AccountKind.CUSTOMER_WALLET else None))
        tiers = {spec.tier for spec in specs if spec.tier is not None}
        if tiers:
            query = sa.select(product_tiers.c.name).where(one_of(conn.dialect, product_tiers.c.name, sorted(tiers)))
            known = set(conn.execute(query).scalars())
            for tier in sorted(tiers - known):
                raise _invalid("tier", f"no product tier {tier!r}")
        opened: dict[str, builtins.list[Account]] = {}
        if specs:
            # The ledger's own row builder (validation, flags, defaults): see the module docstring.
            rows = [Ledger._account_row(spec, now) for spec in specs]
            for row in conn.execute(accounts.insert().returning(*accounts.c, sort_by_parameter_order=True), rows):
                account = row_to_account(row)
                opened.setdefault(account.owner, []).append(account)
        return opened

    @staticmethod
    def _check_same(card: RegisteredCard | CardRegistration, reg: CardRegistration) -> None:
        for name in _SAME_FIELDS:
            if getattr(card, name) != getattr(reg, name):
                raise RequestError(RejectCode.IDEMPOTENCY_CONFLICT, name, f"card {reg.iccid} is registered with another {name}")

    @staticmethod
    def _customer_accounts(conn: sa.Connection, owners: Iterable[str]) -> dict[str, builtins.list[Account]]:
        kinds = [k.value for k in CUSTOMER_ACCOUNT_KINDS]
        owned = one_of(conn.dialect, accounts.c.owner, sorted(set(owners)))
        query = sa.select(accounts).where(owned, accounts.c.kind.in_(kinds)).order_by(accounts.c.id)
        held: dict[str, builtins.list[Account]] = {}
        for row in conn.execute(query):
            account = row_to_account(row)
            held.setdefault(account.owner, []).append(account)
        return held

    # -- reading and status --------------------------------------------------------------

    def get(self, iccid: str) -> RegisteredCard | None:
        check_iccid(iccid)
        with self._read() as conn:
            row = conn.execute(sa.select(cards).where(cards.c.iccid == iccid)).first()
        return None if row is None else _row_to_card(row)

    def by_msisdn(self, msisdn: str) -> RegisteredCard | None:
        """The card of a phone number (E.164, with or without ``+``), for the SMS and USSD services."""
        number = normalize_msisdn(msisdn)
        with self._read() as conn:
            row = conn.execute(sa.select(cards).where(cards.c.msisdn == number)).first()
        return None if row is None else _row_to_card(row)

    def holders(self, wanted: Mapping[str, Iterable[str]]) -> builtins.list[tuple[str, str, str]]:
        """``(iccid, imsi, msisdn)`` of every card holding one of the ``wanted`` values, by column name.

        ``wanted`` maps ``iccid``, ``imsi`` or ``msisdn`` to values compared as stored; a batch's pre-flight asks
        for thousands at once, so the values go in chunks of :data:`LOOKUP_CHUNK_MAX`.
        """
        found: dict[str, tuple[str, str, str]] = {}
        with self._read() as conn:
            for name, values in wanted.items():
                if name not in _IDENTITY_COLUMNS:
                    raise ValueError(f"cards are looked up by {', '.join(_IDENTITY_COLUMNS)}, not {name!r}")
                ordered = sorted(set(values))
                for start in range(0, len(ordered), LOOKUP_CHUNK_MAX):
                    chunk = ordered[start : start + LOOKUP_CHUNK_MAX]
                    query = sa.select(cards.c.iccid, cards.c.imsi, cards.c.msisdn).where(cards.c[name].in_(chunk))
                    for row in conn.execute(query):
                        found[row.iccid] = (row.iccid, row.imsi, row.msisdn)
        return builtins.list(found.values())

    def list(
        self, *, customer_ref: str | None = None, status: CardStatus | str | None = None, limit: int = 100, after_iccid: str | None = None
    ) -> builtins.list[RegisteredCard]:
        """Cards by ICCID, a page of at most ``limit`` after ``after_iccid``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= LIST_LIMIT_MAX:
            raise _invalid("limit", f"limit must be 1..{LIST_LIMIT_MAX}")
        query = sa.select(cards).order_by(cards.c.iccid).limit(limit)
        if customer_ref is not None:
            query = query.where(cards.c.customer_ref == customer_ref)
        if status is not None:
            query = query.where(cards.c.status == _status(status).value)
        if after_iccid is not None:
            query = query.where(cards.c.iccid > after_iccid)
        with self._read() as conn:
            return [_row_to_card(r) for r in conn.execute(query)]

    def set_status(self, iccid: str, status: CardStatus | str) -> RegisteredCard:
        """Move a card along :data:`STATUS_TRANSITIONS`; setting the current status again changes nothing."""
        check_iccid(iccid)
        target = _status(status)

        def work(conn: sa.Connection) -> RegisteredCard:
            query = sa.select(cards).where(cards.c.iccid == iccid)
            row = conn.execute(query.with_for_update() if self._pg else query).first()
            if row is None:
                raise _invalid("iccid", f"no card {iccid}")
            current = CardStatus(row.status)
            if current is target:
                return _row_to_card(row)
            if (current, target) not in STATUS_TRANSITIONS:
                raise _invalid("status", f"card {iccid} is {current.value}: it cannot become {target.value}")
            conn.execute(cards.update().where(cards.c.iccid == iccid).values(status=target.value))
            return _row_to_card(conn.execute(query).one())

        return self._in_tx(work)

    # -- transactions ------------------------------------------------------------------

    def _read(self) -> sa.Connection:
        return self.engine.connect().execution_options(simwallet_readonly=True)

    def _in_tx(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a write transaction, again after a unique-key race or a retryable conflict."""
        return run_in_transaction(self.engine, work, attempts_max=TX_ATTEMPTS_MAX, backoff_s=TX_BACKOFF_S, what="card registration")


def _status(value: CardStatus | str) -> CardStatus:
    try:
        return CardStatus(value)
    except ValueError:
        raise _invalid("status", f"status is one of {', '.join(s.value for s in CardStatus)}") from None
