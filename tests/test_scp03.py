"""SCP03 (GlobalPlatform CS v2.3 Amendment D): published vectors, host <-> card, tampering, key hygiene.

Vectors come from tests/vectors/globalplatform.json (provenance in tests/vectors/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simwallet.applet.errors import AppletError, CardStatusError, CodecError, SecurityError
from simwallet.applet.protocols import _crypto
from simwallet.applet.protocols.scp03 import (
    CARD_TRANSITIONS,
    HOST_TRANSITIONS,
    PLAIN_DATA_MAX_ENC,
    PLAIN_DATA_MAX_MAC,
    PLAIN_RESPONSE_MAX_ENC,
    PLAIN_RESPONSE_MAX_MAC,
    SEQUENCE_COUNTER_MAX,
    CardEvent,
    CardState,
    HostEvent,
    HostState,
    InitializeUpdateResponse,
    KeyId,
    Scp03Card,
    Scp03Host,
    SecureChannelError,
    SecurityLevel,
    SessionStateError,
    StaticKeys,
    card_keys,
    diversify_kdf3,
    kcv,
    open_host_session,
    parse_put_key_data,
    pseudo_random_card_challenge,
    put_key_command,
    put_key_data,
    put_key_response,
    verify_put_key_response,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "globalplatform.json").read_text(encoding="utf-8"))
SCP03 = VECTORS["scp03_sessions"]
PLAIN = {name: bytes.fromhex(value) for name, value in SCP03["plain"].items()}
ISD_R_AID = bytes.fromhex(SCP03["card_aid"])
SW_9000 = b"\x90\x00"
CASES = ("c1", "c2", "c3", "c4")
LEVELS = (0x01, 0x03, 0x11, 0x13, 0x33)
h = bytes.fromhex


def keyset(bits: int | str) -> StaticKeys:
    entry = SCP03["keysets"][str(bits)]
    return StaticKeys(enc=h(entry["enc"]), mac=h(entry["mac"]), dek=h(entry["dek"]), kvn=int(entry["kvn"], 16))


SESSIONS = [pytest.param(vector, id=vector["id"]) for vector in SCP03["sessions"]]


def iu_parts(vector: dict[str, Any]) -> tuple[bytes, int, InitializeUpdateResponse]:
    """Host challenge and KVN from the vector's INITIALIZE UPDATE, and its parsed response."""
    command = h(vector["iu_cmd"])
    return command[5:13], command[2], InitializeUpdateResponse.from_bytes(h(vector["iu_rsp"]))


def open_from_vector(vector: dict[str, Any]) -> Scp03Host:
    challenge, kvn, _ = iu_parts(vector)
    host = Scp03Host(keyset(vector["key_bits"]))
    assert host.initialize_update(challenge, kvn) == h(vector["iu_cmd"])
    host.receive_initialize_update(h(vector["iu_rsp"]) + SW_9000)
    assert host.external_authenticate(int(vector["security_level"], 16)) == h(vector["ext_auth"])
    host.receive_external_authenticate(SW_9000)
    assert host.state is HostState.OPEN
    return host


# --- published SCP03 sessions: host side -------------------------------------------------


@pytest.mark.parametrize("vector", SESSIONS)
def test_host_reproduces_pysim_session(vector: dict[str, Any]) -> None:
    host = open_from_vector(vector)
    assert host.wrap(PLAIN["get_eid"]) == h(vector["get_eid"])
    assert host.unwrap(h(vector["get_eid_rsp"]) + SW_9000) == PLAIN["get_eid_rsp"] + SW_9000
    # The chain continues from GET EID through the four cases, in this order.
    for case in CASES:
        assert host.wrap(PLAIN[case]) == h(vector[case]), case


@pytest.mark.parametrize("vector", SESSIONS)
def test_host_rejects_corrupted_card_cryptogram(vector: dict[str, Any]) -> None:
    challenge, kvn, _ = iu_parts(vector)
    response = bytearray(h(vector["iu_rsp"]))
    response[28] ^= 0xFF  # last byte of the card cryptogram (bytes 21..28)
    host = Scp03Host(keyset(vector["key_bits"]))
    host.initialize_update(challenge, kvn)
    with pytest.raises(SecurityError, match="card cryptogram"):
        host.receive_initialize_update(bytes(response) + SW_9000)
    assert host.state is HostState.ERROR
    with pytest.raises(SessionStateError):
        host.external_authenticate(int(vector["security_level"], 16))


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=v["id"]) for v in SCP03["sessions"] if int(v["security_level"], 16) & SecurityLevel.R_MAC],
)
def test_host_rejects_tampered_get_eid_response(vector: dict[str, Any]) -> None:
    host = open_from_vector(vector)
    host.wrap(PLAIN["get_eid"])
    response = bytearray(h(vector["get_eid_rsp"]) + SW_9000)
    response[3] ^= 0x01
    with pytest.raises(SecureChannelError, match="R-MAC"):
        host.unwrap(bytes(response))
    assert host.state is HostState.ERROR


@pytest.mark.parametrize("vector", SESSIONS)
def test_initialize_update_response_codec(vector: dict[str, Any]) -> None:
    data = h(vector["iu_rsp"])
    parsed = InitializeUpdateResponse.from_bytes(data)
    assert parsed == InitializeUpdateResponse(
        key_diversification_data=data[:10],
        key_version=data[10],
        i_param=0x70,
        card_challenge=data[13:21],
        card_cryptogram=data[21:29],
        sequence_counter=int.from_bytes(data[29:32], "big"),
    )
    assert parsed.to_bytes() == data


# --- published SCP03 sessions: card side --------------------------------------------------


def card_for(vector: dict[str, Any], *, from_vector_challenge: bool) -> Scp03Card:
    _, _, response = iu_parts(vector)
    source = (lambda _n: response.card_challenge) if from_vector_challenge else None
    return Scp03Card(
        keyset(vector["key_bits"]),
        kdd=response.key_diversification_data,
        aid=ISD_R_AID,
        i_param=response.i_param,
        sequence_counter=response.sequence_counter or 0,
        challenge_rng=source,
    )


@pytest.mark.parametrize("from_vector_challenge", [True, False], ids=["given-challenge", "pseudo-random"])
@pytest.mark.parametrize("vector", SESSIONS)
def test_card_reproduces_initialize_update_response(vector: dict[str, Any], from_vector_challenge: bool) -> None:
    card = card_for(vector, from_vector_challenge=from_vector_challenge)
    counter = card.sequence_counter
    assert card.process_initialize_update(h(vector["iu_cmd"])) == h(vector["iu_rsp"]) + SW_9000
    assert card.sequence_counter == counter + 1
    assert card.state is CardState.INITIALIZED


@pytest.mark.parametrize("vector", SESSIONS)
def test_pseudo_random_challenge_matches_vector(vector: dict[str, Any]) -> None:
    _, _, response = iu_parts(vector)
    assert response.sequence_counter is not None
    key_enc = keyset(vector["key_bits"]).enc
    assert pseudo_random_card_challenge(key_enc, response.sequence_counter, ISD_R_AID) == response.card_challenge


@pytest.mark.parametrize("vector", SESSIONS)
def test_card_accepts_pysim_commands(vector: dict[str, Any]) -> None:
    card = card_for(vector, from_vector_challenge=False)
    card.process_initialize_update(h(vector["iu_cmd"]))
    assert card.process_external_authenticate(h(vector["ext_auth"])) == SW_9000
    assert card.state is CardState.OPEN
    assert card.security_level == int(vector["security_level"], 16)
    assert card.unwrap_command(h(vector["get_eid"])) == PLAIN["get_eid"]
    # The card's R-MAC / R-ENCRYPTION reproduce the vector's response byte for byte.
    assert card.wrap_response(PLAIN["get_eid_rsp"] + SW_9000) == h(vector["get_eid_rsp"]) + SW_9000
    for case in CASES:
        assert card.unwrap_command(h(vector[case])) == PLAIN[case], case


@pytest.mark.parametrize("vector", SESSIONS)
def test_card_rejects_wrong_host_cryptogram(vector: dict[str, Any]) -> None:
    card = card_for(vector, from_vector_challenge=False)
    card.process_initialize_update(h(vector["iu_cmd"]))
    command = bytearray(h(vector["ext_auth"]))
    command[5] ^= 0x80  # first byte of the host cryptogram
    assert card.process_external_authenticate(bytes(command)) == b"\x63\x00"
    assert card.state is CardState.IDLE
    with pytest.raises(SecureChannelError) as info:
        card.unwrap_command(h(vector["get_eid"]))
    assert info.value.sw == 0x6982


# --- key check values and diversification ---------------------------------------------------


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in VECTORS["kcv"]["vectors"]])
def test_kcv_pysim(vector: dict[str, str]) -> None:
    assert kcv(h(vector["key"])) == h(vector["kcv"])


KDF3 = VECTORS["gppro_kdf3"]


@pytest.mark.parametrize("key_id", list(KeyId), ids=lambda k: k.name)
@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in KDF3["vectors"]])
def test_kdf3_kcv_gppro(vector: dict[str, str], key_id: KeyId) -> None:
    key = diversify_kdf3(h(vector["master"]), h(KDF3["kdd"]), key_id)
    assert len(key) == len(h(vector["master"]))
    assert kcv(key) == h(vector[f"kcv_{key_id.name.lower()}"])


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in KDF3["vectors"]])
def test_card_keys_gppro(vector: dict[str, str]) -> None:
    master = h(vector["master"])
    keys = card_keys(StaticKeys(enc=master, mac=master, dek=master, kvn=0x30), h(KDF3["kdd"]), kvn=0x31)
    assert keys.kvn == 0x31
    assert keys.kcvs == (h(vector["kcv_enc"]), h(vector["kcv_mac"]), h(vector["kcv_dek"]))


def test_kdf3_external_vector() -> None:
    vector = VECTORS["gppro_kdf3_external"]
    assert diversify_kdf3(h(vector["master"]), h(vector["kdd"]), KeyId.ENC) == h(vector["enc"])


def test_kdf3_rejects_bad_input() -> None:
    with pytest.raises(CodecError):
        diversify_kdf3(bytes(16), bytes(9), KeyId.ENC)
    with pytest.raises(CodecError):
        diversify_kdf3(bytes(15), bytes(10), KeyId.ENC)
    with pytest.raises(CodecError):
        diversify_kdf3(bytes(16), bytes(10), 4)


# --- primitives checked against published DES/3DES data ----------------------------------------


def _fill_template(template: str, kdd: bytes, key_id: int) -> bytes:
    out = []
    for token in template.split():
        if token == "$k":
            out.append(key_id)
        elif token.startswith("$"):
            out.append(kdd[int(token[1:])])
        else:
            out.append(int(token, 16))
    return bytes(out)


DES = VECTORS["gppro_des"]


@pytest.mark.parametrize("key_id", list(KeyId), ids=lambda k: k.name)
@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in DES["vectors"]])
def test_tdes_reproduces_gppro_des_kcvs(vector: dict[str, str], key_id: KeyId) -> None:
    master, kdd, zero = h(DES["master"]), h(DES["kdd"]), bytes(8)
    block = _fill_template(vector["template"], kdd, key_id)
    key = _crypto.tdes_cbc_encrypt(master, zero, block[:8]) + _crypto.tdes_cbc_encrypt(master, zero, block[8:])
    assert _crypto.tdes_cbc_encrypt(key, zero, zero)[:3] == h(vector[f"kcv_{key_id.name.lower()}"])
    assert _crypto.tdes_cbc_decrypt(master, zero, key[:8]) == block[:8]


def test_retail_mac_reproduces_scp02_external_authenticate() -> None:
    vector = VECTORS["scp02_external_authenticate"]
    enc, mac, zero = h(vector["enc"]), h(vector["mac"]), bytes(8)
    response, host_challenge = h(vector["iu_rsp"]), h(vector["host_challenge"])
    counter, card_challenge, card_cryptogram = response[12:14], response[14:20], response[20:28]
    # GP CS v2.3 Appendix E (SCP02): session keys by 3DES-CBC, cryptograms by full 3DES MAC.
    s_enc = _crypto.tdes_cbc_encrypt(enc, zero, b"\x01\x82" + counter + bytes(12))
    s_mac = _crypto.tdes_cbc_encrypt(mac, zero, b"\x01\x01" + counter + bytes(12))

    def full_mac(data: bytes) -> bytes:
        return _crypto.tdes_cbc_encrypt(s_enc, zero, _crypto.pad_iso9797_m2(data, 8))[-8:]

    assert full_mac(host_challenge + counter + card_challenge) == card_cryptogram
    header = h("8482010010")
    host_cryptogram = full_mac(counter + card_challenge + host_challenge)
    assert header + host_cryptogram + _crypto.retail_mac(s_mac, header + host_cryptogram) == h(vector["ext_auth_sl01"])


@given(st.binary(max_size=80), st.sampled_from([8, 16]))
def test_iso9797_m2_padding_round_trip(data: bytes, block: int) -> None:
    padded = _crypto.pad_iso9797_m2(data, block)
    assert len(padded) % block == 0
    assert 1 <= len(padded) - len(data) <= block
    assert _crypto.unpad_iso9797_m2(padded, block) == data


@pytest.mark.parametrize(
    "padded",
    [b"", b"\x00" * 16, b"\x01" * 16, b"A" * 15 + b"\x81", b"\x80" + bytes(16), b"A" * 17],
    ids=["empty", "zeros", "no-marker", "bad-marker", "over-a-block", "unaligned"],
)
def test_iso9797_m2_bad_padding(padded: bytes) -> None:
    with pytest.raises(_crypto.PaddingError):
        _crypto.unpad_iso9797_m2(padded, 16)


def test_primitive_argument_checks() -> None:
    with pytest.raises(ValueError):
        _crypto.aes_cmac(bytes(15), b"")
    with pytest.raises(ValueError):
        _crypto.aes_cbc_encrypt(bytes(16), bytes(16), bytes(15))
    with pytest.raises(ValueError):
        _crypto.aes_ecb_block(bytes(16), bytes(15))
    with pytest.raises(ValueError):
        _crypto.tdes_cbc_encrypt(bytes(12), bytes(8), bytes(8))
    with pytest.raises(ValueError):
        _crypto.retail_mac(bytes(24), b"")
    assert len(_crypto.aes_cmac_truncated(bytes(16), b"x", 8)) == 8


# --- host <-> card round trips ----------------------------------------------------------------

KEYS_BY_SIZE = {
    size: StaticKeys(enc=bytes(range(1, size + 1)), mac=bytes(range(2, size + 2)), dek=bytes(range(3, size + 3)), kvn=0x30)
    for size in (16, 24, 32)
}


def counting_rng(seed: int = 0) -> Callable[[int], bytes]:
    state = [seed]

    def rng(n: int) -> bytes:
        state[0] += 1
        return state[0].to_bytes(n, "big")

    return rng


def open_pair(keys: StaticKeys, level: int, *, i_param: int = 0x70, sequence_counter: int = 5) -> tuple[Scp03Host, Scp03Card]:
    card = Scp03Card(
        keys,
        kdd=bytes(range(10)),
        aid=ISD_R_AID,
        i_param=i_param,
        sequence_counter=sequence_counter,
        challenge_rng=None if i_param & 0x10 else counting_rng(100),
    )
    host, command = open_host_session(keys, rng=counting_rng(), kvn=keys.kvn)
    host.receive_initialize_update(card.process_initialize_update(command))
    host.receive_external_authenticate(card.process_external_authenticate(host.external_authenticate(level)))
    assert host.state is HostState.OPEN
    assert card.state is CardState.OPEN
    return host, card


PROCESSED_SW = st.sampled_from([0x9000, 0x6200, 0x6310, 0x63C2])
ERROR_SW = st.sampled_from([0x6982, 0x6A82, 0x6D00, 0x6F00, 0x6A88])
CLASS_BYTES = st.sampled_from([0x00, 0x01, 0x03, 0x80, 0x81, 0x83, 0x40, 0x4F, 0xC0, 0xC7, 0x90])


@st.composite
def commands(draw: st.DrawFn, max_data: int = PLAIN_DATA_MAX_ENC) -> bytes:
    header = bytes([draw(CLASS_BYTES), draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(st.integers(0, 255))])
    case = draw(st.integers(1, 4))
    data = draw(st.binary(min_size=1, max_size=max_data)) if case >= 3 else b""
    le = bytes([draw(st.integers(0, 255))]) if case in (2, 4) else b""
    return header + (bytes([len(data)]) + data if data else b"") + le


@st.composite
def responses(draw: st.DrawFn, max_data: int = PLAIN_RESPONSE_MAX_ENC) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=max_data)) + draw(PROCESSED_SW).to_bytes(2, "big")
    return draw(ERROR_SW).to_bytes(2, "big")


ROUND_TRIP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("size", [16, 24, 32], ids=["aes128", "aes192", "aes256"])
@pytest.mark.parametrize("level", LEVELS, ids=lambda level: f"SL{level:02X}")
@ROUND_TRIP
@given(exchanges=st.lists(st.tuples(commands(), responses()), min_size=1, max_size=4))
def test_round_trip(level: int, size: int, exchanges: list[tuple[bytes, bytes]]) -> None:
    host, card = open_pair(KEYS_BY_SIZE[size], level)
    for command, response in exchanges:
        wrapped = host.wrap(command)
        assert wrapped[0] != command[0]  # secure messaging indicated
        assert card.unwrap_command(wrapped) == command
        assert host.unwrap(card.wrap_response(response)) == response
        assert host.state is HostState.OPEN
        assert card.state is CardState.OPEN


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: f"SL{level:02X}")
def test_round_trip_at_the_size_limits(level: int) -> None:
    host, card = open_pair(KEYS_BY_SIZE[16], level)
    data_max = PLAIN_DATA_MAX_ENC if level & SecurityLevel.C_DECRYPTION else PLAIN_DATA_MAX_MAC
    response_max = PLAIN_RESPONSE_MAX_ENC if level & SecurityLevel.R_ENCRYPTION else PLAIN_RESPONSE_MAX_MAC
    if not level & SecurityLevel.R_MAC:
        response_max = 256
    command = bytes([0x80, 0xE2, 0x90, 0x00, data_max]) + bytes(data_max) + b"\x00"
    wrapped = host.wrap(command)
    assert len(wrapped) <= 5 + 255 + 1
    assert card.unwrap_command(wrapped) == command
    response = b"\xab" * response_max + SW_9000
    assert host.unwrap(card.wrap_response(response)) == response
    too_long = bytes([0x80, 0xE2, 0x90, 0x00, data_max + 1]) + bytes(data_max + 1)
    with pytest.raises(CodecError):
        host.wrap(too_long)
    card.unwrap_command(host.wrap(command))
    with pytest.raises(CodecError):
        if level & SecurityLevel.R_MAC:
            card.wrap_response(b"\xab" * (response_max + 1) + SW_9000)
        else:
            host.unwrap(bytes(257) + SW_9000)


@pytest.mark.parametrize("level", [0x11, 0x13, 0x33], ids=lambda level: f"SL{level:02X}")
def test_error_status_words_carry_no_r_mac(level: int) -> None:
    host, card = open_pair(KEYS_BY_SIZE[16], level)
    card.unwrap_command(host.wrap(PLAIN["get_eid"]))
    # Amendment D: after an error status word only the status word is returned.
    assert card.wrap_response(b"\x01\x02\x6a\x82") == b"\x6a\x82"
    assert host.unwrap(b"\x6a\x82") == b"\x6a\x82"
    card.unwrap_command(host.wrap(PLAIN["c1"]))
    with pytest.raises(SecureChannelError):
        host.unwrap(b"\x01\x02\x6a\x82")


# --- tampering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: f"SL{level:02X}")
@settings(max_examples=60, deadline=None)
@given(command=commands(), where=st.integers(0, 300), flip=st.integers(1, 255))
def test_tampered_command_is_rejected(level: int, command: bytes, where: int, flip: int) -> None:
    host, card = open_pair(KEYS_BY_SIZE[16], level)
    wrapped = bytearray(host.wrap(command))
    has_le = len(command) == 5 or (len(command) > 5 and len(command) == 6 + command[4])
    # Le is outside the C-MAC (Amendment D MACs header, Lc and data only): every other byte is covered.
    protected = len(wrapped) - (1 if has_le else 0)
    wrapped[where % protected] ^= flip
    with pytest.raises(SecureChannelError) as info:
        card.unwrap_command(bytes(wrapped))
    assert info.value.sw == 0x6982
    assert card.state is CardState.IDLE
    # The session is gone: even the genuine command is refused now.
    with pytest.raises(SecureChannelError):
        card.unwrap_command(host.wrap(command))


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: f"SL{level:02X}")
@settings(max_examples=30, deadline=None)
@given(command=commands(), cut=st.integers(1, 8))
def test_truncated_or_extended_command_is_rejected(level: int, command: bytes, cut: int) -> None:
    has_le = len(command) == 5 or (len(command) > 5 and len(command) == 6 + command[4])
    for shorten in (True, False):
        host, card = open_pair(KEYS_BY_SIZE[16], level)
        wrapped = host.wrap(command)
        changed = wrapped[:-cut] if shorten else wrapped + bytes(cut)
        if cut == 1 and shorten == has_le:
            # Only Le appeared or vanished: Le is outside the C-MAC, so the command still verifies.
            expected = command[:-1] if shorten else command + b"\x00"
            assert card.unwrap_command(changed) == expected
            continue
        with pytest.raises(SecureChannelError):
            card.unwrap_command(changed)


def test_le_is_not_covered_by_the_c_mac() -> None:
    host, card = open_pair(KEYS_BY_SIZE[16], 0x33)
    wrapped = host.wrap(PLAIN["c4"])
    assert card.unwrap_command(wrapped[:-1] + b"\x10") == PLAIN["c4"][:-1] + b"\x10"


@pytest.mark.parametrize("level", [0x11, 0x13, 0x33], ids=lambda level: f"SL{level:02X}")
@settings(max_examples=40, deadline=None)
@given(response=st.binary(max_size=PLAIN_RESPONSE_MAX_ENC), where=st.integers(0, 300), flip=st.integers(1, 255))
def test_tampered_response_is_rejected(level: int, response: bytes, where: int, flip: int) -> None:
    host, card = open_pair(KEYS_BY_SIZE[16], level)
    card.unwrap_command(host.wrap(PLAIN["get_eid"]))
    wrapped = bytearray(card.wrap_response(response + SW_9000))
    wrapped[where % len(wrapped)] ^= flip
    with pytest.raises(SecurityError):
        host.unwrap(bytes(wrapped))
    assert host.state is HostState.ERROR


def test_plain_command_inside_a_session_closes_it() -> None:
    _, card = open_pair(KEYS_BY_SIZE[16], 0x01)
    with pytest.raises(SecureChannelError) as info:
        card.unwrap_command(PLAIN["get_eid"])
    assert info.value.sw == 0x6982
    assert card.state is CardState.IDLE
    # Outside a session plain commands pass through, even malformed or GSM-class ones.
    for command in (PLAIN["get_eid"], b"\xa0\xa4\x00\x00\x02\x3f\x00", b"\x00\xb0"):
        assert card.unwrap_command(command) == command
        assert card.wrap_response(b"\x90\x00") == b"\x90\x00"


# --- negotiation failures -------------------------------------------------------------------------


def test_host_refuses_levels_the_card_does_not_offer() -> None:
    keys = KEYS_BY_SIZE[16]
    card = Scp03Card(keys, kdd=bytes(10), aid=ISD_R_AID, i_param=0x10)
    host = Scp03Host(keys)
    host.receive_initialize_update(card.process_initialize_update(host.initialize_update(bytes(8))))
    for level in (0x11, 0x13, 0x33, 0x00, 0x02, 0x31, 0x12):
        with pytest.raises(CodecError):
            host.external_authenticate(level)
    assert host.state is HostState.CARD_AUTHENTICATED
    # The card refuses the level too when asked directly (6A86) and closes.
    forged = bytes([0x84, 0x82, 0x11, 0x00, 0x10]) + bytes(16)
    assert card.process_external_authenticate(forged) == b"\x6a\x86"
    assert card.state is CardState.IDLE


def test_wrong_keys_fail_both_ways() -> None:
    keys, other = KEYS_BY_SIZE[16], StaticKeys(enc=bytes(16), mac=bytes(16), dek=bytes(16), kvn=0x30)
    card = Scp03Card(keys, kdd=bytes(10), aid=ISD_R_AID)
    host = Scp03Host(other)
    with pytest.raises(SecureChannelError, match="card cryptogram"):
        host.receive_initialize_update(card.process_initialize_update(host.initialize_update(bytes(8))))
    # A host that skips the check still cannot authenticate: the card answers 6300.
    rogue = Scp03Card(other, kdd=bytes(10), aid=ISD_R_AID)
    host = Scp03Host(other)
    host.receive_initialize_update(rogue.process_initialize_update(host.initialize_update(bytes(8))))
    card.process_initialize_update(bytes([0x80, 0x50, 0x30, 0x00, 0x08]) + bytes(8) + b"\x00")
    answer = card.process_external_authenticate(host.external_authenticate(0x01))
    assert answer == b"\x63\x00"
    with pytest.raises(SecureChannelError) as info:
        host.receive_external_authenticate(answer)
    assert info.value.sw == 0x6300
    assert host.state is HostState.ERROR


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        ("8050300008" + "00" * 8 + "00", "9000"),
        ("8050000008" + "00" * 8, "9000"),
        ("8050310008" + "00" * 8 + "00", "6a88"),
        ("8050300108" + "00" * 8 + "00", "6a86"),
        ("8050300007" + "00" * 7 + "00", "6700"),
        ("8450300008" + "00" * 8 + "00", "6e00"),
        ("0050300008" + "00" * 8 + "00", "6e00"),
        ("80503000", "6700"),
        ("8050300009" + "00" * 8, "6700"),
    ],
    ids=["ok", "any-kvn-case3", "unknown-kvn", "p2", "short-challenge", "sm-class", "iso-class", "case1", "bad-lc"],
)
def test_card_initialize_update_checks(command: str, sw: str) -> None:
    card = Scp03Card(KEYS_BY_SIZE[16], kdd=bytes(10), aid=ISD_R_AID)
    assert card.process_initialize_update(h(command))[-2:] == h(sw)
    assert card.state is (CardState.INITIALIZED if sw == "9000" else CardState.IDLE)


def test_card_status_errors_reach_the_host() -> None:
    host = Scp03Host(KEYS_BY_SIZE[16])
    host.initialize_update(bytes(8))
    with pytest.raises(CardStatusError) as info:
        host.receive_initialize_update(b"\x6a\x88")
    assert info.value.sw == 0x6A88
    assert host.state is HostState.ERROR
    host = Scp03Host(KEYS_BY_SIZE[16])
    card = Scp03Card(KEYS_BY_SIZE[16], kdd=bytes(10), aid=ISD_R_AID)
    host.receive_initialize_update(card.process_initialize_update(host.initialize_update(bytes(8))))
    host.external_authenticate(0x01)
    with pytest.raises(CardStatusError):
        host.receive_external_authenticate(b"\x69\x85")


@pytest.mark.parametrize(
    "response",
    [
        "",
        "90",
        "00" * 28 + "9000",
        "00" * 10 + "3002" + "00" * 17 + "9000",
        "00" * 10 + "300310" + "00" * 16 + "9000",
        "00" * 10 + "300300" + "00" * 19 + "9000",
    ],
    ids=["empty", "one-byte", "short", "scp02", "counter-missing", "counter-unexpected"],
)
def test_host_rejects_malformed_initialize_update_response(response: str) -> None:
    host = Scp03Host(KEYS_BY_SIZE[16])
    host.initialize_update(bytes(8))
    with pytest.raises(CodecError):
        host.receive_initialize_update(h(response))
    assert host.state is HostState.ERROR


def test_host_rejects_a_different_key_version() -> None:
    card = Scp03Card(StaticKeys(enc=bytes(16), mac=bytes(16), dek=bytes(16), kvn=0x31), kdd=bytes(10), aid=ISD_R_AID)
    host = Scp03Host(StaticKeys(enc=bytes(16), mac=bytes(16), dek=bytes(16), kvn=0x30))
    with pytest.raises(SecureChannelError, match="key set"):
        host.receive_initialize_update(card.process_initialize_update(host.initialize_update(bytes(8))))
    with pytest.raises(CodecError):
        Scp03Host(KEYS_BY_SIZE[16]).initialize_update(bytes(8), kvn=0x31)


def test_random_challenge_card_and_sequence_counter_limit() -> None:
    keys = KEYS_BY_SIZE[16]
    host, card = open_pair(keys, 0x13, i_param=0x60)
    assert host.card_info is not None
    assert host.card_info.sequence_counter is None
    card = Scp03Card(keys, kdd=bytes(10), aid=ISD_R_AID, sequence_counter=SEQUENCE_COUNTER_MAX)
    iu = bytes([0x80, 0x50, 0x00, 0x00, 0x08]) + bytes(8) + b"\x00"
    assert card.process_initialize_update(iu)[-2:] == SW_9000
    assert card.process_initialize_update(iu) == b"\x69\x85"
    with pytest.raises(CodecError):
        Scp03Card(keys, kdd=bytes(10), aid=ISD_R_AID, i_param=0x60)  # random challenges need a challenge_rng


def test_host_with_key_resolver_diversifies_by_kdd() -> None:
    master = StaticKeys(enc=bytes(range(16)), mac=bytes(range(16, 32)), dek=bytes(range(32, 48)), kvn=0x01)
    iccid = bytes.fromhex("98940000000000001234")
    card = Scp03Card(card_keys(master, iccid, kvn=0x30), kdd=iccid, aid=ISD_R_AID)
    host, command = open_host_session(lambda response: card_keys(master, response.key_diversification_data, kvn=0x30), rng=counting_rng())
    host.receive_initialize_update(card.process_initialize_update(command))
    host.receive_external_authenticate(card.process_external_authenticate(host.external_authenticate(0x33)))
    assert card.unwrap_command(host.wrap(PLAIN["c3"])) == PLAIN["c3"]


# --- state tables -----------------------------------------------------------------------------------


class Rig:
    """A host and a card, with the card's answer to whatever the host sent last."""

    def __init__(self) -> None:
        self.keys = KEYS_BY_SIZE[16]
        self.host = Scp03Host(self.keys)
        self.card = Scp03Card(self.keys, kdd=bytes(10), aid=ISD_R_AID)
        self.sent = b""

    def answer(self) -> bytes:
        if self.sent[1:2] == b"\x50":
            return self.card.process_initialize_update(self.sent)
        if self.sent[1:2] == b"\x82":
            return self.card.process_external_authenticate(self.sent)
        if self.sent:
            self.card.unwrap_command(self.sent)
            return self.card.wrap_response(b"\x42" + SW_9000)
        return SW_9000

    def host_event(self, event: HostEvent) -> None:
        if event is HostEvent.INITIALIZE_UPDATE:
            self.sent = self.host.initialize_update(bytes(8))
        elif event is HostEvent.EXTERNAL_AUTHENTICATE:
            self.sent = self.host.external_authenticate(0x33)
        elif event is HostEvent.WRAP:
            self.sent = self.host.wrap(PLAIN["c3"])
        elif event is HostEvent.INITIALIZE_UPDATE_RESPONSE:
            self.host.receive_initialize_update(self.answer())
        elif event is HostEvent.EXTERNAL_AUTHENTICATE_RESPONSE:
            self.host.receive_external_authenticate(self.answer())
        else:
            self.host.unwrap(self.answer())


HOST_PATH = [
    HostEvent.INITIALIZE_UPDATE,
    HostEvent.INITIALIZE_UPDATE_RESPONSE,
    HostEvent.EXTERNAL_AUTHENTICATE,
    HostEvent.EXTERNAL_AUTHENTICATE_RESPONSE,
    HostEvent.WRAP,
]


def host_in(state: HostState) -> Rig:
    rig = Rig()
    if state is HostState.CLOSED:
        rig.host.close()
        return rig
    if state is HostState.ERROR:
        with pytest.raises(SessionStateError):
            rig.host.unwrap(SW_9000)
        return rig
    for event in HOST_PATH:
        if rig.host.state is state:
            break
        rig.host_event(event)
    assert rig.host.state is state
    return rig


@pytest.mark.parametrize("event", list(HostEvent), ids=lambda e: e.name)
@pytest.mark.parametrize("state", list(HostState), ids=lambda s: s.name)
def test_host_state_table(state: HostState, event: HostEvent) -> None:
    rig = host_in(state)
    expected = HOST_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(SessionStateError):
            rig.host_event(event)
        assert rig.host.state is HostState.ERROR
    else:
        rig.host_event(event)
        assert rig.host.state is expected


def card_in(state: CardState) -> Rig:
    rig = Rig()
    steps: dict[CardState, list[HostEvent]] = {
        CardState.IDLE: [],
        CardState.INITIALIZED: HOST_PATH[:2],
        CardState.OPEN: HOST_PATH[:4],
        CardState.RESPONDING: HOST_PATH[:4],
    }
    for event in steps[state]:
        rig.host_event(event)
    if state is CardState.RESPONDING:
        rig.card.unwrap_command(rig.host.wrap(PLAIN["c1"]))
    assert rig.card.state is state
    return rig


def card_event(rig: Rig, event: CardEvent) -> None:
    host = rig.host
    if event is CardEvent.INITIALIZE_UPDATE:
        assert rig.card.process_initialize_update(bytes([0x80, 0x50, 0, 0, 8]) + bytes(8) + b"\x00")[-2:] == SW_9000
    elif event is CardEvent.EXTERNAL_AUTHENTICATE:
        command = (
            host.external_authenticate(0x33)
            if host.state is HostState.CARD_AUTHENTICATED
            else bytes([0x84, 0x82, 0x33, 0, 0x10]) + bytes(16)
        )
        answer = rig.card.process_external_authenticate(command)
        if answer != SW_9000:
            raise SecureChannelError("refused", int.from_bytes(answer, "big"))
    elif event is CardEvent.PLAIN_COMMAND:
        rig.card.unwrap_command(PLAIN["c2"])
    elif event is CardEvent.SECURE_COMMAND:
        wrapped = (
            host.wrap(PLAIN["c2"]) if host.state in (HostState.OPEN, HostState.AWAITING_RESPONSE) else b"\x84\xca\x00\x66\x08" + bytes(8)
        )
        rig.card.unwrap_command(wrapped)
    else:
        rig.card.wrap_response(SW_9000)


@pytest.mark.parametrize("event", list(CardEvent), ids=lambda e: e.name)
@pytest.mark.parametrize("state", list(CardState), ids=lambda s: s.name)
def test_card_state_table(state: CardState, event: CardEvent) -> None:
    rig = card_in(state)
    expected = CARD_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(AppletError) as info:
            card_event(rig, event)
        assert rig.card.state is CardState.IDLE
        # Remote commands out of order get a status word; local calls out of order are misuse.
        if event is CardEvent.RESPONSE:
            assert isinstance(info.value, SessionStateError)
        else:
            assert isinstance(info.value, SecureChannelError)
            assert info.value.sw == (0x6985 if event is CardEvent.EXTERNAL_AUTHENTICATE else 0x6982)
    else:
        card_event(rig, event)
        assert rig.card.state is expected


# --- PUT KEY ------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    size=st.sampled_from([16, 24, 32]),
    dek_size=st.sampled_from([16, 24, 32]),
    seed=st.binary(min_size=32, max_size=32),
    kvn=st.integers(1, 0x7F),
)
def test_put_key_round_trip(size: int, dek_size: int, seed: bytes, kvn: int) -> None:
    new = StaticKeys(enc=seed[:size], mac=seed[::-1][:size], dek=bytes(b ^ 0x5A for b in seed[:size]), kvn=kvn)
    dek = bytes(range(dek_size))
    data = put_key_data(new, dek)
    block = 1 + 1 + 1 + (32 if size == 24 else size) + 1 + 3
    assert len(data) == 1 + 3 * block
    assert data[0] == kvn
    assert data[1:4] == bytes([0x88, block - 6, size])
    parsed = parse_put_key_data(data, dek)
    assert (parsed.kvn, parsed.kcvs) == (kvn, new.kcvs)
    assert (parsed.enc, parsed.mac, parsed.dek) == (new.enc, new.mac, new.dek)
    verify_put_key_response(put_key_response(parsed), new)


def test_put_key_known_layout() -> None:
    # Key-ENC 000102...0F encrypted under DEK 202122...2F with AES-CBC, ICV 0 (a single block: ECB).
    new, dek = keyset(128), keyset(128).dek
    data = put_key_data(new, dek)
    assert data[:4] == h("30881110")
    assert data[4:20] == _crypto.aes_ecb_block(dek, new.enc)
    assert data[20:24] == h("03C35280")


def test_put_key_tampering() -> None:
    new, dek = keyset(128), keyset(128).dek
    data = put_key_data(new, dek)
    for index in (5, 21, 30, 45):  # first encrypted key, its KCV, second encrypted key, its KCV
        bad = bytearray(data)
        bad[index] ^= 0x01
        with pytest.raises(SecureChannelError, match="KCV") as info:
            parse_put_key_data(bytes(bad), dek)
        assert info.value.sw == 0x9485
    with pytest.raises(SecureChannelError):
        parse_put_key_data(data, keyset(128).mac)
    for bad_data in (b"", data[:-1], data + b"\x00", data[:1] + b"\x80" + data[2:], data[:2] + b"\x12" + data[3:]):
        with pytest.raises(CodecError):
            parse_put_key_data(bad_data, dek)
    with pytest.raises(SecureChannelError):
        verify_put_key_response(put_key_response(new)[:-1] + b"\x00", new)


def test_put_key_command_through_the_channel() -> None:
    host, card = open_pair(KEYS_BY_SIZE[16], 0x33)
    new = keyset(256)
    command = put_key_command(new, KEYS_BY_SIZE[16].dek, replace_kvn=0x30)
    assert command[:4] == h("80D83081")
    plain = card.unwrap_command(host.wrap(command))
    assert plain == command
    received = parse_put_key_data(plain[5:-1], KEYS_BY_SIZE[16].dek)
    response = card.wrap_response(put_key_response(received) + SW_9000)
    verify_put_key_response(host.unwrap(response)[:-2], new)


# --- key hygiene ----------------------------------------------------------------------------------------


def secret_hex(*keys: bytes) -> Iterator[str]:
    for key in keys:
        yield key.hex()
        yield key.hex().upper()


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_static_keys_repr_hides_keys(bits: int) -> None:
    keys = keyset(bits)
    for text in (repr(keys), str(keys), f"{keys}", repr([keys])):
        assert "kvn=0x3" in text
        for secret in secret_hex(keys.enc, keys.mac, keys.dek):
            assert secret not in text
    assert kcv(keys.enc).hex().upper() in repr(keys)


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: f"SL{level:02X}")
def test_session_repr_hides_keys(level: int) -> None:
    keys = KEYS_BY_SIZE[32]
    host, card = open_pair(keys, level)
    channel = host._channel  # the session keys, read here only to prove they are not printed
    assert channel is not None
    secrets = [keys.enc, keys.mac, keys.dek, channel.keys.s_enc, channel.keys.s_mac, channel.keys.s_rmac, channel.chain]
    for obj in (host, card, channel, channel.keys, host.card_info):
        for text in (repr(obj), str(obj)):
            for secret in secret_hex(*secrets):
                assert secret not in text


def test_error_messages_hide_keys() -> None:
    keys = KEYS_BY_SIZE[16]
    host, card = open_pair(keys, 0x33)
    wrapped = bytearray(host.wrap(PLAIN["c3"]))
    wrapped[-1] ^= 1
    with pytest.raises(SecureChannelError) as info:
        card.unwrap_command(bytes(wrapped))
    text = f"{info.value!s} {info.value!r} {info.value.__cause__!r}"
    for secret in secret_hex(keys.enc, keys.mac, keys.dek):
        assert secret not in text


def test_static_keys_validation() -> None:
    with pytest.raises(CodecError):
        StaticKeys(enc=bytes(16), mac=bytes(15), dek=bytes(16), kvn=1)
    with pytest.raises(CodecError):
        StaticKeys(enc=bytes(16), mac=bytes(16), dek=bytes(16), kvn=0)
    with pytest.raises(CodecError):
        Scp03Host(KEYS_BY_SIZE[16]).initialize_update(bytes(7))


@given(
    kdd=st.binary(min_size=10, max_size=10),
    kvn=st.integers(0, 255),
    i_param=st.integers(0, 255),
    challenge=st.binary(min_size=8, max_size=8),
    cryptogram=st.binary(min_size=8, max_size=8),
    counter=st.integers(0, SEQUENCE_COUNTER_MAX),
)
def test_initialize_update_response_round_trip(
    kdd: bytes, kvn: int, i_param: int, challenge: bytes, cryptogram: bytes, counter: int
) -> None:
    response = InitializeUpdateResponse(kdd, kvn, i_param, challenge, cryptogram, counter if i_param & 0x10 else None)
    data = response.to_bytes()
    assert len(data) == (32 if i_param & 0x10 else 29)
    assert InitializeUpdateResponse.from_bytes(data) == response
