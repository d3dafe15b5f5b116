"""The key store: simwallet's versioned master keys in one passphrase-encrypted file.

Specs: GlobalPlatform Card Specification v2.3 §11.8 (PUT KEY: key version
numbers 01..7F) and Amendment D "Key Check Value" (AES-ECB of 16 bytes
``01``, first 3 bytes); the file format is in :mod:`simwallet.gateway.keyfile`
(RFC 7914 scrypt, NIST SP 800-38D AES-GCM).

Theory of operation
-------------------
**Families and versions.** Master keys come in four families, each a list of
numbered versions of which exactly one is *active*: new cards get it (the
one exception: the emergency stop of :meth:`KeyStore.retire` leaves none).
The others are *retired*: kept, because cards personalized under them still
need their keys, but never given to a new card. A version number is never
reused.

========================  ===================  ===========================================
family                    keys (AES-128)       used for
========================  ===================  ===========================================
``scp03``                 ``enc mac dek``      the card's ISD (GlobalPlatform SCP03) keys
``ota``                   ``kic kid dek``      TS 102 225 remote file/applet management
``wallet``                ``kic kid``          the STK wallet applet's secured packets
``card-secrets``          ``master``           ADM1, PUK1, PIN2 and PUK2 (decimalized)
========================  ===================  ===========================================

**The scp03 version is the GP key version number** (KVN) the card's ISD key
set is loaded under, so a card's INITIALIZE UPDATE answer names the master
version to derive from. Versions run 01..7F (GP CS v2.3: issuer key sets);
generated ones start at ``0x30``, the KVN that SCP03 issuer key sets
conventionally get (0x20.. for SCP02), and count up. There is no separate
"transport" family: a blank card leaves the factory with ISD keys diversified
from some ``scp03`` version N (retired or not: :meth:`KeyStore.version`
returns it either way); personalization opens the channel with them and, when
N is not the active version, rotates the card to :meth:`KeyStore.active` with
PUT KEY. The other families number their versions from 1 (at most 127).

**The file** (:mod:`simwallet.gateway.keyfile`) is a JSON envelope: scrypt
over the passphrase, AES-256-GCM over the JSON of every family's versions
(keys in hex), replaced atomically. Each change takes the file's lock,
re-reads it, applies itself to what is there now and writes the result, so
two processes rotating at once lose neither version.

Nothing here logs or prints; key bytes appear in no ``repr``, ``str`` or
error message (key check values, which are public, do).
"""

from __future__ import annotations

import builtins
import enum
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from simwallet.applet.protocols.scp03 import StaticKeys, kcv
from simwallet.gateway import keyfile
from simwallet.gateway.diversify import OtaKeys, WalletKeys
from simwallet.gateway.keyfile import (
    KDF_N_DEFAULT,
    KeyStoreDamaged,
    KeyStoreError,
    KeyStoreExists,
    KeyStoreNotFound,
    WrongPassphrase,
)

__all__ = [
    "FAMILY_KEYS",
    "KDF_N_DEFAULT",
    "KeyCheckError",
    "KeyFamily",
    "KeyInfo",
    "KeyStatus",
    "KeyStore",
    "KeyStoreDamaged",
    "KeyStoreError",
    "KeyStoreExists",
    "KeyStoreNotFound",
    "KeyVersionError",
    "MasterKey",
    "WrongPassphrase",
    "default_path",
    "family_of",
]

Rng = Callable[[int], bytes]
Clock = Callable[[], int]

# GP CS v2.3 §11.8: issuer key set version numbers 01..7F.
VERSION_MIN: Final = 0x01
VERSION_MAX: Final = 0x7F
SCP03_FIRST_VERSION: Final = 0x30
MASTER_KEY_LENGTH: Final = 16
KEYSTORE_ENV: Final = "SIMWALLET_KEYSTORE"


class KeyFamily(enum.StrEnum):
    SCP03 = "scp03"
    OTA = "ota"
    WALLET = "wallet"
    CARD_SECRETS = "card-secrets"


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


# The names of each family's keys, in order.
FAMILY_KEYS: Final[dict[KeyFamily, tuple[str, ...]]] = {
    KeyFamily.SCP03: ("enc", "mac", "dek"),
    KeyFamily.OTA: ("kic", "kid", "dek"),
    KeyFamily.WALLET: ("kic", "kid"),
    KeyFamily.CARD_SECRETS: ("master",),
}
FIRST_VERSION: Final[dict[KeyFamily, int]] = {f: SCP03_FIRST_VERSION if f is KeyFamily.SCP03 else VERSION_MIN for f in KeyFamily}


# --- errors ---------------------------------------------------------------------------------


class KeyVersionError(KeyStoreError):
    """An unknown family or version, a version that exists, no version left, or a change the rules forbid."""

    code = "key_version_invalid"


class KeyCheckError(KeyStoreError):
    """A key does not match the key check value given with it."""

    code = "kcv_mismatch"


# --- values -------------------------------------------------------------------------------


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def default_path() -> Path:
    """``$SIMWALLET_KEYSTORE`` or ``keystore.json`` in the user data directory (platformdirs)."""
    env = os.environ.get(KEYSTORE_ENV)
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("simwallet", appauthor=False)) / "keystore.json"


def family_of(value: KeyFamily | str) -> KeyFamily:
    try:
        return KeyFamily(value)
    except ValueError:
        names = ", ".join(f.value for f in KeyFamily)
        raise KeyVersionError(f"unknown key family {value!r} (families: {names})") from None


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a master key version: no key bytes, only key check values."""

    family: KeyFamily
    version: int
    status: KeyStatus
    kcvs: tuple[tuple[str, bytes], ...]  # (key name, 3-byte KCV) in the family's key order
    created_us: int  # microseconds since the epoch, UTC


@dataclass(frozen=True, eq=False, repr=False)
class MasterKey:
    """One version of a family's master keys. ``repr``/``str`` show key check values only."""

    family: KeyFamily
    version: int
    status: KeyStatus
    created_us: int
    material: tuple[tuple[str, bytes], ...]

    def key(self, name: str) -> bytes:
        for key_name, value in self.material:
            if key_name == name:
                return value
        raise KeyVersionError(f"family {self.family} has no key {name!r} (keys: {', '.join(FAMILY_KEYS[self.family])})")

    @property
    def kcvs(self) -> tuple[tuple[str, bytes], ...]:
        return tuple((name, kcv(value)) for name, value in self.material)

    def info(self) -> KeyInfo:
        return KeyInfo(self.family, self.version, self.status, self.kcvs, self.created_us)

    def _want(self, family: KeyFamily) -> None:
        if self.family is not family:
            raise KeyVersionError(f"a {self.family} master key is not a {family} master key")

    def scp03_keys(self) -> StaticKeys:
        """The ISD master key set; its KVN is this version."""
        self._want(KeyFamily.SCP03)
        return StaticKeys(enc=self.key("enc"), mac=self.key("mac"), dek=self.key("dek"), kvn=self.version)

    def ota_keys(self) -> OtaKeys:
        self._want(KeyFamily.OTA)
        return OtaKeys(kic=self.key("kic"), kid=self.key("kid"), dek=self.key("dek"))

    def wallet_keys(self) -> WalletKeys:
        self._want(KeyFamily.WALLET)
        return WalletKeys(kic=self.key("kic"), kid=self.key("kid"))

    def secrets_master(self) -> bytes:
        """The one ``card-secrets`` master key (for :func:`~simwallet.gateway.diversify.card_secrets`)."""
        self._want(KeyFamily.CARD_SECRETS)
        return self.key("master")

    def __repr__(self) -> str:
        kcvs = ", ".join(f"kcv_{name}={value.hex().upper()}" for name, value in self.kcvs)
        return f"MasterKey({self.family.value} v{self.version} {self.status.value}, {kcvs})"

    __str__ = __repr__


State = dict[KeyFamily, dict[int, MasterKey]]


# --- the store ------------------------------------------------------------------------------


class KeyStore:
    """The key store file, opened with its passphrase. Every change is written to disk before it returns."""

    def __init__(self, path: Path, header: dict[str, Any], file_key: bytes, state: State, *, rng: Rng, clock: Clock) -> None:
        # Use create() or open().
        self._path = path
        self._header = header
        self._file_key = file_key
        self._state = state
        self._rng = rng
        self._clock = clock

    def __repr__(self) -> str:
        versions = sum(len(v) for v in self._state.values())
        return f"KeyStore({str(self._path)!r}, {versions} versions)"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def kdf_n(self) -> int:
        return int(self._header["kdf"]["n"])

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        kdf_n: int = KDF_N_DEFAULT,
        rng: Rng = os.urandom,
        clock: Clock = wall_clock_us,
    ) -> KeyStore:
        """A new, empty key store at ``path``; refuses to overwrite an existing file."""
        path = Path(path)
        header, file_key = keyfile.new_header(passphrase, kdf_n, rng)
        store = cls(path, header, file_key, {f: {} for f in KeyFamily}, rng=rng, clock=clock)
        with keyfile.locked(path):
            if path.exists():
                raise KeyStoreExists(f"{path} exists: a key store is never overwritten")
            store._write(store._state)
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], passphrase: str, *, rng: Rng = os.urandom, clock: Clock = wall_clock_us) -> KeyStore:
        """Open the key store at ``path``: :class:`WrongPassphrase` or :class:`KeyStoreDamaged` if it cannot."""
        path = Path(path)
        header, sealed = keyfile.read_envelope(path)
        file_key = keyfile.open_key(path, header, passphrase)
        return cls(path, header, file_key, _load_state(path, keyfile.unseal(path, header, sealed, file_key)), rng=rng, clock=clock)

    # -- reading ---------------------------------------------------------------------------------

    def list(self) -> builtins.list[KeyInfo]:
        """Every version of every family, by family then version."""
        return [key.info() for family in KeyFamily for _, key in sorted(self._state[family].items())]

    def active(self, family: KeyFamily | str) -> MasterKey:
        family = family_of(family)
        for key in self._state[family].values():
            if key.status is KeyStatus.ACTIVE:
                return key
        raise KeyVersionError(f"family {family} has no active version: run `simwallet keys rotate {family}`")

    def version(self, family: KeyFamily | str, version: int) -> MasterKey:
        """A version whatever its status (cards personalized under a retired version still need it)."""
        family = family_of(family)
        key = self._state[family].get(version)
        if key is None:
            raise KeyVersionError(f"family {family} has no version {version}")
        return key

    # -- changes ---------------------------------------------------------------------------------

    def generate(self, family: KeyFamily | str, rng: Rng | None = None) -> KeyInfo:
        """A new version of random keys (from ``rng``, default the store's); it becomes active, the old one retired."""
        family = family_of(family)
        draw = rng or self._rng

        def change(state: State) -> tuple[State, KeyInfo]:
            versions = state[family]
            number = max(versions, default=FIRST_VERSION[family] - 1) + 1
            if number > VERSION_MAX:
                raise KeyVersionError(f"family {family} has used every version up to {VERSION_MAX}")
            material = tuple((name, _random_key(draw)) for name in FAMILY_KEYS[family])
            return _add(state, MasterKey(family, number, KeyStatus.ACTIVE, self._clock(), material))

        return self._change(change)

    def import_version(
        self, family: KeyFamily | str, version: int, keys: Mapping[str, bytes], kcvs: Mapping[str, bytes], *, activate: bool = True
    ) -> KeyInfo:
        """Bring in an existing master key version; every key must match its given KCV.

        With ``activate`` the version becomes the active one (the previous active
        version is retired); otherwise it is stored retired.
        """
        family = family_of(family)
        if isinstance(version, bool) or not isinstance(version, int) or not VERSION_MIN <= version <= VERSION_MAX:
            raise KeyVersionError(f"a key version is {VERSION_MIN}..{VERSION_MAX}")
        names = FAMILY_KEYS[family]
        if set(keys) != set(names):
            raise KeyVersionError(f"family {family} has the keys {', '.join(names)}; given {', '.join(sorted(keys)) or 'none'}")
        for name in names:
            value = keys[name]
            if not isinstance(value, bytes) or len(value) != MASTER_KEY_LENGTH:
                raise KeyVersionError(f"{family} key {name} must be an AES-128 key ({MASTER_KEY_LENGTH} bytes)")
            given = kcvs.get(name)
            if given is None:
                raise KeyCheckError(f"no key check value given for {family} key {name}")
            if not hmac.compare_digest(kcv(value), given):
                raise KeyCheckError(f"{family} key {name} does not match its key check value {given.hex().upper()}")
        material = tuple((name, keys[name]) for name in names)

        def change(state: State) -> tuple[State, KeyInfo]:
            if version in state[family]:
                raise KeyVersionError(f"family {family} already has version {version}; versions are never reused")
            status = KeyStatus.ACTIVE if activate else KeyStatus.RETIRED
            return _add(state, MasterKey(family, version, status, self._clock(), material))

        return self._change(change)

    def retire(self, family: KeyFamily | str, version: int, *, leave_no_active: bool = False) -> KeyInfo:
        """Retire a version: no new card gets it; cards that have it keep it, and :meth:`version` still returns it.

        Retiring a retired version changes nothing. The active version is
        retired by :meth:`generate` (rotation); retiring it here needs
        ``leave_no_active``, the emergency stop after a suspected compromise:
        the family then has no active version, and personalization refuses
        until a new one is generated or imported.
        """
        family = family_of(family)

        def change(state: State) -> KeyInfo | tuple[State, KeyInfo]:
            key = state[family].get(version)
            if key is None:
                raise KeyVersionError(f"family {family} has no version {version}")
            if key.status is KeyStatus.RETIRED:
                return key.info()
            if not leave_no_active:
                raise KeyVersionError(f"{family} version {version} is the active one: `simwallet keys rotate {family}` retires it")
            retired = replace(key, status=KeyStatus.RETIRED)
            return {**state, family: {**state[family], version: retired}}, retired.info()

        return self._change(change)

    # -- file ------------------------------------------------------------------------------------

    def _change(self, change: Callable[[State], KeyInfo | tuple[State, KeyInfo]]) -> KeyInfo:
        with keyfile.locked(self._path):
            header, sealed = keyfile.read_envelope(self._path)
            if header["kdf"] != self._header["kdf"]:
                raise KeyStoreError(f"{self._path} was replaced by another key store since it was opened")
            current = _load_state(self._path, keyfile.unseal(self._path, header, sealed, self._file_key))
            outcome = change(current)
            if isinstance(outcome, KeyInfo):  # nothing to write
                self._state = current
                return outcome
            state, info = outcome
            self._write(state)
            self._state = state
            return info

    def _write(self, state: State) -> None:
        document = {"families": {family.value: [_key_doc(k) for _, k in sorted(state[family].items())] for family in KeyFamily}}
        keyfile.seal_and_write(self._path, self._header, self._file_key, json.dumps(document, sort_keys=True).encode(), self._rng)


def _add(state: State, key: MasterKey) -> tuple[State, KeyInfo]:
    versions = dict(state[key.family])
    if key.status is KeyStatus.ACTIVE:
        versions = {n: replace(k, status=KeyStatus.RETIRED) if k.status is KeyStatus.ACTIVE else k for n, k in versions.items()}
    versions[key.version] = key
    return {**state, key.family: versions}, key.info()


def _random_key(rng: Rng) -> bytes:
    key = rng(MASTER_KEY_LENGTH)
    if not isinstance(key, bytes) or len(key) != MASTER_KEY_LENGTH:
        raise KeyStoreError(f"the random source gave no {MASTER_KEY_LENGTH} bytes")
    return key


def _key_doc(key: MasterKey) -> dict[str, Any]:
    return {
        "version": key.version,
        "status": key.status.value,
        "created_us": key.created_us,
        "keys": {name: value.hex() for name, value in key.material},
    }


def _load_state(path: Path, plaintext: bytes) -> State:
    try:
        return _parse_state(json.loads(plaintext))
    except (ValueError, KeyError, TypeError) as exc:
        # Messages of _parse_state name the place, never a value.
        raise KeyStoreDamaged(f"the key store {path} holds malformed content: {exc}") from None


def _parse_state(document: Any) -> State:
    families = document["families"]
    if set(families) != {f.value for f in KeyFamily}:
        raise ValueError("unexpected families")
    state: State = {}
    for family in KeyFamily:
        versions: dict[int, MasterKey] = {}
        for doc in families[family.value]:
            number, status, created = doc["version"], KeyStatus(doc["status"]), doc["created_us"]
            if not isinstance(number, int) or not VERSION_MIN <= number <= VERSION_MAX or number in versions:
                raise ValueError(f"{family} has a bad or repeated version number")
            if not isinstance(created, int) or set(doc["keys"]) != set(FAMILY_KEYS[family]):
                raise ValueError(f"{family} version {number} is incomplete")
            material = tuple((name, bytes.fromhex(doc["keys"][name])) for name in FAMILY_KEYS[family])
            if any(len(value) != MASTER_KEY_LENGTH for _, value in material):
                raise ValueError(f"{family} version {number} has a key of the wrong length")
            versions[number] = MasterKey(family, number, status, created, material)
        if sum(k.status is KeyStatus.ACTIVE for k in versions.values()) > 1:
            raise ValueError(f"{family} has more than one active version")
        state[family] = versions
    return state
