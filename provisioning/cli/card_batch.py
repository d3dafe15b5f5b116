"""``simwallet card batch`` and ``simwallet card emulate``: a CSV of cards personalized on several readers, and virtual cards to do it on.

Spec: the batch library (:mod:`simwallet.provisioning.batch`,
:mod:`simwallet.provisioning.batch_csv`) and the emulator
(:mod:`simwallet.provisioning.emulate`); click's "complex applications" for
the command layout. Two plain commands, not a group: the ``card`` group
(``cli/card.py``) adds them.

``card batch CSV --profile P``: pre-flight first (every row, duplicates, the
registry), nothing reaches a card when it fails; then one worker per reader
(``--reader`` more than once; default every reader pcscd lists). PINs come
from a ``pin1`` column or from ``--secrets FILE`` (``iccid,pin1,puk1``, mode
0600). The journal (``--journal``, default ``CSV.journal``) makes a killed
batch resumable: run the same command again. Progress on stderr, a table (or
``--json``, one document) on stdout, ``--results FILE`` (``.json`` or CSV).
Exit code 0 when every card is personalized, 1 otherwise.

``card emulate``: virtual cards (``--count N --iccid-start ICCID``, or
``--cards CSV``, or whatever ``--state-dir`` holds) manufactured with the key
store's card-maker keys, dealt over ``--readers`` vpcd readers, a stack per
reader; with ``--pcscd private`` its own pcscd (the ``PCSCLITE_CSOCK_NAME``
line on stdout says where). Runs until SIGTERM/SIGINT, or until every stack
is used up with ``--exit-when-empty``. ``--ready-file`` is written once the
cards are in the readers (for scripts that start it); ``--stats`` gets each
card's APDUs, seconds inside the card and accepted state-changing commands at
exit and on every SIGUSR1. Debian's vpcd has two readers; more need another
vpcd entry in the system's reader.conf (see :mod:`simwallet.provisioning.emulate`).
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext
from simwallet.provisioning.cli.keys import keystore_option, open_keystore, passphrase_option

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from simwallet.provisioning.batch import Batch, BatchEvent, BatchReport

# The emulator waits this long for its links to reach vpcd before it says it is ready.
LINKS_READY_TIMEOUT_S = 10.0
# The main thread of `emulate` wakes this often to notice signals (SIGUSR1 writes the statistics now).
EMULATE_POLL_S = 0.05


def _app(ctx: click.Context) -> AppContext:
    app = ctx.find_object(AppContext)
    if app is None:  # pragma: no cover - the commands run under the root group
        raise click.UsageError("run this command as `simwallet card …`")
    return app


def _user_error(app: AppContext, exc: Exception, code: str, field: str | None = None, **extra: Any) -> errors.UserError:
    return errors.UserError(str(exc), code=code, field=field, json_output=app.json, extra=extra)


@contextmanager
def _signals_stop(action: Callable[[], object]) -> Iterator[None]:
    """SIGTERM (and SIGINT) call ``action`` instead of killing the process: the command ends in order."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: action())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- batch ---------------------------------------------------------------------------------------------


# Results the overall bar counts (CardStatus values; a card skipped or interrupted is counted when it is done).
_COUNTED: Final = frozenset({"personalized", "failed"})


class _ProgressView:
    """One rich progress bar per reader plus one overall, fed by the workers' events (rich's Progress locks itself)."""

    def __init__(self, progress: Progress, readers: list[str], total: int, done: int) -> None:
        self._progress = progress
        self._overall: TaskID = progress.add_task("all cards", total=total, completed=done)
        self._tasks: dict[str, TaskID] = {reader: progress.add_task(f"{reader}: waiting", total=None) for reader in readers}
        # The card each reader's bar shows: a card's registration ends after it has left the reader (batch_register).
        self._current: dict[str, str | None] = dict.fromkeys(readers)

    def __call__(self, event: BatchEvent) -> None:
        from simwallet.provisioning.batch import EventKind

        p = self._progress
        task = self._tasks.get(event.reader)
        if task is None or (event.kind in (EventKind.STEP, EventKind.FINISHED) and event.iccid != self._current[event.reader]):
            # A card registered after it left its reader (or left by an earlier run): the overall bar only.
            if event.kind is EventKind.FINISHED and event.result is not None and event.result.status in _COUNTED:
                p.advance(self._overall)
            return
        match event.kind:
            case EventKind.WAITING:
                p.update(task, description=f"{event.reader}: waiting for a card")
            case EventKind.STARTED:
                self._current[event.reader] = event.iccid
                p.reset(task, total=len(event.steps) or 1, description=f"{event.reader}: {event.iccid}")
            case EventKind.STEP:
                p.update(task, advance=1, description=f"{event.reader}: {event.iccid} {event.step}")
            case EventKind.FINISHED:
                assert event.result is not None
                status = event.result.status
                p.update(task, description=f"{event.reader}: {event.iccid} {status.value}")
                if status in _COUNTED:
                    p.advance(self._overall)
            case EventKind.INTERRUPTED:
                p.update(task, description=f"{event.reader}: {event.iccid} interrupted at {event.step}: put it back")
            case EventKind.UNEXPECTED:
                p.update(task, description=f"{event.reader}: {event.iccid} is not in the CSV (taken out)")
            case EventKind.SKIPPED:
                p.update(task, description=f"{event.reader}: {event.iccid} already done (taken out)")
            case EventKind.READER_ERROR:
                p.update(task, description=f"{event.reader}: {event.message}")
            case EventKind.STOPPED:
                p.update(task, description=f"{event.reader}: stopped")


def _show_report(app: AppContext, report: BatchReport) -> None:
    if app.json:
        render.emit_json(report.to_json())
        return
    render.table(
        ("iccid", "row", "reader", "status", "steps run", "skipped", "APDUs", "seconds", "error"),
        [
            (
                r.iccid,
                r.row,
                r.reader,
                r.status.value,
                len(r.steps_run),
                len(r.steps_skipped),
                r.apdus,
                f"{r.seconds:.2f}",
                r.error,
            )
            for r in report.results
        ],
        right=("row", "steps run", "skipped", "APDUs", "seconds"),
    )
    counts = ", ".join(f"{n} {status}" for status, n in report.to_json()["counts"].items() if n)
    app.note(f"batch ended ({report.ended}) after {report.seconds:.1f} s: {counts or 'no cards'}")


@click.command()
@click.argument("csv_path", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--profile", "profile_name", required=True, help="Profile: a YAML path, or a name in cards/profiles.")
@click.option("--reader", "readers", multiple=True, help="A reader by index, name or unique part of it; repeat for more. [default: all]")
@click.option(
    "--secrets",
    "secrets_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of iccid and secret columns (pin1, puk1, …), mode 0600, instead of secret columns in CSV.",
)
@click.option(
    "--journal", "journal_path", type=click.Path(dir_okay=False, path_type=Path), help="Journal file. [default: CSV.journal next to CSV]"
)
@click.option(
    "--results", "results_path", type=click.Path(dir_okay=False, path_type=Path), help="Write per-card results here (.json, else CSV)."
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1, 86400.0),
    default=30.0,
    show_default=True,
    help="Stop after this many seconds without a new card in any reader.",
)
@click.option("--clerk", default=None, help="Who runs the batch, for the registry. [default: the login name]")
@keystore_option
@passphrase_option
@click.pass_context
def batch(
    ctx: click.Context,
    csv_path: Path,
    profile_name: str,
    readers: tuple[str, ...],
    secrets_path: Path | None,
    journal_path: Path | None,
    results_path: Path | None,
    idle_timeout: float,
    clerk: str | None,
    keystore_path: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Personalize every card of CSV on one or more readers (one worker per reader), resumable through the journal.

    \b
    Exit codes: 0 every card personalized; 1 pre-flight refused the input
    (nothing sent to any card) or some card is not personalized.
    """
    from simwallet.gateway.cards import CardRegistry
    from simwallet.provisioning.batch import Batch, write_results
    from simwallet.provisioning.batch_csv import BatchInputError, default_journal_path, load_batch
    from simwallet.provisioning.journal import Journal, JournalError
    from simwallet.provisioning.personalize import Personalizer
    from simwallet.provisioning.profile import ProfileError, load_profile
    from simwallet.provisioning.reader import Pcsc, ReaderError

    app = _app(ctx)
    try:
        profile = load_profile(profile_name)
    except ProfileError as exc:
        raise _user_error(app, exc, "profile_invalid", "profile") from exc
    registry = CardRegistry(app.engine, app.ledger())
    try:
        cards = load_batch(csv_path, profile, Path(profile.source), secrets_path=secrets_path, registry=registry)
    except BatchInputError as exc:
        raise _user_error(app, exc, "batch_input_invalid", "csv", problems=[p.to_json() for p in exc.problems]) from exc
    keystore = open_keystore(app, keystore_path, passphrase_file)
    try:
        with Pcsc() as pcsc:
            names = [pcsc.resolve(r) for r in readers] if readers else pcsc.reader_names()
    except ReaderError as exc:
        raise _user_error(app, exc, "reader", "reader") from exc
    if not names:
        raise errors.UserError("pcscd lists no reader", code="reader", field="reader", json_output=app.json)
    journal_path = journal_path or default_journal_path(csv_path)
    try:
        journal = Journal.open(journal_path, cards.digest)
    except JournalError as exc:
        raise _user_error(app, exc, "journal", "journal") from exc
    with journal:
        if journal.torn_tail:
            app.note(f"{journal_path}: its last record was torn by a crash and has been cut off")
        already = len(journal.finished() & {c.iccid for c in cards.cards})
        from simwallet.gateway.runtime import tune_for_serving

        tune_for_serving()  # a batch of thousands of cards: spare it full collections of what was loaded
        app.note(f"{len(cards.cards)} cards ({already} done before) on {len(names)} reader(s): {', '.join(names)}")

        def build(on_event: Callable[[BatchEvent], None] | None) -> Batch:
            return Batch(
                cards,
                journal,
                lambda: Personalizer(profile, keystore, registry),
                names,
                clerk=clerk or getpass.getuser(),
                idle_timeout_s=idle_timeout,
                on_event=on_event,
            )

        report = _run_with_progress(app, build, names, len(cards.cards), already)
    if results_path is not None:
        write_results(results_path, report)
    _show_report(app, report)
    if not report.complete:
        ctx.exit(int(errors.ExitCode.USER))


def _run_with_progress(
    app: AppContext, build: Callable[[Callable[[BatchEvent], None] | None], Batch], readers: list[str], total: int, already: int
) -> BatchReport:
    """Run the batch with a progress display on stderr (none with -q); SIGTERM and Ctrl-C stop it after the current cards."""
    if app.quiet:
        runner = build(None)
        with _signals_stop(runner.stop):
            return runner.run()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        runner = build(_ProgressView(progress, readers, total, already))
        with _signals_stop(runner.stop):
            return runner.run()


# --- emulate -----------------------------------------------------------------------------------------


def _iccids(app: AppContext, count: int | None, iccid_start: str | None, cards_csv: Path | None, state_dir: Path | None) -> list[str]:
    from simwallet.applet.card.image import CardStore
    from simwallet.provisioning.batch_csv import BatchInputError, parse_csv, read_limited
    from simwallet.provisioning.emulate import CARDS_MAX, EmulatorError, iccid_range

    if cards_csv is not None and (count is not None or iccid_start is not None):
        raise click.UsageError("give either --cards or --count with --iccid-start")
    if cards_csv is not None:
        try:
            columns, rows = parse_csv(read_limited(cards_csv, 64 * 1024 * 1024, "CSV"), source=str(cards_csv), rows_max=CARDS_MAX)
        except BatchInputError as exc:
            raise _user_error(app, exc, "cards_invalid", "cards") from exc
        if "iccid" not in columns:
            raise errors.UserError(f"{cards_csv} has no iccid column", code="cards_invalid", field="cards", json_output=app.json)
        return [row.values["iccid"] for row in rows]
    if count is not None or iccid_start is not None:
        if count is None or iccid_start is None:
            raise click.UsageError("--count and --iccid-start go together")
        try:
            return iccid_range(iccid_start, count)
        except EmulatorError as exc:
            raise _user_error(app, exc, "iccid_invalid", "iccid_start") from exc
    if state_dir is not None:
        found = CardStore(state_dir).iccids()
        if found:
            return found
    raise click.UsageError("say which cards: --count N --iccid-start ICCID, --cards CSV, or a --state-dir that holds cards")


@click.command()
@click.option("--readers", type=click.IntRange(1, 16), default=1, show_default=True, help="vpcd readers to fill (ports base, base+1, …).")
@click.option("--count", type=click.IntRange(1, 100_000), help="Manufacture this many cards …")
@click.option("--iccid-start", help="… numbered from this ICCID (complete, with its Luhn digit).")
@click.option(
    "--cards",
    "cards_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Or: the cards of this CSV's iccid column (a batch CSV will do).",
)
@click.option("--card-type", default=None, help="Card type: a name in cards/card-types, or a YAML path. [default: usim-wallet]")
@click.option("--profile", "profile_name", default=None, help="Or: the card type of this profile (a name in cards/profiles or a path).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the card images here; cards already there are reloaded as they were left. [default: cards forget]",
)
@click.option(
    "--pcscd",
    "pcscd_mode",
    type=click.Choice(["private", "system"]),
    default="system",
    show_default=True,
    help="private: start a pcscd of our own and print its PCSCLITE_CSOCK_NAME; system: use the running one.",
)
@click.option("--base-port", type=click.IntRange(1, 65535), default=None, help="vpcd's first port. [default 35963, Debian's]")
@click.option("--exit-when-empty", is_flag=True, help="Exit once every reader's stack of cards is used up.")
@click.option(
    "--stats",
    "stats_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write per-card statistics (JSON) here at exit, and whenever SIGUSR1 arrives.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a JSON document (pid, ports, socket) here once the cards are in the readers.",
)
@keystore_option
@passphrase_option
@click.pass_context
def emulate(
    ctx: click.Context,
    readers: int,
    count: int | None,
    iccid_start: str | None,
    cards_csv: Path | None,
    card_type: str | None,
    profile_name: str | None,
    state_dir: Path | None,
    pcscd_mode: str,
    base_port: int | None,
    exit_when_empty: bool,
    stats_path: Path | None,
    ready_file: Path | None,
    keystore_path: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Virtual cards in vpcd readers, each reader a stack of cards that take turns (the next comes when one is unpowered)."""
    from simwallet.applet.protocols.vpcd import VPCD_PORT
    from simwallet.provisioning.emulate import Emulator, write_stats
    from simwallet.provisioning.pcscd import CSOCK_ENV, PrivatePcscd

    app = _app(ctx)
    if pcscd_mode == "private" and readers > 2:
        raise click.UsageError("a private pcscd has vpcd's 2 readers; more need another vpcd entry in a system reader.conf")
    if card_type is not None and profile_name is not None:
        raise click.UsageError("give --card-type or --profile, not both")
    if profile_name is not None:
        from simwallet.provisioning.profile import load_profile
        from simwallet.provisioning.yamlpos import ProfileError

        try:
            card_type = str(load_profile(profile_name).card_type_name)
        except ProfileError as exc:
            raise _user_error(app, exc, "profile_invalid", "profile") from exc
    card_type = card_type or "usim-wallet"
    cards = _load_cards(app, _iccids(app, count, iccid_start, cards_csv, state_dir), card_type, state_dir, keystore_path, passphrase_file)
    done = threading.Event()
    pcscd = PrivatePcscd(base_port=base_port or VPCD_PORT) if pcscd_mode == "private" else None
    with _signals_stop(done.set):
        if pcscd is not None:
            pcscd.start()
            # The line a script reads (stdout; stderr under --json, whose stdout holds one document).
            click.echo(f"{CSOCK_ENV}={pcscd.socket_path}", err=app.json)
            sys.stdout.flush()
        try:
            from simwallet.gateway.runtime import tune_for_serving

            tune_for_serving()  # a long-lived process holding many cards: spare it full collections
            emulator = Emulator(cards, readers=readers, base_port=base_port or VPCD_PORT, on_empty=done.set if exit_when_empty else None)
            with emulator:
                emulator.wait_connected(LINKS_READY_TIMEOUT_S)
                if ready_file is not None:
                    socket_path = str(pcscd.socket_path) if pcscd is not None else os.environ.get(CSOCK_ENV)
                    _write_json(
                        ready_file, {"pid": os.getpid(), "ports": list(emulator.ports), "cards": len(cards), CSOCK_ENV: socket_path}
                    )
                ports = ", ".join(map(str, emulator.ports))
                app.note(f"{len(cards)} cards in {readers} reader(s) on ports {ports}; SIGTERM or Ctrl-C stops")
                _serve_until(done, lambda: write_stats(stats_path, emulator) if stats_path is not None else None)
            if stats_path is not None:
                write_stats(stats_path, emulator)
        finally:
            if pcscd is not None:
                pcscd.stop()
    stats = emulator.stats()
    if app.json:
        render.emit_json({"empty": emulator.empty, "cards": [s.to_json() for s in stats]})
    elif not app.quiet:
        render.table(
            ("iccid", "reader", "APDUs", "writes", "card seconds"),
            [(s.iccid, s.reader, s.apdus, s.write_count, f"{s.card_seconds:.3f}") for s in stats],
            right=("reader", "APDUs", "writes", "card seconds"),
        )


def _serve_until(done: threading.Event, snapshot: Callable[[], None]) -> None:
    """Wait for ``done``; each SIGUSR1 meanwhile calls ``snapshot`` (the --stats file, written now)."""
    requested = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda *_: requested.set())
    try:
        while not done.wait(EMULATE_POLL_S):
            if requested.is_set():
                requested.clear()
                snapshot()
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _load_cards(
    app: AppContext, iccids: list[str], card_type: str, state_dir: Path | None, keystore_path: Path | None, passphrase_file: Path | None
) -> list[Any]:
    """Manufacture the cards, or reload those the state directory holds (then no key store is needed)."""
    from simwallet.applet.card.image import CardStore
    from simwallet.provisioning.emulate import make_cards
    from simwallet.provisioning.factory import card_type_mapping
    from simwallet.provisioning.profile import ProfileError

    try:
        mapping = card_type_mapping(card_type)
    except (ProfileError, OSError) as exc:
        raise _user_error(app, exc, "card_type_invalid", "card_type") from exc
    store = None
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        store = CardStore(state_dir)
    need_keys = store is None or any(not store.exists(iccid) for iccid in iccids)
    keystore = open_keystore(app, keystore_path, passphrase_file) if need_keys else None
    return make_cards(mapping, iccids, keystore, store)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)
