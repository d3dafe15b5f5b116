"""Batch personalization: the CSV and its pre-flight, and the worker loop end to end on a private pcscd with emulated cards.

Pre-flight tests need no reader: they check that every bad row is named (and
a duplicate names both rows), that the registry's cards are compared, that
the secrets file must be private, and that nothing at all is sent to a card
when pre-flight fails. The end-to-end tests run :class:`Batch` with the real
:class:`~simwallet.provisioning.personalize.Personalizer` against virtual
cards in two vpcd readers of the module's private pcscd (the ``pcscd``
fixture): a whole batch, a card that is not in the CSV, and a card pulled out
mid-way and put back, which is finished from its last good step.

The helpers at the top (key store, CSV, card maker) are shared with
``test_batch_resume.py`` and ``test_emulate.py``.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simwallet.applet.card.image import CardStore
from simwallet.applet.protocols.efs import luhn_check_digit
from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.diversify import card_secrets
from simwallet.gateway.keystore import KeyFamily, KeyStore
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.store.engine import open_engine
from simwallet.provisioning.batch import Batch, BatchEvent, BatchReport, CardStatus, EventKind, write_results
from simwallet.provisioning.batch_csv import (
    BatchInputError,
    batch_digest,
    default_journal_path,
    load_batch,
    parse_csv,
    read_secrets,
)
from simwallet.provisioning.emulate import Emulator, iccid_range, make_cards
from simwallet.provisioning.factory import card_type_mapping
from simwallet.provisioning.journal import Journal
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.personalize import Personalizer
from simwallet.provisioning.profile import Profile, load_profile

PASSPHRASE = "batch test passphrase"
KDF_N = 2**10
PROFILE = "wallet-cmcc-zh"
CARD_TYPE = "usim-wallet"
COLUMNS = ("iccid", "imsi", "msisdn", "customer", "pin1", "puk1")
ICCID_BODY = "898600112233445500"
ICCID_START = ICCID_BODY + str(luhn_check_digit(ICCID_BODY))
PIN1 = "2468"
# Bounded waits, not timing assertions: pcscd polls presence every ~0.4 s.
IDLE_TIMEOUT_S = 3.0
EVENT_WAIT_S = 20.0


# --- shared helpers ---------------------------------------------------------------------------------------


def make_keystore(path: Path) -> KeyStore:
    store = KeyStore.create(path, PASSPHRASE, kdf_n=KDF_N)
    for family in KeyFamily:
        store.generate(family)
    return store


def card_rows(keystore: KeyStore, iccids: list[str], *, first: int = 0) -> list[dict[str, str]]:
    """One CSV row per ICCID: IMSI, MSISDN and customer numbered from ``first``; PUK1 as the card maker printed it."""
    master = keystore.active("card-secrets").secrets_master()
    return [
        {
            "iccid": iccid,
            "imsi": f"46000{first + n:010d}",
            "msisdn": f"1380013{first + n:04d}",
            "customer": f"C{first + n:05d}",
            "pin1": PIN1,
            "puk1": card_secrets(master, iccid).puk1,
        }
        for n, iccid in enumerate(iccids)
    ]


def write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def open_registry(url: str) -> CardRegistry:
    engine = open_engine(url)
    return CardRegistry(engine, Ledger(engine))


@dataclass
class Recorder:
    """Collects batch events (from worker threads) and lets the test wait for one."""

    events: list[BatchEvent]
    changed: threading.Condition

    @classmethod
    def new(cls) -> Recorder:
        return cls([], threading.Condition())

    def __call__(self, event: BatchEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[BatchEvent], bool], timeout_s: float = EVENT_WAIT_S) -> BatchEvent:
        with self.changed:
            found: list[BatchEvent] = []

            def seen() -> bool:
                found[:] = [e for e in self.events if predicate(e)]
                return bool(found)

            if not self.changed.wait_for(seen, timeout_s):
                pytest.fail(f"no matching batch event within {timeout_s} s; got {[e.kind.value for e in self.events]}")
            return found[0]

    def kinds(self) -> Counter[str]:
        with self.changed:
            return Counter(e.kind.value for e in self.events)


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Steps that change nothing kept by the card or the backend, so the personalizer runs them on every attempt:
# "identify" reads EF.ICCID, "adm" presents ADM1 (a VERIFY: it lasts one power session).
READ_ONLY_STEPS = frozenset({"identify", "adm"})


def done_counts(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """How often each (card, step) that changes the card or the backend was journaled done ("finished" included)."""
    return Counter((r["iccid"], r["step"]) for r in records if r.get("event") == "done" and r["step"] not in READ_ONLY_STEPS)


# --- pre-flight ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def module_keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return make_keystore(tmp_path_factory.mktemp("keys") / "keystore.json")


def test_parse_csv_reads_rows_numbered_from_one_and_skips_blank_lines() -> None:
    data = "\ufefficcid,imsi\n1,2\n\n3,4\n".encode()
    columns, rows = parse_csv(data, source="x.csv")
    assert columns == ("iccid", "imsi")
    assert [(r.row, dict(r.values)) for r in rows] == [(1, {"iccid": "1", "imsi": "2"}), (2, {"iccid": "3", "imsi": "4"})]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "no header row"),
        (b"iccid,iccid\n1,2\n", "names this column twice"),
        (b"iccid,imsi\n1\n", "row 1: 1 fields, the header has 2"),
        (b"iccid\n\xff\n", "not UTF-8"),
        (b'iccid\n"unterminated\n', "malformed CSV"),
    ],
)
def test_parse_csv_refuses_malformed_input(data: bytes, needle: str) -> None:
    with pytest.raises(BatchInputError) as caught:
        parse_csv(data, source="x.csv")
    assert needle in str(caught.value)


def test_preflight_accepts_good_rows_and_renders_them(tmp_path: Path, profile: Profile, module_keystore: KeyStore) -> None:
    iccids = iccid_range(ICCID_START, 3)
    path = write_csv(tmp_path / "cards.csv", card_rows(module_keystore, iccids))
    batch = load_batch(path, profile, Path(profile.source))
    assert [c.iccid for c in batch.cards] == iccids
    assert [c.row for c in batch.cards] == [1, 2, 3]
    assert batch.cards[0].personalization.file("ADF.USIM/EF.IMSI").data
    assert batch.digest == batch_digest(path.read_bytes(), Path(profile.source).read_bytes())
    assert PIN1 not in repr(batch)


def test_preflight_names_every_bad_row_and_both_rows_of_a_duplicate(tmp_path: Path, profile: Profile, module_keystore: KeyStore) -> None:
    iccids = iccid_range(ICCID_START, 5)
    rows = card_rows(module_keystore, iccids)
    rows[1]["iccid"] = iccids[1][:-1] + str((int(iccids[1][-1]) + 1) % 10)  # Luhn digit off by one
    rows[2]["imsi"] = "4600012"  # too short
    rows[3]["msisdn"] = rows[0]["msisdn"]  # duplicate of row 1
    rows[4]["iccid"] = rows[0]["iccid"]  # duplicate of row 1
    path = write_csv(tmp_path / "cards.csv", rows)
    with pytest.raises(BatchInputError) as caught:
        load_batch(path, profile, Path(profile.source))
    problems = {(p.row, p.field): p.message for p in caught.value.problems}
    assert "Luhn" in problems[(2, "iccid")]
    assert (3, "imsi") in problems
    assert problems[(4, "msisdn")] == f"86{rows[0]['msisdn']} is also in row 1"
    assert problems[(5, "iccid")] == f"{rows[0]['iccid']} is also in row 1"
    assert PIN1 not in str(caught.value)


def test_preflight_reports_identities_registered_to_other_cards(
    tmp_path: Path, sqlite_url: str, profile: Profile, module_keystore: KeyStore
) -> None:
    from simwallet.gateway.cards import CardRegistration

    registry = open_registry(sqlite_url)
    iccids = iccid_range(ICCID_START, 4)
    rows = card_rows(module_keystore, iccids)
    other = iccid_range(ICCID_START, 10)[-1]

    def register(iccid: str, imsi: str, msisdn: str) -> None:
        registry.register(
            CardRegistration(
                iccid=iccid,
                imsi=imsi,
                msisdn=msisdn,
                customer_ref="customer:X1",
                profile=PROFILE,
                channel="batch",  # type: ignore[arg-type]
                clerk="t",
                scp03_kvn=0x30,
                ota_key_version=1,
                wallet_key_version=1,
                personalized_at=1,
            )
        )

    register(other, rows[0]["imsi"], "8613900000001")  # row 1's IMSI on another card
    register(iccid_range(ICCID_START, 11)[-1], "460009999999999", "86" + rows[1]["msisdn"])  # row 2's MSISDN on another card
    register(iccids[2], "460008888888888", "86" + rows[2]["msisdn"])  # row 3's card, registered with another IMSI
    register(iccids[3], rows[3]["imsi"], "86" + rows[3]["msisdn"])  # row 4: the same registration, fine
    path = write_csv(tmp_path / "cards.csv", rows)
    with pytest.raises(BatchInputError) as caught:
        load_batch(path, profile, Path(profile.source), registry=registry)
    problems = {(p.row, p.field): p.message for p in caught.value.problems}
    assert problems[(1, "imsi")] == f"{rows[0]['imsi']} is registered to card {other}"
    assert problems[(2, "msisdn")].endswith(f"is registered to card {iccid_range(ICCID_START, 11)[-1]}")
    assert problems[(3, "imsi")].startswith(f"card {iccids[2]} is registered with imsi 460008888888888")
    assert not any(row == 4 for row, _ in problems)
    registry.engine.dispose()


def test_secrets_file_must_be_private_and_fills_the_pins(tmp_path: Path, profile: Profile, module_keystore: KeyStore) -> None:
    iccids = iccid_range(ICCID_START, 2)
    rows = card_rows(module_keystore, iccids)
    path = write_csv(tmp_path / "cards.csv", rows, ("iccid", "imsi", "msisdn", "customer"))
    secrets = write_csv(tmp_path / "secrets.csv", rows, ("iccid", "pin1", "puk1"))
    os.chmod(secrets, 0o644)
    with pytest.raises(BatchInputError, match="readable by its owner only"):
        load_batch(path, profile, Path(profile.source), secrets_path=secrets)
    os.chmod(secrets, 0o600)
    batch = load_batch(path, profile, Path(profile.source), secrets_path=secrets)
    assert all(card.values.secret("pin1") is not None for card in batch.cards)
    assert read_secrets(secrets, secret_names=("pin1", "puk1"))[iccids[0]]["pin1"] == PIN1
    # The same secret in both places is refused rather than guessed at.
    both = write_csv(tmp_path / "both.csv", rows)
    with pytest.raises(BatchInputError, match="given both in the CSV and in the secrets file"):
        load_batch(both, profile, Path(profile.source), secrets_path=secrets)
    # A digest is of the CSV and the profile, never of the secrets.
    assert batch.digest == batch_digest(path.read_bytes(), Path(profile.source).read_bytes())


def test_default_journal_sits_next_to_the_csv(tmp_path: Path) -> None:
    assert default_journal_path(tmp_path / "may.csv") == tmp_path / "may.csv.journal"


# --- end to end: pcscd, vpcd, emulated cards ----------------------------------------------------------------


@dataclass
class Rig:
    """Everything one end-to-end batch needs: key store, card store, registry, profile, pcscd."""

    tmp: Path
    keystore: KeyStore
    store: CardStore
    registry: CardRegistry
    profile: Profile
    pcscd: PrivatePcscd

    def cards(self, iccids: list[str]) -> list[Any]:
        return make_cards(card_type_mapping(CARD_TYPE), iccids, self.keystore, self.store)

    def batch(
        self, rows: list[dict[str, str]], *, on_event: Callable[[BatchEvent], None] | None = None, **options: Any
    ) -> tuple[Batch, Journal]:
        path = write_csv(self.tmp / "cards.csv", rows)
        batch_input = load_batch(path, self.profile, Path(self.profile.source), registry=self.registry)
        journal = Journal.open(default_journal_path(path), batch_input.digest)
        batch = Batch(
            batch_input,
            journal,
            lambda: Personalizer(self.profile, self.keystore, self.registry),
            list(self.pcscd.reader_names),
            clerk="tester",
            idle_timeout_s=options.pop("idle_timeout_s", IDLE_TIMEOUT_S),
            on_event=on_event,
            **options,
        )
        return batch, journal


@pytest.fixture
def rig(tmp_path: Path, sqlite_url: str, pcscd: PrivatePcscd, profile: Profile, module_keystore: KeyStore) -> Iterator[Rig]:
    registry = open_registry(sqlite_url)
    yield Rig(tmp_path, module_keystore, CardStore(tmp_path / "cards"), registry, profile, pcscd)
    registry.engine.dispose()


def test_a_batch_on_two_readers_personalizes_every_card_once(rig: Rig) -> None:
    iccids = iccid_range(ICCID_START, 4)
    rows = card_rows(rig.keystore, iccids)
    recorder = Recorder.new()
    batch, journal = rig.batch(rows, on_event=recorder)
    with Emulator(rig.cards(iccids), readers=2, base_port=rig.pcscd.base_port) as emulator, journal:
        report = batch.run()
    assert report.ended == "complete"
    assert [r.status for r in report.results] == [CardStatus.PERSONALIZED] * 4
    assert {r.reader for r in report.results} == set(rig.pcscd.reader_names)
    assert all(r.steps_run == Personalizer.STEPS and r.apdus > 0 for r in report.results)
    assert journal.finished() == set(iccids)
    for iccid, row in zip(iccids, rows, strict=True):
        card = rig.registry.get(iccid)
        assert card is not None and card.imsi == row["imsi"] and card.channel.value == "batch" and card.clerk == "tester"
    records = journal_records(journal.path)
    assert max(done_counts(records).values()) == 1
    assert recorder.kinds()["step"] == 4 * len(Personalizer.STEPS)
    # The card side: each card got its files, and was written to in one run only.
    by_iccid = {s.iccid: s for s in emulator.stats()}
    assert all(by_iccid[i].write_count > 0 for i in iccids)
    image = CardStore(rig.store.directory).load(iccids[0])
    assert image.iccid == iccids[0]
    results = rig.tmp / "results.csv"
    write_results(results, report)
    lines = list(csv.DictReader(results.open(encoding="utf-8")))
    assert [line["status"] for line in lines] == ["personalized"] * 4
    assert PIN1 not in results.read_text() and rows[0]["puk1"] not in results.read_text()


def test_a_card_not_in_the_csv_is_reported_and_set_aside(rig: Rig) -> None:
    iccids = iccid_range(ICCID_START, 3)
    stranger = iccids[1]  # in the reader's stack between the two cards of the CSV, but not in the CSV
    rows = card_rows(rig.keystore, [iccids[0], iccids[2]])
    recorder = Recorder.new()
    batch, journal = rig.batch(rows, on_event=recorder)
    with Emulator(rig.cards(iccids), readers=1, base_port=rig.pcscd.base_port) as emulator, journal:
        report = batch.run()
    statuses = {r.iccid: r.status for r in report.results}
    assert statuses == {iccids[0]: CardStatus.PERSONALIZED, iccids[2]: CardStatus.PERSONALIZED, stranger: CardStatus.UNEXPECTED}
    assert report.ended == "complete" and report.complete
    unexpected = recorder.wait_for(lambda e: e.kind is EventKind.UNEXPECTED)
    assert unexpected.iccid == stranger and unexpected.result is not None and unexpected.result.error == "not in the batch's CSV"
    assert {s.iccid: s for s in emulator.stats()}[stranger].write_count == 0  # read, never written
    assert rig.registry.get(stranger) is None
    assert stranger not in {r["iccid"] for r in journal_records(journal.path) if "iccid" in r}


class PullAt:
    """A card that has its reader's emulator pull it out when it receives a given command (once)."""

    def __init__(self, card: Any, ins: int, pull: Callable[[], object]) -> None:
        self.card = card
        self.iccid = card.iccid
        self._ins = ins
        self._pull: Callable[[], object] | None = pull

    def __getattr__(self, name: str) -> Any:
        return getattr(self.card, name)

    def apdu(self, capdu: bytes) -> bytes:
        if self._pull is not None and len(capdu) > 1 and capdu[1] == self._ins:
            pull, self._pull = self._pull, None
            pull()
        return bytes(self.card.apdu(capdu))


def test_a_pulled_card_is_finished_from_its_last_good_step_when_it_comes_back(rig: Rig) -> None:
    iccids = iccid_range(ICCID_START, 2)
    rows = card_rows(rig.keystore, iccids)
    recorder = Recorder.new()
    batch, journal = rig.batch(rows, on_event=recorder, idle_timeout_s=EVENT_WAIT_S)
    cards = rig.cards(iccids)
    holder: list[Emulator] = []
    # The first card is pulled at its first PUT KEY (INS D8), after "files" and before its keys are done.
    cards[0] = PullAt(cards[0], 0xD8, lambda: holder[0].pull(0))
    emulator = Emulator(cards, readers=1, base_port=rig.pcscd.base_port)
    holder.append(emulator)
    reports: list[BatchReport] = []
    with emulator, journal:
        runner = threading.Thread(target=lambda: reports.append(batch.run()))
        runner.start()
        interrupted = recorder.wait_for(lambda e: e.kind is EventKind.INTERRUPTED)
        assert interrupted.iccid == iccids[0]
        done_before = journal.progress(iccids[0]).steps_done
        assert {"identify", "adm", "pin", "files"} <= done_before and "wallet" not in done_before
        emulator.reinsert(0)
        runner.join(EVENT_WAIT_S * 2)
        assert not runner.is_alive()
    (report,) = reports
    first = next(r for r in report.results if r.iccid == iccids[0])
    assert first.status is CardStatus.PERSONALIZED and first.attempts == 2
    assert {"pin", "files"} <= set(first.steps_skipped)
    records = journal_records(journal.path)
    assert max(done_counts(records).values()) == 1  # no step of any card done twice
    failed = [r for r in records if r.get("event") == "failed" and r["iccid"] == iccids[0]]
    assert failed and failed[0]["step"] not in done_before
    assert journal.finished() == set(iccids)


def test_a_card_that_fails_is_set_aside_and_the_batch_goes_on(rig: Rig) -> None:
    iccids = iccid_range(ICCID_START, 3)
    rows = card_rows(rig.keystore, iccids)
    rows[1]["puk1"] = "00000000"  # not the PUK the card maker put on the card: the "pin" step refuses it
    batch, journal = rig.batch(rows)
    with Emulator(rig.cards(iccids), readers=1, base_port=rig.pcscd.base_port) as emulator, journal:
        report = batch.run()
    statuses = {r.iccid: r.status for r in report.results}
    assert statuses == {iccids[0]: CardStatus.PERSONALIZED, iccids[1]: CardStatus.FAILED, iccids[2]: CardStatus.PERSONALIZED}
    assert report.ended == "complete" and not report.complete
    failed = next(r for r in report.results if r.status is CardStatus.FAILED)
    assert failed.error is not None and "pin" in failed.error and "00000000" not in failed.error
    assert [r["step"] for r in journal_records(journal.path) if r.get("event") == "failed"] == ["pin"]
    assert journal.progress(iccids[1]).last_error == failed.error
    assert rig.registry.get(iccids[1]) is None
    assert {s.iccid: s.write_count for s in emulator.stats()}[iccids[1]] == 0  # refused before anything was presented


# --- the command --------------------------------------------------------------------------------------------


def run_cli(rig: Rig, *args: str) -> Any:
    from click.testing import CliRunner

    from simwallet.provisioning.cli.root import cli

    passphrase = rig.tmp / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    return CliRunner().invoke(
        cli,
        [
            "--db", str(rig.registry.engine.url), *args[:1], "card", "batch", *args[1:],
            "--profile", PROFILE, "--keystore", str(rig.keystore.path), "--passphrase-file", str(passphrase),
            "--idle-timeout", str(IDLE_TIMEOUT_S), "--clerk", "tester",
        ],
    )  # fmt: skip


def test_duplicate_rows_are_refused_before_any_card_is_touched(rig: Rig) -> None:
    iccids = iccid_range(ICCID_START, 3)
    rows = card_rows(rig.keystore, iccids)
    rows[2]["imsi"] = rows[0]["imsi"]
    path = write_csv(rig.tmp / "cards.csv", rows)
    with Emulator(rig.cards(iccids), readers=2, base_port=rig.pcscd.base_port) as emulator:
        assert emulator.wait_connected(EVENT_WAIT_S)
        result = run_cli(rig, "--json", str(path))
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "batch_input_invalid"
    assert error["problems"] == [{"row": 3, "field": "imsi", "message": f"{rows[0]['imsi']} is also in row 1"}]
    assert all(s.apdus == 0 for s in emulator.stats())
    assert not default_journal_path(path).exists()


def test_the_command_personalizes_shows_progress_and_writes_results(rig: Rig) -> None:
    iccids = iccid_range(ICCID_START, 3)
    rows = card_rows(rig.keystore, iccids)
    path = write_csv(rig.tmp / "cards.csv", rows)
    results = rig.tmp / "results.json"
    with Emulator(rig.cards(iccids), readers=2, base_port=rig.pcscd.base_port):
        result = run_cli(rig, "--no-json", str(path), "--results", str(results))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("personalized") == 3
    assert "all cards" in result.stderr and "batch ended (complete)" in result.stderr
    document = json.loads(results.read_text())
    assert document["counts"]["personalized"] == 3 and document["ended"] == "complete"
    assert {card["iccid"] for card in document["cards"]} == set(iccids)
    assert PIN1 not in results.read_text() + result.output
    # Run again: the journal says every card is done, so nothing is sent and the command ends at once.
    again = run_cli(rig, "--json", str(path))
    assert again.exit_code == 0, again.output
    assert {card["status"] for card in json.loads(again.stdout)["cards"]} == {"already_done"}
