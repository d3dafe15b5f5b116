"""Cards registered by personalization.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Identifiers and key versions only: never a PIN, PUK, ADM code, Ki or key.
    op.create_table(
        "cards",
        sa.Column("iccid", sa.String(20), nullable=False),
        sa.Column("imsi", sa.String(15), nullable=False),
        sa.Column("msisdn", sa.String(15), nullable=False),
        sa.Column("customer_ref", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("clerk", sa.String(64), nullable=False),
        sa.Column("scp03_kvn", sa.Integer, nullable=False),
        sa.Column("ota_key_version", sa.Integer, nullable=False),
        sa.Column("wallet_key_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("personalized_at", sa.BigInteger, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("iccid", name="pk_cards"),
        sa.UniqueConstraint("imsi", name="uq_cards_imsi"),
        sa.UniqueConstraint("msisdn", name="uq_cards_msisdn"),
        sa.CheckConstraint("status IN ('personalized', 'active', 'blocked', 'retired')", name="ck_cards_status_known"),
        sa.CheckConstraint(
            "scp03_kvn BETWEEN 1 AND 127 AND ota_key_version BETWEEN 1 AND 127 AND wallet_key_version BETWEEN 1 AND 127",
            name="ck_cards_key_versions_in_range",
        ),
    )
    op.create_index("ix_cards_customer_ref", "cards", ["customer_ref"])


def downgrade() -> None:
    op.drop_index("ix_cards_customer_ref", table_name="cards")
    op.drop_table("cards")
