"""Parameter types of the ``simwallet`` command: amounts, account references, instants.

An amount that :func:`~simwallet.gateway.money.parse_amount` refuses is a
refused request, not a usage error: its :class:`RequestError` (``amount_malformed``,
``amount_not_whole_fen`` …, naming the option's field) rises to the root
group, which exits with code 1 like any other refusal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.limits import LOCAL_TZ
from simwallet.gateway.ledger.model import ID_MAX, AccountKind, Channel, TransferKind
from simwallet.gateway.money import parse_amount

# The word that removes a tier limit (``--per-day none``).
NO_LIMIT = "none"


class AmountType(click.ParamType[int | str]):
    """``12.34`` → 1234 fen. With ``allow_none``, the word ``none`` gives :data:`NO_LIMIT`."""

    name = "amount"

    def __init__(self, *, allow_none: bool = False) -> None:
        self.allow_none = allow_none

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "AMOUNT|none" if self.allow_none else "AMOUNT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value)
        if self.allow_none and text.strip().lower() == NO_LIMIT:
            return NO_LIMIT
        field = param.name if param is not None and param.name else "amount"
        return parse_amount(text, field=field)


class AccountRefType(click.ParamType[int | str]):
    """An account by reference (``C000123/wallet``) or by id (all digits; references never are)."""

    name = "account"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "REF|ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            return text
        field = param.name if param is not None and param.name else "account"
        if not 0 < int(text) <= ID_MAX:
            raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, field, f"no account {text}")
        return int(text)


class InstantType(click.ParamType[int]):
    """An ISO 8601 time; without an offset it is Asia/Shanghai local time. Gives microseconds since the epoch."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from simwallet.gateway.promotions.rules import ts_us_from_datetime

        if isinstance(value, int) and not isinstance(value, bool):
            return value
        field = param.name if param is not None and param.name else "time"
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise RequestError(RejectCode.FIELD_INVALID, field,
                               f"{value!r} is not an ISO 8601 time such as 2026-11-14T10:00:00+08:00") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=LOCAL_TZ)
        return ts_us_from_datetime(moment)


# A transfer or account id: the ids are signed 64-bit columns.
ID = click.IntRange(1, ID_MAX)
AMOUNT = AmountType()
LIMIT = AmountType(allow_none=True)
ACCOUNT = AccountRefType()
INSTANT = InstantType()

# Kinds a client may post; reversals and bonuses are made by the ledger itself.
CLIENT_TRANSFER_KINDS = click.Choice([k.value for k in TransferKind if k not in (TransferKind.REVERSAL, TransferKind.PROMOTION_BONUS)])
ACCOUNT_KINDS = click.Choice([k.value for k in AccountKind])
CHANNELS = click.Choice([c.value for c in Channel])
