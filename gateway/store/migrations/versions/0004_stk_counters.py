"""The STK channel's secured-packet counters (TS 102 225 §5.1), one row per card.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Counters only, never a key; 1099511627775 is 2^40 - 1, the largest five-octet CNTR.
    op.create_table(
        "stk_counters",
        sa.Column("iccid", sa.String(20), nullable=False),
        sa.Column("card_counter", sa.BigInteger, nullable=False),
        sa.Column("smsc_id", sa.String(64), nullable=False),
        sa.Column("gateway_counter", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("iccid", name="pk_stk_counters"),
        sa.ForeignKeyConstraint(["iccid"], ["cards.iccid"], name="fk_stk_counters_iccid_cards"),
        sa.CheckConstraint(
            "card_counter BETWEEN 0 AND 1099511627775 AND gateway_counter BETWEEN 0 AND 1099511627775",
            name="ck_stk_counters_counters_in_range",
        ),
    )


def downgrade() -> None:
    op.drop_table("stk_counters")
