"""A batch killed with SIGKILL at a random point, then run again: every card personalized exactly once.

Each run (one test case per seed; the seed and the kill point are printed):

1. ``simwallet card emulate`` starts as a child process: six cards of the
   card type in a state directory, dealt over the two vpcd readers of the
   module's private pcscd (the ``pcscd`` fixture).
2. ``simwallet card batch`` starts at the same time as a child process on
   both readers, and is killed with SIGKILL as soon as its journal holds a
   random number of lines (plus a random 0-5 ms): anywhere from before the
   first card to after the last.
3. Even seeds: the emulator is stopped (SIGTERM; it writes each card's
   statistics) and started again on the same state directory, as an
   operator reloads the feeders with the whole stack: the cards come back as
   their images left them, finished ones included. Odd seeds: the cards stay
   where the killed batch left them (pcscd resets the card it held; the
   feeder keeps it) and SIGUSR1 has the emulator write its statistics so far.
4. The batch runs again, to completion (exit code 0).

"Personalized twice" means here: a step that changes the card or the backend
(``pin``, ``files``, ``isd-keys``, ``ota-keys``, ``applet``, ``wallet``,
``register``) was journaled done more than once for a card, or a card the
journal had finished received any state-changing command again, or the card
was registered (``created=True``) more than once. Checked:

* the journal: each of those steps done at most once per card, ``finished``
  exactly once per card;
* the card side (the emulator's per-card counters of accepted state-changing
  commands): a card finished before the second run got none in it; a card
  that was part-way got fewer in the second run than a whole personalization
  takes, unless the kill came before its first journaled change;
* the database: one ``cards`` row per ICCID, one wallet account per customer;
* every card read back over PC/SC passes
  :func:`~simwallet.provisioning.cardread.verify_card` (files, PIN, ISD and
  OTA key sets, the wallet applet personalized, the registration).

Marked ``slow``: about 4 s per run, 10 runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_batch import CARD_TYPE, PASSPHRASE, PROFILE, card_rows, done_counts, journal_records, make_keystore, open_registry, write_csv

from simwallet.applet.card.image import CardStore
from simwallet.applet.protocols.efs import luhn_check_digit
from simwallet.gateway.keystore import KeyStore
from simwallet.gateway.store.schema import accounts, cards
from simwallet.provisioning.batch_csv import load_batch
from simwallet.provisioning.cardread import verify_card
from simwallet.provisioning.emulate import Emulator, iccid_range, make_cards
from simwallet.provisioning.factory import card_type_mapping
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.personalize import CardJob, Personalizer
from simwallet.provisioning.profile import load_profile
from simwallet.provisioning.reader import Pcsc

pytestmark = pytest.mark.slow

SIMWALLET = str(Path(sys.executable).with_name("simwallet"))
RUNS = 10
CARDS = 6
ICCID_BODY = "898600556677889900"
# Bounded waits (never timing assertions).
CHILD_START_S = 20.0
BATCH_RUN_S = 60.0
POLL_S = 0.001
# After the kill, before the card-side snapshot: pcscd finishes an exchange it had already started.
SETTLE_S = 0.2
# The batch's journal: a header, then per card a begin, nine steps and "finished".
JOURNAL_LINES = 1 + CARDS * (1 + len(Personalizer.STEPS) + 1)


@dataclass
class Run:
    tmp: Path
    pcscd: PrivatePcscd
    keystore_path: Path
    passphrase_path: Path
    card_type: str
    csv: Path
    db_url: str

    @property
    def env(self) -> dict[str, str]:
        return self.pcscd.env

    def emulator(self, session: int) -> Emulated:
        """Start ``simwallet card emulate`` (returns at once: see :meth:`Emulated.wait_ready`)."""
        ready = self.tmp / f"ready-{session}.json"
        stats = self.tmp / f"stats-{session}.json"
        command = [
            SIMWALLET, "-q", "card", "emulate", "--readers", "2", "--cards", str(self.csv), "--card-type", self.card_type,
            "--state-dir", str(self.tmp / "cards"), "--pcscd", "system", "--base-port", str(self.pcscd.base_port),
            "--keystore", str(self.keystore_path), "--passphrase-file", str(self.passphrase_path),
            "--ready-file", str(ready), "--stats", str(stats),
        ]  # fmt: skip
        process = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return Emulated(process, ready, stats)

    def batch_command(self, *extra: str) -> list[str]:
        return [
            SIMWALLET, "--db", self.db_url, "-q", *extra, "card", "batch", str(self.csv), "--profile", PROFILE,
            "--keystore", str(self.keystore_path), "--passphrase-file", str(self.passphrase_path), "--idle-timeout", "5",
            "--clerk", "tester",
        ]  # fmt: skip


@dataclass
class Emulated:
    """A running ``simwallet card emulate`` child."""

    process: subprocess.Popen[bytes]
    ready: Path
    stats: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + CHILD_START_S
        while not self.ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                _, err = self.process.communicate()
                pytest.fail(f"the emulator did not start: {err.decode(errors='replace')[-2000:]}")
            time.sleep(0.02)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Its per-card statistics now (SIGUSR1 has it write them)."""
        self.stats.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + CHILD_START_S
        while not self.stats.exists():
            assert time.monotonic() < deadline, "the emulator wrote no statistics on SIGUSR1"
            time.sleep(0.01)
        return {card["iccid"]: card for card in json.loads(self.stats.read_text())["cards"]}

    def stop(self) -> dict[str, dict[str, Any]]:
        """SIGTERM; its per-card statistics at exit."""
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=CHILD_START_S)
        assert self.process.returncode == 0, err.decode(errors="replace")[-2000:]
        return {card["iccid"]: card for card in json.loads(self.stats.read_text())["cards"]}


@pytest.fixture(scope="module")
def keystore_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, KeyStore]:
    directory = tmp_path_factory.mktemp("resume-keys")
    keystore = make_keystore(directory / "keystore.json")
    passphrase = directory / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    os.chmod(passphrase, 0o600)
    return directory / "keystore.json", passphrase, keystore


def writes(card: dict[str, Any] | None) -> int:
    return sum(card["writes"].values()) if card else 0


def minus(later: dict[str, dict[str, Any]], earlier: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-card statistics of the time between two snapshots of one emulator (its counters only grow)."""
    out = {}
    for iccid, card in later.items():
        before = earlier.get(iccid, {"writes": {}})["writes"]
        out[iccid] = {**card, "writes": {ins: n - before.get(ins, 0) for ins, n in card["writes"].items() if n - before.get(ins, 0)}}
    return out


def kill_when_journal_reaches(process: subprocess.Popen[bytes], journal: Path, lines: int, extra_s: float) -> int:
    """SIGKILL the batch once its journal has ``lines`` lines (or it exits first); return the lines seen."""
    deadline = time.monotonic() + BATCH_RUN_S
    seen = 0
    while process.poll() is None and time.monotonic() < deadline:
        try:
            seen = journal.read_bytes().count(b"\n")
        except FileNotFoundError:
            seen = 0
        if seen >= lines:
            time.sleep(extra_s)
            break
        time.sleep(POLL_S)
    process.send_signal(signal.SIGKILL)
    process.wait(CHILD_START_S)
    return seen


@pytest.mark.parametrize("seed", range(RUNS))
def test_a_batch_killed_anywhere_finishes_every_card_exactly_once(
    seed: int, tmp_path: Path, sqlite_url: str, pcscd: PrivatePcscd, keystore_files: tuple[Path, Path, KeyStore]
) -> None:
    keystore_path, passphrase_path, keystore = keystore_files
    rng = random.Random(seed)
    kill_at = rng.randint(2, JOURNAL_LINES)
    extra_s = rng.uniform(0.0, 0.005)
    reload = seed % 2 == 0
    print(f"seed {seed}: SIGKILL at journal line {kill_at} + {extra_s * 1000:.1f} ms")
    body = ICCID_BODY[:-2] + f"{seed:02d}"
    iccids = iccid_range(body + str(luhn_check_digit(body)), CARDS)
    rows = card_rows(keystore, iccids, first=seed * CARDS)
    csv_path = write_csv(tmp_path / "cards.csv", rows)
    run = Run(tmp_path, pcscd, keystore_path, passphrase_path, CARD_TYPE, csv_path, sqlite_url)
    journal = Path(str(run.csv) + ".journal")

    # Run 1, killed. The emulator and the batch start together (the batch waits for cards).
    emulator = run.emulator(1)
    batch = subprocess.Popen(
        run.batch_command(), env=run.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    emulator.wait_ready()
    seen = kill_when_journal_reaches(batch, journal, kill_at, extra_s)
    print(f"seed {seed}: killed with {seen} journal lines (batch exit {batch.returncode}); {'reload' if reload else 'keep'} the stacks")
    before = journal_records(journal) if journal.exists() else []
    finished_before = {r["iccid"] for r in before if r.get("step") == "finished" and r.get("event") == "done"}
    changed_before = {r["iccid"] for r in before if r.get("event") == "done" and r["step"] not in ("identify", "adm", "finished")}
    if reload:
        # The operator reloads the feeders with the whole stack: the emulator restarts from the card images.
        first = emulator.stop()
        emulator = run.emulator(2)
    else:
        # The cards stay where the killed batch left them; pcscd resets the one it held.
        time.sleep(SETTLE_S)  # an exchange pcscd had already taken from the killed batch lands in run 1's counts
        first = emulator.snapshot()

    # Run 2, to completion.
    try:
        result = subprocess.run(run.batch_command("--json"), env=run.env, capture_output=True, timeout=BATCH_RUN_S, check=False)
    finally:
        final = emulator.stop()
    second = final if reload else minus(final, first)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    report = json.loads(result.stdout)
    assert report["ended"] == "complete"
    assert {c["iccid"]: c["status"] for c in report["cards"]} == {
        iccid: "already_done" if iccid in finished_before else "personalized" for iccid in iccids
    }

    # The journal: no state-changing step twice, every card finished once.
    records = journal_records(journal)
    assert max(done_counts(records).values()) == 1
    assert Counter(r["iccid"] for r in records if r.get("step") == "finished") == Counter(iccids)

    # The card side.
    total = {iccid: writes(first.get(iccid)) + writes(second.get(iccid)) for iccid in iccids}
    assert all(writes(first.get(iccid)) > 0 for iccid in changed_before)
    begins = Counter(r["iccid"] for r in records if r.get("step") == "card" and r.get("event") == "begin")
    whole = {total[iccid] for iccid in iccids if begins[iccid] == 1}
    assert len(whole) == 1, f"cards personalized in one go differ in writes: {total}"
    reference = whole.pop()
    for iccid in iccids:
        if iccid in finished_before:
            assert writes(second.get(iccid)) == 0, f"{iccid} was written again after it was finished"
        elif iccid in changed_before:
            assert writes(second.get(iccid)) < reference, f"{iccid} was personalized again from the start"

    # The database: one registration per card, one wallet per customer.
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        registered = [row.iccid for row in conn.execute(sa.select(cards.c.iccid))]
        wallets = Counter(row.owner for row in conn.execute(sa.select(accounts.c.owner).where(accounts.c.kind == "customer_wallet")))
    engine.dispose()
    assert sorted(registered) == sorted(iccids)
    assert wallets == Counter(f"customer:{row['customer']}" for row in rows)

    # Every card, read back over PC/SC, is what its row asked for.
    verify_all(run, iccids, keystore)


def verify_all(run: Run, iccids: list[str], keystore: KeyStore) -> None:
    profile = load_profile(PROFILE)
    registry = open_registry(run.db_url)
    personalizer = Personalizer(profile, keystore, registry)
    jobs = {card.iccid: card for card in load_batch(run.csv, profile, Path(profile.source)).cards}
    cards_ = make_cards(card_type_mapping(CARD_TYPE), iccids, None, CardStore(run.tmp / "cards"))
    reader = run.pcscd.reader_names[0]
    try:
        with Emulator(cards_, readers=1, base_port=run.pcscd.base_port), Pcsc() as pcsc:
            for iccid in iccids:
                pcsc.wait_for_card(reader, CHILD_START_S)
                with pcsc.connect(reader) as connection:
                    card = jobs[iccid]
                    job = CardJob(values=card.values, personalization=card.personalization, channel="batch", clerk="tester", row=card.row)
                    mismatches = verify_card(connection, job, personalizer)
                    connection.close(disposition="unpower")
                assert mismatches == [], f"{iccid}: {mismatches}"
    finally:
        registry.engine.dispose()
