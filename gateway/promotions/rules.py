"""Promotion campaign rules: the campaign file format and the grant decision.

Implements the campaign files of ``cards/promotions/*.yaml`` (one file per
campaign, shape given by ``campaign.schema.json``, JSON Schema draft 2020-12)
and the decision, for a qualifying transfer, whether the campaign's reward is
granted under its caps. The flagship campaign is 满百送30 (Shanghai Mobile,
手机钱包): a phone-credit top-up of at least 100 CNY through the wallet earns
30 CNY of phone credit, once per calendar month and three times per customer.

The parts live beside this module, which re-exports their public names:
:mod:`.campaign_file` reads the file, :mod:`.terms` holds the trigger, reward
and caps, and :mod:`.periods` the time helpers and calendar periods.

Theory of operation
-------------------
*Rules are data.* Loading refuses, at the first problem, with a
:class:`~simwallet.gateway.errors.RequestError` whose code is
``campaign_invalid``, whose ``field`` is the JSON path of the offending value
(``trigger.amount_min``, ``trigger.channels[1]``) and whose message names the
file and the line (``manbai.yaml:14: reward.amount: …``). It runs in three
steps (1 and 2 in :mod:`.campaign_file`):

1. YAML. A pass over the parser's events bounds the nesting and refuses
   anchors and aliases; the document is then composed into nodes, the line of
   every key is recorded (duplicate and non-text keys are refused) and the
   nodes are constructed by PyYAML's safe constructor.
2. Schema. The data is validated against the JSON Schema. Dates are text
   there: the loader keeps YAML timestamps as their text, and ``date`` objects
   handed to :meth:`CampaignRule.from_mapping` are turned into ISO text first.
3. Values. The frozen dataclasses (:class:`CampaignRule` and those of
   :mod:`.terms`) check what a schema cannot say: the end before the start, a
   reward paid into a non-customer account, an unknown time zone, a budget
   smaller than one reward, a period cap above the campaign cap, amounts that
   are not whole fen.

*Time.* Every instant is microseconds since the Unix epoch, UTC; calendar
questions are answered on the local date in the campaign's time zone (see
:mod:`.periods`).

*Counting.* :class:`Usage` is one customer's grants so far in one campaign.
:meth:`CampaignRule.decide` is a pure function of that usage, the budget
already spent and the time; the caller (the ledger) stores
``usage.after_grant(key)`` in the same database transaction as the bonus, and
``usage.after_revoke(key)`` with the reversal of a rewarded transfer.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.model import AccountKind, Channel, TransferKind
from simwallet.gateway.money import format_amount, parse_amount
from simwallet.gateway.promotions.campaign_file import checked_mapping, invalid, located, read_yaml, short_repr
from simwallet.gateway.promotions.periods import (
    DEFAULT_TIMEZONE,
    PERIOD_KEY_LEN_MAX,
    TIMEZONE_LEN_MAX,
    TS_US_MAX,
    TS_US_MIN,
    Period,
    _zone,
    datetime_from_ts_us,
    period_key_of,
    ts_us_from_datetime,
)
from simwallet.gateway.promotions.terms import (
    CUSTOMER_ACCOUNT_KINDS,
    GRANTS_PER_CUSTOMER_MAX,
    LEDGER_INTERNAL_KINDS,
    TRIGGER_KINDS,
    Caps,
    PeriodCap,
    Reward,
    Trigger,
)

# Other modules import all of these from here; those of .periods and .terms are re-exported.
__all__ = [
    "CAMPAIGN_DAYS_MAX", "CAMPAIGN_DESCRIPTION_LEN_MAX", "CAMPAIGN_ID_LEN_MAX", "CAMPAIGN_NAME_LEN_MAX", "CUSTOMER_ACCOUNT_KINDS",
    "DEFAULT_PERIOD", "DEFAULT_TIMEZONE", "GRANTS_PER_CUSTOMER_MAX", "LEDGER_INTERNAL_KINDS", "PERIOD_KEY_LEN_MAX", "TIMEZONE_LEN_MAX",
    "TRIGGER_KINDS", "TS_US_MAX", "TS_US_MIN", "CampaignRule", "Caps", "Outcome", "Period", "PeriodCap", "Reward", "Trigger", "Usage",
    "datetime_from_ts_us", "period_key_of", "ts_us_from_datetime",
]

# --- Limits -----------------------------------------------------------------
# The schema file states the same numbers; a test holds the two together.

# Longest campaign, counting the first and the last day: a leap year. A longer
# offer is a standing tariff, which belongs in the product catalogue.
CAMPAIGN_DAYS_MAX: Final = 366
# Campaign id: a slug short enough for file names, URLs and the store's key column.
CAMPAIGN_ID_LEN_MAX: Final = 48
# Campaign names are quoted in SMS replies; one UCS-2 segment holds 70
# characters, which leaves room for the amount.
CAMPAIGN_NAME_LEN_MAX: Final = 64
# The description is for clerks and reports, never sent by SMS.
CAMPAIGN_DESCRIPTION_LEN_MAX: Final = 2000

_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{2,47}")
_NAME_RE: Final = re.compile(r"\S(?:.*\S)?")


# The period of :meth:`CampaignRule.period_key` for a campaign without a
# per-period cap: the key is then bookkeeping only, and a month suits reports.
DEFAULT_PERIOD: Final = Period.MONTH


class Outcome(enum.StrEnum):
    """The decision on one qualifying transfer. Stable strings: they are stored and reported."""

    GRANTED = "granted"
    REFUSED_PERIOD_CAP = "refused_period_cap"
    REFUSED_CAMPAIGN_CAP = "refused_campaign_cap"
    REFUSED_BUDGET = "refused_budget"
    # Set by the ledger, never by decide(): the rule granted a reward that could
    # not be posted (no target account, a frozen or closed account). The
    # qualifying transfer still goes through: a customer's payment never fails
    # because of the operator's promotion.
    REFUSED_UNPAYABLE = "refused_unpayable"


# --- Value checks -------------------------------------------------------------


def _parse_fen(text: str, field: str) -> int:
    try:
        return parse_amount(text, field=field)
    except RequestError as exc:
        raise invalid(field, exc.message) from exc


def _text(value: object, field: str, length_max: int, pattern: re.Pattern[str] | None = None) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= length_max:
        raise invalid(field, f"must be text of 1..{length_max} characters")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise invalid(field, f"{short_repr(value)} does not have the required form")


# --- Counting and the rule ------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One customer's grants so far in one campaign.

    ``period_key`` is the period of the latest grant and ``period_count`` the
    grants within it; ``total_count`` counts every grant not revoked.
    """

    total_count: int = 0
    period_key: str | None = None
    period_count: int = 0

    def __post_init__(self) -> None:
        for name, value in (("total_count", self.total_count), ("period_count", self.period_count)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RequestError(RejectCode.FIELD_INVALID, f"usage.{name}", f"{name} must be a whole number >= 0")
        if self.period_key is None:
            if self.period_count:
                raise RequestError(RejectCode.FIELD_INVALID, "usage.period_count", "a period count needs a period key")
        elif not isinstance(self.period_key, str) or not 0 < len(self.period_key) <= PERIOD_KEY_LEN_MAX:
            raise RequestError(RejectCode.FIELD_INVALID, "usage.period_key", f"period key must be 1..{PERIOD_KEY_LEN_MAX} characters")
        if self.period_count > self.total_count:
            raise RequestError(RejectCode.FIELD_INVALID, "usage.period_count", "period count exceeds the total count")

    def after_grant(self, period_key: str) -> Usage:
        """The usage after one more grant in ``period_key`` (a new key starts a new period count)."""
        count = self.period_count + 1 if period_key == self.period_key else 1
        return Usage(self.total_count + 1, period_key, count)

    def after_revoke(self, period_key: str) -> Usage:
        """The usage after the grant made in ``period_key`` was reversed; counts never go below zero."""
        total = max(self.total_count - 1, 0)
        count = max(self.period_count - 1, 0) if period_key == self.period_key else self.period_count
        return Usage(total, self.period_key, min(count, total))


@dataclass(frozen=True)
class CampaignRule:
    """One campaign: its window, trigger, reward and caps. Build it with :meth:`from_yaml` or :meth:`from_mapping`."""

    id: str
    name: str
    name_en: str | None
    description: str | None
    start: date  # first day, inclusive, in ``timezone``
    end: date  # last day, inclusive, in ``timezone``
    timezone: str
    trigger: Trigger
    reward: Reward
    caps: Caps

    def __post_init__(self) -> None:
        _text(self.id, "id", CAMPAIGN_ID_LEN_MAX, _ID_RE)
        _text(self.name, "name", CAMPAIGN_NAME_LEN_MAX, _NAME_RE)
        if self.name_en is not None:
            _text(self.name_en, "name_en", CAMPAIGN_NAME_LEN_MAX, _NAME_RE)
        if self.description is not None:
            _text(self.description, "description", CAMPAIGN_DESCRIPTION_LEN_MAX)
        for field, day in (("window.start", self.start), ("window.end", self.end)):
            if isinstance(day, datetime) or not isinstance(day, date):
                raise invalid(field, "must be a calendar date")
        if self.end < self.start:
            raise invalid("window.end", f"the campaign ends on {self.end} before it starts on {self.start}")
        days = (self.end - self.start).days + 1
        if days > CAMPAIGN_DAYS_MAX:
            raise invalid("window.end", f"the campaign lasts {days} days, more than {CAMPAIGN_DAYS_MAX}")
        _zone(self.timezone)
        for field, value, cls in (("trigger", self.trigger, Trigger), ("reward", self.reward, Reward), ("caps", self.caps, Caps)):
            if not isinstance(value, cls):
                raise invalid(field, f"must be a {cls.__name__}")
        budget = self.caps.budget_fen
        if budget is not None and budget < self.reward.amount_fen:
            reward = format_amount(self.reward.amount_fen)
            raise invalid("caps.budget", f"budget {format_amount(budget)} is less than one reward of {reward}")

    # --- Named constructors and the canonical form ---

    @classmethod
    def from_yaml(cls, text: str, source: str = "<campaign>") -> CampaignRule:
        """Read a campaign file; ``source`` (the file name) prefixes error messages with the line."""
        data, lines = read_yaml(text, source)
        return _load(data, source, lines)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> CampaignRule:
        """Build from parsed data in the file's shape (dates as ``date`` or ISO text, amounts as text)."""
        return _load(data, source, {})

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> CampaignRule:
        """Build from the stored form written by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise invalid(None, f"{source}: not JSON: {exc}") from exc
        return _load(data, source, {})

    def to_mapping(self) -> dict[str, Any]:
        """The canonical form: the file's shape, amounts as ``"12.34"``, dates as ISO text, absent options left out."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.name_en is not None:
            out["name_en"] = self.name_en
        if self.description is not None:
            out["description"] = self.description
        out["window"] = {"start": self.start.isoformat(), "end": self.end.isoformat(), "timezone": self.timezone}
        trigger: dict[str, Any] = {"kind": self.trigger.kind.value, "amount_min": format_amount(self.trigger.amount_min_fen)}
        if self.trigger.channels is not None:
            trigger["channels"] = [channel.value for channel in Channel if channel in self.trigger.channels]
        out["trigger"] = trigger
        out["reward"] = {
            "amount": format_amount(self.reward.amount_fen),
            "source_account": self.reward.source_account,
            "target_account_kind": self.reward.target_account_kind.value,
        }
        caps: dict[str, Any] = {}
        if self.caps.per_period is not None:
            caps["per_period"] = {"period": self.caps.per_period.period.value, "count": self.caps.per_period.count}
        if self.caps.per_campaign is not None:
            caps["per_campaign"] = self.caps.per_campaign
        if self.caps.budget_fen is not None:
            caps["budget"] = format_amount(self.caps.budget_fen)
        out["caps"] = caps
        return out

    def to_json(self) -> str:
        """The canonical JSON text (sorted keys, compact, UTF-8 text kept) for the database."""
        return json.dumps(self.to_mapping(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    # --- Time ---

    @property
    def zone(self) -> ZoneInfo:
        """The campaign's time zone."""
        return ZoneInfo(self.timezone)

    def local_date(self, ts_us: int) -> date:
        """The calendar date in the campaign's time zone at the instant ``ts_us``."""
        return datetime_from_ts_us(ts_us).astimezone(self.zone).date()

    def in_window(self, ts_us: int) -> bool:
        """Whether ``ts_us`` falls on one of the campaign's days (from local midnight of the first to local midnight after the last)."""
        return self.start <= self.local_date(ts_us) <= self.end

    def period_key(self, ts_us: int) -> str:
        """The key of the per-period cap's period at ``ts_us`` (:data:`DEFAULT_PERIOD` when there is no such cap)."""
        period = self.caps.per_period.period if self.caps.per_period is not None else DEFAULT_PERIOD
        return period_key_of(period, self.local_date(ts_us))

    # --- Decision ---

    def qualifies(self, kind: TransferKind, amount_fen: int, channel: Channel, ts_us: int) -> bool:
        """Whether a posted transfer earns the reward, caps aside: kind, amount, channel and time."""
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
            raise RequestError(RejectCode.AMOUNT_MALFORMED, "amount", "amount must be an integer number of fen")
        return (
            kind == self.trigger.kind
            and amount_fen >= self.trigger.amount_min_fen
            and (self.trigger.channels is None or channel in self.trigger.channels)
            and self.in_window(ts_us)
        )

    def decide(self, usage: Usage, budget_used_fen: int, ts_us: int) -> Outcome:
        """Whether a qualifying transfer at ``ts_us`` is granted the reward.

        Checks, in order: the campaign cap on ``usage.total_count``; the
        period cap on ``usage.period_count``, which counts only when
        ``usage.period_key`` is the period of ``ts_us``; and the budget, which
        the reward must not take above. Call it only when :meth:`qualifies`.
        """
        if not isinstance(usage, Usage):
            raise RequestError(RejectCode.FIELD_INVALID, "usage", "usage must be a Usage")
        if isinstance(budget_used_fen, bool) or not isinstance(budget_used_fen, int) or budget_used_fen < 0:
            raise RequestError(RejectCode.FIELD_INVALID, "budget_used", "budget used must be a whole number of fen >= 0")
        key = self.period_key(ts_us)
        caps = self.caps
        if caps.per_campaign is not None and usage.total_count >= caps.per_campaign:
            return Outcome.REFUSED_CAMPAIGN_CAP
        if caps.per_period is not None:
            count = usage.period_count if usage.period_key == key else 0
            if count >= caps.per_period.count:
                return Outcome.REFUSED_PERIOD_CAP
        if caps.budget_fen is not None and budget_used_fen + self.reward.amount_fen > caps.budget_fen:
            return Outcome.REFUSED_BUDGET
        return Outcome.GRANTED


# --- Loading ---------------------------------------------------------------------
# ``lines`` maps the JSON path of every key in a file (``trigger.amount_min``,
# ``trigger.channels[1]``) to its 1-based line.


def _load(data: object, source: str, lines: Mapping[str, int]) -> CampaignRule:
    plain = checked_mapping(data, source, lines)
    try:
        return _build(plain)
    except RequestError as exc:
        raise located(source, lines, exc.field, exc.message) from exc


def _iso_date(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise invalid(field, f"{text!r} is not a calendar date") from exc


def _build(data: dict[str, Any]) -> CampaignRule:
    """Turn schema-valid data into a rule; the dataclasses check the values."""
    window = data["window"]
    trigger = data["trigger"]
    reward = data["reward"]
    caps = data.get("caps", {})
    channels = trigger.get("channels")
    per_period = caps.get("per_period")
    budget = caps.get("budget")
    return CampaignRule(
        id=data["id"],
        name=data["name"],
        name_en=data.get("name_en"),
        description=data.get("description"),
        start=_iso_date(window["start"], "window.start"),
        end=_iso_date(window["end"], "window.end"),
        timezone=window.get("timezone", DEFAULT_TIMEZONE),
        trigger=Trigger(
            kind=TransferKind(trigger["kind"]),
            amount_min_fen=_parse_fen(trigger["amount_min"], "trigger.amount_min"),
            channels=None if channels is None else frozenset(Channel(channel) for channel in channels),
        ),
        reward=Reward(
            amount_fen=_parse_fen(reward["amount"], "reward.amount"),
            source_account=reward["source_account"],
            target_account_kind=AccountKind(reward["target_account_kind"]),
        ),
        caps=Caps(
            per_period=None if per_period is None else PeriodCap(Period(per_period["period"]), per_period["count"]),
            per_campaign=caps.get("per_campaign"),
            budget_fen=None if budget is None else _parse_fen(budget, "caps.budget"),
        ),
    )
