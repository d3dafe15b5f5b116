"""`simwallet smsc run`, `simwallet gateway run` and `simwallet wallet` as an operator runs them: separate processes, real SMPP.

A customer locks the wallet with three wrong PINs by SMS, the service hall
unlocks it with ``wallet unlock``, the next command works; ``/health`` and
``/metrics`` answer while the gateway runs; SIGTERM stops it cleanly (exit 0,
unbound from the SMSC).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from gateway_helpers import fund, open_bank, register

from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.keystore import KeyFamily, KeyStore
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.smsc.phone import PhoneClient
from simwallet.gateway.store.engine import open_engine
from simwallet.provisioning.cli.root import cli

A = "8613800138000"
PIN, WRONG = "468135", "913572"
PASSPHRASE = "gateway test passphrase"
CODE = "from simwallet.provisioning.cli import main; main()"
WAIT_S = 10.0


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    """A database with one registered, funded customer; a key store; the passphrase and PIN files."""
    db = f"sqlite:///{tmp_path / 'wallet.sqlite3'}"
    engine = open_engine(db)
    ledger = Ledger(engine)
    register(CardRegistry(engine, ledger), "8986001234567890000", "460001234567000", A, "customer:A1")
    open_bank(ledger)
    fund(ledger, "fund", "customer:A1", 50_000)
    engine.dispose()
    keystore = KeyStore.create(tmp_path / "keystore.json", PASSPHRASE, kdf_n=2**10)
    for family in KeyFamily:
        keystore.generate(family)
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    (tmp_path / "pin").write_text(PIN + "\n")
    (tmp_path / "smsc-password").write_text("gwsecret\n")
    keys = ["--keystore", str(tmp_path / "keystore.json"), "--passphrase-file", str(tmp_path / "passphrase")]
    return {"db": db, "keys": keys, "tmp": tmp_path}


def wallet(site: dict[str, Any], *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--db", site["db"], "--json", "wallet", *args, *site["keys"]])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_wallet_pin_commands(site: dict[str, Any]) -> None:
    assert wallet(site, "pin-state", A) == {"msisdn": A, "customer": "customer:A1", "pin_set": False, "tries_left": 3, "locked": False}
    assert wallet(site, "pin-set", A, "--pin-file", str(site["tmp"] / "pin"))["pin_set"] is True
    result = CliRunner().invoke(cli, ["--db", site["db"], "wallet", "pin-state", "8613900000000", *site["keys"]])
    assert result.exit_code == 1 and "no card is registered" in result.output
    (site["tmp"] / "weak").write_text("123456\n")
    result = CliRunner().invoke(cli, ["--db", site["db"], "wallet", "pin-set", A, "--pin-file", str(site["tmp"] / "weak"), *site["keys"]])
    assert result.exit_code == 1 and "123456" not in result.output


def test_operator_runs_smsc_and_gateway_and_unlocks_a_wallet(site: dict[str, Any]) -> None:
    wallet(site, "pin-set", A, "--pin-file", str(site["tmp"] / "pin"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    smsc = subprocess.Popen(
        [sys.executable, "-c", CODE, "smsc", "run", "--port", "0", "--state-dir", str(site["tmp"] / "smsc"),
         "--account", "gateway:gwsecret:esme:10658000", "--account", "phones:phsecret:phones"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    gateway = None
    try:
        assert smsc.stdout is not None
        match = re.fullmatch(r"smsc listening on 127\.0\.0\.1:(\d+)\n", smsc.stdout.readline())
        assert match
        port = int(match.group(1))
        gateway = subprocess.Popen(
            [sys.executable, "-c", CODE, "--db", site["db"], "gateway", "run", "--smsc", f"127.0.0.1:{port}",
             "--password-file", str(site["tmp"] / "smsc-password"), "--metrics-port", "0", *site["keys"]],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert gateway.stderr is not None
        ready = gateway.stderr.readline()
        metrics = re.search(r"metrics on port (\d+)", ready)
        assert metrics, ready

        async def scenario() -> list[str]:
            async with PhoneClient("127.0.0.1", port, "phones", "phsecret", A) as phone:

                async def ask(text: str) -> str:
                    await phone.send_text(A, "10658000", text)
                    return (await phone.next_message(A, WAIT_S)).text or ""

                texts = [await ask(f"BAL {WRONG}") for _ in range(3)]
                texts.append(await ask(f"BAL {PIN}"))
                health = await http(int(metrics.group(1)), "/health")
                texts.append(health)
                return texts

        texts = asyncio.run(scenario())
        assert "locked" in texts[2].lower() and "locked" in texts[3].lower()
        assert texts[4].startswith("HTTP/1.0 200")
        state = wallet(site, "pin-state", A)
        assert state["locked"] is True and state["tries_left"] == 0
        assert wallet(site, "unlock", A)["locked"] is False

        async def after() -> str:
            async with PhoneClient("127.0.0.1", port, "phones", "phsecret", A) as phone:
                await phone.send_text(A, "10658000", f"余额 {PIN}")
                return (await phone.next_message(A, WAIT_S)).text or ""

        assert "500.00元" in asyncio.run(after())
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(WAIT_S) == 0
        rest = gateway.stderr.read()
        assert PIN not in rest and WRONG not in rest
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
        smsc.send_signal(signal.SIGTERM)
        smsc.wait(WAIT_S)


async def http(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.decode()
