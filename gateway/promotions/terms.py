"""The terms of a promotion campaign: its trigger, its reward and its caps, each checking its own values.

These frozen dataclasses are the parts of a
:class:`~simwallet.gateway.promotions.rules.CampaignRule` and carry step 3 of
its loading (:mod:`.rules`, theory of operation): they check what the schema
cannot say, such as a reward paid into a non-customer account, a period cap
above the campaign cap or amounts that are not whole fen. Every refusal is a
:class:`~simwallet.gateway.errors.RequestError` with code ``campaign_invalid``
and the JSON path of the offending value (``trigger.amount_min``) as its field.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from simwallet.gateway.errors import RequestError
from simwallet.gateway.ledger.model import _INTERNAL_KINDS as _MODEL_INTERNAL_KINDS
from simwallet.gateway.ledger.model import ACCOUNT_REF_LEN_MAX, AccountKind, Channel, TransferKind
from simwallet.gateway.money import check_amount
from simwallet.gateway.promotions.campaign_file import invalid, short_repr
from simwallet.gateway.promotions.periods import Period

# --- Limits -----------------------------------------------------------------
# The schema file states the same numbers; a test holds the two together.

# Most grants one customer may get from one campaign, per period or in all.
# Real offers say 1 to 3; the limit catches a typo such as 30000 and bounds
# the usage counters.
GRANTS_PER_CUSTOMER_MAX: Final = 1000

# Account kinds that belong to a customer; only these may receive a reward.
CUSTOMER_ACCOUNT_KINDS: Final = frozenset({AccountKind.CUSTOMER_WALLET, AccountKind.CUSTOMER_AIRTIME, AccountKind.POINTS})
# Transfer kinds the ledger makes itself (reversals, the bonuses of
# promotions); a campaign can never be triggered by them. The model owns the list.
LEDGER_INTERNAL_KINDS: Final = frozenset(_MODEL_INTERNAL_KINDS)
# Transfer kinds that may trigger a campaign.
TRIGGER_KINDS: Final = frozenset(TransferKind) - LEDGER_INTERNAL_KINDS


_E = TypeVar("_E", bound=enum.Enum)


# --- Value checks -------------------------------------------------------------


def _enum(cls: type[_E], value: object, field: str) -> _E:
    try:
        return cls(value)
    except ValueError as exc:
        allowed = ", ".join(str(member.value) for member in cls)
        raise invalid(field, f"{short_repr(value)} is not one of {allowed}") from exc


def _fen(value: int, field: str) -> int:
    try:
        return check_amount(value, field=field)
    except RequestError as exc:
        raise invalid(field, exc.message) from exc


def _count(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be a whole number, not {short_repr(value)}")
    if not 1 <= value <= GRANTS_PER_CUSTOMER_MAX:
        raise invalid(field, f"must be 1..{GRANTS_PER_CUSTOMER_MAX}, not {value}")
    return value


# --- Terms ----------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """The transfer that earns the reward: its kind, a minimum amount, and optionally its channels."""

    kind: TransferKind
    amount_min_fen: int
    channels: frozenset[Channel] | None = None  # None: any channel

    def __post_init__(self) -> None:
        kind = _enum(TransferKind, self.kind, "trigger.kind")
        if kind not in TRIGGER_KINDS:
            raise invalid("trigger.kind", f"{kind} transfers are made by the ledger itself and cannot trigger a campaign")
        object.__setattr__(self, "kind", kind)
        _fen(self.amount_min_fen, "trigger.amount_min")
        if self.channels is not None:
            if isinstance(self.channels, str) or not isinstance(self.channels, Iterable):
                raise invalid("trigger.channels", "channels must be a collection of channel names")
            channels = frozenset(_enum(Channel, channel, "trigger.channels") for channel in self.channels)
            if not channels:
                raise invalid("trigger.channels", "list at least one channel, or leave channels out for any channel")
            object.__setattr__(self, "channels", channels)


@dataclass(frozen=True)
class Reward:
    """The bonus of one grant: ``amount_fen`` from ``source_account`` to the customer's account of ``target_account_kind``."""

    amount_fen: int
    source_account: str
    target_account_kind: AccountKind

    def __post_init__(self) -> None:
        _fen(self.amount_fen, "reward.amount")
        if not isinstance(self.source_account, str) or not 0 < len(self.source_account) <= ACCOUNT_REF_LEN_MAX \
                or not self.source_account.isprintable():
            raise invalid("reward.source_account", f"account reference must be 1..{ACCOUNT_REF_LEN_MAX} printable characters")
        kind = _enum(AccountKind, self.target_account_kind, "reward.target_account_kind")
        if kind not in CUSTOMER_ACCOUNT_KINDS:
            allowed = ", ".join(sorted(CUSTOMER_ACCOUNT_KINDS))
            raise invalid("reward.target_account_kind", f"a reward is paid into a customer's account ({allowed}), not {kind}")
        object.__setattr__(self, "target_account_kind", kind)


@dataclass(frozen=True)
class PeriodCap:
    """At most ``count`` grants per customer per calendar ``period``."""

    period: Period
    count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "period", _enum(Period, self.period, "caps.per_period.period"))
        _count(self.count, "caps.per_period.count")


@dataclass(frozen=True)
class Caps:
    """The campaign's limits; ``None`` means no such limit."""

    per_period: PeriodCap | None = None
    per_campaign: int | None = None
    budget_fen: int | None = None

    def __post_init__(self) -> None:
        if self.per_period is not None and not isinstance(self.per_period, PeriodCap):
            raise invalid("caps.per_period", "per_period must be a PeriodCap")
        if self.per_campaign is not None:
            _count(self.per_campaign, "caps.per_campaign")
            if self.per_period is not None and self.per_period.count > self.per_campaign:
                raise invalid(
                    "caps.per_period.count",
                    f"{self.per_period.count} per {self.per_period.period} is more than the {self.per_campaign} of the whole campaign",
                )
        if self.budget_fen is not None:
            _fen(self.budget_fen, "caps.budget")
