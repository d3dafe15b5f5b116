"""The card emulator: ICCID ranges, dealing cards over readers, counting what cards see, and cards taking turns in real readers.

Pure parts (ICCID ranges, dealing, the counting wrapper) are tested without
PC/SC. The rest runs :class:`~simwallet.provisioning.emulate.Emulator` on the
module's private pcscd (the ``pcscd`` fixture) and reads the cards back
through pyscard; ``simwallet card emulate`` runs once as a child process with
a private pcscd of its own (``--pcscd private``) until its stacks are used up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from test_batch import CARD_TYPE, ICCID_START, PASSPHRASE, make_keystore

from simwallet.applet.card.image import CardStore
from simwallet.applet.protocols.efs import luhn_check_digit, luhn_valid
from simwallet.gateway.keystore import KeyStore
from simwallet.provisioning.emulate import (
    CountingCard,
    Emulator,
    EmulatorError,
    iccid_range,
    make_cards,
    split_round_robin,
)
from simwallet.provisioning.errors import ProvisioningStateError
from simwallet.provisioning.factory import card_type_mapping
from simwallet.provisioning.pcscd import CSOCK_ENV, PrivatePcscd, free_port_pair
from simwallet.provisioning.personalize import read_iccid
from simwallet.provisioning.reader import NoCardError, Pcsc
from simwallet.provisioning.values import check_iccid

SIMWALLET = str(Path(sys.executable).with_name("simwallet"))
# TS 102 221 §11.1.9: VERIFY PIN1 with a wrong PIN block answers 63CX; the counter is kept in the card image.
VERIFY_WRONG_PIN1 = bytes.fromhex("0020000108") + b"9999" + b"\xff" * 4
# Bounded waits, not timing assertions: pcscd polls presence every ~0.4 s.
PRESENCE_WAIT_S = 10.0
CHILD_WAIT_S = 30.0


# --- pure parts -------------------------------------------------------------------------------------------


def test_iccid_range_counts_the_body_up_with_a_luhn_digit_each() -> None:
    iccids = iccid_range(ICCID_START, 12)
    assert iccids[0] == ICCID_START
    assert len(set(iccids)) == 12
    assert all(luhn_valid(iccid) and check_iccid(iccid) == iccid for iccid in iccids)
    assert [int(iccid[:-1]) for iccid in iccids] == list(range(int(ICCID_START[:-1]), int(ICCID_START[:-1]) + 12))


@given(st.integers(min_value=0, max_value=10**17 - 1), st.integers(min_value=1, max_value=50))
def test_iccid_range_always_gives_valid_iccids(n: int, count: int) -> None:
    body = f"89{n:017d}"[:18]
    start = body + str(luhn_check_digit(body))
    try:
        iccids = iccid_range(start, count)
    except EmulatorError:
        assert not str(int(body) + count - 1).startswith("89")  # the range would leave the industry identifier 89
        return
    assert len(iccids) == count and all(check_iccid(iccid) == iccid and len(iccid) == 19 for iccid in iccids)


@pytest.mark.parametrize(
    ("start", "count", "needle"),
    [
        (ICCID_START[:-1] + str((int(ICCID_START[-1]) + 1) % 10), 1, "Luhn"),
        ("1234", 1, "19 or 20"),
        (ICCID_START, 0, "1 to"),
        ("899999999999999999" + str(luhn_check_digit("899999999999999999")), 5, "run past"),
    ],
)
def test_iccid_range_refuses_bad_input(start: str, count: int, needle: str) -> None:
    with pytest.raises(EmulatorError, match=needle):
        iccid_range(start, count)


@given(st.lists(st.integers(), max_size=40), st.integers(min_value=1, max_value=8))
def test_round_robin_deals_every_item_once_and_evenly(items: list[int], parts: int) -> None:
    stacks = split_round_robin(items, parts)
    assert len(stacks) == parts
    assert sorted(x for stack in stacks for x in stack) == sorted(items)
    assert max(map(len, stacks)) - min(map(len, stacks)) <= 1
    assert [stacks[i % parts][i // parts] for i in range(len(items))] == items


class Scripted:
    """A card that answers each C-APDU with the next scripted R-APDU."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def atr(self) -> bytes:
        return b"\x3b\x00"

    def power_on(self) -> None:
        self.calls.append("on")

    def power_off(self) -> None:
        self.calls.append("off")

    def reset(self) -> None:
        self.calls.append("reset")

    def apdu(self, capdu: bytes) -> bytes:
        return self.answers.pop(0)


def test_counting_card_counts_apdus_power_ons_and_only_accepted_writes() -> None:
    card = Scripted([b"\x90\x00", b"\x69\x82", b"\x61\x10", b"\x90\x00", b"\x91\x12"])
    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    counting = CountingCard(card, "89860000000000000001", 1, clock=lambda: next(ticks))
    counting.power_on()
    counting.apdu(bytes.fromhex("00D6000001FF"))  # UPDATE BINARY, 9000: a write
    counting.apdu(bytes.fromhex("00D6000001FF"))  # refused 6982: not counted
    counting.apdu(bytes.fromhex("80E2800001AA"))  # STORE DATA, 61XX: a write
    counting.apdu(bytes.fromhex("00A4000C023F00"))  # SELECT: not a write
    counting.apdu(bytes.fromhex("0024000110" + "31" * 16))  # CHANGE PIN, 91XX: a write
    counting.power_off()
    stats = counting.stats
    assert (stats.apdus, stats.power_ons, stats.writes) == (5, 1, {0xD6: 1, 0xE2: 1, 0x24: 1})
    assert stats.card_seconds == pytest.approx(5 * 0.5 - 0.25)
    assert stats.to_json()["writes"] == {"24": 1, "D6": 1, "E2": 1}
    assert card.calls == ["on", "off"]


def test_emulator_refuses_impossible_setups() -> None:
    with pytest.raises(EmulatorError, match="readers"):
        Emulator([], readers=0)
    with pytest.raises(EmulatorError, match="base port"):
        Emulator([], readers=2, base_port=0xFFFF)


# --- with pcscd ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return make_keystore(tmp_path_factory.mktemp("emulate-keys") / "keystore.json")


def read_turns(reader: str, count: int) -> list[str]:
    """Read the ICCID of the card in ``reader`` and unpower it, ``count`` times."""
    seen = []
    with Pcsc() as pcsc:
        for _ in range(count):
            pcsc.wait_for_card(reader, PRESENCE_WAIT_S)
            with pcsc.connect(reader) as connection:
                seen.append(read_iccid(connection))
                connection.close(disposition="unpower")
    return seen


def test_cards_take_turns_and_the_reader_empties_after_the_last(tmp_path: Path, pcscd: PrivatePcscd, keystore: KeyStore) -> None:
    iccids = iccid_range(ICCID_START, 5)
    cards = make_cards(card_type_mapping(CARD_TYPE), iccids, keystore, CardStore(tmp_path))
    emptied: list[bool] = []
    with Emulator(cards, readers=2, base_port=pcscd.base_port, on_empty=lambda: emptied.append(True)) as emulator:
        assert emulator.wait_connected(PRESENCE_WAIT_S)
        assert [emulator.remaining(0), emulator.remaining(1)] == [3, 2]
        assert read_turns(pcscd.reader_names[1], 2) == iccids[1::2]
        assert read_turns(pcscd.reader_names[0], 3) == iccids[0::2]
        assert emulator.wait_empty(PRESENCE_WAIT_S) and emulator.empty and emptied == [True]
        assert emulator.current_iccid(0) is None and emulator.remaining(0) == 0
        with Pcsc() as pcsc:
            pcsc.wait_for_card(pcscd.reader_names[0], PRESENCE_WAIT_S, present=False)
            with pytest.raises(NoCardError):
                pcsc.wait_for_card(pcscd.reader_names[0], 0.5)
    stats = {s.iccid: s for s in emulator.stats()}
    # read_iccid is SELECT EF.ICCID and READ BINARY: two APDUs, no write.
    assert all(stats[iccid].apdus == 2 and stats[iccid].write_count == 0 for iccid in iccids)
    assert [s.reader for s in emulator.stats()] == [0, 0, 0, 1, 1]


def test_a_card_only_looked_at_stays_in_the_reader(pcscd: PrivatePcscd, keystore: KeyStore) -> None:
    iccids = iccid_range(ICCID_START, 2)
    cards = make_cards(card_type_mapping(CARD_TYPE), iccids, keystore, None)
    reader = pcscd.reader_names[0]
    with Emulator(cards, readers=1, base_port=pcscd.base_port) as emulator, Pcsc() as pcsc:
        pcsc.wait_for_card(reader, PRESENCE_WAIT_S)
        # Connected and unpowered without a single APDU: the feeder keeps the card in the contacts.
        pcsc.connect(reader).close(disposition="unpower")
        assert emulator.current_iccid(0) == iccids[0]
        assert read_turns(reader, 2) == iccids


def test_cards_come_back_from_the_state_directory_as_they_were_left(tmp_path: Path, keystore: KeyStore) -> None:
    iccids = iccid_range(ICCID_START, 2)
    store = CardStore(tmp_path)
    first = make_cards(card_type_mapping(CARD_TYPE), iccids, keystore, store)
    tries = first[0].pin_tries(0x01)
    assert first[0].apdu(VERIFY_WRONG_PIN1)[:1] == b"\x63"
    again = make_cards(card_type_mapping(CARD_TYPE), iccids, None, store)  # no key store needed to reload
    assert again[0].pin_tries(0x01) == tries - 1
    assert again[1].pin_tries(0x01) == tries
    with pytest.raises(EmulatorError, match="no key store"):
        make_cards(card_type_mapping(CARD_TYPE), iccid_range(iccids[-1], 2), None, store)


def test_pull_and_reinsert_are_refused_out_of_order(pcscd: PrivatePcscd, keystore: KeyStore) -> None:
    cards = make_cards(card_type_mapping(CARD_TYPE), iccid_range(ICCID_START, 1), keystore, None)
    naps: list[float] = []
    with Emulator(cards, readers=1, base_port=pcscd.base_port, sleep=naps.append, reinsert_delay_s=0.5) as emulator:
        with pytest.raises(ProvisioningStateError, match="no card was pulled"):
            emulator.reinsert(0)
        assert emulator.pull(0) == cards[0].iccid
        with pytest.raises(ProvisioningStateError, match="no card to pull"):
            emulator.pull(0)
        emulator.reinsert(0)
        assert len(naps) == 1 and 0 < naps[0] <= 0.5  # the card stays out for a presence poll
        assert emulator.current_iccid(0) == cards[0].iccid


# --- the command ------------------------------------------------------------------------------------------------


def test_emulate_usage_errors_exit_2(tmp_path: Path) -> None:
    from simwallet.provisioning.cli.root import cli

    runner = CliRunner()
    for args in (
        ["card", "emulate", "--count", "2"],
        ["card", "emulate", "--readers", "3", "--pcscd", "private", "--count", "1", "--iccid-start", ICCID_START],
        ["card", "emulate"],
        ["card", "emulate", "--count", "1", "--iccid-start", ICCID_START, "--card-type", "usim-wallet", "--profile", "wallet-cmcc-zh"],
    ):
        result = runner.invoke(cli, ["--db", f"sqlite:///{tmp_path / 'db.sqlite3'}", *args])
        assert result.exit_code == 2, (args, result.output)


def test_emulate_with_a_private_pcscd_runs_until_its_stacks_are_used_up(tmp_path: Path, keystore: KeyStore) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    ready = tmp_path / "ready.json"
    stats = tmp_path / "stats.json"
    command = [
        SIMWALLET, "--json", "card", "emulate", "--readers", "2", "--count", "3", "--iccid-start", ICCID_START,
        "--state-dir", str(tmp_path / "cards"), "--pcscd", "private", "--base-port", str(free_port_pair()), "--profile", "wallet-cmcc-zh",
        "--keystore", str(keystore.path), "--passphrase-file", str(passphrase), "--exit-when-empty",
        "--ready-file", str(ready), "--stats", str(stats),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != CSOCK_ENV}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + CHILD_WAIT_S
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), process.communicate(timeout=CHILD_WAIT_S)
        doc: dict[str, Any] = json.loads(ready.read_text())
        assert doc["cards"] == 3 and len(doc["ports"]) == 2
        # This process is bound to the test session's pcscd: a child reads the cards through the emulator's own.
        client = (
            "import sys\n"
            "from simwallet.provisioning.reader import Pcsc\n"
            "from simwallet.provisioning.personalize import read_iccid\n"
            "with Pcsc() as p:\n"
            "    for name, turns in zip(p.reader_names(), (2, 1)):\n"
            "        for _ in range(turns):\n"
            "            p.wait_for_card(name, 10)\n"
            "            c = p.connect(name); print(read_iccid(c)); c.close(disposition='unpower')\n"
        )
        read = subprocess.run(
            [sys.executable, "-c", client], env={**env, CSOCK_ENV: doc[CSOCK_ENV]}, capture_output=True, timeout=CHILD_WAIT_S, check=True
        )
        out, err = process.communicate(timeout=CHILD_WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode(errors="replace")
    assert read.stdout.decode().split() == [*iccid_range(ICCID_START, 3)[0::2], iccid_range(ICCID_START, 3)[1]]
    assert f"{CSOCK_ENV}=" in err.decode()  # under --json the socket line goes to stderr
    summary = json.loads(out)
    assert summary["empty"] is True
    assert [card["apdus"] for card in summary["cards"]] == [2, 2, 2]
    assert json.loads(stats.read_text())["cards"] == summary["cards"]
    assert sorted(p.stem for p in (tmp_path / "cards").glob("*.json")) == iccid_range(ICCID_START, 3)
