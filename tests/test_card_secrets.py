"""No secret leaves the station: personalize, read, verify and diagnose under ``--json`` and ``-vv`` print, log
and journal no PIN1, PUK, ADM1 code, and no byte of any key.

Everything the commands produce is collected — stdout and stderr of click's
runner, every log record (``caplog`` at DEBUG, the card side's own logs
included: the virtual card runs in this process), and the journal file —
and searched for each secret in every form it could take: the digits, the
hex of their ASCII (a PIN block in an APDU dump), and each key in upper and
lower case hex. The keys are the key store's master keys of every family
and version and every key derived for this card: the ISD key sets of both
``scp03`` versions, the OTA KIc/KID/DEK, the wallet's KIc/KID. The card image
directory is not searched: it is the card's own memory.

A failing run is searched too: a card refusing ADM1 makes the error path
print the APDU (masked) and the status word.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from card_helpers import CUSTOMER, IMSI, MSISDN, PASSPHRASE, PIN1, inserted, make_keystore, profile_path, store
from card_helpers import iccid as make_iccid
from click.testing import CliRunner, Result

from simwallet.gateway.diversify import card_ota_keys, card_scp03_keys, card_secrets, card_wallet_keys
from simwallet.gateway.keystore import KeyFamily, KeyStore
from simwallet.provisioning.cli.root import cli
from simwallet.provisioning.factory import manufacture_card
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.profile import load_profile

ICCID = make_iccid("898600112233449988")


def secret_forms(keystore: KeyStore, iccid: str) -> dict[str, str]:
    """Every secret of the card and the key store, by a name for the failure message, in every printable form."""
    secrets: dict[str, bytes] = {}
    for family in KeyFamily:
        for info in keystore.list():
            if info.family is not family:
                continue
            for name, value in keystore.version(family, info.version).material:
                secrets[f"master {family.value} v{info.version} {name}"] = value
    for info in keystore.list():
        if info.family is KeyFamily.SCP03:
            isd = card_scp03_keys(keystore.version(KeyFamily.SCP03, info.version).scp03_keys(), iccid)
            secrets |= {
                f"ISD {info.version:#04x} enc": isd.enc,
                f"ISD {info.version:#04x} mac": isd.mac,
                f"ISD {info.version:#04x} dek": isd.dek,
            }
    ota = card_ota_keys(keystore.active(KeyFamily.OTA).ota_keys(), iccid)
    wallet = card_wallet_keys(keystore.active(KeyFamily.WALLET).wallet_keys(), iccid)
    secrets |= {"OTA KIc": ota.kic, "OTA KID": ota.kid, "OTA DEK": ota.dek, "wallet KIc": wallet.kic, "wallet KID": wallet.kid}
    values = card_secrets(keystore.active(KeyFamily.CARD_SECRETS).secrets_master(), iccid)
    # PIN2 is left out: personalization never uses it, and its 4 digits turn up by chance in any long number.
    digits = {"PIN1": PIN1, "PUK1": values.puk1, "ADM1": values.adm1, "PUK2": values.puk2}
    forms: dict[str, str] = {}
    for name, key in secrets.items():
        forms[f"{name} (hex)"] = key.hex().upper()
        forms[f"{name} (hex, lower case)"] = key.hex()
    for name, text in digits.items():
        forms[name] = text
        forms[f"{name} (PIN block hex)"] = text.encode().hex().upper()
    return forms


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_no_secret_in_output_logs_or_journal(pcscd: PrivatePcscd, tmp_path: Path, debug_logs: pytest.LogCaptureFixture) -> None:
    keystore_path = tmp_path / "ks.json"
    keystore = make_keystore(keystore_path, scp03_versions=2)
    passphrase_file = tmp_path / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE + "\n", encoding="utf-8")
    pin1_file = tmp_path / "pin1.txt"
    pin1_file.write_text(PIN1 + "\n", encoding="utf-8")
    profile = profile_path(tmp_path)
    journal = tmp_path / "journal.jsonl"
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    keys = ["--keystore", str(keystore_path), "--passphrase-file", str(passphrase_file)]
    values = [
        "--profile",
        str(profile),
        "--iccid",
        ICCID,
        "--imsi",
        IMSI,
        "--msisdn",
        MSISDN,
        "--customer",
        CUSTOMER,
        "--clerk",
        "zhang",
        "--pin1-file",
        str(pin1_file),
        *keys,
    ]
    card_type = str(profile.parent.parent / "card-types" / "usim-wallet.yaml")
    card = manufacture_card(load_profile(profile).card_type, ICCID, keystore, store(tmp_path), scp03_version=0x30)
    results: list[Result] = []

    def run(*args: str, code: int = 0) -> None:
        result = CliRunner().invoke(cli, ["--db", db, "-vv", *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        results.append(result)

    with inserted(pcscd, card):
        run("--json", "card", "personalize", "--reader", "0", "--journal", str(journal), *values)
        run("card", "personalize", "--reader", "0", "--journal", str(tmp_path / "again.jsonl"), *values)
        run("--json", "card", "verify", "--reader", "0", *values)
        run("--json", "card", "read", "--reader", "0", "--card-type", card_type, "--pin1-file", str(pin1_file), *keys)
        run("card", "read", "--reader", "0", "--card-type", card_type, "--pin1-file", str(pin1_file), *keys)
        run("--json", "card", "diagnose", "--reader", "0")
        run("card", "diagnose", "--reader", "0")
    # A failing run: another operator's card (ADM1 refused) prints its error path.
    other = make_keystore(tmp_path / "other.json")
    refused = manufacture_card(load_profile(profile).card_type, ICCID, other, store(tmp_path / "other"))
    with inserted(pcscd, refused):
        run("--json", "card", "personalize", "--reader", "0", "--journal", str(tmp_path / "refused.jsonl"), *values, code=1)
        run("card", "personalize", "--reader", "0", "--journal", str(tmp_path / "refused2.jsonl"), *values, code=1)
    produced = "\n".join(
        [
            *(r.stdout + "\n" + r.stderr for r in results),
            debug_logs.text,
            *(record.getMessage() for record in debug_logs.records),
            # The journal's timestamps are clock readings, not secrets; digits could match a PIN by chance.
            *(re.sub(r'"ts":[0-9.e+-]+', '"ts":0', path.read_text(encoding="utf-8")) for path in tmp_path.glob("*.jsonl")),
        ]
    )
    # The run did produce the things searched: a JSON result, debug logs, the masked trace, a journal.
    assert '"steps_run"' in produced and "step files" in produced and "<8 bytes masked>" in produced
    assert '"event":"done"' in produced
    forms = secret_forms(keystore, ICCID) | {f"other {k}": v for k, v in secret_forms(other, ICCID).items()}
    leaked = sorted(name for name, form in forms.items() if form in produced)
    assert leaked == []
