"""Customers for the gateway's end-to-end tests: a registered card, a funded wallet, the count of the service's postings."""

from __future__ import annotations

import sqlalchemy as sa

from simwallet.gateway.cards import AcceptanceChannel, CardRegistration, CardRegistry
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Transfer, TransferKind
from simwallet.gateway.store.schema import transfers

BANK = "bank:ICBC/bank_settlement"


def register(registry: CardRegistry, iccid: str, imsi: str, msisdn: str, customer: str, *, wallet_key_version: int = 1) -> None:
    """A card personalized at a service hall, registered with its customer's wallet."""
    registry.register(
        CardRegistration(
            iccid=iccid,
            imsi=imsi,
            msisdn=msisdn,
            customer_ref=customer,
            profile="wallet-cmcc-zh",
            channel=AcceptanceChannel.SERVICE_HALL,
            clerk="clerk-1",
            scp03_kvn=0x30,
            ota_key_version=1,
            wallet_key_version=wallet_key_version,
            personalized_at=1_780_000_000_000_000,
        )
    )


def open_bank(ledger: Ledger) -> None:
    ledger.open_accounts([AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC")])


def fund(ledger: Ledger, key: str, customer: str, fen: int) -> None:
    """A deposit from the bank (:func:`open_bank`) into ``customer``'s wallet."""
    ledger.post_one(Transfer(key, BANK, f"{customer}/customer_wallet", fen, TransferKind.DEPOSIT, Channel.BANK))


def service_transfers(engine: sa.Engine, prefix: str = "svc:") -> int:
    """Transfers the wallet service posted (their idempotency keys start with ``prefix``)."""
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(transfers).where(transfers.c.idempotency_key.like(f"{prefix}%"))
        return int(conn.execute(query).scalar_one())
