"""Table access of the wallet service: one statement per question, for a whole batch at once.

Every function takes an open connection and asks about all the keys, numbers
or customers of a batch in one statement (:func:`~simwallet.gateway.store.sql.one_of`:
one array parameter on PostgreSQL, so the statement's text is the same for
every batch; ``IN`` lists on SQLite stay far below its bound-parameter limit,
since a batch holds at most ``SERVICE_BATCH_MAX`` requests). The service
decides which transaction each runs in; nothing here commits.

Tables (gateway/store/schema.py): ``wallet_pins`` (verifiers and try
counters, per customer), ``marketing_opt_outs`` (per MSISDN),
``wallet_replies`` (per request key); read only: ``cards``, ``accounts``,
``transfers``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from simwallet.gateway.cards import CardStatus
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.limits import Tier
from simwallet.gateway.ledger.model import AccountKind
from simwallet.gateway.sms.catalogue import Lang, MessageId
from simwallet.gateway.store.schema import (
    accounts,
    cards,
    marketing_opt_outs,
    product_tiers,
    transfers,
    wallet_pins,
    wallet_replies,
)
from simwallet.gateway.store.sql import insert_new, one_of
from simwallet.gateway.wallet.outcomes import Outcome, ServiceReply, decode_params, encode_params
from simwallet.gateway.wallet.pins import PinRecord
from simwallet.gateway.wallet.replies import CardRow, WalletBalance

# Stored replies deleted per statement by prune_replies: bounds one transaction's locks and log.
PRUNE_CHUNK_MAX: Final = 5_000


@dataclass(frozen=True, slots=True)
class ReplyRow:
    """A reply to store under a request key."""

    key: str
    channel: str
    msisdn: str
    reply: ServiceReply
    ts_us: int


def _insert(conn: sa.Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def cards_by_msisdn(conn: sa.Connection, msisdns: Collection[str]) -> dict[str, CardRow]:
    if not msisdns:
        return {}
    query = sa.select(cards.c.msisdn, cards.c.customer_ref, cards.c.status).where(one_of(conn.dialect, cards.c.msisdn, sorted(msisdns)))
    return {r.msisdn: CardRow(r.msisdn, r.customer_ref, CardStatus(r.status)) for r in conn.execute(query)}


def customer_has_card(conn: sa.Connection, customer_ref: str) -> bool:
    return conn.execute(sa.select(cards.c.iccid).where(cards.c.customer_ref == customer_ref).limit(1)).first() is not None


def lock_pins(conn: sa.Connection, customer_refs: Collection[str]) -> dict[str, PinRecord]:
    """The PIN rows of these customers, locked until the transaction ends (in one order: no deadlock).

    SQLite has no row locks: its write transactions begin IMMEDIATE, which serialises them.
    """
    if not customer_refs:
        return {}
    query = (
        sa.select(wallet_pins.c.customer_ref, wallet_pins.c.verifier, wallet_pins.c.key_check, wallet_pins.c.wrong_tries)
        .where(one_of(conn.dialect, wallet_pins.c.customer_ref, sorted(customer_refs)))
        .order_by(wallet_pins.c.customer_ref)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {r.customer_ref: PinRecord(r.customer_ref, bytes(r.verifier), bytes(r.key_check), r.wrong_tries) for r in conn.execute(query)}


def update_pins(conn: sa.Connection, records: Iterable[PinRecord], now_us: int, *, new_pin: Collection[str] = ()) -> None:
    """Write changed try counters (and verifiers) of existing rows; ``new_pin`` customers also get ``set_us`` now."""
    rows = [
        {"b_ref": r.customer_ref, "b_verifier": r.verifier, "b_check": r.key_check, "b_tries": r.wrong_tries, "b_now": now_us}
        for r in records
    ]
    if not rows:
        return
    c = wallet_pins.c
    base = sa.update(wallet_pins).where(c.customer_ref == sa.bindparam("b_ref"))
    values: dict[str, Any] = {
        "verifier": sa.bindparam("b_verifier"),
        "key_check": sa.bindparam("b_check"),
        "wrong_tries": sa.bindparam("b_tries"),
    }
    changed = [row for row in rows if row["b_ref"] in new_pin]
    counted = [row for row in rows if row["b_ref"] not in new_pin]
    if counted:
        conn.execute(base.values(**values, updated_us=sa.bindparam("b_now")), counted)
    if changed:
        conn.execute(base.values(**values, updated_us=sa.bindparam("b_now"), set_us=sa.bindparam("b_now")), changed)


def upsert_pin(conn: sa.Connection, record: PinRecord, now_us: int) -> None:
    """Set a customer's PIN (a new row, or a new verifier with the counter reset)."""
    values = {"verifier": record.verifier, "key_check": record.key_check, "wrong_tries": record.wrong_tries, "updated_us": now_us}
    statement = _insert(conn)(wallet_pins).values(customer_ref=record.customer_ref, set_us=now_us, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["customer_ref"], set_={**values, "set_us": now_us}))


def pin_row(conn: sa.Connection, customer_ref: str) -> PinRecord | None:
    return lock_pins(conn, [customer_ref]).get(customer_ref)


def stored_replies(conn: sa.Connection, keys: Collection[str]) -> dict[str, ServiceReply]:
    if not keys:
        return {}
    c = wallet_replies.c
    columns = (c.request_key, c.message_id, c.lang, c.outcome, c.params, c.transfer_ids)
    query = sa.select(*columns).where(one_of(conn.dialect, c.request_key, sorted(keys)))
    out: dict[str, ServiceReply] = {}
    for r in conn.execute(query):
        message_id = MessageId(r.message_id)
        out[r.request_key] = ServiceReply(
            message_id=message_id,
            params=decode_params(message_id, r.params),
            lang=Lang(r.lang),
            outcome=Outcome(r.outcome),
            transfer_ids=tuple(int(i) for i in json.loads(r.transfer_ids)),
            replayed=True,
        )
    return out


def insert_replies(conn: sa.Connection, rows: Sequence[ReplyRow]) -> None:
    """Store replies in one statement; a key another process stored meanwhile keeps its first reply."""
    if not rows:
        return
    values = [
        {
            "request_key": row.key,
            "channel": row.channel,
            "msisdn": row.msisdn,
            "message_id": row.reply.message_id.value,
            "lang": row.reply.lang.value,
            "outcome": row.reply.outcome.value,
            "params": encode_params(row.reply.message_id, row.reply.params),
            "transfer_ids": json.dumps(list(row.reply.transfer_ids)),
            "ts_us": row.ts_us,
        }
        for row in rows
    ]
    insert_new(conn, wallet_replies, values, key="request_key")


def prune_replies(conn: sa.Connection, older_than_us: int) -> int:
    """Delete up to :data:`PRUNE_CHUNK_MAX` stored replies older than ``older_than_us``; returns how many."""
    c = wallet_replies.c
    keys = sa.select(c.request_key).where(c.ts_us < older_than_us).order_by(c.ts_us).limit(PRUNE_CHUNK_MAX).scalar_subquery()
    result = conn.execute(sa.delete(wallet_replies).where(c.request_key.in_(keys)))
    return int(result.rowcount or 0)


def posted_ledger_keys(conn: sa.Connection, keys: Collection[str]) -> set[str]:
    """Which of these ledger idempotency keys have a transfer already (a request answered before a crash)."""
    if not keys:
        return set()
    query = sa.select(transfers.c.idempotency_key).where(one_of(conn.dialect, transfers.c.idempotency_key, sorted(keys)))
    return set(conn.execute(query).scalars())


def open_airtime_accounts(conn: sa.Connection, customer_refs: Collection[str], now_us: int) -> None:
    """Open the phone-credit accounts of these customers; one opened meanwhile by another process is left as it is."""
    if not customer_refs:
        return
    # The ledger's own row builder (validation, flags, defaults), as card registration uses it.
    rows = [Ledger._account_row(AccountSpec(AccountKind.CUSTOMER_AIRTIME, ref), now_us) for ref in sorted(customer_refs)]
    insert_new(conn, accounts, rows, key="ref")


def wallet_balances(conn: sa.Connection, refs: Collection[str]) -> dict[str, WalletBalance]:
    """Wallets by reference: id, available balance (posted credits less posted debits and holds), tier."""
    if not refs:
        return {}
    c = accounts.c
    columns = (c.id, c.ref, c.tier, c.credits_posted, c.debits_posted, c.debits_pending)
    query = sa.select(*columns).where(one_of(conn.dialect, c.ref, sorted(refs)))
    return {r.ref: WalletBalance(r.id, r.credits_posted - r.debits_posted - r.debits_pending, r.tier) for r in conn.execute(query)}


def opt_out(conn: sa.Connection, msisdns: Collection[str], now_us: int) -> None:
    if msisdns:
        rows = [{"msisdn": m, "since_us": now_us} for m in sorted(msisdns)]
        insert_new(conn, marketing_opt_outs, rows, key="msisdn")


def opt_in(conn: sa.Connection, msisdns: Collection[str]) -> None:
    if msisdns:
        conn.execute(sa.delete(marketing_opt_outs).where(one_of(conn.dialect, marketing_opt_outs.c.msisdn, sorted(msisdns))))


def opted_out(conn: sa.Connection, msisdns: Collection[str]) -> set[str]:
    if not msisdns:
        return set()
    query = sa.select(marketing_opt_outs.c.msisdn).where(one_of(conn.dialect, marketing_opt_outs.c.msisdn, sorted(msisdns)))
    return set(conn.execute(query).scalars())


def tiers(conn: sa.Connection) -> dict[str, Tier]:
    """Every product tier (a handful of rows), for naming the limit a refusal hit."""
    return {
        r.name: Tier(r.name, r.per_txn_max, r.per_day_max, r.per_month_max, r.balance_max, r.description)
        for r in conn.execute(sa.select(product_tiers))
    }
