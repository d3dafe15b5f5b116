"""Per-card keys and secrets, diversified from versioned master keys by the card's ICCID.

Specs: ETSI TS 102 221 §13.2 (EF.ICCID); NIST SP 800-108r1 §4.1 (KDF in
counter mode) with the PRF AES-CMAC of NIST SP 800-38B; GlobalPlatform Card
Specification v2.3 Amendment D and GlobalPlatformPro's "KDF3" for the SCP03
issuer keys; ETSI TS 102 225 §5.1 (KIc, KID) for the OTA and wallet keys.

Theory of operation
-------------------
**The KDD.** Every recipe diversifies over the card's *key diversification
data*: the 10 bytes of EF.ICCID exactly as the card stores them (TS 102 221
§13.2): the ICCID's digits in BCD, two per byte, the first digit of each pair
in the low nibble ("swapped BCD"), a 19-digit ICCID padded with one ``F``
nibble. ``8988211000000430010`` is stored as ``98 88 12 01 00 00 40 03 10 F0``.
The card's security domain returns the same 10 bytes as its key
diversification data in the INITIALIZE UPDATE response, so the host can derive
a card's keys from the answer alone.

**SCP03 issuer keys** use KDF3 (``diversify_kdf3`` in
:mod:`simwallet.applet.protocols.scp03`): one AES-CMAC block under the master
key per counter ``i`` over ``i || 00 00 00 || key id || 00 || KDD`` (16 bytes;
key id ENC 1, MAC 2, DEK 3), so GlobalPlatformPro and other GP tools derive
the same card keys.

**Every other key and secret** uses NIST SP 800-108 counter mode, PRF
AES-CMAC under the family's master key, with this fixed input data per block::

    K(i) = AES-CMAC(master, [i]_8 || Label || 00 || Context || [L]_16)

    i        1 byte, the block counter, 1, 2, ...
    Label    the recipe's ASCII label below (never contains a 00 byte)
    00       the separator of SP 800-108
    Context  the 10-byte KDD
    L        the output length in bits, 2 bytes big-endian (128 for AES-128)

The output is ``K(1) || K(2) ...`` cut to ``L`` bits. Every recipe has its own
label, so no two derived values coincide even if an operator loaded the same
master key into two families; the inputs are at least 30 bytes long, so none
equals a 16-byte KDF3 input either.

**Card secrets** (ADM1, PUK1, PIN2, PUK2) are decimalized: the 128-bit
output (L = 128) is read as a big-endian integer and reduced modulo 10^d,
written with ``d`` digits (leading zeros kept). Each d-digit value then has a
probability within 10^d / 2^128 (below 3e-31 for d = 8) of uniform: no bias
worth mentioning. A PIN2 may come out as ``0000`` or ``1234``; the
derivation does not avoid weak values, it keeps them as likely as any other.

Pure functions over ``bytes``; no clock, no randomness, no I/O. Values that
hold keys or secrets never show them in ``repr``/``str``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.efs import Iccid
from simwallet.applet.protocols.scp03 import StaticKeys, card_keys, kcv
from simwallet.gateway.errors import RejectCode, RequestError

__all__ = [
    "CARD_SECRET_DIGITS",
    "ICCID_DIGITS_MAX",
    "ICCID_DIGITS_MIN",
    "KDD_LENGTH",
    "LABELS",
    "CardSecretValues",
    "OtaKeys",
    "WalletKeys",
    "card_ota_keys",
    "card_scp03_keys",
    "card_secrets",
    "card_wallet_keys",
    "check_iccid",
    "iccid_to_kdd",
    "kdd_to_iccid",
    "kdf_counter_cmac",
]

# TS 102 221 §13.2: EF.ICCID is 10 bytes, the KDD of GP Amendment D is 10 bytes too.
KDD_LENGTH: Final = 10
# ITU-T E.118 numbers are 19 digits with the Luhn check digit; some issuers
# (China's among them) use 20. EF.ICCID holds at most 20.
ICCID_DIGITS_MIN: Final = 19
ICCID_DIGITS_MAX: Final = 2 * KDD_LENGTH
# TS 102 221 §13.2: unused nibbles of EF.ICCID are 'F'.

# FIPS 197: AES-128/192/256 master keys; derived keys have the master's length.
_AES_KEY_LENGTHS: Final = frozenset({16, 24, 32})
_CMAC_BLOCK: Final = 16
# Bits of PRF output a secret is decimalized from (one CMAC block).
_SECRET_BITS: Final = 128

# The recipes' SP 800-108 labels, one per derived value (ASCII, no 00 byte).
LABELS: Final[dict[str, bytes]] = {
    "ota.kic": b"simwallet:ota:KIc",
    "ota.kid": b"simwallet:ota:KID",
    "ota.dek": b"simwallet:ota:DEK",
    "wallet.kic": b"simwallet:wallet:KIc",
    "wallet.kid": b"simwallet:wallet:KID",
    "secret.adm1": b"simwallet:secret:ADM1",
    "secret.puk1": b"simwallet:secret:PUK1",
    "secret.pin2": b"simwallet:secret:PIN2",
    "secret.puk2": b"simwallet:secret:PUK2",
}
# Digits of each card secret: TS 102 221 §9.5.1 allows PINs of 4..8 digits
# (stored as 8 bytes); PUKs are 8 digits; ADM1 is the operator's 8-digit code.
CARD_SECRET_DIGITS: Final[dict[str, int]] = {"adm1": 8, "puk1": 8, "pin2": 4, "puk2": 8}


# --- EF.ICCID / KDD ------------------------------------------------------------------------


def check_iccid(iccid: str) -> str:
    """``iccid`` if it is 19 or 20 ASCII digits; otherwise a :class:`RequestError` on field ``iccid``.

    The Luhn check digit is not verified: test and virtual cards often lack one.
    """
    if not isinstance(iccid, str) or not (iccid.isascii() and iccid.isdigit()) or not (ICCID_DIGITS_MIN <= len(iccid) <= ICCID_DIGITS_MAX):
        raise RequestError(RejectCode.FIELD_INVALID, "iccid", f"an ICCID is {ICCID_DIGITS_MIN}..{ICCID_DIGITS_MAX} digits")
    return iccid


def iccid_to_kdd(iccid: str) -> bytes:
    """The 10 bytes of EF.ICCID (TS 102 221 §13.2) for an ICCID: swapped BCD, ``F``-padded (the EF codec's encoding).

    Byte ``k`` holds digit ``2k+1`` in its low nibble and digit ``2k+2`` in
    its high nibble; a 19-digit ICCID ends with the byte ``F`` || last digit.
    """
    return Iccid(check_iccid(iccid)).to_bytes()


def kdd_to_iccid(kdd: bytes) -> str:
    """The ICCID stored in 10 bytes of EF.ICCID (the inverse of :func:`iccid_to_kdd`).

    Refuses (``RequestError`` on field ``kdd``) anything :func:`iccid_to_kdd`
    would not produce: a wrong length, a nibble A..E, a digit after the pad,
    or fewer than 19 digits.
    """
    if not isinstance(kdd, bytes) or len(kdd) != KDD_LENGTH:
        raise RequestError(RejectCode.FIELD_INVALID, "kdd", f"EF.ICCID is {KDD_LENGTH} bytes")
    try:
        iccid = Iccid.from_bytes(kdd).iccid
    except CodecError:
        iccid = ""
    if len(iccid) < ICCID_DIGITS_MIN:
        raise RequestError(RejectCode.FIELD_INVALID, "kdd", "EF.ICCID does not hold 19..20 BCD digits")
    return iccid


# --- the KDF ------------------------------------------------------------------------------


def kdf_counter_cmac(master: bytes, label: bytes, context: bytes, length_bits: int) -> bytes:
    """NIST SP 800-108 §4.1 counter mode, PRF AES-CMAC, r = 8, fixed input ``Label || 00 || Context || [L]_16``."""
    if not isinstance(master, bytes) or len(master) not in _AES_KEY_LENGTHS:
        raise ValueError("a master key is an AES key of 16, 24 or 32 bytes")
    if b"\x00" in label:
        raise ValueError("an SP 800-108 label here never contains a 00 byte")
    if length_bits % 8 or not 0 < length_bits <= 8 * _CMAC_BLOCK * 255:
        raise ValueError(f"output length must be whole bytes, 8..{8 * _CMAC_BLOCK * 255} bits")
    fixed = label + b"\x00" + context + length_bits.to_bytes(2, "big")
    blocks = -(-length_bits // (8 * _CMAC_BLOCK))
    out = bytearray()
    for i in range(1, blocks + 1):
        prf = CMAC(algorithms.AES(master))
        prf.update(bytes([i]) + fixed)
        out += prf.finalize()
    return bytes(out[: length_bits // 8])


def _derive_key(master: bytes, label: str, kdd: bytes) -> bytes:
    return kdf_counter_cmac(master, LABELS[label], kdd, 8 * len(master))


# --- key sets ---------------------------------------------------------------------------


def _kcv_text(key: bytes) -> str:
    return kcv(key).hex().upper()


@dataclass(frozen=True, eq=False, repr=False)
class OtaKeys:
    """A TS 102 225 key set for remote management: KIc (ciphering), KID (checksum), DEK (key transport).

    Used both for a master key version and for one card's keys. Unpacks as
    ``kic, kid, dek = keys``. ``repr`` shows key check values only.
    """

    kic: bytes
    kid: bytes
    dek: bytes

    def __post_init__(self) -> None:
        for name in ("kic", "kid", "dek"):
            if len(getattr(self, name)) not in _AES_KEY_LENGTHS:
                raise ValueError(f"OTA {name.upper()} must be an AES key")

    def __iter__(self) -> Iterator[bytes]:
        return iter((self.kic, self.kid, self.dek))

    def __repr__(self) -> str:
        return f"OtaKeys(kcv_kic={_kcv_text(self.kic)}, kcv_kid={_kcv_text(self.kid)}, kcv_dek={_kcv_text(self.dek)})"

    __str__ = __repr__


@dataclass(frozen=True, eq=False, repr=False)
class WalletKeys:
    """The STK wallet applet's own TS 102 225 keys: KIc and KID. Unpacks as ``kic, kid = keys``."""

    kic: bytes
    kid: bytes

    def __post_init__(self) -> None:
        for name in ("kic", "kid"):
            if len(getattr(self, name)) not in _AES_KEY_LENGTHS:
                raise ValueError(f"wallet {name.upper()} must be an AES key")

    def __iter__(self) -> Iterator[bytes]:
        return iter((self.kic, self.kid))

    def __repr__(self) -> str:
        return f"WalletKeys(kcv_kic={_kcv_text(self.kic)}, kcv_kid={_kcv_text(self.kid)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class CardSecretValues:
    """A card's ADM1 code, PUK1, PIN2 and PUK2 as ASCII digit strings; ``repr`` shows none of them."""

    adm1: str
    puk1: str
    pin2: str
    puk2: str

    def __post_init__(self) -> None:
        for name, digits in CARD_SECRET_DIGITS.items():
            value = getattr(self, name)
            if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) == digits):
                raise ValueError(f"{name.upper()} must be {digits} digits")

    def __repr__(self) -> str:
        return "CardSecretValues(adm1=****, puk1=****, pin2=****, puk2=****)"

    __str__ = __repr__


# --- recipes ------------------------------------------------------------------------------


def card_scp03_keys(master: StaticKeys, iccid: str, kvn: int | None = None) -> StaticKeys:
    """The card's ISD key set: KDF3 of each master key over the KDD, loaded under ``kvn``
    (default: the master's own KVN, which is its key-store version)."""
    return card_keys(master, iccid_to_kdd(iccid), master.kvn if kvn is None else kvn)


def card_ota_keys(master: OtaKeys, iccid: str) -> OtaKeys:
    """The card's TS 102 225 remote-management keys (labels ``simwallet:ota:KIc/KID/DEK``)."""
    kdd = iccid_to_kdd(iccid)
    return OtaKeys(
        kic=_derive_key(master.kic, "ota.kic", kdd),
        kid=_derive_key(master.kid, "ota.kid", kdd),
        dek=_derive_key(master.dek, "ota.dek", kdd),
    )


def card_wallet_keys(master: WalletKeys, iccid: str) -> WalletKeys:
    """The STK wallet applet's keys on this card (labels ``simwallet:wallet:KIc/KID``)."""
    kdd = iccid_to_kdd(iccid)
    return WalletKeys(kic=_derive_key(master.kic, "wallet.kic", kdd), kid=_derive_key(master.kid, "wallet.kid", kdd))


def _decimal(master: bytes, label: str, kdd: bytes, digits: int) -> str:
    value = int.from_bytes(kdf_counter_cmac(master, LABELS[label], kdd, _SECRET_BITS), "big")
    return f"{value % 10**digits:0{digits}d}"


def card_secrets(master: bytes, iccid: str) -> CardSecretValues:
    """ADM1, PUK1, PIN2 and PUK2 of the card, decimalized from the ``card-secrets`` master key."""
    kdd = iccid_to_kdd(iccid)
    values = {name: _decimal(master, f"secret.{name}", kdd, digits) for name, digits in CARD_SECRET_DIGITS.items()}
    return CardSecretValues(**values)
