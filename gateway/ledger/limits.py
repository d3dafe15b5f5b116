"""Per-customer limits by product tier: per transaction, per day, per month, maximum balance.

Limits apply to a customer's wallet account that carries a tier. Money leaving
the wallet (any transfer or hold it is debited by) counts toward the per-day
and per-month sums of the local calendar day and month (Asia/Shanghai); money
arriving may not lift the balance, holds included, above ``balance_max``.
Corrections (reversals, voids, expiries) are never refused by a limit, and
give back what they undo to the period's sum when they happen in the same
period.

The period sums live on the account row beside the balances (``spent_day``
for the day ``spent_day_key`` = YYYYMMDD, ``spent_month`` for YYYYMM), so the
check costs no query: the row is locked for the balance update anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.money import format_amount

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Tier:
    """A product tier's limits in fen; ``None`` means no limit of that kind."""

    name: str
    per_txn_max: int | None = None
    per_day_max: int | None = None
    per_month_max: int | None = None
    balance_max: int | None = None
    description: str = ""


def local_datetime(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC).astimezone(LOCAL_TZ)


def period_keys(ts_us: int) -> tuple[int, int]:
    """The local calendar day (YYYYMMDD) and month (YYYYMM), from one time-zone conversion."""
    local = local_datetime(ts_us)
    month = local.year * 100 + local.month
    return month * 100 + local.day, month


def day_key(ts_us: int) -> int:
    """The local calendar day as YYYYMMDD."""
    return period_keys(ts_us)[0]


def month_key(ts_us: int) -> int:
    """The local calendar month as YYYYMM."""
    return period_keys(ts_us)[1]


@dataclass(frozen=True)
class Spent:
    """What a wallet has spent in its current day and month (keys as above)."""

    day_key: int = 0
    day: int = 0
    month_key: int = 0
    month: int = 0

    def at(self, ts_us: int) -> Spent:
        """The sums as seen at ``ts_us``: a period that has ended counts as zero."""
        d, m = period_keys(ts_us)
        return Spent(d, self.day if self.day_key == d else 0, m, self.month if self.month_key == m else 0)

    def add(self, amount: int, ts_us: int) -> Spent:
        now = self.at(ts_us)
        return Spent(now.day_key, now.day + amount, now.month_key, now.month + amount)

    def give_back(self, amount: int, original_ts_us: int, ts_us: int) -> Spent:
        """Undo ``amount`` spent at ``original_ts_us`` in the periods it still belongs to."""
        now = self.at(ts_us)
        then_day, then_month = period_keys(original_ts_us)
        day = max(0, now.day - amount) if then_day == now.day_key else now.day
        month = max(0, now.month - amount) if then_month == now.month_key else now.month
        return Spent(now.day_key, day, now.month_key, month)


def check_outflow(tier: Tier, spent: Spent, amount: int, ts_us: int, *, field: str = "amount") -> Spent:
    """Check money leaving a wallet against ``tier``; return the new sums or raise naming the limit."""
    if tier.per_txn_max is not None and amount > tier.per_txn_max:
        raise _over("per_txn", tier, amount, tier.per_txn_max, field)
    new = spent.add(amount, ts_us)
    if tier.per_day_max is not None and new.day > tier.per_day_max:
        raise _over("per_day", tier, new.day, tier.per_day_max, field)
    if tier.per_month_max is not None and new.month > tier.per_month_max:
        raise _over("per_month", tier, new.month, tier.per_month_max, field)
    return new


def check_inflow(tier: Tier, balance_with_holds: int, amount: int, *, field: str = "amount") -> None:
    """Check money arriving in a wallet against the tier's maximum balance."""
    if tier.balance_max is not None and balance_with_holds + amount > tier.balance_max:
        raise _over("balance", tier, balance_with_holds + amount, tier.balance_max, field)


def _over(limit: str, tier: Tier, value: int, maximum: int, field: str) -> RequestError:
    return RequestError(
        RejectCode.LIMIT_EXCEEDED,
        f"limit.{limit}",
        f"{field} would take the {limit.replace('_', ' ')} limit of tier {tier.name} to {format_amount(value)}"
        f" (maximum {format_amount(maximum)})",
    )
