"""The wallet service: PIN verifiers, marketing opt-outs, stored replies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A keyed hash of the PIN (HMAC-SHA256, key outside the database), never the PIN.
    op.create_table(
        "wallet_pins",
        sa.Column("customer_ref", sa.String(64), nullable=False),
        sa.Column("verifier", sa.LargeBinary(32), nullable=False),
        sa.Column("key_check", sa.LargeBinary(4), nullable=False),
        sa.Column("wrong_tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("set_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("customer_ref", name="pk_wallet_pins"),
        sa.CheckConstraint("wrong_tries >= 0", name="ck_wallet_pins_wrong_tries_not_negative"),
    )
    op.create_table(
        "marketing_opt_outs",
        sa.Column("msisdn", sa.String(15), nullable=False),
        sa.Column("since_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("msisdn", name="pk_marketing_opt_outs"),
    )
    op.create_table(
        "wallet_replies",
        sa.Column("request_key", sa.String(92), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("msisdn", sa.String(15), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("lang", sa.String(2), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("transfer_ids", sa.Text, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("request_key", name="pk_wallet_replies"),
    )
    op.create_index("ix_wallet_replies_ts_us", "wallet_replies", ["ts_us"])


def downgrade() -> None:
    op.drop_index("ix_wallet_replies_ts_us", table_name="wallet_replies")
    op.drop_table("wallet_replies")
    op.drop_table("marketing_opt_outs")
    op.drop_table("wallet_pins")
