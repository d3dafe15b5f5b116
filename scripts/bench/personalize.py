#!/usr/bin/env python3
"""Cards personalized per second on one reader and on two, beside the APDU round-trip floor, measured in one run.

Everything real: pyscard → a private pcscd (:class:`~simwallet.provisioning.pcscd.PrivatePcscd`)
→ vpcd → :class:`~simwallet.applet.card.link.VpcdLink` → virtual cards
(:mod:`simwallet.applet.card.virtual`) held by an
:class:`~simwallet.provisioning.emulate.Emulator` in a *separate process per
reader* (the cards' Python must not share the batch's GIL); the batch in this
process, one thread per reader (:class:`~simwallet.provisioning.batch.Batch`,
pyscard releases the GIL in SCardTransmit), with the real journal (one fdatasync per card) and
a SQLite registry.

1. The floor: 1,000 × SELECT MF (``00 A4 00 0C 02 3F 00``, no response data:
   one exchange) on a virtual card in reader 0, through raw SCardTransmit;
   the mean round trip, times the APDU exchanges one card needs (measured in
   2), is the floor.
2. A batch of ``--cards`` (default 100) cards on reader 0: time per card, and
   ``ratio: X.XX`` = time per card / floor (goal ≤ 1.5).
3. The same number of new cards on two readers (half each, one card process
   per reader): ``speedup: X.XX`` = time of 2 / time of 3 (goal ≥ 1.7).

4. A diagnostic, not a goal: the same personalization of ``--cards`` new cards
   with no transport at all (the card objects called in this process), split
   into card objects and host, beside what the ratio goal leaves per card
   next to the floor (0.5 × floor).

Also printed: APDUs per card, the time inside the card objects (card side),
in the journal and per step. Each batch is timed from its start with
the first cards already in the readers to its end (the last card finished);
no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from simwallet.applet.card.image import CardStore
from simwallet.applet.protocols.efs import luhn_check_digit
from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.diversify import card_secrets
from simwallet.gateway.keystore import KeyFamily, KeyStore
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.runtime import tune_for_serving
from simwallet.gateway.store.engine import open_engine
from simwallet.provisioning.batch import Batch, BatchEvent, EventKind
from simwallet.provisioning.batch_csv import load_batch
from simwallet.provisioning.emulate import iccid_range, make_cards
from simwallet.provisioning.factory import card_type_mapping
from simwallet.provisioning.journal import CardProgress, Journal
from simwallet.provisioning.pcscd import PrivatePcscd, free_port_pair
from simwallet.provisioning.personalize import CardJob, Personalizer
from simwallet.provisioning.profile import load_profile
from simwallet.provisioning.reader import CardConnection

PROFILE = "wallet-cmcc-zh"
CARD_TYPE = "usim-wallet"
PASSPHRASE = "benchmark passphrase"
KDF_N = 2**10
SELECT_MF = [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]
WARM_UP = 20
PRESENCE_WAIT_S = 15.0
CHILD_READY_S = 30.0
IDLE_TIMEOUT_S = 10.0


# --- the card process ------------------------------------------------------------------------------------


def serve_cards(state_dir: str, iccids: Sequence[str], port: int, conn: Connection) -> None:
    """Child process: the cards (from their images) in one vpcd reader until told to stop; send back their statistics."""
    from simwallet.provisioning.emulate import Emulator

    cards = make_cards(card_type_mapping(CARD_TYPE), iccids, None, CardStore(state_dir))
    tune_for_serving()  # as `simwallet card emulate` does: a long-lived process with many live objects
    with Emulator(cards, readers=1, base_port=port) as emulator:
        emulator.wait_connected(CHILD_READY_S)
        conn.send("ready")
        conn.recv()  # "stop"
    conn.send([(s.iccid, s.apdus, s.card_seconds) for s in emulator.stats()])


@dataclass
class CardProcess:
    process: multiprocessing.process.BaseProcess
    conn: Connection

    @classmethod
    def start(cls, state_dir: Path, iccids: Sequence[str], port: int) -> CardProcess:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=serve_cards, args=(str(state_dir), list(iccids), port, child), daemon=True)
        process.start()
        if not parent.poll(CHILD_READY_S) or parent.recv() != "ready":
            process.kill()
            raise SystemExit("bench: the card process did not start")
        return cls(process, parent)

    def stop(self) -> list[tuple[str, int, float]]:
        self.conn.send("stop")
        stats: list[tuple[str, int, float]] = self.conn.recv() if self.conn.poll(CHILD_READY_S) else []
        self.process.join(CHILD_READY_S)
        return stats


# --- measurements -------------------------------------------------------------------------------------------


class DirectConnection(CardConnection):
    """A diagnostic connection that hands each APDU straight to a card object in this process: no PC/SC, no socket."""

    def __init__(self, card: Any) -> None:
        from smartcard.scard import SCARD_PROTOCOL_T0  # type: ignore[import-untyped]

        super().__init__("in-process", 1, SCARD_PROTOCOL_T0, None)
        self.card = card
        self.card_seconds = 0.0

    def _raw(self, capdu: bytes) -> bytes:
        started = time.perf_counter()
        rapdu = bytes(self.card.apdu(bytes(capdu)))
        self.card_seconds += time.perf_counter() - started
        self.exchanges += 1
        return rapdu


def without_transport(bench: Bench, count: int) -> tuple[float, float]:
    """Seconds per card of the same personalization with no transport at all (card objects called directly), and of them
    inside the card objects; registration aside (a batch registers in groups). A lower bound of what is not transport."""
    store = CardStore(bench.tmp / "direct-cards")
    iccids = bench.new_cards(count, store)
    cards = make_cards(card_type_mapping(CARD_TYPE), iccids, None, CardStore(store.directory))
    batch_input = load_batch(bench.csv("direct", iccids), bench.profile, Path(bench.profile.source))
    jobs = batch_input.by_iccid()
    personalizer = Personalizer(bench.profile, bench.keystore, None)
    card_seconds = 0.0
    with Journal.open(bench.tmp / "direct.journal", batch_input.digest) as journal:
        started = time.perf_counter()
        for card, iccid in zip(cards, iccids, strict=True):
            card.power_on()
            row = jobs[iccid]
            connection = DirectConnection(card)
            job = CardJob(values=row.values, personalization=row.personalization, channel="batch", clerk="bench", row=row.row)
            personalizer.personalize(connection, job, journal)
            card.power_off()
            card_seconds += connection.card_seconds
        seconds = time.perf_counter() - started
    return seconds / count, card_seconds / count



def round_trip(reader: str, apdus: int) -> float:
    """Mean seconds of one SELECT MF exchange through raw SCardTransmit."""
    from smartcard.scard import (  # type: ignore[import-untyped]
        SCARD_PCI_T0,
        SCARD_PROTOCOL_T0,
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCARD_SHARE_EXCLUSIVE,
        SCARD_UNPOWER_CARD,
        SCardConnect,
        SCardDisconnect,
        SCardEstablishContext,
        SCardReleaseContext,
        SCardTransmit,
    )

    _, context = SCardEstablishContext(SCARD_SCOPE_USER)
    try:
        hresult, handle, _ = SCardConnect(context, reader, SCARD_SHARE_EXCLUSIVE, SCARD_PROTOCOL_T0)
        if hresult != SCARD_S_SUCCESS:
            raise SystemExit(f"bench: SCardConnect failed ({hresult:#x})")
        for _ in range(WARM_UP):
            SCardTransmit(handle, SCARD_PCI_T0, SELECT_MF)
        started = time.perf_counter()
        for _ in range(apdus):
            hresult, response = SCardTransmit(handle, SCARD_PCI_T0, SELECT_MF)
            if hresult != SCARD_S_SUCCESS or bytes(response) != b"\x90\x00":
                raise SystemExit(f"bench: SELECT MF failed: {hresult:#x} {bytes(response).hex()}")
        seconds = time.perf_counter() - started
        SCardDisconnect(handle, SCARD_UNPOWER_CARD)
    finally:
        SCardReleaseContext(context)
    return seconds / apdus


class TimedJournal:
    """The batch journal, with the time spent in it (flushed when a card ends) added up."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.seconds = 0.0
        self.records = 0

    def progress(self, iccid: str) -> CardProgress:
        return self.journal.progress(iccid)

    def record(self, iccid: str, step: str, event: str = "done", *, error: str | None = None) -> None:
        started = time.perf_counter()
        self.journal.record(iccid, step, event, error=error)
        self.seconds += time.perf_counter() - started
        self.records += 1

    def finish(self, *iccids: str) -> None:
        started = time.perf_counter()
        self.journal.finish(*iccids)
        self.seconds += time.perf_counter() - started
        self.records += len(iccids)


@dataclass
class StepClock:
    """Per-step durations from the batch's events: a step lasts from the previous event of its card to its own."""

    last: dict[str, float] = field(default_factory=dict)
    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def __call__(self, event: BatchEvent) -> None:
        now = time.perf_counter()
        if event.iccid is None:
            return
        if event.kind is EventKind.STARTED:
            self.last[event.iccid] = now
        elif event.kind is EventKind.STEP and event.step is not None:
            self.steps[event.step].append(now - self.last.get(event.iccid, now))
            self.last[event.iccid] = now


@dataclass
class BatchRun:
    cards: int
    seconds: float
    apdus_per_card: float
    card_seconds: float
    journal_seconds: float
    journal_records: int
    steps: dict[str, list[float]]
    # CPU seconds during the batch: this process (the batch's threads), pcscd, the card processes.
    cpu_batch_s: float = 0.0
    cpu_pcscd_s: float = 0.0
    cpu_cards_s: float = 0.0

    @property
    def per_card_s(self) -> float:
        return self.seconds / self.cards


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Bench:
    tmp: Path
    pcscd: PrivatePcscd
    keystore: KeyStore
    profile: Any
    next_number: int = 0

    def new_cards(self, count: int, store: CardStore) -> list[str]:
        body = f"8986009{self.next_number:011d}"
        iccids = iccid_range(body + str(luhn_check_digit(body)), count)
        self.next_number += count
        make_cards(card_type_mapping(CARD_TYPE), iccids, self.keystore, store)
        return iccids

    def csv(self, name: str, iccids: list[str]) -> Path:
        master = self.keystore.active("card-secrets").secrets_master()
        lines = ["iccid,imsi,msisdn,customer,pin1,puk1"]
        for iccid in iccids:
            n = int(iccid[7:18])
            lines.append(f"{iccid},46000{n:010d},138{n % 10**8:08d},B{n:07d},1357,{card_secrets(master, iccid).puk1}")
        path = self.tmp / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        return path

    def batch(self, name: str, count: int, readers: int) -> BatchRun:
        store = CardStore(self.tmp / f"{name}-cards")
        iccids = self.new_cards(count, store)
        csv_path = self.csv(name, iccids)
        engine = open_engine(f"sqlite:///{self.tmp / name}.sqlite3")
        registry = CardRegistry(engine, Ledger(engine))
        batch_input = load_batch(csv_path, self.profile, Path(self.profile.source), registry=registry)
        stacks = [iccids[i::readers] for i in range(readers)]
        processes = [CardProcess.start(store.directory, stack, self.pcscd.ports[i]) for i, stack in enumerate(stacks)]
        names = list(self.pcscd.reader_names[:readers])
        try:
            from simwallet.provisioning.reader import Pcsc

            with Pcsc() as pcsc:
                for reader in names:
                    pcsc.wait_for_card(reader, PRESENCE_WAIT_S)
            clock = StepClock()
            with Journal.open(self.tmp / f"{name}.journal", batch_input.digest) as journal:
                timed = TimedJournal(journal)
                batch = Batch(
                    batch_input,
                    timed,
                    lambda: Personalizer(self.profile, self.keystore, registry),
                    names,
                    clerk="bench",
                    idle_timeout_s=IDLE_TIMEOUT_S,
                    on_event=clock,
                )
                cpu_before = (own_cpu_seconds(), cpu_seconds(self.pcscd.pid), sum(cpu_seconds(p.process.pid) for p in processes))
                started = time.perf_counter()
                report = batch.run()
                seconds = time.perf_counter() - started
                cpu_after = (own_cpu_seconds(), cpu_seconds(self.pcscd.pid), sum(cpu_seconds(p.process.pid) for p in processes))
        finally:
            stats = [s for p in processes for s in p.stop()]
            engine.dispose()
        if not report.complete:
            raise SystemExit(f"bench: the batch {name} ended {report.ended} with {report.to_json()['counts']}")
        return BatchRun(
            count,
            seconds,
            statistics.fmean(r.apdus for r in report.results),
            sum(card_s for _, _, card_s in stats),
            timed.seconds,
            timed.records,
            dict(clock.steps),
            *(after - before for before, after in zip(cpu_before, cpu_after, strict=True)),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cards", type=int, default=100, help="cards per batch (default 100; at least 20; fewer make noisy figures)")
    parser.add_argument("--apdus", type=int, default=1000, help="SELECT MF round trips for the floor (default 1000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="simwallet-bench-") as tmp_dir, PrivatePcscd(base_port=free_port_pair()) as pcscd:
        pcscd.activate()  # before this process's first PC/SC call
        tmp = Path(tmp_dir)
        keystore = KeyStore.create(tmp / "keystore.json", PASSPHRASE, kdf_n=KDF_N)
        for family in KeyFamily:
            keystore.generate(family)
        bench = Bench(tmp, pcscd, keystore, load_profile(PROFILE))
        tune_for_serving()  # as `simwallet card batch` does

        floor_store = CardStore(tmp / "floor-cards")
        floor_card = bench.new_cards(1, floor_store)
        process = CardProcess.start(floor_store.directory, floor_card, pcscd.ports[0])
        try:
            from simwallet.provisioning.reader import Pcsc

            with Pcsc() as pcsc:
                pcsc.wait_for_card(pcscd.reader_names[0], PRESENCE_WAIT_S)
            rtt = round_trip(pcscd.reader_names[0], args.apdus)
        finally:
            process.stop()
        direct_s, direct_card_s = without_transport(bench, args.cards)
        one = bench.batch("one-reader", args.cards, readers=1)
        two = bench.batch("two-readers", args.cards, readers=2)

    floor = one.apdus_per_card * rtt
    print(f"pyscard -> pcscd -> vpcd -> virtual card ({CARD_TYPE}), profile {PROFILE}; one card process per reader")
    print(f"round trip: {args.apdus} x SELECT MF, mean {rtt * 1000:.3f} ms ({1 / rtt:,.0f} APDU/s)")
    print(f"APDUs per card: {one.apdus_per_card:.1f} (exchanges on the wire, GET RESPONSE included)")
    print(f"floor: {one.apdus_per_card:.1f} x {rtt * 1000:.3f} ms = {floor * 1000:.1f} ms per card")
    for label, run in (("one reader", one), ("two readers", two)):
        print(
            f"{label}: {run.cards} cards in {run.seconds:.2f} s = {run.per_card_s * 1000:.1f} ms per card "
            f"({60 / run.per_card_s:,.0f} cards/min); card side {run.card_seconds / run.cards * 1000:.1f} ms/card; "
            f"journal {run.journal_records / run.cards:.0f} records, {run.journal_seconds / run.cards * 1000:.1f} ms/card"
        )
    print(
        "steps, one reader (mean ms per card): "
        + ", ".join(f"{step} {statistics.fmean(values) * 1000:.1f}" for step, values in one.steps.items())
    )
    host = one.per_card_s - one.card_seconds / one.cards - one.apdus_per_card * rtt
    print(
        f"time per card, one reader: {one.per_card_s * 1000:.1f} ms = transport floor {floor * 1000:.1f} ms"
        f" + card side {one.card_seconds / one.cards * 1000:.1f} ms + host side {host * 1000:.1f} ms"
    )
    print(
        f"without transport (card objects called in this process, registration aside): {direct_s * 1000:.1f} ms per card"
        f" = card objects {direct_card_s * 1000:.1f} ms + host {(direct_s - direct_card_s) * 1000:.1f} ms"
        f" (the ratio goal leaves {0.5 * floor * 1000:.1f} ms per card beside the floor)"
    )
    for label, run in (("one reader", one), ("two readers", two)):
        print(
            f"CPU per card, {label} (2 cores): batch process {run.cpu_batch_s / run.cards * 1000:.1f} ms,"
            f" pcscd {run.cpu_pcscd_s / run.cards * 1000:.1f} ms, card processes {run.cpu_cards_s / run.cards * 1000:.1f} ms"
        )
    print(f"ratio: {one.per_card_s / floor:.2f}")
    print(f"speedup: {one.seconds / two.seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
