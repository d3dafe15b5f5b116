"""The backend's tables, declared once with SQLAlchemy Core for SQLite and PostgreSQL.

Alembic migrations in :mod:`simwallet.gateway.store.migrations` create exactly
this schema; ``tests/test_store.py`` compares the two on both databases.

Money columns are signed 64-bit integers of minor units (fen). Timestamps are
microseconds since the Unix epoch, UTC, from the ledger's injected clock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# Constraint names are stable so that migrations can refer to them.
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

def _not_null(column: str) -> dict[str, Any]:
    """The WHERE clause of a partial index, for both databases."""
    clause = text(f"{column} IS NOT NULL")
    return {"postgresql_where": clause, "sqlite_where": clause}


product_tiers = Table(
    "product_tiers", metadata,
    Column("name", String(32), primary_key=True),
    Column("description", String(128), nullable=False, server_default=""),
    # NULL means "no limit of this kind".
    Column("per_txn_max", BigInteger, nullable=True),
    Column("per_day_max", BigInteger, nullable=True),
    Column("per_month_max", BigInteger, nullable=True),
    Column("balance_max", BigInteger, nullable=True),
)

accounts = Table(
    "accounts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ref", String(64), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("flags", Integer, nullable=False),
    Column("status", String(8), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("tier", String(32), ForeignKey("product_tiers.name"), nullable=True),
    Column("debits_pending", BigInteger, nullable=False, server_default="0"),
    Column("debits_posted", BigInteger, nullable=False, server_default="0"),
    Column("credits_pending", BigInteger, nullable=False, server_default="0"),
    Column("credits_posted", BigInteger, nullable=False, server_default="0"),
    # Limit usage of the current local day (YYYYMMDD) and month (YYYYMM).
    Column("spent_day_key", Integer, nullable=False, server_default="0"),
    Column("spent_day", BigInteger, nullable=False, server_default="0"),
    Column("spent_month_key", Integer, nullable=False, server_default="0"),
    Column("spent_month", BigInteger, nullable=False, server_default="0"),
    Column("created_us", BigInteger, nullable=False),
    CheckConstraint(
        "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
        name="sums_not_negative",
    ),
    Index(None, "owner", "kind", "currency"),
)

transfers = Table(
    "transfers", metadata,
    # Allocated by the ledger after it holds the locks of the accounts involved,
    # so that ids increase along each account's history.
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("idempotency_key", String(160), nullable=False, unique=True),
    Column("body_hash", LargeBinary(16), nullable=False),
    Column("debit_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("channel", String(12), nullable=False),
    Column("phase", String(8), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("pending_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("reverses_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("cause_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("expires_us", BigInteger, nullable=True),
    Column("memo", String(64), nullable=False, server_default=""),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="accounts_differ"),
    Index(None, "debit_account_id", "id"),
    Index(None, "credit_account_id", "id"),
    # The reference columns are NULL on nearly every row: partial indexes keep
    # them out, so an insert maintains four indexes instead of seven.
    # A pending transfer is resolved (posted, voided or expired) at most once.
    Index("uq_transfers_pending_id", "pending_id", unique=True, **_not_null("pending_id")),
    # A transfer is reversed at most once.
    Index("uq_transfers_reverses_id", "reverses_id", unique=True, **_not_null("reverses_id")),
    Index("ix_transfers_cause_id", "cause_id", **_not_null("cause_id")),
)

# Open holds: one row per pending transfer not yet resolved. Derived state
# (verify recomputes it) that lets the expiry sweep find due holds by index.
holds = Table(
    "holds", metadata,
    Column("transfer_id", Id, ForeignKey("transfers.id"), primary_key=True, autoincrement=False),
    Column("expires_us", BigInteger, nullable=False),
    Index(None, "expires_us"),
)

campaigns = Table(
    "campaigns", metadata,
    Column("id", String(48), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("rule_json", Text, nullable=False),
    Column("source_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("status", String(8), nullable=False),  # active | stopped
    Column("created_us", BigInteger, nullable=False),
    Column("granted_count", BigInteger, nullable=False, server_default="0"),
    Column("granted_fen", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("granted_count >= 0 AND granted_fen >= 0", name="granted_not_negative"),
)

# Per customer and campaign: grants so far, and in the current cap period.
campaign_usage = Table(
    "campaign_usage", metadata,
    Column("campaign_id", String(48), ForeignKey("campaigns.id"), primary_key=True),
    Column("owner", String(64), primary_key=True),
    Column("total_count", Integer, nullable=False, server_default="0"),
    Column("period_key", String(16), nullable=True),
    Column("period_count", Integer, nullable=False, server_default="0"),
)

# One row per qualifying transfer and per revocation: the promotion report's source.
campaign_events = Table(
    "campaign_events", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("campaign_id", String(48), ForeignKey("campaigns.id"), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("bonus_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("amount", BigInteger, nullable=False, server_default="0"),
    Column("period_key", String(16), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Index(None, "campaign_id", "outcome"),
    Index(None, "transfer_id"),
)

# The new sums of the accounts a batch changed, COPYed here and applied with one
# UPDATE … FROM (PostgreSQL only). A temporary table of each connection, emptied
# at every commit; store/engine.py creates it when a connection opens.
ACCOUNT_SUMS_COLUMNS = (
    "id", "debits_pending", "debits_posted", "credits_pending", "credits_posted",
    "spent_day_key", "spent_day", "spent_month_key", "spent_month",
)
CREATE_ACCOUNT_SUMS = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS account_sums ({', '.join(f'{c} bigint' for c in ACCOUNT_SUMS_COLUMNS)})"
    " ON COMMIT DELETE ROWS"
)

# Cards registered by personalization (gateway/cards.py). Identifiers and key
# *versions* only: never a PIN, PUK, ADM code, Ki or key.
cards = Table(
    "cards", metadata,
    # TS 102 221 §13.2 / ITU-T E.118: 19 or 20 digits.
    Column("iccid", String(20), primary_key=True),
    # 3GPP TS 23.003 §2.2: at most 15 digits.
    Column("imsi", String(15), nullable=False, unique=True),
    # ITU-T E.164: at most 15 digits, stored without "+".
    Column("msisdn", String(15), nullable=False, unique=True),
    # The ledger's owner form, "customer:<id>".
    Column("customer_ref", String(64), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("channel", String(16), nullable=False),  # service_hall | field | batch | agent
    Column("clerk", String(64), nullable=False),
    Column("scp03_kvn", Integer, nullable=False),
    Column("ota_key_version", Integer, nullable=False),
    Column("wallet_key_version", Integer, nullable=False),
    Column("status", String(12), nullable=False),  # personalized | active | blocked | retired
    Column("personalized_at", BigInteger, nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    # Non-secret extras (batch id, reader, profile revision): JSON object.
    Column("details", JSON, nullable=False),
    CheckConstraint("status IN ('personalized', 'active', 'blocked', 'retired')", name="status_known"),
    CheckConstraint("scp03_kvn BETWEEN 1 AND 127 AND ota_key_version BETWEEN 1 AND 127 AND wallet_key_version BETWEEN 1 AND 127",
                    name="key_versions_in_range"),
    Index(None, "customer_ref"),
)

# The wallet service of the SMS, USSD and STK channels (gateway/wallet). Never a PIN:
# a keyed hash of it, whose key lives in the key store, not here.
wallet_pins = Table(
    "wallet_pins", metadata,
    Column("customer_ref", String(64), primary_key=True),
    # HMAC-SHA256(PIN key, customer_ref || 00 || PIN).
    Column("verifier", LargeBinary(32), nullable=False),
    # The first bytes of an HMAC of a fixed text under the PIN key: which key made the verifier.
    Column("key_check", LargeBinary(4), nullable=False),
    Column("wrong_tries", Integer, nullable=False, server_default="0"),
    Column("set_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    CheckConstraint("wrong_tries >= 0", name="wrong_tries_not_negative"),
)

# Numbers that sent STOP (退订): no marketing messages until they send START.
marketing_opt_outs = Table(
    "marketing_opt_outs", metadata,
    Column("msisdn", String(15), primary_key=True),
    Column("since_us", BigInteger, nullable=False),
)

# The reply given to each request key, replayed when the channel delivers the request again.
# Grows with traffic: the operator's retention job prunes it by ts_us (WalletService.prune_replies).
wallet_replies = Table(
    "wallet_replies", metadata,
    Column("request_key", String(92), primary_key=True),
    Column("channel", String(8), nullable=False),
    Column("msisdn", String(15), nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("lang", String(2), nullable=False),
    Column("outcome", String(16), nullable=False),
    # JSON object of the catalogue parameters; never a PIN.
    Column("params", Text, nullable=False),
    # JSON list of the ledger transfer ids the request wrote (its transfer, then any bonus).
    Column("transfer_ids", Text, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Index(None, "ts_us"),
)

# The STK channel's TS 102 225 §5.1 counters (gateway/esme/stk_store.py): one row per card that ever sent a
# secured request, so the table grows with the cards table and no faster. Never a key: only counters.
stk_counters = Table(
    "stk_counters", metadata,
    Column("iccid", String(20), ForeignKey("cards.iccid"), primary_key=True),
    # TS 102 225 §5.1.1 CNTR (5 octets): the last counter accepted from the card ("must be higher").
    Column("card_counter", BigInteger, nullable=False),
    # The SMSC's message id that packet came with: the same counter with the same id is a redelivery.
    Column("smsc_id", String(64), nullable=False),
    # The last CNTR the gateway sent the card in a response; each response takes the next one.
    Column("gateway_counter", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("card_counter BETWEEN 0 AND 1099511627775 AND gateway_counter BETWEEN 0 AND 1099511627775",
                    name="counters_in_range"),
)
