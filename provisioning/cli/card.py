"""``simwallet card``: one card at a time in a PC/SC reader — list readers, read, personalize, verify, diagnose.

Spec: the commands drive :mod:`simwallet.provisioning.personalize` (ETSI TS
102 221, 3GPP TS 31.102, GlobalPlatform CS v2.3 with Amendment D),
:mod:`simwallet.provisioning.cardread` and :mod:`simwallet.provisioning.diagnose`
through PC/SC (:mod:`simwallet.provisioning.reader`).

Secrets: PIN1 comes from ``--pin1-file`` (first line), ``$SIMWALLET_PIN1``, or a
hidden prompt — never from an argument, which ``ps`` and shell histories show.
The PUK and the ADM1 code are derived from the key store (``--keystore``,
``--passphrase-file``, ``$SIMWALLET_KEYSTORE_PASSPHRASE`` as in ``simwallet
keys``). None of them is printed, logged or journaled.

Resuming: ``card personalize`` keeps a journal per ICCID
(``<user state dir>/journal/<ICCID>.jsonl``, or ``--journal``); the same
command run again after a pulled card continues from the last good step.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.card_batch import batch, emulate
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.keys import keystore_option, open_keystore, passphrase_option

if TYPE_CHECKING:
    from simwallet.gateway.keystore import KeyStore
    from simwallet.provisioning.personalize import CardJob, Personalizer
    from simwallet.provisioning.profile import Profile
    from simwallet.provisioning.reader import CardConnection, Pcsc

PIN1_ENV = "SIMWALLET_PIN1"
# A PIN file holds one short line.
PIN_FILE_BYTES_MAX = 256
# How long `--wait` may wait for a card (pcscd polls presence every ~0.4 s).
WAIT_S_MAX = 3600.0
ACCEPTANCE_CHANNELS = ("service_hall", "field", "batch", "agent")

_reader_option = click.option(
    "--reader", "reader", required=True, metavar="R", help="Reader: index in `card readers`, or (part of) its name."
)
_pin1_option = click.option(
    "--pin1-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"PIN1: the first line of this file. [else env {PIN1_ENV}, else a hidden prompt] Never an argument.",
)
_wait_option = click.option(
    "--wait", "wait_s", type=click.FloatRange(0, WAIT_S_MAX), default=0.0, show_default=True, help="Seconds to wait for a card."
)


def _value_options(func: Any) -> Any:
    for option in reversed(
        (
            click.option("--profile", "profile_name", required=True, help="Profile: a name in cards/profiles or a YAML path."),
            click.option("--iccid", required=True, help="The card's ICCID (checked against the card before anything is written)."),
            click.option("--imsi", required=True),
            click.option("--msisdn", required=True, help="Mobile number: national, +CC… or 00CC…."),
            click.option("--customer", required=True, help="Customer reference (the wallet account is customer:<ref>)."),
            click.option("--value", "extra", multiple=True, metavar="NAME=VALUE", help="Another value the profile declares (not a PIN)."),
            click.option(
                "--channel",
                type=click.Choice(ACCEPTANCE_CHANNELS),
                default="service_hall",
                show_default=True,
                help="Where the card is handed over (registration).",
            ),
            click.option("--clerk", default=None, help="Who personalizes. [default: the login name]"),
            _pin1_option,
            keystore_option,
            passphrase_option,
        )
    ):
        func = option(func)
    return func


@dataclass(frozen=True)
class CardValuesInput:
    """The per-card values of a personalize/verify command line (no secrets: those are read separately)."""

    profile_name: str
    iccid: str
    imsi: str
    msisdn: str
    customer: str
    extra: tuple[str, ...]
    channel: str
    clerk: str | None


@click.group()
def card() -> None:
    """One card in a PC/SC reader: readers, read, personalize, verify, diagnose (and batch, emulate)."""


card.add_command(batch)
card.add_command(emulate)


# --- shared helpers ------------------------------------------------------------------------------------


def _read_first_line(path: Path, what: str, field: str, app: AppContext) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(PIN_FILE_BYTES_MAX + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.UserError(f"cannot read the {what} file {path}", code=f"{field}_invalid", field=field, json_output=app.json) from exc
    if len(data) > PIN_FILE_BYTES_MAX:
        raise errors.UserError(
            f"{path} is larger than {PIN_FILE_BYTES_MAX} bytes", code=f"{field}_invalid", field=field, json_output=app.json
        )
    return text.splitlines()[0].strip() if text else ""


def _pin1(app: AppContext, pin1_file: Path | None, *, prompt: bool, confirm: bool) -> str | None:
    if pin1_file is not None:
        return _read_first_line(pin1_file, "PIN1", "pin1_file", app)
    env = os.environ.get(PIN1_ENV)
    if env:
        return env
    if not prompt:
        return None
    return str(click.prompt("PIN1", hide_input=True, confirmation_prompt=confirm, err=True))


@contextmanager
def _connected(app: AppContext, reader: str, wait_s: float) -> Iterator[tuple[Pcsc, CardConnection]]:
    from simwallet.provisioning.reader import Pcsc

    with Pcsc() as pcsc:
        name = pcsc.resolve(reader)
        if wait_s > 0:
            pcsc.wait_for_card(name, wait_s)
        connection = pcsc.connect(name, exclusive=True)
        try:
            yield pcsc, connection
        finally:
            # Reset: the ADM1 and PIN1 verified here must not stay verified for the next application.
            connection.close(disposition="reset")


def _job(app: AppContext, given: CardValuesInput, keystore: KeyStore, pin1_file: Path | None, *, confirm: bool) -> tuple[Profile, CardJob]:
    """Load the profile, gather the values (PIN1 from file/env/prompt, PUK1 from the key store), render the card's job."""
    import getpass

    from simwallet.gateway.diversify import card_secrets
    from simwallet.provisioning.personalize import CardJob
    from simwallet.provisioning.profile import load_profile
    from simwallet.provisioning.values import ValueKind

    profile = load_profile(given.profile_name)
    values = {"iccid": given.iccid, "imsi": given.imsi, "msisdn": given.msisdn, "customer": given.customer}
    specs = {spec.name: spec for spec in profile.value_specs}
    for item in given.extra:
        name, sep, text = item.partition("=")
        spec = specs.get(name)
        if not sep or spec is None or spec.kind.secret or name in values:
            raise errors.UsageFailure(
                f"--value {name}: not a non-secret value the profile declares (values: {', '.join(sorted(specs))})",
                code="usage",
                field="value",
                json_output=app.json,
            )
        values[name] = text
    pin_spec = specs.get("pin1")
    if pin_spec is not None:
        pin1 = _pin1(app, pin1_file, prompt=pin_spec.required, confirm=confirm)
        if pin1:
            values["pin1"] = pin1
    puk = next((s for s in profile.value_specs if s.kind is ValueKind.PUK and s.name == "puk1"), None)
    if puk is not None and "pin1" in values:
        # The card maker set the PUK from the key store; the clerk never types it.
        from simwallet.provisioning.values import check_iccid

        values["puk1"] = card_secrets(keystore.active("card-secrets").secrets_master(), check_iccid(given.iccid)).puk1
    personalization = profile.render(values)
    clerk = given.clerk or getpass.getuser()
    return profile, CardJob(personalization.values, personalization, given.channel, clerk)


def _registry(app: AppContext) -> Any:
    from simwallet.gateway.cards import CardRegistry

    return CardRegistry(app.engine, app.ledger())


def default_journal_path(iccid: str) -> Path:
    """``<user state dir>/journal/<ICCID>.jsonl`` (platformdirs)."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("simwallet", appauthor=False)) / "journal" / f"{iccid}.jsonl"


def job_digest(profile: Profile, job: CardJob) -> str:
    """What a journal is bound to: the profile file and the job's non-secret values (a PIN's hash would be guessable)."""
    digest = hashlib.sha256()
    digest.update(Path(profile.source).read_bytes())
    document = {"values": dict(sorted(job.values.values.items())), "channel": job.channel, "clerk": job.clerk}
    digest.update(json.dumps(document, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


# --- commands ------------------------------------------------------------------------------------------


@card.command()
@pass_app
def readers(app: AppContext) -> None:
    """The PC/SC readers: index, name, card present, ATR."""
    from simwallet.provisioning.reader import Pcsc

    with Pcsc() as pcsc:
        infos = pcsc.readers()
    if app.json:
        render.emit_json({"readers": [info.to_json() for info in infos]})
        return
    render.table(
        ("index", "name", "card", "ATR"),
        [(i.index, i.name, "yes" if i.card_present else "no", i.atr.hex().upper() if i.atr else "-") for i in infos],
        right=("index",),
    )


@card.command()
@_reader_option
@click.option("--card-type", default="usim-wallet", show_default=True, help="Card type (AIDs of the USIM and the ISD).")
@_pin1_option
@keystore_option
@passphrase_option
@click.option("--with-keystore/--without-keystore", default=False, help="Open the key store (ADM1 and the secure channel).")
@_wait_option
@pass_app
def read(
    app: AppContext,
    reader: str,
    card_type: str,
    pin1_file: Path | None,
    keystore_path: Path | None,
    passphrase_file: Path | None,
    with_keystore: bool,
    wait_s: float,
) -> None:
    """Read the card: ICCID, IMSI, MSISDN, SPN, SMSP, LI, AD, retry counters, CPLC, ISD key versions, wallet state.

    \b
    Nothing is presented without a reason and never below 2 tries left:
    - EF.IMSI, EF.MSISDN and EF.SMSP are read-protected by PIN1 on this
      card type: with --pin1-file (or SIMWALLET_PIN1) PIN1 is verified,
      else they show as protected.
    - With a key store (--keystore or --with-keystore) ADM1 is verified
      (derived from the key store) and the secure channel opened to read
      the wallet applet's state (GET STATUS needs it).
    """
    from simwallet.provisioning.cardread import read_card
    from simwallet.provisioning.factory import card_type_mapping
    from simwallet.provisioning.values import Secret

    keystore = open_keystore(app, keystore_path, passphrase_file) if (keystore_path or with_keystore) else None
    pin1 = _pin1(app, pin1_file, prompt=False, confirm=False)
    mapping = card_type_mapping(card_type)
    with _connected(app, reader, wait_s) as (_, connection):
        report = read_card(connection, keystore=keystore, pin1=Secret(pin1) if pin1 else None, card_type=mapping)
    if app.json:
        render.emit_json(report.to_json())
        return
    render.fields(
        [
            ("ICCID", report.iccid),
            *((f.path, _file_text(f)) for f in report.files),
            *((c.name, _counter_text(c)) for c in report.counters if c.present),
            ("PIN1 enabled", report.pin1_enabled),
            ("ISD key versions", ", ".join(f"{kvn:02X}" for kvn, _ in report.key_sets) or None),
            ("wallet applet", None if report.applet is None else _applet_text(report.applet.to_json())),
            *(("note", note) for note in report.notes),
        ]
    )


def _file_text(report: Any) -> str:
    if report.status != "ok":
        return f"{report.status} (SW {report.sw:04X})" if report.sw is not None else report.status
    return json.dumps(report.to_json()["value"], ensure_ascii=False)


def _counter_text(counter: Any) -> str:
    text = "verified or disabled" if counter.tries_left is None else f"{counter.tries_left} tries left"
    return text if counter.unblock_tries_left is None else f"{text}, unblock {counter.unblock_tries_left} tries left"


def _applet_text(doc: dict[str, Any]) -> str:
    if not doc["installed"]:
        return "not installed"
    return f"installed, {'selectable' if doc['selectable'] else 'not selectable'}, " + (
        "personalized" if doc["personalized"] else f"life cycle {doc['life_cycle']}"
    )


@card.command()
@_reader_option
@_value_options
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal file. [default <user state dir>/journal/<ICCID>.jsonl]",
)
@_wait_option
@pass_app
def personalize(
    app: AppContext,
    reader: str,
    profile_name: str,
    iccid: str,
    imsi: str,
    msisdn: str,
    customer: str,
    extra: tuple[str, ...],
    channel: str,
    clerk: str | None,
    pin1_file: Path | None,
    keystore_path: Path | None,
    passphrase_file: Path | None,
    journal_path: Path | None,
    wait_s: float,
) -> None:
    """Personalize the card in R with PROFILE and these values; run it again to finish after a pulled card."""
    from simwallet.provisioning.journal import Journal
    from simwallet.provisioning.personalize import Personalizer

    keystore = open_keystore(app, keystore_path, passphrase_file)
    given = CardValuesInput(profile_name, iccid, imsi, msisdn, customer, extra, channel, clerk)
    profile, job = _job(app, given, keystore, pin1_file, confirm=True)
    assert job.values.iccid is not None
    personalizer = Personalizer(profile, keystore, _registry(app))
    path = journal_path or default_journal_path(job.values.iccid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Journal.open(path, job_digest(profile, job)) as journal, _connected(app, reader, wait_s) as (_, connection):
        outcome = personalizer.personalize(connection, job, journal)
    document = {
        "iccid": outcome.iccid,
        "profile": profile.name,
        "steps_run": list(outcome.steps_run),
        "steps_skipped": list(outcome.steps_skipped),
        "exchanges": outcome.exchanges,
        "registered_new": outcome.registered_new,
        "key_versions": personalizer.key_versions,
        "journal": str(path),
    }
    if app.json:
        render.emit_json(document)
        return
    render.fields(
        [
            ("ICCID", outcome.iccid),
            ("profile", profile.name),
            ("steps run", ", ".join(outcome.steps_run) or "-"),
            ("steps skipped", ", ".join(outcome.steps_skipped) or "-"),
            ("APDU exchanges", outcome.exchanges),
            ("registered", "now" if outcome.registered_new else "before (or not at all)"),
            ("journal", path),
        ],
        title="personalized",
    )


@card.command("verify")
@_reader_option
@_value_options
@_wait_option
@pass_app
def verify_(
    app: AppContext,
    reader: str,
    profile_name: str,
    iccid: str,
    imsi: str,
    msisdn: str,
    customer: str,
    extra: tuple[str, ...],
    channel: str,
    clerk: str | None,
    pin1_file: Path | None,
    keystore_path: Path | None,
    passphrase_file: Path | None,
    wait_s: float,
) -> None:
    """Check the card in R against PROFILE and these values: files, wallet applet, key versions, registration. Exit 1 on a mismatch."""
    from simwallet.provisioning.cardread import verify_card
    from simwallet.provisioning.personalize import Personalizer

    keystore = open_keystore(app, keystore_path, passphrase_file)
    given = CardValuesInput(profile_name, iccid, imsi, msisdn, customer, extra, channel, clerk)
    profile, job = _job(app, given, keystore, pin1_file, confirm=False)
    personalizer: Personalizer = Personalizer(profile, keystore, _registry(app))
    with _connected(app, reader, wait_s) as (_, connection):
        # The clerk and channel of the registration are compared when --clerk names who is expected.
        mismatches = verify_card(connection, job, personalizer, check_handover=clerk is not None)
    if mismatches:
        raise errors.UserError(
            f"card {iccid} does not match: " + "; ".join(str(m) for m in mismatches),
            code="verify_mismatch",
            json_output=app.json,
            extra={"iccid": iccid, "mismatches": [m.to_json() for m in mismatches]},
        )
    if app.json:
        render.emit_json({"iccid": iccid, "ok": True, "mismatches": []})
    else:
        click.echo(f"card {iccid} matches profile {profile.name}")


@card.command("diagnose")
@click.option("--reader", "reader", default=None, metavar="R", help="Reader (index or name); default the first with a card.")
@pass_app
def diagnose_(app: AppContext, reader: str | None) -> None:
    """A report for a ticket: pcscd, readers, ATR, SELECT MF, ICCID, counters, CPLC, key versions, a masked APDU trace."""
    from simwallet.provisioning.diagnose import diagnose

    report = diagnose(reader)
    if app.json:
        render.emit_json(report.to_json())
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        raise _DiagnosisProblems(report.problems, json_output=app.json)


class _DiagnosisProblems(errors.RemoteFailure):
    """Exit 3 when the diagnosis found problems; the report printed above already lists them."""

    def __init__(self, problems: list[str], *, json_output: bool) -> None:
        super().__init__(f"{len(problems)} problem(s) found", code="diagnosis_problems", json_output=json_output)

    def show(self, file: Any = None) -> None:
        if not self.json_output:
            click.echo(f"Error: {self.message} ({self.code})", err=True, file=file)
