"""The card image store: changes go to a log, snapshots roll the generation, torn and stale log lines are handled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from simwallet.applet.card.image import CardStore, ImageError
from simwallet.applet.card.pins import CardSecrets
from simwallet.applet.card.spec import CardSpec
from simwallet.applet.card.uicc import Uicc

ROOT = Path(__file__).resolve().parent.parent
ICCID = "8988211000000430010"
SECRETS = CardSecrets(pin1=b"1234", puk1=b"12345678", adm1=b"87654321", pin2=b"5678", puk2=b"11223344")
SELECT_IMSI_PATH = bytes.fromhex("00A4080C047F206F07")  # DF.GSM/EF.IMSI


def spec() -> CardSpec:
    return CardSpec.from_mapping(yaml.safe_load((ROOT / "cards" / "card-types" / "usim-wallet.yaml").read_text())["card"])


def adm_and_write(card: Uicc, imsi: bytes) -> None:
    assert card.apdu(bytes.fromhex("0020000A08") + b"87654321")[-2:] == b"\x90\x00"
    card.apdu(SELECT_IMSI_PATH)
    assert card.apdu(bytes.fromhex("00D6000009") + imsi)[-2:] == b"\x90\x00"


def test_changes_go_to_the_log_and_come_back(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    snapshot = store.path(ICCID).read_bytes()
    imsi = bytes.fromhex("082943001234567890")
    adm_and_write(card, imsi)
    assert store.path(ICCID).read_bytes() == snapshot  # no rewrite of the whole image
    lines = store.log_path(ICCID).read_bytes().splitlines()
    assert lines and all(json.loads(line)["g"] == 0 for line in lines)
    assert Uicc.load(CardStore(tmp_path), ICCID, spec()).file_content("DF.GSM/EF.IMSI") == imsi


def test_snapshot_every_n_lines_rolls_the_generation(tmp_path: Path) -> None:
    store = CardStore(tmp_path, log_records_max=3)
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    for n in range(10):
        adm_and_write(card, bytes([8, 0x29, 0x43, 0, 0, 0, 0, 0, n]))
    assert json.loads(store.path(ICCID).read_text())["generation"] >= 2
    assert len(store.log_path(ICCID).read_bytes().splitlines()) <= 3
    assert Uicc.load(CardStore(tmp_path), ICCID, spec()).file_content("DF.GSM/EF.IMSI")[-1] == 9


def test_stale_and_torn_log_lines(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    adm_and_write(card, bytes.fromhex("082943001234567890"))
    log = store.log_path(ICCID)
    # A line of an older generation (left by a kill between a snapshot and the truncation) is ignored.
    stale = {"g": 99, "files": {"MF/DF.GSM/EF.IMSI": {"active": True, "data": "00" * 9}}}
    torn = b'{"g":0,"files":{"MF/ADF.USIM/EF.IM'
    log.write_bytes(log.read_bytes() + json.dumps(stale).encode() + b"\n" + torn)
    loaded = Uicc.load(CardStore(tmp_path), ICCID, spec())
    assert loaded.file_content("DF.GSM/EF.IMSI") == bytes.fromhex("082943001234567890")
    # A malformed line before the last is corruption.
    log.write_bytes(b"garbage\n" + log.read_bytes())
    with pytest.raises(ImageError, match=r"\.log:1"):
        CardStore(tmp_path).load(ICCID)


def test_pin_counters_are_logged(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    assert card.apdu(bytes.fromhex("0020000108") + b"0000\xff\xff\xff\xff") == b"\x63\xc2"
    assert Uicc.load(CardStore(tmp_path), ICCID, spec()).pin_tries(0x01) == 2
    assert b"1234" not in store.log_path(ICCID).read_bytes() + store.path(ICCID).read_bytes()


def test_a_card_that_cannot_be_assembled_leaves_no_image(tmp_path: Path) -> None:
    from simwallet.applet.card import virtual
    from simwallet.applet.card.isd_spec import IsdSpecError
    from simwallet.applet.protocols.scp03 import StaticKeys

    doc = yaml.safe_load((ROOT / "cards" / "card-types" / "usim-wallet.yaml").read_text())["card"]
    kind = virtual.CardType.from_mapping(doc)
    store = CardStore(tmp_path)
    keys = StaticKeys(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48)), kvn=0x30)
    stray_module = {bytes.fromhex("F0000000000001"): lambda *args: None}  # a factory for a module no load file has
    with pytest.raises(IsdSpecError):
        virtual.manufacture(kind, ICCID, SECRETS, keys, store, applets=stray_module)  # type: ignore[arg-type]
    assert not store.exists(ICCID) and not store.log_path(ICCID).exists()
    virtual.manufacture(kind, ICCID, SECRETS, keys, store)  # the ICCID is free for a good card
    assert store.exists(ICCID)


def test_records_and_life_cycle_written_since_the_last_save_come_back(tmp_path: Path) -> None:
    # Each save renews only the entries of the files written since the one before (FileSystem.touch).
    store = CardStore(tmp_path)
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    record = bytes(range(30))
    assert card.apdu(bytes.fromhex("0020000A08") + b"87654321")[-2:] == b"\x90\x00"
    assert card.apdu(bytes.fromhex("002000010831323334FFFFFFFF"))[-2:] == b"\x90\x00"
    assert card.apdu(bytes.fromhex("00A4080C047F106F3A"))[-2:] == b"\x90\x00"  # DF.TELECOM/EF.ADN
    assert card.apdu(bytes.fromhex("00DC01041E") + record)[-2:] == b"\x90\x00"
    adm_and_write(card, bytes.fromhex("082943001234567890"))
    assert card.apdu(bytes.fromhex("00A4080C047F106F3A"))[-2:] == b"\x90\x00"
    assert card.apdu(bytes.fromhex("00040000"))[-2:] == b"\x90\x00"  # DEACTIVATE FILE (the current EF)
    again = Uicc.load(CardStore(tmp_path), ICCID, spec())
    assert again.file_records("DF.TELECOM/EF.ADN")[0] == record
    assert again.file_content("DF.GSM/EF.IMSI") == bytes.fromhex("082943001234567890")
    assert again.fs.file("DF.TELECOM/EF.ADN").active is False


def test_a_command_logs_only_what_it_changed(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    adm_and_write(card, bytes.fromhex("082943001234567890"))
    log = store.log_path(ICCID)
    before = log.read_bytes()
    assert card.apdu(bytes.fromhex("00D6000009") + bytes.fromhex("082943001234567891"))[-2:] == b"\x90\x00"
    line = json.loads(log.read_bytes()[len(before) :])
    assert line == {"g": 0, "files": {"MF/DF.GSM/EF.IMSI": {"active": True, "data": "082943001234567891"}}}
    # The same bytes again change nothing: no line.
    written = log.read_bytes()
    assert card.apdu(bytes.fromhex("00D6000009") + bytes.fromhex("082943001234567891"))[-2:] == b"\x90\x00"
    assert log.read_bytes() == written
    assert Uicc.load(CardStore(tmp_path), ICCID, spec()).file_content("DF.GSM/EF.IMSI")[-1] == 0x91


def test_save_changes_asks_for_the_whole_image_when_it_has_none_or_a_snapshot_is_due(tmp_path: Path) -> None:
    store = CardStore(tmp_path, log_records_max=1)
    change = {"files": {"MF/DF.GSM/EF.IMSI": {"active": True, "data": "00" * 9}}}
    assert store.save_changes(ICCID, change) is False  # this store has written no image of the card
    card = Uicc.manufacture(spec(), ICCID, SECRETS, store)
    assert store.save_changes(ICCID, change) is True
    assert store.save_changes(ICCID, {"files": {"MF/DF.GSM/EF.IMSI": {"active": True, "data": "11" * 9}}}) is False  # log full
    assert len(store.log_path(ICCID).read_bytes().splitlines()) == 1
    assert Uicc.load(CardStore(tmp_path), ICCID, spec()).file_content("DF.GSM/EF.IMSI") == bytes(9)
    assert card.iccid == ICCID


def test_a_loaded_card_logs_its_first_change_too(tmp_path: Path) -> None:
    Uicc.manufacture(spec(), ICCID, SECRETS, CardStore(tmp_path))
    store = CardStore(tmp_path)
    card = Uicc.load(store, ICCID, spec())  # another process, say: this store has not written the card yet
    snapshot = store.path(ICCID).read_bytes()
    adm_and_write(card, bytes.fromhex("082943001234567890"))
    assert store.path(ICCID).read_bytes() == snapshot
    [line] = store.log_path(ICCID).read_bytes().splitlines()
    assert json.loads(line)["files"] == {"MF/DF.GSM/EF.IMSI": {"active": True, "data": "082943001234567890"}}
