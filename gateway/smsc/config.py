"""The embedded SMSC's configuration: accounts, limits and timers (a TOML file or command-line specs).

Accounts are of two kinds. An ``esme`` account is an application (the
gateway): it owns destination prefixes, short codes for SMS (``10658000``) and
service codes for USSD (``*166``), and mobile-originated messages to them are
routed to its binds. A ``phones`` account is a phone simulator: each of its
binds carries the MSISDNs its ``address_range`` matches (SMPP 3.4 §5.2.7: a
regular expression; here matched in full against the MSISDN, and an empty
range carries every MSISDN).

The TOML form::

    redeliver_after_s = 30.0
    queue_max = 10000
    max_age_s = 172800.0

    [[accounts]]
    system_id = "gateway"
    password = "secret"
    kind = "esme"
    prefixes = ["10658000", "*166"]
    tps = 200.0            # optional: submit_sm per second per bind (token bucket)

    [[accounts]]
    system_id = "phones"
    password = "secret"
    kind = "phones"

The command-line form of one account is ``SYSTEM_ID:PASSWORD:KIND[:PREFIXES][:TPS]``
(:meth:`Account.parse`): ``gateway:secret:esme:10658000,*166:200``, ``phones:secret:phones``.
"""

from __future__ import annotations

import enum
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simwallet.gateway.smsc.errors import SmscConfigError

# SMPP 3.4 §4.1.1: system_id holds at most 15 characters, password 8.
SYSTEM_ID_CHARS_MAX = 15
PASSWORD_CHARS_MAX = 8
# A deliver_sm not acknowledged within this long is sent again (same message id).
REDELIVER_AFTER_S = 30.0
# Messages waiting for one destination (an ESME account, or one phone) before submit_sm gets ESME_RMSGQFUL.
QUEUE_MAX = 10_000
# A message without validity_period is dropped (EXPIRED receipt if asked) after two days, as many SMSCs do.
MAX_AGE_S = 2 * 24 * 3600.0
# The token bucket holds a tenth of a second of throughput, and at least one message.
BURST_S = 0.1
# A throughput beyond any SMSC this simulator stands in for.
TPS_MAX = 1_000_000.0
# A config file is a few dozen lines.
CONFIG_FILE_BYTES_MAX = 256 * 1024
ACCOUNTS_MAX = 1000
PREFIXES_MAX = 100


class AccountKind(enum.StrEnum):
    """What binds with an account: an application, or phones."""

    ESME = "esme"
    PHONES = "phones"


@dataclass(frozen=True, slots=True)
class Account:
    """One SMPP login of the SMSC."""

    system_id: str
    password: str = field(repr=False)
    kind: AccountKind
    # ESME accounts: the destination prefixes they own (longest match wins).
    prefixes: tuple[str, ...] = ()
    # submit_sm per second per bind; None: no limit.
    tps: float | None = None
    # Token bucket size (messages); None: BURST_S of throughput, at least 1.
    burst: int | None = None

    def __post_init__(self) -> None:
        if not self.system_id or len(self.system_id) > SYSTEM_ID_CHARS_MAX or not self.system_id.isascii():
            raise SmscConfigError(f"system_id {self.system_id!r}: 1..{SYSTEM_ID_CHARS_MAX} ASCII characters", field="system_id")
        if len(self.password) > PASSWORD_CHARS_MAX or not self.password.isascii():
            raise SmscConfigError(f"{self.system_id}: password of at most {PASSWORD_CHARS_MAX} ASCII characters", field="password")
        if not isinstance(self.kind, AccountKind):
            raise SmscConfigError(f"{self.system_id}: kind {self.kind!r} is not esme or phones", field="kind")
        if self.kind is AccountKind.PHONES and self.prefixes:
            raise SmscConfigError(f"{self.system_id}: a phones account owns no prefixes", field="prefixes")
        if len(self.prefixes) > PREFIXES_MAX or any(not prefix or len(prefix) > 20 for prefix in self.prefixes):
            raise SmscConfigError(f"{self.system_id}: prefixes must be 1..20 characters, at most {PREFIXES_MAX}", field="prefixes")
        if self.tps is not None and not 0 < self.tps <= TPS_MAX:
            raise SmscConfigError(f"{self.system_id}: tps {self.tps} outside (0, {TPS_MAX:g}]", field="tps")
        if self.burst is not None and self.burst < 1:
            raise SmscConfigError(f"{self.system_id}: burst {self.burst} below 1", field="burst")

    @property
    def bucket_size(self) -> float:
        """Messages a bind may send at once before the rate applies."""
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, math.floor((self.tps or 0.0) * BURST_S))

    @classmethod
    def parse(cls, spec: str) -> Account:
        """``SYSTEM_ID:PASSWORD:KIND[:PREFIXES][:TPS]``; a phones account has no PREFIXES (``phones:pw:phones:50``)."""
        parts = spec.split(":")
        if len(parts) < 3:
            raise SmscConfigError(f"{spec!r}: expected SYSTEM_ID:PASSWORD:KIND[:PREFIXES][:TPS]", field="account")
        system_id, password, kind_text, *rest = parts
        kind = _kind(kind_text)
        prefixes: tuple[str, ...] = ()
        if kind is AccountKind.ESME and rest:
            prefixes = tuple(prefix for prefix in rest.pop(0).split(",") if prefix)
        if len(rest) > 1:
            raise SmscConfigError(f"{spec!r}: too many fields", field="account")
        tps = _tps(rest[0]) if rest and rest[0] else None
        return cls(system_id, password, kind, prefixes, tps)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Account:
        known = {"system_id", "password", "kind", "prefixes", "tps", "burst"}
        unknown = set(data) - known
        if unknown:
            raise SmscConfigError(f"unknown account key(s) {', '.join(sorted(unknown))}", field="accounts")
        system_id, password = data.get("system_id"), data.get("password", "")
        prefixes, tps, burst = data.get("prefixes", []), data.get("tps"), data.get("burst")
        if not isinstance(system_id, str) or not isinstance(password, str):
            raise SmscConfigError("system_id and password must be strings", field="accounts")
        if not isinstance(prefixes, list) or not all(isinstance(prefix, str) for prefix in prefixes):
            raise SmscConfigError(f"{system_id}: prefixes must be a list of strings", field="prefixes")
        if tps is not None and (isinstance(tps, bool) or not isinstance(tps, int | float)):
            raise SmscConfigError(f"{system_id}: tps must be a number", field="tps")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)):
            raise SmscConfigError(f"{system_id}: burst must be an integer", field="burst")
        kind = _kind(str(data.get("kind", "")))
        return cls(system_id, password, kind, tuple(prefixes), None if tps is None else float(tps), burst)


def _kind(text: str) -> AccountKind:
    try:
        return AccountKind(text)
    except ValueError:
        raise SmscConfigError(f"kind {text!r} is not esme or phones", field="kind") from None


def _tps(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SmscConfigError(f"tps {text!r} is not a number", field="tps") from None


@dataclass(frozen=True, slots=True)
class SmscConfig:
    """Accounts and the store-and-forward limits."""

    accounts: tuple[Account, ...]
    redeliver_after_s: float = REDELIVER_AFTER_S
    queue_max: int = QUEUE_MAX
    max_age_s: float = MAX_AGE_S
    # The SMSC's own system_id in bind responses.
    system_id: str = "SIMSMSC"

    def __post_init__(self) -> None:
        if len(self.accounts) > ACCOUNTS_MAX:
            raise SmscConfigError(f"{len(self.accounts)} accounts exceed {ACCOUNTS_MAX}", field="accounts")
        ids = [account.system_id for account in self.accounts]
        if len(set(ids)) != len(ids):
            raise SmscConfigError("a system_id appears twice", field="accounts")
        owners: dict[str, str] = {}
        for account in self.accounts:
            for prefix in account.prefixes:
                if owners.setdefault(prefix, account.system_id) != account.system_id:
                    raise SmscConfigError(f"prefix {prefix} owned by {owners[prefix]} and {account.system_id}", field="prefixes")
        if not self.redeliver_after_s > 0 or not self.max_age_s > 0:
            raise SmscConfigError("redeliver_after_s and max_age_s must be positive", field="timers")
        if self.queue_max < 1:
            raise SmscConfigError("queue_max must be at least 1", field="queue_max")

    def account(self, system_id: str) -> Account | None:
        return next((account for account in self.accounts if account.system_id == system_id), None)

    @classmethod
    def from_toml(cls, path: Path) -> SmscConfig:
        """Read the TOML form (module docstring); :class:`SmscConfigError` names what is wrong."""
        try:
            data = path.read_bytes()
            if len(data) > CONFIG_FILE_BYTES_MAX:
                raise SmscConfigError(f"{path}: larger than {CONFIG_FILE_BYTES_MAX} bytes", field="config")
            document = tomllib.loads(data.decode("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SmscConfigError(f"{path}: {exc}", field="config") from exc
        return cls.from_mapping(document)

    @classmethod
    def from_mapping(cls, document: dict[str, Any]) -> SmscConfig:
        known = {"accounts", "redeliver_after_s", "queue_max", "max_age_s", "system_id"}
        unknown = set(document) - known
        if unknown:
            raise SmscConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", field="config")
        accounts = document.get("accounts", [])
        if not isinstance(accounts, list) or not all(isinstance(item, dict) for item in accounts):
            raise SmscConfigError("accounts must be an array of tables", field="accounts")
        options: dict[str, Any] = {}
        for key, kind in (("redeliver_after_s", float), ("max_age_s", float), ("queue_max", int), ("system_id", str)):
            if key in document:
                value = document[key]
                if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
                    raise SmscConfigError(f"{key} must be {kind.__name__}", field=key)
                options[key] = kind(value)
        return cls(tuple(Account.from_mapping(item) for item in accounts), **options)
