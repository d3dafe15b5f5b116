"""``simwallet keys``: the encrypted key store of master keys (``gateway/keystore.py``).

Families ``scp03`` (GlobalPlatform SCP03 ISD keys; the version is the GP key
version number), ``ota`` (TS 102 225 KIc/KID/DEK), ``wallet`` (the STK wallet
applet's KIc/KID) and ``card-secrets`` (ADM1, PUK1, PIN2, PUK2). Cards get
keys diversified from the active version by their ICCID
(``gateway/diversify.py``).

Where the store is: ``--keystore``, ``$SIMWALLET_KEYSTORE``, then
``keystore.json`` in the user data directory. The passphrase: the first line
of ``--passphrase-file``, ``$SIMWALLET_KEYSTORE_PASSPHRASE``, or a prompt.
Commands show key check values (KCV, GP Amendment D: AES of sixteen ``01``
bytes, first 3 bytes), never key bytes.

``keys import`` reads a text file with one key per line, ``NAME KEY KCV`` in
hex (``#`` starts a comment)::

    enc 404142434445464748494A4B4C4D4E4F 504A77
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext

if TYPE_CHECKING:
    from simwallet.gateway.keystore import KeyInfo, KeyStore

PASSPHRASE_ENV = "SIMWALLET_KEYSTORE_PASSPHRASE"  # noqa: S105 - the name of a variable, not a passphrase
# A passphrase file holds one line; a key file a few dozen.
PASSPHRASE_FILE_BYTES_MAX = 4096
KEY_FILE_BYTES_MAX = 64 * 1024

# Families by name, without importing the key store (and cryptography) for --help.
FAMILIES = ("scp03", "ota", "wallet", "card-secrets")
FAMILY = click.Choice(FAMILIES)
VERSION = click.IntRange(1, 0x7F)


@dataclass(frozen=True)
class KeysContext:
    """Where the key store is and where its passphrase comes from; built once by the ``keys`` group."""

    app: AppContext
    path: Path
    passphrase_file: Path | None

    def passphrase(self, *, new: bool = False) -> str:
        """From the file, the environment, or a prompt (asked twice for a new store)."""
        if self.passphrase_file is not None:
            return read_passphrase_file(self.passphrase_file, json_output=self.app.json)
        env = os.environ.get(PASSPHRASE_ENV)
        if env:
            return env
        return str(click.prompt("Key store passphrase", hide_input=True, confirmation_prompt=new, err=True))

    def open(self) -> KeyStore:
        from simwallet.gateway.keystore import KeyStore

        return KeyStore.open(self.path, self.passphrase())


pass_keys = click.make_pass_decorator(KeysContext)


def read_passphrase_file(path: Path, *, json_output: bool) -> str:
    """The first line of a passphrase file (its line break dropped)."""
    try:
        with path.open("rb") as file:
            data = file.read(PASSPHRASE_FILE_BYTES_MAX + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise errors.UserError(
            f"cannot read the passphrase file {path}: {why}",
            code="passphrase_file_invalid",
            field="passphrase_file",
            json_output=json_output,
        ) from exc
    if len(data) > PASSPHRASE_FILE_BYTES_MAX:
        raise errors.UserError(
            f"{path} is larger than {PASSPHRASE_FILE_BYTES_MAX} bytes",
            code="passphrase_file_invalid",
            field="passphrase_file",
            json_output=json_output,
        )
    return text.splitlines()[0] if text else ""


# The key store as other command groups take it (card personalize, batch, emulate …).
keystore_option = click.option(
    "--keystore",
    "keystore_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SIMWALLET_KEYSTORE",
    help="Key store file. [env SIMWALLET_KEYSTORE; default keystore.json in the user data directory]",
)
passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"Key store passphrase: the first line of this file. [else env {PASSPHRASE_ENV}, else a prompt]",
)


def open_keystore(app: AppContext, path: Path | None, passphrase_file: Path | None) -> KeyStore:
    """The key store for a command of another group: passphrase from the file, else the environment, else a prompt."""
    from simwallet.gateway.keystore import KeyStore, default_path

    if passphrase_file is not None:
        passphrase = read_passphrase_file(passphrase_file, json_output=app.json)
    else:
        passphrase = os.environ.get(PASSPHRASE_ENV) or str(click.prompt("Key store passphrase", hide_input=True, err=True))
    return KeyStore.open(path or default_path(), passphrase)


def parse_key_file(text: str, *, json_output: bool) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Keys and their KCVs from ``NAME KEY KCV`` lines; errors name the line, never echo its content."""

    def bad(line_no: int, why: str) -> errors.UserError:
        return errors.UserError(f"line {line_no}: {why}", code="key_file_invalid", field="from_file", json_output=json_output)

    keys: dict[str, bytes] = {}
    kcvs: dict[str, bytes] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 3:
            raise bad(line_no, "expected NAME KEY KCV (hex)")
        name = words[0].lower()
        if name in keys:
            raise bad(line_no, f"key {name} is given twice")
        try:
            keys[name], kcvs[name] = bytes.fromhex(words[1]), bytes.fromhex(words[2])
        except ValueError:
            raise bad(line_no, "KEY and KCV must be hex") from None
    return keys, kcvs


def _info_doc(info: KeyInfo) -> dict[str, Any]:
    return {
        "family": info.family.value,
        "version": info.version,
        "status": info.status.value,
        "kcvs": {name: value.hex().upper() for name, value in info.kcvs},
        "created": render.iso_time(info.created_us),
        "created_us": info.created_us,
    }


def _version_text(info: KeyInfo) -> str:
    # The scp03 version is a GP key version number, written in hex by GP tools.
    return f"{info.version} (0x{info.version:02X})" if info.family.value == "scp03" else str(info.version)


def _show(keys: KeysContext, infos: list[KeyInfo], *, title: str | None = None, **extra: Any) -> None:
    if keys.app.json:
        render.emit_json({"keystore": str(keys.path), **extra, "versions": [_info_doc(i) for i in infos]})
        return
    render.table(
        ("family", "version", "status", "key check values", "created (Shanghai)"),
        [
            (
                i.family.value,
                _version_text(i),
                i.status.value,
                " ".join(f"{n}={v.hex().upper()}" for n, v in i.kcvs),
                render.human_time(i.created_us),
            )
            for i in infos
        ],
        title=title,
        right=("version",),
    )


@click.group()
@click.option(
    "--keystore",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SIMWALLET_KEYSTORE",
    help="Key store file. [env SIMWALLET_KEYSTORE; default keystore.json in the user data directory]",
)
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"Read the passphrase from the first line of this file. [else env {PASSPHRASE_ENV}, else a prompt]",
)
@click.pass_context
def keys(ctx: click.Context, path: Path | None, passphrase_file: Path | None) -> None:
    """Master keys: SCP03, OTA, wallet applet and card secrets, versioned, in an encrypted file."""
    from simwallet.gateway.keystore import default_path

    app = ctx.find_object(AppContext)
    assert app is not None, "the keys group runs under the root group"
    ctx.obj = KeysContext(app=app, path=path or default_path(), passphrase_file=passphrase_file)


@keys.command()
@click.option(
    "--kdf-n",
    type=click.IntRange(2, 2**20),
    default=None,
    help="scrypt cost N, a power of two. [default 2**17: 128 MiB, about half a second]",
)
@pass_keys
def init(keys: KeysContext, kdf_n: int | None) -> None:
    """Create the key store with one active version of each family (random keys)."""
    from simwallet.gateway.keystore import KDF_N_DEFAULT, KeyFamily, KeyStore

    store = KeyStore.create(keys.path, keys.passphrase(new=True), kdf_n=kdf_n or KDF_N_DEFAULT, rng=os.urandom)
    infos = [store.generate(family, os.urandom) for family in KeyFamily]
    keys.app.note(f"created the key store {keys.path}: keep its passphrase safe, and a copy of the file offline")
    _show(keys, infos, title=None if keys.app.quiet else f"key store {keys.path}", created=True)


@keys.command("list")
@pass_keys
def list_(keys: KeysContext) -> None:
    """Every version of every family: status, key check values, creation time (never key bytes)."""
    _show(keys, keys.open().list())


@keys.command()
@click.argument("family", type=FAMILY)
@pass_keys
def rotate(keys: KeysContext, family: str) -> None:
    """A new active version of FAMILY (random keys); the active one is retired."""
    store = keys.open()
    before = [i for i in store.list() if i.family.value == family and i.status.value == "active"]
    info = store.generate(family, os.urandom)
    retired = [store.version(family, i.version).info() for i in before]
    _show(keys, [info, *retired], family=family, active=info.version)


@keys.command("import")
@click.argument("family", type=FAMILY)
@click.option("--version", "version", type=VERSION, required=True, help="Version number (for scp03: the KVN, 1..127).")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Text file of NAME KEY KCV lines in hex.",
)
@click.option("--retired", is_flag=True, help="Store the version retired (cards in the field still use it); default: make it active.")
@pass_keys
def import_(keys: KeysContext, family: str, version: int, from_file: Path, retired: bool) -> None:
    """Bring in an existing master key version of FAMILY; every key must match its KCV."""
    try:
        with from_file.open("rb") as file:
            data = file.read(KEY_FILE_BYTES_MAX + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise errors.UserError(
            f"cannot read {from_file}: {why}", code="key_file_invalid", field="from_file", json_output=keys.app.json
        ) from exc
    if len(data) > KEY_FILE_BYTES_MAX:
        raise errors.UserError(
            f"{from_file} is larger than {KEY_FILE_BYTES_MAX} bytes", code="key_file_invalid", field="from_file", json_output=keys.app.json
        )
    material, kcvs = parse_key_file(text, json_output=keys.app.json)
    info = keys.open().import_version(family, version, material, kcvs, activate=not retired)
    _show(keys, [info], family=family, imported=info.version)


@keys.command()
@click.argument("family", type=FAMILY)
@click.argument("version", type=VERSION)
@click.option(
    "--leave-no-active", is_flag=True, help="Emergency stop: retire even the active version; personalization refuses until `keys rotate`."
)
@pass_keys
def retire(keys: KeysContext, family: str, version: int, leave_no_active: bool) -> None:
    """Retire VERSION of FAMILY: no new card gets it; cards that have it keep working."""
    info = keys.open().retire(family, version, leave_no_active=leave_no_active)
    _show(keys, [info], family=family, retired=info.version)
