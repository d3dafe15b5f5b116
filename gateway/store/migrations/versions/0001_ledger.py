"""Ledger, product tiers and promotions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Default product tiers, after the three classes of PBOC payment accounts:
# limits in fen; NULL means no limit of that kind.
DEFAULT_TIERS = [
    {"name": "basic", "description": "Class I: phone number only", "per_txn_max": 100_000,
     "per_day_max": 200_000, "per_month_max": 500_000, "balance_max": 100_000},
    {"name": "verified", "description": "Class II: real-name verified at a hall or bank", "per_txn_max": 500_000,
     "per_day_max": 1_000_000, "per_month_max": 10_000_000, "balance_max": 2_000_000},
    {"name": "premium", "description": "Class III: bank-linked, verified in person", "per_txn_max": 5_000_000,
     "per_day_max": 10_000_000, "per_month_max": 100_000_000, "balance_max": None},
]


def upgrade() -> None:
    tiers = op.create_table(
        "product_tiers",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("description", sa.String(128), nullable=False, server_default=""),
        sa.Column("per_txn_max", sa.BigInteger, nullable=True),
        sa.Column("per_day_max", sa.BigInteger, nullable=True),
        sa.Column("per_month_max", sa.BigInteger, nullable=True),
        sa.Column("balance_max", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_product_tiers"),
    )
    op.bulk_insert(tiers, DEFAULT_TIERS)

    op.create_table(
        "accounts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("debits_pending", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("debits_posted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credits_pending", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credits_posted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("spent_day_key", sa.Integer, nullable=False, server_default="0"),
        sa.Column("spent_day", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("spent_month_key", sa.Integer, nullable=False, server_default="0"),
        sa.Column("spent_month", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("ref", name="uq_accounts_ref"),
        sa.ForeignKeyConstraint(["tier"], ["product_tiers.name"], name="fk_accounts_tier_product_tiers"),
        sa.CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
            name="ck_accounts_sums_not_negative",
        ),
    )
    op.create_index("ix_accounts_owner_kind_currency", "accounts", ["owner", "kind", "currency"])

    op.create_table(
        "transfers",
        sa.Column("id", Id, autoincrement=False, nullable=False),
        sa.Column("idempotency_key", sa.String(160), nullable=False),
        sa.Column("body_hash", sa.LargeBinary(16), nullable=False),
        sa.Column("debit_account_id", Id, nullable=False),
        sa.Column("credit_account_id", Id, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("phase", sa.String(8), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("pending_id", Id, nullable=True),
        sa.Column("reverses_id", Id, nullable=True),
        sa.Column("cause_id", Id, nullable=True),
        sa.Column("expires_us", sa.BigInteger, nullable=True),
        sa.Column("memo", sa.String(64), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_transfers"),
        sa.UniqueConstraint("idempotency_key", name="uq_transfers_idempotency_key"),
        sa.ForeignKeyConstraint(["debit_account_id"], ["accounts.id"], name="fk_transfers_debit_account_id_accounts"),
        sa.ForeignKeyConstraint(["credit_account_id"], ["accounts.id"], name="fk_transfers_credit_account_id_accounts"),
        sa.ForeignKeyConstraint(["pending_id"], ["transfers.id"], name="fk_transfers_pending_id_transfers"),
        sa.ForeignKeyConstraint(["reverses_id"], ["transfers.id"], name="fk_transfers_reverses_id_transfers"),
        sa.ForeignKeyConstraint(["cause_id"], ["transfers.id"], name="fk_transfers_cause_id_transfers"),
        sa.CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_accounts_differ"),
    )
    op.create_index("ix_transfers_debit_account_id_id", "transfers", ["debit_account_id", "id"])
    op.create_index("ix_transfers_credit_account_id_id", "transfers", ["credit_account_id", "id"])
    # Partial indexes: the reference columns are NULL on nearly every row.
    for name, column, unique in [("uq_transfers_pending_id", "pending_id", True),
                                 ("uq_transfers_reverses_id", "reverses_id", True),
                                 ("ix_transfers_cause_id", "cause_id", False)]:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "transfers", [column], unique=unique, postgresql_where=where, sqlite_where=where)
    if op.get_bind().dialect.name == "postgresql":
        # Ids are drawn from this sequence once the accounts' row locks are held.
        op.execute("CREATE SEQUENCE transfer_id_seq AS bigint")

    op.create_table(
        "holds",
        sa.Column("transfer_id", Id, autoincrement=False, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name="pk_holds"),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], name="fk_holds_transfer_id_transfers"),
    )
    op.create_index("ix_holds_expires_us", "holds", ["expires_us"])

    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(48), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("rule_json", sa.Text, nullable=False),
        sa.Column("source_account_id", Id, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("granted_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("granted_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.ForeignKeyConstraint(["source_account_id"], ["accounts.id"], name="fk_campaigns_source_account_id_accounts"),
        sa.CheckConstraint("granted_count >= 0 AND granted_fen >= 0", name="ck_campaigns_granted_not_negative"),
    )
    op.create_table(
        "campaign_usage",
        sa.Column("campaign_id", sa.String(48), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("total_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("period_key", sa.String(16), nullable=True),
        sa.Column("period_count", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("campaign_id", "owner", name="pk_campaign_usage"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name="fk_campaign_usage_campaign_id_campaigns"),
    )
    op.create_table(
        "campaign_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(48), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("transfer_id", Id, nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("bonus_id", Id, nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("period_key", sa.String(16), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_events"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name="fk_campaign_events_campaign_id_campaigns"),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], name="fk_campaign_events_transfer_id_transfers"),
        sa.ForeignKeyConstraint(["bonus_id"], ["transfers.id"], name="fk_campaign_events_bonus_id_transfers"),
    )
    op.create_index("ix_campaign_events_campaign_id_outcome", "campaign_events", ["campaign_id", "outcome"])
    op.create_index("ix_campaign_events_transfer_id", "campaign_events", ["transfer_id"])


def downgrade() -> None:
    for index, table in [
        ("ix_campaign_events_transfer_id", "campaign_events"),
        ("ix_campaign_events_campaign_id_outcome", "campaign_events"),
    ]:
        op.drop_index(index, table_name=table)
    op.drop_table("campaign_events")
    op.drop_table("campaign_usage")
    op.drop_table("campaigns")
    op.drop_index("ix_holds_expires_us", table_name="holds")
    op.drop_table("holds")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE transfer_id_seq")
    for index in ("ix_transfers_cause_id", "uq_transfers_reverses_id", "uq_transfers_pending_id"):
        op.drop_index(index, table_name="transfers")
    op.drop_index("ix_transfers_credit_account_id_id", table_name="transfers")
    op.drop_index("ix_transfers_debit_account_id_id", table_name="transfers")
    op.drop_table("transfers")
    op.drop_index("ix_accounts_owner_kind_currency", table_name="accounts")
    op.drop_table("accounts")
    op.drop_table("product_tiers")
