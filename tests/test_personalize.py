"""Personalizing one card end to end over real PC/SC: pyscard → private pcscd → vpcd → the virtual UICC.

Every test manufactures a card with :func:`~simwallet.provisioning.factory.manufacture_card`,
puts it in reader 0 of the module's private pcscd and drives it with
:class:`~simwallet.provisioning.personalize.Personalizer` exactly as a service
hall does with a physical reader: the happy path on SQLite and PostgreSQL
(rotation of the ISD key set included), read-back and verification, then the
failures — a wrong ADM1, ADM1 with one try left, a wrong issuer key, a wrong
card, and a card pulled out in the middle of ``files`` and put back.

The planner of the ``files`` step is also tested on its own (pure): the
number of SELECTs, and that the plan never selects what is already current.
No timing is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from card_helpers import CUSTOMER, IMSI, MSISDN, inserted, job, load, make_keystore, puk1, registry, store
from card_helpers import iccid as make_iccid

from simwallet.applet.card.spec import KEY_ADM1
from simwallet.applet.card.uicc import Uicc
from simwallet.applet.protocols.efs import Imsi, ServiceProviderName
from simwallet.applet.protocols.efs_records import DiallingNumber
from simwallet.gateway.keystore import KeyFamily, KeyStore
from simwallet.gateway.ledger.model import AccountKind
from simwallet.provisioning.cardread import read_card, verify_card
from simwallet.provisioning.factory import load_card, manufacture_card
from simwallet.provisioning.journal import Journal
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.personalize import Personalizer, TriesTooLowError, WrongCardError, read_iccid
from simwallet.provisioning.personalize_card import PersonalizationError
from simwallet.provisioning.personalize_files import plan_files
from simwallet.provisioning.profile_files import card_files
from simwallet.provisioning.reader import CardRemovedError

ICCID = make_iccid("898600112233445566")
OTHER_ICCID = make_iccid("898600112233445577")
ALL_STEPS = ("identify", "adm", "pin", "files", "isd-keys", "ota-keys", "applet", "wallet", "register")


def _imsi_on(card: Uicc) -> bytes:
    return card.file_content("ADF.USIM/EF.IMSI")


# --- the happy path ---------------------------------------------------------------------------------


def test_personalize_read_verify(pcscd: PrivatePcscd, tmp_path: Path, db_url: str) -> None:
    keystore = make_keystore(tmp_path / "ks.json", scp03_versions=2)  # 0x30 retired, 0x31 active
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, store(tmp_path), scp03_version=0x30)
    cards = registry(db_url)
    personalizer = Personalizer(profile, keystore, cards)
    the_job = job(profile, keystore, ICCID)
    with inserted(pcscd, card) as slot, slot.connection() as connection:
        assert read_iccid(connection) == ICCID
        journal = Journal.open(tmp_path / "journal.jsonl", "digest")
        outcome = personalizer.personalize(connection, the_job, journal)
        assert outcome.steps_run == ALL_STEPS and outcome.steps_skipped == ()
        assert outcome.registered_new
        # The journal knows the card is finished: a second run only checks the ICCID.
        again = personalizer.personalize(connection, the_job, journal)
        assert again.steps_run == ("identify",) and again.exchanges == 2
        journal.close()
        # Without the journal every step runs again, and each is a no-op on a personalized card.
        repeat = personalizer.personalize(connection, the_job)
        assert repeat.steps_run == ALL_STEPS and not repeat.registered_new
        report = read_card(connection, keystore=keystore, card_type=profile.card_type)
        assert verify_card(connection, the_job, personalizer) == []
        # Who handed the card over is compared only when asked for.
        other_clerk = job(profile, keystore, ICCID, clerk="li")
        assert verify_card(connection, other_clerk, personalizer) == []
        assert [m.item for m in verify_card(connection, other_clerk, personalizer, check_handover=True)] == ["registration clerk"]
    # The card's files decode to the job's values.
    assert Imsi.from_bytes(_imsi_on(card)).imsi == IMSI
    assert Imsi.from_bytes(card.file_content("DF.GSM/EF.IMSI")).imsi == IMSI
    assert DiallingNumber.from_bytes(card.file_records("ADF.USIM/EF.MSISDN")[0]).number == "86" + MSISDN
    assert ServiceProviderName.from_bytes(card.file_content("ADF.USIM/EF.SPN")).name == "中国移动"
    # The report read over PC/SC says the same, and the ISD moved to the active key version.
    assert report.value("EF.IMSI").imsi == IMSI
    assert report.value("EF.LI").languages == ("zh", "en")
    assert {kvn for kvn, _ in report.key_sets} == {0x31, keystore.active("ota").version}
    assert report.applet is not None and report.applet.installed and report.applet.personalized
    # Registered once, with a wallet account for the customer.
    registered = cards.get(ICCID)
    assert registered is not None
    assert (registered.imsi, registered.msisdn, registered.customer_ref) == (IMSI, "86" + MSISDN, f"customer:{CUSTOMER}")
    assert (registered.channel.value, registered.clerk, registered.scp03_kvn) == ("service_hall", "zhang", 0x31)
    wallets = cards.ledger.accounts(owner=f"customer:{CUSTOMER}", kind=AccountKind.CUSTOMER_WALLET)
    assert len(wallets) == 1
    assert len(cards.list()) == 1


def test_verify_finds_a_changed_file(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, store(tmp_path))
    personalizer = Personalizer(profile, keystore, None)
    with inserted(pcscd, card) as slot, slot.connection() as connection:
        personalizer.personalize(connection, job(profile, keystore, ICCID))
        other = job(profile, keystore, ICCID, imsi="460001234567891")
        mismatches = verify_card(connection, other, personalizer)
    assert {m.item for m in mismatches} == {"MF/ADF.USIM/EF.IMSI", "MF/DF.GSM/EF.IMSI", "MF/ADF.USIM/EF.ACC", "MF/DF.GSM/EF.ACC"}


# --- failures ---------------------------------------------------------------------------------------


def test_wrong_adm_fails_after_one_try(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    ours = make_keystore(tmp_path / "ours.json")
    theirs = make_keystore(tmp_path / "theirs.json")  # another operator's card-secrets: another ADM1
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, theirs, store(tmp_path))
    blank_imsi = _imsi_on(card)
    journal = Journal.open(tmp_path / "journal.jsonl", "digest")
    with inserted(pcscd, card) as slot, slot.connection() as connection, pytest.raises(PersonalizationError) as caught:
        Personalizer(profile, ours, None).personalize(connection, job(profile, ours, ICCID, puk1=puk1(ours, ICCID)), journal)
    error = caught.value
    assert (error.step, error.iccid, error.sw) == ("adm", ICCID, 0x63C9)
    assert "63C9" in str(error) and "Verification failed, 9 retries left" in str(error)
    assert card.pin_tries(KEY_ADM1) == 9
    assert _imsi_on(card) == blank_imsi
    progress = journal.progress(ICCID)
    assert progress.steps_done == {"identify"} and progress.last_error is not None and "adm" in progress.last_error


def test_adm_with_one_try_left_is_not_presented(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, store(tmp_path))
    wrong = b"00000000"
    while card.pin_tries(KEY_ADM1) != 1:  # the card maker's bench: wrong ADM1 codes until one try is left
        card.apdu(bytes.fromhex("0020000A08") + wrong)
    with inserted(pcscd, card) as slot, slot.connection() as connection, pytest.raises(TriesTooLowError) as caught:
        Personalizer(profile, keystore, None).personalize(connection, job(profile, keystore, ICCID))
    assert (caught.value.step, caught.value.tries_left, caught.value.sw) == ("adm", 1, 0x63C1)
    assert card.pin_tries(KEY_ADM1) == 1


def test_wrong_issuer_key_stops_before_gp_writes(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    maker = make_keystore(tmp_path / "maker.json")
    # Same card secrets, but an scp03 version 0x30 with other keys: the key store does not match the card's ISD.
    other = KeyStore.create(tmp_path / "other.json", "card test passphrase", kdf_n=2**10)
    secrets = maker.active(KeyFamily.CARD_SECRETS)
    other.import_version(KeyFamily.CARD_SECRETS, secrets.version, dict(secrets.material), dict(secrets.kcvs))
    for family in (KeyFamily.SCP03, KeyFamily.OTA, KeyFamily.WALLET):
        other.generate(family)
    assert other.active(KeyFamily.SCP03).version == maker.active(KeyFamily.SCP03).version == 0x30
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, maker, store(tmp_path))
    journal = Journal.open(tmp_path / "journal.jsonl", "digest")
    with inserted(pcscd, card) as slot, slot.connection() as connection:
        with pytest.raises(PersonalizationError) as caught:
            Personalizer(profile, other, None).personalize(connection, job(profile, other, ICCID), journal)
        report = read_card(connection, keystore=maker, card_type=profile.card_type)
    assert (caught.value.step, caught.value.sw) == ("isd-keys", 0x6300)
    assert "6300" in str(caught.value) and "wrong issuer key" in str(caught.value)
    assert journal.progress(ICCID).steps_done == {"identify", "adm", "pin", "files"}
    # Nothing further was written: the ISD keeps its one key set, no OTA keys, no wallet instance.
    assert [kvn for kvn, _ in report.key_sets] == [0x30]
    assert report.applet is not None and not report.applet.installed


def test_wrong_card_writes_nothing(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, OTHER_ICCID, keystore, store(tmp_path))
    blank_imsi = _imsi_on(card)
    with inserted(pcscd, card) as slot, slot.connection() as connection, pytest.raises(WrongCardError) as caught:
        Personalizer(profile, keystore, None).personalize(connection, job(profile, keystore, ICCID))
    assert (caught.value.iccid, caught.value.found, caught.value.step) == (ICCID, OTHER_ICCID, "identify")
    assert _imsi_on(card) == blank_imsi
    assert card.pin_tries(KEY_ADM1) == 10


def test_an_iccid_read_by_the_caller_is_not_read_again(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    """A batch reads the ICCID to find the job: identify then compares instead of sending SELECT and READ again."""
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, store(tmp_path))
    personalizer = Personalizer(profile, keystore, None)
    with inserted(pcscd, card) as slot, slot.connection() as connection:
        first = personalizer.personalize(connection, job(profile, keystore, ICCID), identified=read_iccid(connection))
        assert first.steps_run == ALL_STEPS[:-1]  # no registry: no register step
        # Two more runs on the personalized card, the same steps each: told the ICCID, then reading it itself.
        told = personalizer.personalize(connection, job(profile, keystore, ICCID), identified=read_iccid(connection))
        itself = personalizer.personalize(connection, job(profile, keystore, ICCID))
        assert told.steps_run == itself.steps_run == first.steps_run
        assert itself.exchanges == told.exchanges + 2
        # An ICCID that is not the job's is a wrong card, found without an APDU.
        before = connection.exchanges
        with pytest.raises(WrongCardError) as caught:
            personalizer.personalize(connection, job(profile, keystore, ICCID), identified=OTHER_ICCID)
        assert caught.value.found == OTHER_ICCID and connection.exchanges == before


def test_a_pin_the_wallet_cannot_take_fails_before_any_apdu(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, store(tmp_path))
    sent: list[str] = []
    # PIN1 may have 8 digits; the wallet PIN (PIN1 here) has at most 6.
    eight = job(profile, keystore, ICCID, pin1="12345678")
    with (
        inserted(pcscd, card) as slot,
        slot.connection(trace=lambda c, _: sent.append(c)) as connection,
        pytest.raises(PersonalizationError) as caught,
    ):
        Personalizer(profile, keystore, None).personalize(connection, eight)
    assert caught.value.step == "wallet" and "4..6 digits" in str(caught.value)
    assert "12345678" not in str(caught.value)
    assert sent == []


def test_pulled_card_resumes_from_the_last_good_step(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    images = store(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, images)
    cards = registry(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    personalizer = Personalizer(profile, keystore, cards)
    the_job = job(profile, keystore, ICCID)
    journal = Journal.open(tmp_path / "journal.jsonl", "digest")
    updates: list[str] = []
    with inserted(pcscd, card) as slot:

        def pull_after_three_updates(command: str, _response: str) -> None:
            if command[2:4] in ("D6", "DC"):
                updates.append(command)
                if len(updates) == 3:
                    # Pulled between two APDUs: pcscd sees the slot empty before the next command.
                    slot.pull()
                    slot.wait_gone()

        with slot.connection(trace=pull_after_three_updates) as connection, pytest.raises(CardRemovedError):
            personalizer.personalize(connection, the_job, journal)
        assert journal.progress(ICCID).steps_done == {"identify", "adm", "pin"}
        # The card comes back as its image left it (the card process restarted).
        slot.insert(load_card(profile.card_type, ICCID, images))
        with slot.connection() as connection:
            outcome = personalizer.personalize(connection, the_job, journal)
            assert verify_card(connection, the_job, personalizer) == []
    assert outcome.steps_skipped == ("pin",)
    assert outcome.steps_run == ("identify", "adm", "files", "isd-keys", "ota-keys", "applet", "wallet", "register")
    assert outcome.registered_new
    assert journal.progress(ICCID).finished
    assert [c.iccid for c in cards.list()] == [ICCID]


def test_resumed_run_after_pin_presents_the_jobs_pin1(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    """``pin`` journaled, the card powered anew: ``files`` needs PIN1 and presents the job's (its counter asked first)."""
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    card = manufacture_card(profile.card_type, ICCID, keystore, store(tmp_path))
    personalizer = Personalizer(profile, keystore, None)
    commands: list[str] = []
    with inserted(pcscd, card) as slot:
        with slot.connection() as connection:
            personalizer.personalize(connection, job(profile, keystore, ICCID))  # PIN1 is the job's from here on
        journal = Journal.open(tmp_path / "journal.jsonl", "digest")
        for step in ("identify", "adm", "pin"):
            journal.record(ICCID, step)
        with slot.connection(trace=lambda command, _: commands.append(command)) as connection:
            connection.close(disposition="reset")  # a new power session: nothing verified
        with slot.connection(trace=lambda command, _: commands.append(command)) as connection:
            outcome = personalizer.personalize(connection, job(profile, keystore, ICCID), journal)
    assert outcome.steps_skipped == ("pin", "register")  # no registry: nothing to register
    assert commands.index("00200001") < commands.index("00200001 08 <8 bytes masked>")
    assert card.pin_tries(0x01) == 3


# --- the plan of the files step (pure) ---------------------------------------------------------------


def test_files_plan_selects_only_on_a_change_of_file(tmp_path: Path) -> None:
    keystore = make_keystore(tmp_path / "ks.json")
    profile = load(tmp_path)
    personalization = job(profile, keystore, ICCID).personalization
    plan = plan_files(personalization.files, card_files(profile.card_type["files"]))
    selects = [p for p in plan if p.kind == "select"]
    updates = [p for p in plan if p.kind != "select"]
    # One UPDATE per transparent file, one per record of a record file.
    assert len(updates) == sum(len(w.records) if w.records else 1 for w in personalization.files)
    # No READ, and never a SELECT of the file already current or two SELECTs in a row for one file.
    assert all(p.capdu[1] in (0xA4, 0xD6, 0xDC) for p in plan)
    current = "MF/EF.ICCID"  # where identify leaves the card
    for planned in plan:
        if planned.kind == "select":
            assert planned.path != current, f"SELECT of {planned.path}, which is current"
        current = planned.path
    # The USIM's files with an SFI are written without any SELECT: ADF, SPN, MSISDN, SMSP, then one per other DF file.
    assert len(selects) == 10
    assert selects[0].capdu.hex().upper().startswith("00A4040C10A0000000871002")
