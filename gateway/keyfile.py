"""The key store's file: an scrypt + AES-256-GCM envelope, written atomically under a lock.

Specs: RFC 7914 (scrypt); NIST SP 800-38D (AES-GCM, 96-bit nonces).
:mod:`simwallet.gateway.keystore` puts the master keys in it; this module
only seals and unseals bytes.

Theory of operation
-------------------
The file is one JSON envelope::

    {"format": "simwallet-keystore", "format_version": 1,
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": HEX16, "verifier": HEX16},
     "cipher": {"name": "aes-256-gcm", "nonce": HEX12},
     "ciphertext": BASE64}

scrypt turns the passphrase (UTF-8 of its NFC form) and the random salt into
48 bytes: an AES-256 file key and a 16-byte *verifier*. A wrong passphrase is
told apart from a damaged file by the verifier (no weaker than the GCM tag,
which a guesser can test just as well). The plaintext is sealed with
AES-256-GCM under a fresh random nonce at every write; the associated data is
the envelope without ``ciphertext`` as canonical JSON (sorted keys, no
spaces), so neither the KDF parameters nor the nonce can be changed
unnoticed. KDF parameters read from a file are bounded before use: a file
cannot make the reader allocate gigabytes.

A write goes to a temporary file in the same directory (``mkstemp``: mode
0600), is fsynced, renamed over the old file with ``os.replace``, and the
directory is fsynced: a crash leaves the old file or the new one, never a
mix. Writers of several processes take an exclusive ``flock`` on
``PATH.lock`` around read-change-write.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hmac
import json
import os
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from simwallet.gateway.errors import GatewayError

Rng = Callable[[int], bytes]
Header = dict[str, Any]

FORMAT: Final = "simwallet-keystore"
FORMAT_VERSION: Final = 1
# RFC 7914 §2: N a power of two. 2**17 with r = 8 costs 128 MiB and about half
# a second (OWASP's 2023 recommendation); tests pass a tiny N to stay fast.
KDF_N_DEFAULT: Final = 2**17
KDF_N_MIN: Final = 2
# 2**20 with r = 8 needs 1 GiB: a file asking for more is refused, not obeyed.
KDF_N_MAX: Final = 2**20
KDF_R: Final = 8
KDF_R_MAX: Final = 16
KDF_P: Final = 1
KDF_P_MAX: Final = 4
SALT_LENGTH: Final = 16
VERIFIER_LENGTH: Final = 16
# NIST SP 800-38D §8.2.2: 96-bit random nonces; a store sees far fewer than 2**32 writes.
NONCE_LENGTH: Final = 12
FILE_KEY_LENGTH: Final = 32
# Four families of at most 127 versions are well under 200 kB.
FILE_BYTES_MAX: Final = 1024 * 1024
PASSPHRASE_CHARS_MIN: Final = 8
PASSPHRASE_BYTES_MAX: Final = 1024


class KeyStoreError(GatewayError):
    """The key store refused an operation; the message never holds key bytes."""

    code = "keystore_error"


class KeyStoreNotFound(KeyStoreError):
    code = "keystore_not_found"


class KeyStoreExists(KeyStoreError):
    code = "keystore_exists"


class WrongPassphrase(KeyStoreError):
    code = "wrong_passphrase"


class KeyStoreDamaged(KeyStoreError):
    """The file is not a key store, or failed its integrity check."""

    code = "keystore_damaged"


def new_header(passphrase: str, kdf_n: int, rng: Rng) -> tuple[Header, bytes]:
    """The header of a new store (fresh salt) and its file key."""
    if not isinstance(passphrase, str) or len(passphrase) < PASSPHRASE_CHARS_MIN:
        raise KeyStoreError(f"a key store passphrase has at least {PASSPHRASE_CHARS_MIN} characters")
    check_kdf(kdf_n, KDF_R, KDF_P)
    kdf = {"name": "scrypt", "n": kdf_n, "r": KDF_R, "p": KDF_P, "salt": rng(SALT_LENGTH).hex()}
    file_key, verifier = derive(passphrase, kdf)
    kdf["verifier"] = verifier.hex()
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kdf": kdf}, file_key


def open_key(path: Path, header: Header, passphrase: str) -> bytes:
    """The file key of a store whose header was read; :class:`WrongPassphrase` if the verifier disagrees."""
    file_key, verifier = derive(passphrase, header["kdf"])
    if not hmac.compare_digest(verifier, bytes.fromhex(header["kdf"]["verifier"])):
        raise WrongPassphrase(f"wrong passphrase for the key store {path}")
    return file_key


def check_kdf(n: object, r: object, p: object) -> None:
    for name, value, low, high in (("n", n, KDF_N_MIN, KDF_N_MAX), ("r", r, 1, KDF_R_MAX), ("p", p, 1, KDF_P_MAX)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise KeyStoreError(f"scrypt {name} must be {low}..{high}")
    if isinstance(n, int) and n & (n - 1):
        raise KeyStoreError("scrypt n must be a power of two")


def derive(passphrase: str, kdf: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The file key and the passphrase verifier (RFC 7914 scrypt, 48 bytes)."""
    if not isinstance(passphrase, str) or not passphrase:
        raise KeyStoreError("the key store passphrase is empty")
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if len(secret) > PASSPHRASE_BYTES_MAX:
        raise KeyStoreError(f"a key store passphrase has at most {PASSPHRASE_BYTES_MAX} bytes")
    scrypt = Scrypt(salt=bytes.fromhex(kdf["salt"]), length=FILE_KEY_LENGTH + VERIFIER_LENGTH, n=kdf["n"], r=kdf["r"], p=kdf["p"])
    out = scrypt.derive(secret)
    return out[:FILE_KEY_LENGTH], out[FILE_KEY_LENGTH:]


def _canonical(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _hex_field(value: object, length: int) -> bool:
    if not isinstance(value, str) or len(value) != 2 * length:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def read_envelope(path: Path) -> tuple[Header, bytes]:
    """The envelope's header (everything but the ciphertext) and the sealed bytes, checked for shape."""
    try:
        with path.open("rb") as file:
            data = file.read(FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        raise KeyStoreNotFound(f"no key store at {path}: create one with `simwallet keys init`") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read the key store {path}: {exc.strerror}") from exc
    if len(data) > FILE_BYTES_MAX:
        raise KeyStoreDamaged(f"{path} is larger than {FILE_BYTES_MAX} bytes: not a key store")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyStoreDamaged(f"{path} is not a key store (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyStoreDamaged(f"{path} is not a key store")
    if document.get("format_version") != FORMAT_VERSION:
        raise KeyStoreDamaged(f"{path}: key store format {document.get('format_version')!r} is not supported")
    kdf, cipher = document.get("kdf"), document.get("cipher")
    if not (
        isinstance(kdf, dict)
        and set(kdf) == {"name", "n", "r", "p", "salt", "verifier"}
        and kdf["name"] == "scrypt"
        and _hex_field(kdf["salt"], SALT_LENGTH)
        and _hex_field(kdf["verifier"], VERIFIER_LENGTH)
    ):
        raise KeyStoreDamaged(f"{path}: the key derivation parameters are malformed")
    try:
        check_kdf(kdf["n"], kdf["r"], kdf["p"])
    except KeyStoreError as exc:
        raise KeyStoreDamaged(f"{path}: {exc}") from None
    if not (
        isinstance(cipher, dict)
        and set(cipher) == {"name", "nonce"}
        and cipher["name"] == "aes-256-gcm"
        and _hex_field(cipher["nonce"], NONCE_LENGTH)
    ):
        raise KeyStoreDamaged(f"{path}: the cipher parameters are malformed")
    try:
        sealed = base64.b64decode(str(document.get("ciphertext")), validate=True)
    except binascii.Error:
        raise KeyStoreDamaged(f"{path}: the ciphertext is not base64") from None
    return {k: v for k, v in document.items() if k != "ciphertext"}, sealed


def unseal(path: Path, header: Header, sealed: bytes, file_key: bytes) -> bytes:
    """The plaintext; :class:`KeyStoreDamaged` if the tag does not verify (ciphertext or header changed)."""
    try:
        return AESGCM(file_key).decrypt(bytes.fromhex(header["cipher"]["nonce"]), sealed, _canonical(header))
    except InvalidTag:
        raise KeyStoreDamaged(f"the key store {path} failed its integrity check: it was changed or damaged") from None


def seal_and_write(path: Path, header: Header, file_key: bytes, plaintext: bytes, rng: Rng) -> None:
    """Seal ``plaintext`` under a fresh nonce and replace the file atomically."""
    sealed_header = {**header, "cipher": {"name": "aes-256-gcm", "nonce": rng(NONCE_LENGTH).hex()}}
    nonce = bytes.fromhex(sealed_header["cipher"]["nonce"])
    sealed = AESGCM(file_key).encrypt(nonce, plaintext, _canonical(sealed_header))
    document = {**sealed_header, "ciphertext": base64.b64encode(sealed).decode("ascii")}
    atomic_write(path, json.dumps(document, indent=2).encode() + b"\n")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock (``flock``) on ``PATH.lock``, held by one writer process at a time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyStoreError(f"cannot lock the key store {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a 0600 temporary file beside ``path``, fsync it, and rename it over ``path``."""
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        tmp = ""
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KeyStoreError(f"cannot write the key store {path}: {exc.strerror}") from exc
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
