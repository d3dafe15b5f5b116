"""A batch's input: the CSV of cards, the optional file of their PINs, and the pre-flight that checks all of it before any APDU.

Spec: RFC 4180 (CSV: a header row, then one record per line; UTF-8 here, a
leading byte-order mark tolerated); the values' own checks are those of
:mod:`simwallet.provisioning.values` (ITU-T E.118 ICCID with its Luhn digit,
3GPP TS 23.003 §2.2 IMSI, ITU-T E.164 MSISDN) through
:meth:`~simwallet.provisioning.profile.Profile.render`.

The CSV
-------
One row per card; the header names the profile's values (``iccid``, ``imsi``,
``msisdn``, ``customer``, …); a value the profile declares with a default may
be left out. Rows are numbered from 1, the header not counted, as
:class:`~simwallet.provisioning.values.CardValueError` numbers them.

Secrets (``pin1``, ``puk1``, …) may be columns of the CSV, or come from a
separate *secrets file* (``--secrets``): a CSV with an ``iccid`` column and
one column per secret, readable by its owner only (mode 0600 or stricter;
anything else is refused). A secret given in both places is refused too. The
secrets file is not part of the batch digest (the journal never depends on a
PIN, not even through a hash): changing a PIN between two runs changes it for
the cards that are not finished yet.

Pre-flight
----------
:func:`preflight` checks every row before the first card is touched and
raises one :class:`BatchInputError` listing every problem:

* each row's values and rendering against the profile (a bad ICCID Luhn digit,
  an IMSI of the wrong length or PLMN, a malformed MSISDN, a file that does
  not fit);
* an ICCID, IMSI or MSISDN that appears twice, naming both rows;
* with a registry: an ICCID registered with other values, or an IMSI or MSISDN
  registered to another card (naming that card). A card registered with the
  same values is fine: a batch run again repeats its registration, which the
  registry recognises.

The digest of a batch (:func:`batch_digest`) is what its journal is tied to.
"""

from __future__ import annotations

import csv
import hashlib
import io
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.values import CardValueError, CardValues, ValueKind
from simwallet.provisioning.yamlpos import ProfileError

if TYPE_CHECKING:
    from simwallet.gateway.cards import CardRegistry
    from simwallet.provisioning.profile import Personalization, Profile

# A batch is a production run of a few thousand cards; a file far larger is a mistake (or not a CSV).
CSV_BYTES_MAX: Final = 64 * 1024 * 1024
ROWS_MAX: Final = 200_000
# A secrets file holds a few short columns per card.
SECRETS_BYTES_MAX: Final = 16 * 1024 * 1024
# Pre-flight stops collecting after this many problems: the first screenful is what the operator reads.
PROBLEMS_MAX: Final = 1000
# The columns that identify a card, each unique within a batch and within the registry.
IDENTITIES: Final = ("iccid", "imsi", "msisdn")


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong with the input: its row (None: the whole file), the value or column at fault, and why."""

    row: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}: " if self.row is not None else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "message": self.message}


class BatchInputError(ProvisioningError, ValueError):
    """The batch's input failed pre-flight: ``problems`` lists each (never a secret's digits); nothing was sent to a card."""

    def __init__(self, source: str, problems: Sequence[RowProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{source}: {len(self.problems)} problem(s): {shown}{more}")


@dataclass(frozen=True)
class CsvRow:
    """One CSV record as text: ``values`` by column (secrets among them, hence no repr)."""

    row: int
    values: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class BatchCard:
    """One pre-flighted card: its row, checked values and rendered personalization (no secret in ``repr``)."""

    row: int
    iccid: str
    values: CardValues
    personalization: Personalization = field(repr=False)


@dataclass(frozen=True)
class BatchInput:
    """The checked cards of a batch, in CSV order, and the digest its journal is tied to."""

    source: str
    digest: str
    cards: tuple[BatchCard, ...]

    def by_iccid(self) -> dict[str, BatchCard]:
        return {card.iccid: card for card in self.cards}


# --- reading -----------------------------------------------------------------------------------------


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """A file's bytes, refusing one larger than ``limit``; BatchInputError when unreadable."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise BatchInputError(str(path), [RowProblem(None, None, f"cannot read the {what}: {exc.strerror}")]) from exc
    if len(data) > limit:
        raise BatchInputError(str(path), [RowProblem(None, None, f"the {what} is larger than {limit} bytes")])
    return data


def parse_csv(data: bytes, *, source: str, rows_max: int = ROWS_MAX) -> tuple[tuple[str, ...], tuple[CsvRow, ...]]:
    """The header and rows of a UTF-8 CSV; a blank line is skipped, a ragged row is a problem."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchInputError(source, [RowProblem(None, None, f"not UTF-8 text (byte {exc.start})")]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BatchInputError(source, [RowProblem(None, None, f"malformed header row: {exc}")]) from None
    if not header or not any(name.strip() for name in header):
        raise BatchInputError(source, [RowProblem(None, None, "no header row (the first line names the columns)")])
    columns = tuple(name.strip() for name in header)
    problems: list[RowProblem] = []
    seen: set[str] = set()
    for name in columns:
        if not name:
            problems.append(RowProblem(None, None, "a column of the header row has no name"))
        elif name in seen:
            problems.append(RowProblem(None, name, "the header names this column twice"))
        seen.add(name)
    rows: list[CsvRow] = []
    number = 0
    try:
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue
            number += 1
            if number > rows_max:
                problems.append(RowProblem(None, None, f"more than {rows_max} rows: split the batch"))
                break
            if len(record) != len(columns):
                problems.append(RowProblem(number, None, f"{len(record)} fields, the header has {len(columns)}"))
                continue
            rows.append(CsvRow(number, MappingProxyType({name: cell.strip() for name, cell in zip(columns, record, strict=True)})))
    except csv.Error as exc:
        problems.append(RowProblem(number + 1, None, f"malformed CSV: {exc}"))
    if problems:
        raise BatchInputError(source, problems)
    return columns, tuple(rows)


def read_secrets(path: Path, *, secret_names: Iterable[str]) -> dict[str, dict[str, str]]:
    """The secrets file: ``{iccid: {name: value}}``; refused when group or others may read it, or when it names an unknown secret."""
    source = str(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BatchInputError(source, [RowProblem(None, None, f"cannot read the secrets file: {exc.strerror}")]) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        why = f"the secrets file must be readable by its owner only (chmod 600; it is {stat.filemode(mode)})"
        raise BatchInputError(source, [RowProblem(None, None, why)])
    columns, rows = parse_csv(read_limited(path, SECRETS_BYTES_MAX, "secrets file"), source=source)
    allowed = set(secret_names)
    problems = [RowProblem(None, name, "not a secret of this profile") for name in columns if name != "iccid" and name not in allowed]
    if "iccid" not in columns:
        problems.append(RowProblem(None, "iccid", "the secrets file needs an iccid column"))
    if problems:
        raise BatchInputError(source, problems)
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        iccid = row.values["iccid"]
        if iccid in out:
            problems.append(RowProblem(row.row, "iccid", f"{iccid} is given twice"))
            continue
        out[iccid] = {name: value for name, value in row.values.items() if name != "iccid" and value}
    if problems:
        raise BatchInputError(source, problems)
    return out


def batch_digest(csv_bytes: bytes, profile_bytes: bytes) -> str:
    """SHA-256 over the CSV's bytes and the profile file's bytes (each preceded by its length), in hex."""
    digest = hashlib.sha256()
    for part in (csv_bytes, profile_bytes):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


# --- pre-flight ---------------------------------------------------------------------------------------


def msisdn_e164(profile: Profile, values: CardValues) -> str | None:
    """The card's MSISDN with its country code (E.164 without ``+``), as the registry stores it."""
    for spec in profile.value_specs:
        if spec.kind is ValueKind.MSISDN and spec.country_code is not None:
            national = values.get(spec.name)
            return None if national is None else spec.country_code + national
    return None


def _identities(profile: Profile, values: CardValues) -> dict[str, str]:
    found = {name: value for name in ("iccid", "imsi") if (value := values.get(name)) is not None}
    msisdn = msisdn_e164(profile, values)
    if msisdn is not None:
        found["msisdn"] = msisdn
    return found


def _merge_secrets(row: CsvRow, secrets: Mapping[str, Mapping[str, str]] | None) -> tuple[dict[str, str], list[RowProblem]]:
    values = dict(row.values)
    if secrets is None:
        return values, []
    extra = secrets.get(values.get("iccid", ""), {})
    clash = sorted(name for name in extra if values.get(name))
    if clash:
        return values, [RowProblem(row.row, name, "given both in the CSV and in the secrets file") for name in clash]
    values.update(extra)
    return values, []


def preflight(
    profile: Profile,
    rows: Sequence[CsvRow],
    *,
    source: str,
    digest: str,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    registry: CardRegistry | None = None,
) -> BatchInput:
    """Check every row (values, rendering, duplicates, the registry); BatchInputError lists every problem."""
    problems: list[RowProblem] = []
    cards: list[BatchCard] = []
    first_row: dict[tuple[str, str], int] = {}
    identities: dict[int, dict[str, str]] = {}
    for row in rows:
        if len(problems) >= PROBLEMS_MAX:
            break
        values, merge_problems = _merge_secrets(row, secrets)
        problems += merge_problems
        try:
            personalization = profile.render(values, row=row.row)
        except CardValueError as exc:
            problems += [RowProblem(row.row, name, message) for name, message in exc.problems]
            continue
        except ProfileError as exc:
            problems.append(RowProblem(row.row, None, str(exc)))
            continue
        card_values = personalization.values
        iccid = card_values.iccid
        if iccid is None:
            problems.append(RowProblem(row.row, "iccid", "the profile declares no iccid value: a batch needs one per card"))
            continue
        ids = _identities(profile, card_values)
        duplicate = False
        for name, value in ids.items():
            earlier = first_row.setdefault((name, value), row.row)
            if earlier != row.row:
                problems.append(RowProblem(row.row, name, f"{value} is also in row {earlier}"))
                duplicate = True
        if duplicate:
            continue
        identities[row.row] = ids
        cards.append(BatchCard(row.row, iccid, card_values, personalization))
    if secrets is not None:
        in_csv = {card.iccid for card in cards}
        stray = sorted(set(secrets) - in_csv)
        problems += [RowProblem(None, "iccid", f"the secrets file names {iccid}, which is not in the CSV") for iccid in stray]
    if registry is not None and cards:
        problems += registry_conflicts(registry, [(card.row, identities[card.row]) for card in cards])
    if problems:
        raise BatchInputError(source, sorted(problems, key=lambda p: (p.row or 0, p.field or "")))
    return BatchInput(source, digest, tuple(cards))


def registry_conflicts(registry: CardRegistry, rows: Sequence[tuple[int, Mapping[str, str]]]) -> list[RowProblem]:
    """Rows whose ICCID is registered with other values, or whose IMSI or MSISDN another card holds."""
    registered: dict[str, dict[str, str]] = {}  # iccid -> its identities in the registry
    owner: dict[tuple[str, str], str] = {}  # (column, value) -> the iccid holding it
    for iccid, imsi, msisdn in registry.holders({name: [ids[name] for _, ids in rows if name in ids] for name in IDENTITIES}):
        registered[iccid] = {"iccid": iccid, "imsi": imsi, "msisdn": msisdn}
        for name, value in registered[iccid].items():
            owner[(name, value)] = iccid
    problems: list[RowProblem] = []
    for row, ids in rows:
        iccid = ids["iccid"]
        mine = registered.get(iccid)
        if mine is not None:
            for name in ("imsi", "msisdn"):
                if name in ids and mine[name] != ids[name]:
                    problems.append(RowProblem(row, name, f"card {iccid} is registered with {name} {mine[name]}, not {ids[name]}"))
        for name in ("imsi", "msisdn"):
            holder = owner.get((name, ids.get(name, "")))
            if holder is not None and holder != iccid:
                problems.append(RowProblem(row, name, f"{ids[name]} is registered to card {holder}"))
    return problems


def load_batch(
    csv_path: Path,
    profile: Profile,
    profile_path: Path,
    *,
    secrets_path: Path | None = None,
    registry: CardRegistry | None = None,
) -> BatchInput:
    """Read the CSV (and secrets file), compute the digest, and run the pre-flight."""
    source = str(csv_path)
    data = read_limited(csv_path, CSV_BYTES_MAX, "CSV")
    profile_bytes = read_limited(profile_path, CSV_BYTES_MAX, "profile")
    _, rows = parse_csv(data, source=source)
    secrets = None
    if secrets_path is not None:
        secret_names = [spec.name for spec in profile.value_specs if spec.kind.secret]
        secrets = read_secrets(secrets_path, secret_names=secret_names)
    return preflight(profile, rows, source=source, digest=batch_digest(data, profile_bytes), secrets=secrets, registry=registry)


def default_journal_path(csv_path: Path) -> Path:
    """``<csv>.journal`` next to the CSV."""
    return csv_path.with_name(csv_path.name + ".journal")


__all__ = [
    "BatchCard",
    "BatchInput",
    "BatchInputError",
    "CsvRow",
    "RowProblem",
    "batch_digest",
    "default_journal_path",
    "load_batch",
    "msisdn_e164",
    "parse_csv",
    "preflight",
    "read_secrets",
    "registry_conflicts",
]
