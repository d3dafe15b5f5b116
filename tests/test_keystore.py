"""The key store file (scrypt + AES-256-GCM envelope) and the ``simwallet keys`` commands.

Stores are created with a tiny scrypt cost (``KDF_N``) so the tests stay fast;
the envelope records the cost, so nothing else changes. Every test that can
checks that no key byte leaks: not in output, ``repr``, error text, nor in
clear in the file.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from simwallet.applet.protocols.scp03 import kcv
from simwallet.gateway.diversify import card_ota_keys, card_scp03_keys, card_secrets, card_wallet_keys
from simwallet.gateway.keystore import (
    FAMILY_KEYS,
    KeyCheckError,
    KeyFamily,
    KeyStatus,
    KeyStore,
    KeyStoreDamaged,
    KeyStoreError,
    KeyStoreExists,
    KeyStoreNotFound,
    KeyVersionError,
    MasterKey,
    WrongPassphrase,
)
from simwallet.provisioning.cli.root import cli

KDF_N = 16
PASSPHRASE = "correct horse battery staple"
ICCID = "8986001234567890123"


def counting_rng() -> Callable[[int], bytes]:
    """A deterministic random source: each call returns the next bytes of a counter stream."""
    counter = itertools.count(1)
    return lambda n: bytes((next(counter) * 37 + i) % 256 for i in range(n))


class Clock:
    def __init__(self) -> None:
        self.now_us = 1_800_000_000_000_000

    def __call__(self) -> int:
        self.now_us += 1_000_000
        return self.now_us


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "keystore.json"


@pytest.fixture
def store(path: Path) -> KeyStore:
    ks = KeyStore.create(path, PASSPHRASE, kdf_n=KDF_N, rng=os.urandom, clock=Clock())
    for family in KeyFamily:
        ks.generate(family)
    return ks


def all_keys(store: KeyStore) -> list[bytes]:
    return [value for info in store.list() for _, value in store.version(info.family, info.version).material]


def assert_no_key_in(text: str | bytes, keys: list[bytes]) -> None:
    blob = text.encode() if isinstance(text, str) else text
    for key in keys:
        for form in (key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)):
            assert form not in blob


# --- the library ------------------------------------------------------------------------------


def test_create_open_and_one_active_version_per_family(store: KeyStore, path: Path) -> None:
    infos = store.list()
    assert [(i.family, i.version, i.status) for i in infos] == [
        (KeyFamily.SCP03, 0x30, KeyStatus.ACTIVE),
        (KeyFamily.OTA, 1, KeyStatus.ACTIVE),
        (KeyFamily.WALLET, 1, KeyStatus.ACTIVE),
        (KeyFamily.CARD_SECRETS, 1, KeyStatus.ACTIVE),
    ]
    again = KeyStore.open(path, PASSPHRASE)
    assert again.list() == infos
    assert again.kdf_n == KDF_N
    for family in KeyFamily:
        mine, theirs = store.active(family), again.active(family)
        assert [name for name, _ in mine.material] == list(FAMILY_KEYS[family])
        assert mine.kcvs == theirs.kcvs
        assert all(len(v) == 16 for _, v in theirs.material)


def test_generate_uses_the_injected_rng_and_clock(path: Path) -> None:
    clock = Clock()
    ks = KeyStore.create(path, PASSPHRASE, kdf_n=KDF_N, rng=os.urandom, clock=clock)
    rng = counting_rng()
    info = ks.generate("ota", rng)
    expected = counting_rng()
    key = ks.active("ota")
    assert [v for _, v in key.material] == [expected(16), expected(16), expected(16)]
    assert info.created_us == clock.now_us
    assert info.kcvs == tuple((name, kcv(v)) for name, v in key.material)


def test_rotation_retires_the_old_version_and_keeps_it(store: KeyStore, path: Path) -> None:
    old = store.active("scp03")
    new = store.generate("scp03")
    assert new.version == 0x31 and new.status is KeyStatus.ACTIVE
    assert store.active("scp03").version == 0x31
    kept = KeyStore.open(path, PASSPHRASE).version("scp03", 0x30)
    assert kept.status is KeyStatus.RETIRED
    assert kept.kcvs == old.kcvs
    # The scp03 version is the KVN the card's key set is loaded under.
    assert kept.scp03_keys().kvn == 0x30
    assert store.active("scp03").scp03_keys().kvn == 0x31
    assert sum(i.status is KeyStatus.ACTIVE for i in store.list() if i.family is KeyFamily.SCP03) == 1


def test_versions_run_out_at_7f(path: Path) -> None:
    ks = KeyStore.create(path, PASSPHRASE, kdf_n=KDF_N)
    master = bytes(range(16))
    keys = {name: master for name in FAMILY_KEYS[KeyFamily.WALLET]}
    ks.import_version("wallet", 0x7F, keys, {name: kcv(master) for name in keys})
    with pytest.raises(KeyVersionError, match="every version"):
        ks.generate("wallet")


def test_import_checks_kcvs_and_never_reuses_a_version(store: KeyStore, path: Path) -> None:
    enc, mac, dek = bytes.fromhex("404142434445464748494A4B4C4D4E4F"), bytes(range(16)), bytes(range(16, 32))
    keys = {"enc": enc, "mac": mac, "dek": dek}
    good = {"enc": bytes.fromhex("504A77"), "mac": kcv(mac), "dek": kcv(dek)}  # 504A77: the KCV of the GP default key 40..4F
    with pytest.raises(KeyCheckError) as info:
        store.import_version("scp03", 0x20, keys, {**good, "mac": bytes.fromhex("000000")})
    assert "mac" in str(info.value)
    assert_no_key_in(str(info.value), [enc, mac, dek])
    with pytest.raises(KeyCheckError, match="no key check value"):
        store.import_version("scp03", 0x20, keys, {"enc": good["enc"]})
    with pytest.raises(KeyVersionError, match="has the keys"):
        store.import_version("scp03", 0x20, {"enc": enc}, good)
    with pytest.raises(KeyVersionError, match="AES-128"):
        store.import_version("scp03", 0x20, {**keys, "dek": bytes(8)}, good)
    with pytest.raises(KeyVersionError, match="already has version"):
        store.import_version("scp03", 0x30, keys, good)
    with pytest.raises(KeyVersionError, match=r"1\.\.127"):
        store.import_version("scp03", 0x80, keys, good)

    info_retired = store.import_version("scp03", 0x20, keys, good, activate=False)
    assert info_retired.status is KeyStatus.RETIRED
    assert store.active("scp03").version == 0x30
    imported = store.import_version("scp03", 0x40, keys, good)
    assert imported.status is KeyStatus.ACTIVE
    reopened = KeyStore.open(path, PASSPHRASE)
    assert reopened.active("scp03").scp03_keys().enc == enc
    assert reopened.version("scp03", 0x30).status is KeyStatus.RETIRED
    # The next generated version continues above the highest one.
    assert reopened.generate("scp03").version == 0x41


def test_retire_rules(store: KeyStore, path: Path) -> None:
    with pytest.raises(KeyVersionError, match="rotate"):
        store.retire("ota", 1)
    store.generate("ota")
    assert store.retire("ota", 1).status is KeyStatus.RETIRED  # already retired by rotation: no change
    with pytest.raises(KeyVersionError, match="no version 9"):
        store.retire("ota", 9)
    # The emergency stop leaves the family without an active version.
    assert store.retire("ota", 2, leave_no_active=True).status is KeyStatus.RETIRED
    reopened = KeyStore.open(path, PASSPHRASE)
    with pytest.raises(KeyVersionError, match="no active version"):
        reopened.active("ota")
    assert reopened.version("ota", 2).status is KeyStatus.RETIRED
    assert reopened.generate("ota").version == 3


def test_unknown_family_is_named(store: KeyStore) -> None:
    with pytest.raises(KeyVersionError, match="families: scp03, ota, wallet, card-secrets"):
        store.active("ki")
    with pytest.raises(KeyVersionError, match="not a ota master key"):
        store.active("scp03").ota_keys()


def test_master_keys_feed_the_recipes(store: KeyStore) -> None:
    scp03 = card_scp03_keys(store.active("scp03").scp03_keys(), ICCID)
    ota = card_ota_keys(store.active("ota").ota_keys(), ICCID)
    wallet = card_wallet_keys(store.active("wallet").wallet_keys(), ICCID)
    secrets = card_secrets(store.active("card-secrets").secrets_master(), ICCID)
    assert scp03.kvn == 0x30
    assert len({scp03.enc, ota.kic, ota.kid, wallet.kic}) == 4
    assert len(secrets.adm1) == 8


def test_wrong_passphrase_is_a_clear_error(store: KeyStore, path: Path) -> None:
    with pytest.raises(WrongPassphrase) as info:
        KeyStore.open(path, PASSPHRASE + "!")
    assert str(info.value) == f"wrong passphrase for the key store {path}"
    assert info.value.code == "wrong_passphrase"


def test_passphrase_is_normalized_to_nfc(path: Path) -> None:
    composed = "café-passphrase"
    KeyStore.create(path, composed, kdf_n=KDF_N).generate("wallet")
    assert KeyStore.open(path, unicodedata.normalize("NFD", composed)).active("wallet").version == 1


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda d: d.update(ciphertext=base64.b64encode(b"\x00" + base64.b64decode(d["ciphertext"])[1:]).decode()), id="ciphertext"
        ),
        pytest.param(lambda d: d["cipher"].update(nonce="00" * 12), id="nonce"),
        pytest.param(lambda d: d.update(extra="x"), id="header-is-associated-data"),
    ],
)
def test_tampering_is_detected(store: KeyStore, path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    _edit(path, change)
    with pytest.raises(KeyStoreDamaged, match="integrity check"):
        KeyStore.open(path, PASSPHRASE)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"not json", "not JSON", id="not-json"),
        pytest.param(b"{}", "not a key store", id="empty-object"),
        pytest.param(b'{"format": "simwallet-keystore", "format_version": 2}', "not supported", id="future-format"),
        pytest.param(b"x" * (1024 * 1024 + 1), "larger than", id="huge"),
    ],
)
def test_not_a_key_store(path: Path, content: bytes, message: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(KeyStoreDamaged, match=message):
        KeyStore.open(path, PASSPHRASE)


def test_kdf_parameters_from_the_file_are_bounded(store: KeyStore, path: Path) -> None:
    _edit(path, lambda d: d["kdf"].update(n=2**30))
    with pytest.raises(KeyStoreDamaged, match="scrypt n"):
        KeyStore.open(path, PASSPHRASE)


def test_create_refuses_to_overwrite_and_weak_input(store: KeyStore, path: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyStoreExists):
        KeyStore.create(path, PASSPHRASE, kdf_n=KDF_N)
    with pytest.raises(KeyStoreError, match="at least 8"):
        KeyStore.create(tmp_path / "other.json", "short", kdf_n=KDF_N)
    with pytest.raises(KeyStoreError, match="power of two"):
        KeyStore.create(tmp_path / "other.json", PASSPHRASE, kdf_n=1000)
    with pytest.raises(KeyStoreNotFound, match="keys init"):
        KeyStore.open(tmp_path / "missing.json", PASSPHRASE)


def test_file_is_private_atomic_and_holds_no_key_in_clear(store: KeyStore, path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = path.stat().st_ino
    store.generate("card-secrets")
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keystore.json", "keystore.json.lock"]
    assert_no_key_in(path.read_bytes(), all_keys(store))
    header = json.loads(path.read_text())
    assert header["kdf"]["n"] == KDF_N and header["cipher"]["name"] == "aes-256-gcm"


def test_two_writers_lose_no_version(store: KeyStore, path: Path) -> None:
    first, second = KeyStore.open(path, PASSPHRASE), KeyStore.open(path, PASSPHRASE)
    assert first.generate("ota").version == 2
    # The second opened before the first wrote: its change applies to the file as it is now.
    assert second.generate("ota").version == 3
    assert second.generate("wallet").version == 2
    final = KeyStore.open(path, PASSPHRASE)
    assert [(i.version, i.status) for i in final.list() if i.family is KeyFamily.OTA] == [
        (1, KeyStatus.RETIRED),
        (2, KeyStatus.RETIRED),
        (3, KeyStatus.ACTIVE),
    ]


def test_nothing_secret_in_repr(store: KeyStore) -> None:
    keys = all_keys(store)
    for info in store.list():
        master: MasterKey = store.version(info.family, info.version)
        assert_no_key_in(repr(master) + str(master) + repr(info), keys)
        assert kcv(master.material[0][1]).hex().upper() in repr(master)
    assert_no_key_in(repr(store), keys)


# --- the command line ---------------------------------------------------------------------------


def run(tmp_path: Path, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
    base = ["--db", f"sqlite:///{tmp_path / 'db.sqlite3'}"]
    environment = {"SIMWALLET_KEYSTORE_PASSPHRASE": PASSPHRASE, "SIMWALLET_KEYSTORE": str(tmp_path / "ks.json")}
    environment.update(env or {})
    result = CliRunner().invoke(cli, [*base, *args], env=environment, catch_exceptions=False)
    assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def test_cli_lifecycle_never_shows_a_key(tmp_path: Path) -> None:
    outputs: list[str] = []

    def keep(result: Result) -> Result:
        outputs.append(result.stdout + result.stderr)
        return result

    init = json.loads(keep(run(tmp_path, "--json", "keys", "init", "--kdf-n", str(KDF_N))).stdout)
    assert init["created"] is True
    assert [v["family"] for v in init["versions"]] == ["scp03", "ota", "wallet", "card-secrets"]
    listed = json.loads(keep(run(tmp_path, "--json", "keys", "list")).stdout)
    assert [(v["family"], v["version"], v["status"]) for v in listed["versions"]] == [
        ("scp03", 48, "active"),
        ("ota", 1, "active"),
        ("wallet", 1, "active"),
        ("card-secrets", 1, "active"),
    ]
    assert set(listed["versions"][0]["kcvs"]) == {"enc", "mac", "dek"}

    rotated = json.loads(keep(run(tmp_path, "--json", "keys", "rotate", "scp03")).stdout)
    assert [(v["version"], v["status"]) for v in rotated["versions"]] == [(49, "active"), (48, "retired")]

    key_file = tmp_path / "wallet-v5.txt"
    wallet_kic, wallet_kid = bytes(range(16)), bytes(range(100, 116))
    key_file.write_text(
        f"# wallet master, ceremony 2026-11\nkic {wallet_kic.hex()} {kcv(wallet_kic).hex()}\n"
        f"KID {wallet_kid.hex().upper()} {kcv(wallet_kid).hex().upper()}  # second\n"
    )
    imported = json.loads(keep(run(tmp_path, "--json", "keys", "import", "wallet", "--version", "5", "--from-file", str(key_file))).stdout)
    assert imported["versions"][0]["kcvs"] == {"kic": kcv(wallet_kic).hex().upper(), "kid": kcv(wallet_kid).hex().upper()}

    retired = json.loads(keep(run(tmp_path, "--json", "keys", "retire", "wallet", "1")).stdout)
    assert retired["versions"][0]["status"] == "retired"
    table = keep(run(tmp_path, "keys", "list")).stdout
    assert "48 (0x30)" in table and "retired" in table and kcv(wallet_kic).hex().upper() in table

    store = KeyStore.open(tmp_path / "ks.json", PASSPHRASE)
    assert store.active("wallet").wallet_keys().kic == wallet_kic
    keys = all_keys(store)
    assert len(keys) == 3 * 2 + 3 + 2 * 2 + 1
    for text in outputs:
        assert_no_key_in(text, keys)
    assert_no_key_in((tmp_path / "ks.json").read_bytes(), keys)


def test_cli_import_with_a_wrong_kcv_writes_nothing(tmp_path: Path) -> None:
    run(tmp_path, "keys", "init", "--kdf-n", str(KDF_N))
    key = bytes(range(16))
    key_file = tmp_path / "secrets.txt"
    key_file.write_text(f"master {key.hex()} 000000\n")
    result = run(tmp_path, "--json", "keys", "import", "card-secrets", "--version", "7", "--from-file", str(key_file), code=1)
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "kcv_mismatch"
    assert_no_key_in(result.stdout + result.stderr, [key])
    assert [i.version for i in KeyStore.open(tmp_path / "ks.json", PASSPHRASE).list() if i.family is KeyFamily.CARD_SECRETS] == [1]


def test_cli_malformed_key_file_names_the_line_only(tmp_path: Path) -> None:
    run(tmp_path, "keys", "init", "--kdf-n", str(KDF_N))
    key_file = tmp_path / "bad.txt"
    key_file.write_text("kic 000102030405060708090a0b0c0d0e0f\n")
    result = run(tmp_path, "keys", "import", "wallet", "--version", "3", "--from-file", str(key_file), code=1)
    assert "line 1: expected NAME KEY KCV" in result.stderr
    assert "000102" not in result.stderr


def test_cli_wrong_passphrase_and_missing_store(tmp_path: Path) -> None:
    result = run(tmp_path, "keys", "list", code=1)
    assert "keystore_not_found" in result.stderr
    run(tmp_path, "keys", "init", "--kdf-n", str(KDF_N))
    result = run(tmp_path, "keys", "list", code=1, env={"SIMWALLET_KEYSTORE_PASSPHRASE": "not the passphrase"})
    assert result.stderr.strip().endswith("(wrong_passphrase)")
    result = run(tmp_path, "keys", "init", "--kdf-n", str(KDF_N), code=1)
    assert "keystore_exists" in result.stderr
    result = run(tmp_path, "keys", "rotate", "ki", code=2)


def test_cli_passphrase_file_and_keystore_option(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("from a file, not the env\n")
    other = tmp_path / "elsewhere" / "store.json"
    no_env = {"SIMWALLET_KEYSTORE_PASSPHRASE": ""}
    run(tmp_path, "keys", "--keystore", str(other), "--passphrase-file", str(secret), "init", "--kdf-n", str(KDF_N), env=no_env)
    assert KeyStore.open(other, "from a file, not the env").active("scp03").version == 0x30
    listed = json.loads(
        run(tmp_path, "--json", "keys", "--keystore", str(other), "--passphrase-file", str(secret), "list", env=no_env).stdout
    )
    assert listed["keystore"] == str(other)
    # Without file or environment the passphrase is prompted for (here: typed on stdin).
    result = CliRunner().invoke(
        cli, ["keys", "--keystore", str(other), "list"], input="from a file, not the env\n", env={"SIMWALLET_KEYSTORE_PASSPHRASE": ""}
    )
    assert result.exit_code == 0, result.output
    assert "scp03" in result.stdout
