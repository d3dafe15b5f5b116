"""The STK channel's state: each card's secured-packet counters (``stk_counters``) and its wallet keys.

Spec: ETSI TS 102 225 §5.1.1 (CNTR, five octets) and SPI octet 1 b5-b4 = 10
("counter must be higher than the value in the RE"), which the wallet's
packets use both ways (:data:`~simwallet.applet.protocols.wallet_messages.WALLET_SPI`).

One row per card that ever sent a request (``iccid`` is the primary key and a
foreign key of ``cards``): the table grows with the cards table, never with
traffic, and needs no pruning. A row holds

* ``card_counter``: the last CNTR accepted from the card, and ``smsc_id``, the
  SMSC's message id it came with (a redelivery repeats both);
* ``gateway_counter``: the last CNTR the gateway sent the card; each response
  takes the next one;
* ``updated_at``: microseconds since the epoch, UTC, of the last change.

Every function takes an open connection in a write transaction; the channel
decides the transactions (:func:`~simwallet.gateway.store.tx.run_in_transaction`).
:func:`lock_row` locks the row on PostgreSQL (``FOR UPDATE``); SQLite's write
transactions begin IMMEDIATE, which serializes them. A card's first row is
inserted; two gateways inserting it at once collide on the primary key and the
loser's transaction is run again, finding the row.

The keys are never stored here: :func:`card_keyset` derives a card's wallet key
set when it is needed, from the master of the version recorded at
registration (:func:`keystore_masters` reads them from the key store) and the
ICCID, as personalization did (:func:`~simwallet.gateway.diversify.card_wallet_keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.secured import CcAlgorithm, CipherAlgorithm, KeySet
from simwallet.gateway.diversify import WalletKeys, card_wallet_keys
from simwallet.gateway.keystore import KeyFamily, KeyStore, KeyVersionError
from simwallet.gateway.store.schema import stk_counters

# The master key of a wallet key version, or None when the key source has no such version.
WalletMasters = Callable[[int], WalletKeys | None]


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A card's counters as stored."""

    iccid: str
    card_counter: int
    smsc_id: str
    gateway_counter: int
    updated_at: int


def lock_row(conn: sa.Connection, iccid: str) -> CounterRow | None:
    """The card's row, locked until the transaction ends (PostgreSQL); None before its first request."""
    query = sa.select(stk_counters).where(stk_counters.c.iccid == iccid)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        return None
    return CounterRow(row.iccid, row.card_counter, row.smsc_id, row.gateway_counter, row.updated_at)


def read_row(conn: sa.Connection, iccid: str) -> CounterRow | None:
    """The card's row without a lock (inspection, tests)."""
    row = conn.execute(sa.select(stk_counters).where(stk_counters.c.iccid == iccid)).first()
    if row is None:
        return None
    return CounterRow(row.iccid, row.card_counter, row.smsc_id, row.gateway_counter, row.updated_at)


def accept(conn: sa.Connection, row: CounterRow | None, iccid: str, counter: int, smsc_id: str, now: int) -> None:
    """Store ``counter`` (and its SMSC id) as the card's last accepted CNTR; ``row`` is what :func:`lock_row` read."""
    if row is None:
        conn.execute(stk_counters.insert().values(iccid=iccid, card_counter=counter, smsc_id=smsc_id, gateway_counter=0, updated_at=now))
        return
    conn.execute(stk_counters.update().where(stk_counters.c.iccid == iccid).values(card_counter=counter, smsc_id=smsc_id, updated_at=now))


def set_gateway_counter(conn: sa.Connection, iccid: str, counter: int, now: int) -> None:
    """Store ``counter`` as the last CNTR the gateway sent the card (the row exists: :func:`lock_row` read it)."""
    conn.execute(stk_counters.update().where(stk_counters.c.iccid == iccid).values(gateway_counter=counter, updated_at=now))


def keystore_masters(store: KeyStore) -> WalletMasters:
    """The wallet master versions of a key store (retired ones too: cards personalized under them need them)."""

    def lookup(version: int) -> WalletKeys | None:
        try:
            return store.version(KeyFamily.WALLET, version).wallet_keys()
        except KeyVersionError:
            return None

    return lookup


def card_keyset(masters: WalletMasters, iccid: str, version: int) -> KeySet | None:
    """The card's wallet key set as personalization loads it (AES-CBC, AES-CMAC, KVN = the master version), or None."""
    master = masters(version)
    if master is None:
        return None
    keys = card_wallet_keys(master, iccid)
    try:
        return KeySet(version, CipherAlgorithm.AES_CBC, keys.kic, CcAlgorithm.AES_CMAC, keys.kid)
    except CodecError:  # a version beyond TS 102 225's key index 1..15 names no key set on a card
        return None
