"""``simwallet card``: readers, personalize, verify, read, diagnose, through click's runner against a private pcscd.

The card is the virtual UICC in reader 0 of the module's pcscd; the command
line reaches it through pyscard as it would a physical reader. PIN1 comes
from ``--pin1-file``, the key store passphrase from ``--passphrase-file``.
Errors are checked for their exit codes (1: refused by the card or the
input; 3: reader or card missing) and their JSON documents (``iccid``,
``step``, ``sw``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from card_helpers import CUSTOMER, IMSI, MSISDN, PASSPHRASE, PIN1, inserted, make_keystore, profile_path, store
from card_helpers import iccid as make_iccid
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from simwallet.gateway.keystore import KeyStore
from simwallet.provisioning.cli.root import cli
from simwallet.provisioning.diagnose import AtrError, parse_atr
from simwallet.provisioning.factory import manufacture_card
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.profile import load_profile

ICCID = make_iccid("898600112233440011")
OTHER_ICCID = make_iccid("898600112233440022")


class Station:
    """A service-hall station: a database, a key store with its passphrase file, PIN1 in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        self.keystore_path = tmp_path / "ks.json"
        self.keystore: KeyStore = make_keystore(self.keystore_path, scp03_versions=2)
        self.passphrase_file = tmp_path / "passphrase.txt"
        self.passphrase_file.write_text(PASSPHRASE + "\n", encoding="utf-8")
        self.pin1_file = tmp_path / "pin1.txt"
        self.pin1_file.write_text(PIN1 + "\n", encoding="utf-8")
        self.profile = profile_path(tmp_path)
        self.card_type = self.profile.parent.parent / "card-types" / "usim-wallet.yaml"

    def run(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
        result = CliRunner(env=env).invoke(cli, ["--db", self.db, *args], catch_exceptions=False)
        assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        assert "Traceback" not in result.output
        return result

    def run_json(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run("--json", *args, code=code, env=env).stdout)

    def keys(self) -> list[str]:
        return ["--keystore", str(self.keystore_path), "--passphrase-file", str(self.passphrase_file)]

    def values(self, iccid: str = ICCID) -> list[str]:
        return [
            "--profile",
            str(self.profile),
            "--iccid",
            iccid,
            "--imsi",
            IMSI,
            "--msisdn",
            MSISDN,
            "--customer",
            CUSTOMER,
            "--clerk",
            "zhang",
            "--pin1-file",
            str(self.pin1_file),
            *self.keys(),
        ]

    def card(self, iccid: str = ICCID, *, scp03_version: int = 0x30) -> Any:
        profile = load_profile(self.profile)
        return manufacture_card(profile.card_type, iccid, self.keystore, store(self.tmp_path), scp03_version=scp03_version)


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return Station(tmp_path)


def test_readers_lists_the_card(pcscd: PrivatePcscd, station: Station) -> None:
    card = station.card()
    with inserted(pcscd, card):
        document = station.run_json("card", "readers")
        table = station.run("card", "readers").stdout
    first = document["readers"][0]
    assert (first["index"], first["name"], first["card_present"]) == (0, pcscd.reader_names[0], True)
    assert first["atr"] == card.atr().hex().upper()
    assert document["readers"][1]["card_present"] is False
    assert pcscd.reader_names[0] in table and card.atr().hex().upper() in table


def test_personalize_verify_read_diagnose(pcscd: PrivatePcscd, station: Station, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(station.tmp_path / "state"))
    card = station.card()
    with inserted(pcscd, card):
        done = station.run_json("card", "personalize", "--reader", "0", *station.values())
        assert done["steps_run"] == ["identify", "adm", "pin", "files", "isd-keys", "ota-keys", "applet", "wallet", "register"]
        assert done["registered_new"] is True and done["key_versions"]["scp03"] == 0x31
        journal = Path(done["journal"])
        assert journal == station.tmp_path / "state" / "simwallet" / "journal" / f"{ICCID}.jsonl"
        # The same command again: the journal says the card is finished; only its ICCID is read.
        again = station.run_json("card", "personalize", "--reader", "0", *station.values())
        assert again["steps_run"] == ["identify"] and again["exchanges"] == 2
        assert station.run_json("card", "verify", "--reader", "0", *station.values()) == {"iccid": ICCID, "ok": True, "mismatches": []}
        report = station.run_json(
            "card", "read", "--reader", "0", "--card-type", str(station.card_type), "--pin1-file", str(station.pin1_file), *station.keys()
        )
        text = station.run("card", "read", "--reader", "0", "--card-type", str(station.card_type)).stdout
        diagnosis = station.run_json("card", "diagnose", "--reader", "0")
    assert report["iccid"] == ICCID
    files = {f["path"]: f for f in report["files"]}
    assert files["ADF.USIM/EF.IMSI"]["value"] == {"imsi": IMSI}
    assert files["ADF.USIM/EF.MSISDN"]["value"][0]["number"] == "86" + MSISDN
    assert report["applet"] == {
        "aid": "F073696D77616C6C65740101",
        "installed": True,
        "selectable": True,
        "personalized": True,
        "life_cycle": "0F",
    }
    assert [s["kvn"] for s in report["key_sets"]] == [0x31, 1]
    # Without PIN1 the PIN1-protected files are shown as such; EF.SPN is readable by anyone.
    assert "protected (SW 6982)" in text and "中国移动" in text
    assert diagnosis["ok"] is True and diagnosis["iccid"] == ICCID
    assert diagnosis["atr"]["protocols"] == ["T=0", "T=15"]
    assert diagnosis["trace"][0].startswith("00A40004023F0000 -> ")


def test_verify_reports_mismatches(pcscd: PrivatePcscd, station: Station) -> None:
    with inserted(pcscd, station.card()):
        station.run_json("card", "personalize", "--reader", "0", "--journal", str(station.tmp_path / "j.jsonl"), *station.values())
        values = station.values()
        values[values.index("--imsi") + 1] = "460009876543210"
        failed = station.run_json("card", "verify", "--reader", "0", *values, code=1)
    error = failed["error"]
    assert error["code"] == "verify_mismatch" and error["exit_code"] == 1
    items = {m["item"] for m in error["mismatches"]}
    assert "MF/ADF.USIM/EF.IMSI" in items and "registration imsi" in items


def test_wrong_card_is_exit_1_with_step_and_iccid(pcscd: PrivatePcscd, station: Station) -> None:
    with inserted(pcscd, station.card(OTHER_ICCID)):
        failed = station.run_json(
            "card", "personalize", "--reader", "0", "--journal", str(station.tmp_path / "j.jsonl"), *station.values(), code=1
        )
    error = failed["error"]
    assert (error["code"], error["iccid"], error["step"], error["sw"]) == ("wrong_card", ICCID, "identify", None)
    assert OTHER_ICCID in error["message"]


def test_card_refusal_names_step_and_sw(pcscd: PrivatePcscd, station: Station, tmp_path: Path) -> None:
    other = make_keystore(tmp_path / "other.json")  # another ADM1 on the card
    profile = load_profile(station.profile)
    card = manufacture_card(profile.card_type, ICCID, other, store(tmp_path))
    with inserted(pcscd, card):
        failed = station.run_json("card", "personalize", "--reader", "0", "--journal", str(tmp_path / "j.jsonl"), *station.values(), code=1)
        line = station.run(
            "card", "personalize", "--reader", "0", "--journal", str(tmp_path / "j2.jsonl"), *station.values(), code=1
        ).stderr
    error = failed["error"]
    assert (error["code"], error["step"], error["sw"], error["iccid"]) == ("personalization_failed", "adm", "63C9", ICCID)
    assert error["apdu"] == "0020000A 08 <8 bytes masked>"
    assert "step adm" in line and "SW 63C8" in line


def test_no_card_is_exit_3(pcscd: PrivatePcscd, station: Station) -> None:
    failed = station.run_json(
        "card", "personalize", "--reader", "1", "--journal", str(station.tmp_path / "j.jsonl"), *station.values(), code=3
    )
    assert failed["error"]["code"] == "no_card" and failed["error"]["exit_code"] == 3
    diagnosis = station.run_json("card", "diagnose", "--reader", "1", code=3)
    assert diagnosis["card_present"] is False and diagnosis["problems"]


def test_pin1_is_never_an_argument(station: Station) -> None:
    result = CliRunner().invoke(cli, ["card", "personalize", "--help"])
    assert result.exit_code == 0
    assert "--pin1-file" in result.stdout and "--pin1 " not in result.stdout
    bad = CliRunner().invoke(cli, ["card", "personalize", "--pin1", PIN1])
    assert bad.exit_code == 2


# --- the ATR parser of the diagnosis (pure) ----------------------------------------------------------

# The usim-wallet card type's ATR: TS 3B, T0 9F (TA1 TD1, 15 historical bytes), TA1 96, TD1 80 (T=0, TD2),
# TD2 1F (TA3, T=15), TA3 C7, then the historical bytes and TCK A5 (ISO/IEC 7816-3 §8.2; TS 102 221 §6.3).
USIM_WALLET_ATR = bytes.fromhex("3B9F96801FC78031A073BE21136743200718000001A5")


def test_parse_atr_of_the_card_type() -> None:
    atr = parse_atr(USIM_WALLET_ATR)
    assert (atr.convention, atr.protocols, atr.tck) == ("direct", (0, 15), 0xA5)
    assert atr.historical == bytes.fromhex("8031A073BE21136743200718000001")
    # A T=0-only ATR has no TCK.
    plain_t0 = parse_atr(bytes.fromhex("3B021234"))
    assert (plain_t0.protocols, plain_t0.historical, plain_t0.tck) == ((0,), bytes.fromhex("1234"), None)


@pytest.mark.parametrize("cut", range(1, len(USIM_WALLET_ATR)))
def test_parse_atr_refuses_a_cut_atr(cut: int) -> None:
    with pytest.raises(AtrError):
        parse_atr(USIM_WALLET_ATR[:cut])


def test_parse_atr_refuses_trailing_bytes_and_a_wrong_tck() -> None:
    with pytest.raises(AtrError):
        parse_atr(USIM_WALLET_ATR + b"\x00")
    with pytest.raises(AtrError):
        parse_atr(USIM_WALLET_ATR[:-1] + b"\xa4")


@given(st.binary(max_size=40))
def test_parse_atr_raises_only_atr_error(data: bytes) -> None:
    try:
        atr = parse_atr(data)
    except AtrError:
        return
    assert atr.raw == data and set(atr.protocols) <= set(range(16))
