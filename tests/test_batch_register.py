"""A batch registers its cards in groups after they have left the reader; a killed run's leftovers need no card.

:class:`~simwallet.provisioning.batch_register.RegistrationGroup` on its own
(when a group is due, what one refused card does to the others) against a
real SQLite registry, then :class:`~simwallet.provisioning.batch.Batch` end
to end on the module's private pcscd: a card whose on-card steps a killed run
journaled is registered without being in any reader, and a registration the
backend refuses fails its own card only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batch import (
    CARD_TYPE,
    ICCID_START,
    IDLE_TIMEOUT_S,
    PASSPHRASE,
    PROFILE,
    Recorder,
    card_rows,
    done_counts,
    journal_records,
    make_keystore,
    open_registry,
    write_csv,
)

from simwallet.applet.card.image import CardStore
from simwallet.gateway.cards import AcceptanceChannel, CardRegistration, CardRegistry, RegistrationResult
from simwallet.gateway.errors import RequestError
from simwallet.gateway.keystore import KeyStore
from simwallet.provisioning.batch import Batch, CardStatus, EventKind
from simwallet.provisioning.batch_csv import BatchInput, default_journal_path, load_batch
from simwallet.provisioning.batch_register import RegistrationGroup
from simwallet.provisioning.emulate import Emulator, iccid_range, make_cards
from simwallet.provisioning.factory import card_type_mapping
from simwallet.provisioning.journal import Journal
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.personalize import CardJob, Personalizer
from simwallet.provisioning.profile import Profile, load_profile
from simwallet.provisioning.reader import Pcsc

PRESENCE_WAIT_S = 20.0


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return make_keystore(tmp_path_factory.mktemp("keys") / "keystore.json")


@pytest.fixture
def registry(sqlite_url: str) -> Iterator[CardRegistry]:
    registry = open_registry(sqlite_url)
    yield registry
    registry.engine.dispose()


def registration(n: int) -> CardRegistration:
    return CardRegistration(
        iccid=iccid_range(ICCID_START, n + 1)[-1],
        imsi=f"4600077{n:08d}",
        msisdn=f"86137{n:08d}",
        customer_ref=f"customer:G{n}",
        profile=PROFILE,
        channel=AcceptanceChannel.BATCH,
        clerk="tester",
        scp03_kvn=0x30,
        ota_key_version=1,
        wallet_key_version=1,
        personalized_at=1_795_000_000_000_000,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the group -------------------------------------------------------------------------------------------


def test_a_group_is_due_when_full_or_when_its_oldest_card_has_waited(registry: CardRegistry) -> None:
    clock = Clock()
    group = RegistrationGroup(registry, size_max=3, wait_s=1.0, clock=clock)
    assert not group.due and len(group) == 0
    group.add("a", registration(0))
    clock.now += 0.5
    group.add("b", registration(1))
    assert not group.due
    clock.now += 0.5  # the first card has waited 1 s
    assert group.due
    clock.now -= 0.5
    group.add("c", registration(2))
    assert group.due  # full
    with pytest.raises(ValueError, match="full"):
        group.add("d", registration(3))
    outcomes = group.register()
    assert len(group) == 0 and not group.due
    assert [card.iccid for card, _ in outcomes] == ["a", "b", "c"]
    assert all(isinstance(result, RegistrationResult) and result.created for _, result in outcomes)
    with pytest.raises(ValueError):
        RegistrationGroup(registry, size_max=0)


def test_a_refused_card_in_a_group_does_not_keep_the_others_out(registry: CardRegistry) -> None:
    registry.register(registration(9))
    clash = CardRegistration(**{**registration(1).__dict__, "msisdn": registration(9).msisdn})
    group = RegistrationGroup(registry)
    for n, reg in enumerate([registration(0), clash, registration(2)]):
        group.add(str(n), reg)
    (_, first), (_, refused), (_, third) = group.register()
    assert isinstance(first, RegistrationResult) and isinstance(third, RegistrationResult)
    assert isinstance(refused, RequestError) and refused.field == "msisdn"
    assert {c.iccid for c in registry.list()} == {registration(n).iccid for n in (0, 2, 9)}


# --- end to end ------------------------------------------------------------------------------------------


def _input(tmp: Path, rows: list[dict[str, str]], profile: Profile, registry: CardRegistry) -> tuple[BatchInput, Journal]:
    path = write_csv(tmp / "cards.csv", rows)
    batch_input = load_batch(path, profile, Path(profile.source), registry=registry)
    return batch_input, Journal.open(default_journal_path(path), batch_input.digest)


def _batch(
    batch_input: BatchInput, journal: Journal, profile: Profile, keystore: KeyStore, registry: CardRegistry, pcscd: PrivatePcscd
) -> tuple[Recorder, Batch]:
    recorder = Recorder.new()
    batch = Batch(
        batch_input,
        journal,
        lambda: Personalizer(profile, keystore, registry),
        list(pcscd.reader_names[:1]),
        clerk="tester",
        idle_timeout_s=IDLE_TIMEOUT_S,
        on_event=recorder,
    )
    return recorder, batch


def test_a_card_left_unregistered_by_a_killed_run_is_registered_without_it(
    tmp_path: Path, profile: Profile, keystore: KeyStore, registry: CardRegistry, pcscd: PrivatePcscd
) -> None:
    iccids = iccid_range(ICCID_START, 2)
    rows = card_rows(keystore, iccids)
    store = CardStore(tmp_path / "cards")
    cards = make_cards(card_type_mapping(CARD_TYPE), iccids, keystore, store)
    batch_input, journal = _input(tmp_path, rows, profile, registry)
    reader = pcscd.reader_names[0]
    # A killed run: the first card's on-card steps journaled, its registration never made.
    personalizer = Personalizer(profile, keystore, registry)
    first = batch_input.by_iccid()[iccids[0]]
    job = CardJob(values=first.values, personalization=first.personalization, channel="batch", clerk="tester", row=first.row)
    with Emulator(cards[:1], readers=1, base_port=pcscd.base_port), Pcsc() as pcsc:
        pcsc.wait_for_card(reader, PRESENCE_WAIT_S)
        with pcsc.connect(reader) as connection:
            outcome = personalizer.personalize(connection, job, journal, defer_registration=True)
    assert outcome.registration is not None and outcome.registration.iccid == iccids[0]
    assert "register" not in outcome.steps_run + outcome.steps_skipped
    assert registry.get(iccids[0]) is None and not journal.progress(iccids[0]).finished
    # The next run has only the second card in a reader: the first is registered off the reader.
    recorder, batch = _batch(batch_input, journal, profile, keystore, registry, pcscd)
    with Emulator(cards[1:], readers=1, base_port=pcscd.base_port), journal:
        report = batch.run()
    results = {r.iccid: r for r in report.results}
    assert report.ended == "complete" and report.complete
    assert results[iccids[0]].status is CardStatus.PERSONALIZED and results[iccids[0]].reader is None
    assert results[iccids[0]].steps_run == ("register",) and results[iccids[0]].apdus == 0
    assert set(results[iccids[0]].steps_skipped) == set(Personalizer.STEPS) - {"register"}
    assert results[iccids[1]].steps_run == Personalizer.STEPS
    for iccid, row in zip(iccids, rows, strict=True):
        card = registry.get(iccid)
        assert card is not None and card.imsi == row["imsi"] and card.clerk == "tester"
    records = journal_records(journal.path)
    assert max(done_counts(records).values()) == 1
    assert journal.finished() == set(iccids)
    finished = [e for e in recorder.events if e.kind is EventKind.FINISHED]
    assert {(e.iccid, e.reader) for e in finished} == {(iccids[0], ""), (iccids[1], reader)}


def test_a_refused_registration_fails_its_card_only(
    tmp_path: Path, profile: Profile, keystore: KeyStore, registry: CardRegistry, pcscd: PrivatePcscd
) -> None:
    iccids = iccid_range(ICCID_START, 3)
    rows = card_rows(keystore, iccids)
    cards = make_cards(card_type_mapping(CARD_TYPE), iccids, keystore, CardStore(tmp_path / "cards"))
    batch_input, journal = _input(tmp_path, rows, profile, registry)
    recorder, batch = _batch(batch_input, journal, profile, keystore, registry, pcscd)
    # After pre-flight, another clerk registers a card with row 2's MSISDN.
    taken = registration(7)
    registry.register(CardRegistration(**{**taken.__dict__, "msisdn": "86" + rows[1]["msisdn"]}))
    with Emulator(cards, readers=1, base_port=pcscd.base_port) as emulator, journal:
        report = batch.run()
    statuses = {r.iccid: r.status for r in report.results}
    assert statuses == {iccids[0]: CardStatus.PERSONALIZED, iccids[1]: CardStatus.FAILED, iccids[2]: CardStatus.PERSONALIZED}
    refused = next(r for r in report.results if r.status is CardStatus.FAILED)
    assert refused.error is not None and "register" in refused.error and "msisdn" in refused.error and taken.iccid in refused.error
    assert refused.steps_run == Personalizer.STEPS[:-1]  # every on-card step: the card itself is done
    failed = [r for r in journal_records(journal.path) if r.get("event") == "failed"]
    assert [(r["iccid"], r["step"]) for r in failed] == [(iccids[1], "register")]
    assert registry.get(iccids[1]) is None and registry.get(iccids[0]) is not None and registry.get(iccids[2]) is not None
    assert recorder.kinds()["step"] == 3 * len(Personalizer.STEPS) - 1
    assert all(s.write_count > 0 for s in emulator.stats())
    assert PASSPHRASE not in (refused.error or "")
