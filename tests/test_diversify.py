"""Per-card diversification: EF.ICCID as KDD (TS 102 221 §13.2), SCP03 KDF3, and the SP 800-108 recipes.

Known answers: pySim's EF.ICCID vector, GlobalPlatformPro's KDF3 KCVs (their
KDD is the EF.ICCID of ``00102030405060708090``), and recipe outputs computed
here independently with ``cryptography``'s AES-CMAC over the documented
input layout ``i || label || 00 || KDD || L``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.protocols.scp03 import StaticKeys, card_keys, kcv
from simwallet.gateway.diversify import (
    LABELS,
    CardSecretValues,
    OtaKeys,
    WalletKeys,
    card_ota_keys,
    card_scp03_keys,
    card_secrets,
    card_wallet_keys,
    check_iccid,
    iccid_to_kdd,
    kdd_to_iccid,
    kdf_counter_cmac,
)
from simwallet.gateway.errors import RequestError

VECTORS = Path(__file__).parent / "vectors"
EF_ICCID = json.loads((VECTORS / "ef_iccid.json").read_text())
GP = json.loads((VECTORS / "globalplatform.json").read_text())

ICCID = "8986001234567890123"  # 19 digits
MASTER = h("000102030405060708090A0B0C0D0E0F")


def cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


# --- EF.ICCID <-> KDD ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in EF_ICCID["vectors"]])
def test_ef_iccid_vector_both_ways(vector: dict[str, str]) -> None:
    assert_both_ways(kdd_to_iccid, iccid_to_kdd, h(vector["ef_iccid"]), vector["iccid"])


def test_twenty_digits_have_no_pad_and_nineteen_one() -> None:
    assert_both_ways(kdd_to_iccid, iccid_to_kdd, h("98 68 00 21 43 65 87 09 21 43"), "89860012345678901234")
    assert_both_ways(kdd_to_iccid, iccid_to_kdd, h("98 68 00 21 43 65 87 09 21 F3"), ICCID)


@given(st.text(alphabet="0123456789", min_size=19, max_size=20))
def test_iccid_round_trip(iccid: str) -> None:
    kdd = iccid_to_kdd(iccid)
    assert len(kdd) == 10
    assert kdd_to_iccid(kdd) == iccid


@given(st.binary(min_size=0, max_size=24))
def test_random_bytes_parse_or_raise_request_error(data: bytes) -> None:
    try:
        iccid = kdd_to_iccid(data)
    except RequestError as exc:
        assert exc.field == "kdd"
        return
    assert iccid_to_kdd(iccid) == data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(h("988812010000400310"), id="truncated"),
        pytest.param(h("988812010000400310f0ff"), id="trailing"),
        pytest.param(h("988812010000400310ff"), id="two-pad-nibbles"),
        pytest.param(h("9f8812010000400310f0"), id="pad-in-the-middle"),
        pytest.param(h("9a8812010000400310f0"), id="hex-digit-a"),
        pytest.param(h("988812010000400310 0f"), id="pad-in-the-low-nibble"),
    ],
)
def test_malformed_ef_iccid_is_refused(data: bytes) -> None:
    with pytest.raises(RequestError) as info:
        kdd_to_iccid(data)
    assert info.value.field == "kdd"


@pytest.mark.parametrize(
    "iccid", ["898600123456789012", "898600123456789012345", "8986001234567890I23", "８９８６００１２３４５６７８９０１２３", ""]
)
def test_bad_iccid_is_refused(iccid: str) -> None:
    with pytest.raises(RequestError) as info:
        iccid_to_kdd(iccid)
    assert info.value.field == "iccid"
    with pytest.raises(RequestError):
        check_iccid(iccid)


# --- SCP03 (KDF3) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in GP["gppro_kdf3"]["vectors"]])
def test_scp03_card_keys_replay_gppro_kdf3(vector: dict[str, str]) -> None:
    iccid = kdd_to_iccid(h(GP["gppro_kdf3"]["kdd"]))
    assert iccid == "00102030405060708090"
    master = h(vector["master"])
    keys = card_scp03_keys(StaticKeys(master, master, master, kvn=0x30), iccid)
    assert keys.kvn == 0x30
    assert keys.kcvs == (h(vector["kcv_enc"]), h(vector["kcv_mac"]), h(vector["kcv_dek"]))


def test_scp03_card_keys_layout_and_kvn() -> None:
    master = StaticKeys(MASTER, h("101112131415161718191A1B1C1D1E1F"), h("202122232425262728292A2B2C2D2E2F"), kvn=0x31)
    keys = card_scp03_keys(master, ICCID, kvn=0x32)
    kdd = iccid_to_kdd(ICCID)
    # KDF3: i || 00 00 00 || key id || 00 || KDD, one CMAC block under the master key.
    assert keys.enc == cmac(master.enc, b"\x01" + bytes(3) + b"\x01\x00" + kdd)
    assert keys.mac == cmac(master.mac, b"\x01" + bytes(3) + b"\x02\x00" + kdd)
    assert keys.dek == cmac(master.dek, b"\x01" + bytes(3) + b"\x03\x00" + kdd)
    assert keys.kvn == 0x32
    assert card_scp03_keys(master, ICCID).kvn == 0x31
    assert card_scp03_keys(master, ICCID).kcvs == card_keys(master, kdd, 0x31).kcvs


# --- SP 800-108 recipes: known answers computed independently --------------------------------------


def sp800_108(master: bytes, label: bytes, kdd: bytes, bits: int = 128) -> bytes:
    return cmac(master, b"\x01" + label + b"\x00" + kdd + bits.to_bytes(2, "big"))


def test_ota_keys_known_answer() -> None:
    kdd = h("98 68 00 21 43 65 87 09 21 F3")
    masters = OtaKeys(MASTER, h("11" * 16), h("22" * 16))
    kic, kid, dek = card_ota_keys(masters, ICCID)
    assert kic == sp800_108(MASTER, b"simwallet:ota:KIc", kdd)
    assert kid == sp800_108(h("11" * 16), b"simwallet:ota:KID", kdd)
    assert dek == sp800_108(h("22" * 16), b"simwallet:ota:DEK", kdd)


def test_wallet_keys_known_answer() -> None:
    kdd = iccid_to_kdd(ICCID)
    kic, kid = card_wallet_keys(WalletKeys(MASTER, h("33" * 16)), ICCID)
    assert kic == sp800_108(MASTER, b"simwallet:wallet:KIc", kdd)
    assert kid == sp800_108(h("33" * 16), b"simwallet:wallet:KID", kdd)


def test_card_secrets_known_answer() -> None:
    kdd = iccid_to_kdd(ICCID)
    secrets = card_secrets(MASTER, ICCID)
    for name, label, digits in (("adm1", b"ADM1", 8), ("puk1", b"PUK1", 8), ("pin2", b"PIN2", 4), ("puk2", b"PUK2", 8)):
        value = int.from_bytes(sp800_108(MASTER, b"simwallet:secret:" + label, kdd), "big") % 10**digits
        assert getattr(secrets, name) == str(value).zfill(digits)


def test_aes256_master_gives_two_blocks() -> None:
    master = bytes(range(32))
    kdd = iccid_to_kdd(ICCID)
    key = card_ota_keys(OtaKeys(master, master, master), ICCID).kic
    fixed = b"simwallet:ota:KIc" + b"\x00" + kdd + (256).to_bytes(2, "big")
    assert key == cmac(master, b"\x01" + fixed) + cmac(master, b"\x02" + fixed)


def test_kdf_refuses_misuse() -> None:
    with pytest.raises(ValueError, match="AES key"):
        kdf_counter_cmac(bytes(15), b"x", b"", 128)
    with pytest.raises(ValueError, match="label"):
        kdf_counter_cmac(MASTER, b"a\x00b", b"", 128)
    with pytest.raises(ValueError, match="length"):
        kdf_counter_cmac(MASTER, b"x", b"", 12)


# --- separation, formats, secrecy ------------------------------------------------------------------


def _everything(master: bytes, iccid: str) -> dict[str, bytes]:
    scp03 = card_scp03_keys(StaticKeys(master, master, master, kvn=0x30), iccid)
    kic, kid, dek = card_ota_keys(OtaKeys(master, master, master), iccid)
    wkic, wkid = card_wallet_keys(WalletKeys(master, master), iccid)
    kdd = iccid_to_kdd(iccid)
    derived = {
        "scp03.enc": scp03.enc,
        "scp03.mac": scp03.mac,
        "scp03.dek": scp03.dek,
        "ota.kic": kic,
        "ota.kid": kid,
        "ota.dek": dek,
        "wallet.kic": wkic,
        "wallet.kid": wkid,
    }
    # The secrets' PRF outputs, before decimalization.
    derived.update({name: kdf_counter_cmac(master, LABELS[name], kdd, 128) for name in LABELS if name.startswith("secret.")})
    return derived


@given(st.binary(min_size=16, max_size=16), st.text(alphabet="0123456789", min_size=19, max_size=20))
def test_no_two_recipes_coincide_even_under_one_master(master: bytes, iccid: str) -> None:
    derived = _everything(master, iccid)
    assert len(derived) == 12
    assert len(set(derived.values())) == len(derived)
    assert master not in derived.values()


def test_labels_are_distinct_and_cards_differ() -> None:
    assert len(set(LABELS.values())) == len(LABELS)
    one, other = _everything(MASTER, ICCID), _everything(MASTER, "8986001234567890124")
    assert all(one[name] != other[name] for name in one)


@given(st.binary(min_size=16, max_size=16), st.text(alphabet="0123456789", min_size=19, max_size=20))
def test_secrets_have_their_formats(master: bytes, iccid: str) -> None:
    secrets = card_secrets(master, iccid)
    for name, digits in (("adm1", 8), ("puk1", 8), ("pin2", 4), ("puk2", 8)):
        value = getattr(secrets, name)
        assert len(value) == digits and value.isascii() and value.isdigit()
    assert card_secrets(master, iccid) == secrets  # deterministic


def test_nothing_secret_in_repr() -> None:
    ota = card_ota_keys(OtaKeys(MASTER, MASTER, MASTER), ICCID)
    wallet = card_wallet_keys(WalletKeys(MASTER, MASTER), ICCID)
    secrets = card_secrets(MASTER, ICCID)
    texts = [repr(ota), str(ota), repr(wallet), str(wallet), repr(secrets), str(secrets)]
    hidden: list[Any] = [*ota, *wallet]
    for text in texts:
        for key in hidden:
            assert key.hex() not in text.lower()
        for value in (secrets.adm1, secrets.puk1, secrets.puk2):
            assert value not in text
    assert kcv(ota.kic).hex().upper() in repr(ota)


def test_secret_values_are_checked() -> None:
    with pytest.raises(ValueError, match="PIN2"):
        CardSecretValues(adm1="12345678", puk1="12345678", pin2="12a4", puk2="12345678")
    with pytest.raises(ValueError, match="KIC"):
        OtaKeys(bytes(15), bytes(16), bytes(16))
