"""TS 102 225 / TS 31.115 secured packets: published vectors, one-SMS capacity, PoR checks, key hygiene.

Vectors come from tests/vectors/ota.json (provenance in tests/vectors/README.md). Round trips,
tampering, counters and security levels are in test_secured_checks.py; the field codecs and the
parsers' robustness in test_secured_fields.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from secured_helpers import AES128, BAD_RESPONSES, CIPHERED_CC, COMMANDS, RESPONSES, SJA5, TAR, VECTORS, keyset_of, only

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols import _ota_crypto
from simwallet.applet.protocols.secured import (
    COMMAND_UDH,
    SMS_USER_DATA_MAX_OCTETS,
    CcAlgorithm,
    ChecksumError,
    CipherAlgorithm,
    CommandBody,
    CommandFrame,
    CompactRemoteResponse,
    CounterHighError,
    CounterLowError,
    CounterMode,
    KeySet,
    OtaSecurityError,
    ResponseFrame,
    ResponseStatus,
    Spi,
    Tar,
    UnidentifiedSecurityError,
    unwrap_command,
    unwrap_response,
    wrap_command,
    wrap_response,
)

# --- published vectors --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", COMMANDS)
def test_wrap_reproduces_the_published_command_packet(vector: dict[str, Any]) -> None:
    packet = wrap_command(
        h(vector["script"]),
        keyset_of(vector["keyset"]),
        spi=Spi.from_bytes(h(vector["spi"])),
        tar=h(vector["tar"]),
        counter=vector["counter"],
        with_udh=vector["with_udh"],
    )
    assert packet == h(vector["packet"])
    if "published" in vector:  # pySim drops the CPL of unciphered packets (collection §5.6, discrepancy 1)
        assert packet[2:] == h(vector["published"])


@pytest.mark.parametrize("vector", COMMANDS)
def test_unwrap_gives_the_script_back(vector: dict[str, Any]) -> None:
    spi = Spi.from_bytes(h(vector["spi"]))
    keyset = keyset_of(vector["keyset"])
    tar = Tar(h(vector["tar"]))
    packet = unwrap_command(h(vector["packet"]), only(keyset, tar), last_counter=vector["last_counter"])
    assert packet.data == h(vector["script"])
    assert (packet.spi, packet.tar, packet.counter, packet.with_udh) == (spi, tar, vector["counter"], vector["with_udh"])
    assert packet.kic == keyset.kic_ref
    assert packet.kid == keyset.kid_ref(spi.checksum)
    expected_last = vector["counter"] if spi.counter >= CounterMode.HIGHER else vector["last_counter"]
    assert packet.last_counter == expected_last


@pytest.mark.parametrize("vector", COMMANDS)
def test_command_frame_both_ways(vector: dict[str, Any]) -> None:
    data = h(vector["packet"])
    spi = Spi.from_bytes(h(vector["spi"]))
    keyset = keyset_of(vector["keyset"])
    start = len(COMMAND_UDH) if vector["with_udh"] else 0
    checksum_length = keyset.checksum_length(spi.checksum)
    assert checksum_length is not None
    frame = CommandFrame(
        spi, keyset.kic_ref, keyset.kid_ref(spi.checksum), Tar(h(vector["tar"])), checksum_length, data[start + 10 :], vector["with_udh"]
    )
    assert_both_ways(CommandFrame.from_bytes, CommandFrame.to_bytes, data, frame)
    assert frame.cpl == len(data) - start - 2


def test_unciphered_command_body_both_ways() -> None:
    vector = next(v for v in VECTORS["commands"] if v["id"] == "Test_SMS_3DES-cmd-signed")
    frame = CommandFrame.from_bytes(h(vector["packet"]))
    body = CommandBody(counter=0, padding_count=0, checksum=h("072ea17bdb72060e"), secured_data=h(vector["script"]))
    assert_both_ways(lambda data: CommandBody.from_bytes(data, 8), CommandBody.to_bytes, frame.body, body)


@pytest.mark.parametrize("vector", RESPONSES)
def test_unwrap_response_vector(vector: dict[str, Any]) -> None:
    keyset = keyset_of(vector["keyset"])
    spi = Spi.from_bytes(h(vector["spi"]))
    response = unwrap_response(h(vector["packet"]), keyset, spi=spi, tar=h(vector["tar"]), counter=vector["counter"])
    assert response.status is ResponseStatus[vector["status"]]
    assert response.verified is vector["verified"]
    assert response.tar == Tar(h(vector["tar"]))
    assert response.counter == vector.get("response_counter", vector["counter"])
    if "commands_executed" in vector:
        compact = CompactRemoteResponse(vector["commands_executed"], int(vector["last_sw"], 16), h(vector["last_data"]))
        assert response.compact_response() == compact
        assert_both_ways(CompactRemoteResponse.from_bytes, CompactRemoteResponse.to_bytes, response.data, compact)


@pytest.mark.parametrize("vector", RESPONSES)
def test_wrap_response_reproduces_the_card_por(vector: dict[str, Any]) -> None:
    """The card side builds each published PoR byte for byte (the replay one without keys, status only)."""
    spi = Spi.from_bytes(h(vector["spi"]))
    status = ResponseStatus[vector["status"]]
    if vector["verified"]:
        data = CompactRemoteResponse(vector["commands_executed"], int(vector["last_sw"], 16), h(vector["last_data"])).to_bytes()
        built = wrap_response(data, keyset_of(vector["keyset"]), spi=spi, tar=h(vector["tar"]), counter=vector["counter"], status=status)
    else:
        built = wrap_response(b"", None, spi=spi, tar=h(vector["tar"]), counter=vector["response_counter"], status=status)
    assert built == h(vector["packet"])


@pytest.mark.parametrize("vector", RESPONSES)
def test_response_frame_both_ways(vector: dict[str, Any]) -> None:
    data = h(vector["packet"])
    frame = ResponseFrame(Tar(h(vector["tar"])), data[5] - 10, data[9:], with_udh=True)
    assert_both_ways(ResponseFrame.from_bytes, ResponseFrame.to_bytes, data, frame)
    assert frame.rpl == len(data) - 5


@pytest.mark.parametrize("vector", BAD_RESPONSES)
def test_published_bad_por_is_refused(vector: dict[str, Any]) -> None:
    spi = Spi.from_bytes(h(vector["spi"]))
    with pytest.raises(OtaSecurityError) as caught:
        unwrap_response(h(vector["packet"]), keyset_of(vector["keyset"]), spi=spi, tar=h(vector["tar"]), counter=vector["counter"])
    assert caught.value.status is ResponseStatus[vector["error_status"]]


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in VECTORS["tpdus"]])
def test_pysim_tpdus_carry_our_user_data(vector: dict[str, Any]) -> None:
    """The TPDU's user data is UDH + our packet; its UDL octet is pySim's 03 (collection §5.6, discrepancy 2)."""
    command = next(v for v in VECTORS["commands"] if v["id"] == vector["command"])
    user_data = COMMAND_UDH + h(command["packet"])
    tpdu = h(vector["tpdu"])
    assert tpdu.endswith(user_data)
    assert tpdu[-len(user_data) - 1] == 0x03 != len(user_data)


CHECKSUMS = VECTORS["checksums"]


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in CHECKSUMS["vectors"]])
def test_onomondo_card_side_cc(vector: dict[str, str]) -> None:
    data = h(CHECKSUMS["data1"]) + h(vector["data2"])
    key = h(CHECKSUMS["key"])
    assert _ota_crypto.des_cbc_mac(key, data) == h(vector["tdes_cbc2"])
    assert _ota_crypto.aes_cmac_cc(key, data) == h(vector["aes_cmac"])


@pytest.mark.parametrize(("algorithm", "block_size"), [("DES", 8), ("AES", 16)])
def test_onomondo_padding_counts(algorithm: str, block_size: int) -> None:
    for length, pcnt in VECTORS["padding"][algorithm]:
        assert _ota_crypto.padding_count(length, block_size) == pcnt


def test_no_ciphering_never_pads() -> None:
    for length, _ in VECTORS["padding"]["NONE"]:
        packet = unwrap_command(
            wrap_command(bytes(length), SJA5, spi=Spi(), tar=TAR, counter=0, with_udh=False), only(SJA5), last_counter=0
        )
        assert packet.data == bytes(length)
        assert (
            CommandBody.from_bytes(
                CommandFrame.from_bytes(wrap_command(bytes(length), SJA5, spi=Spi(), tar=TAR, counter=0, with_udh=False)).body, 0
            ).padding_count
            == 0
        )


def test_crc_check_values() -> None:
    block = VECTORS["crc_check_values"]
    assert _ota_crypto.crc16(h(block["input"])) == h(block["crc16"])
    assert _ota_crypto.crc32(h(block["input"])) == h(block["crc32"])


def test_aligned_cc_input_gets_no_padding_block() -> None:
    """CC only, input already whole blocks: pySim and onomondo pad nothing; shadysim adds 8 zeros (collection §5.6)."""
    spi = Spi.from_bytes(h("0219"))
    for data in (b"", bytes(range(8))):
        frame = CommandFrame.from_bytes(wrap_command(data, SJA5, spi=spi, tar=TAR, counter=0, with_udh=False))
        body = CommandBody.from_bytes(frame.body, 8)
        cc_input = frame.clear_header() + frame.body[:6] + body.secured_data
        assert len(cc_input) % 8 == 0
        assert body.checksum == _ota_crypto.des_cbc_encrypt(SJA5.kid, cc_input)[-8:]
        shadysim = _ota_crypto.des_cbc_encrypt(SJA5.kid, cc_input + bytes(8))[-8:]
        assert body.checksum != shadysim
        forged = CommandFrame(frame.spi, frame.kic, frame.kid, frame.tar, 8, frame.body[:6] + shadysim + body.secured_data, False)
        with pytest.raises(ChecksumError):
            unwrap_command(forged.to_bytes(), only(SJA5), last_counter=0)


# --- capacity of one SMS (collection §4.6, §5.6 discrepancy 3) -----------------------------------------


@pytest.mark.parametrize(
    ("keyset", "spi", "capacity"),
    [
        pytest.param(SJA5, CIPHERED_CC, 106, id="3DES-ciphered-CC"),
        pytest.param(AES128, CIPHERED_CC, 98, id="AES-ciphered-CC"),
        pytest.param(SJA5, Spi.from_bytes(h("0219")), 113, id="CC-only"),
    ],
)
def test_one_sms_capacity_counts_the_udh(keyset: KeySet, spi: Spi, capacity: int) -> None:
    assert len(wrap_command(bytes(capacity), keyset, spi=spi, tar=TAR, counter=0)) <= SMS_USER_DATA_MAX_OCTETS
    with pytest.raises(CodecError):
        wrap_command(bytes(capacity + 1), keyset, spi=spi, tar=TAR, counter=0)
    unwrap_command(wrap_command(bytes(capacity + 1), keyset, spi=spi, tar=TAR, counter=0, with_udh=False), only(keyset), last_counter=0)


# --- PoR checks -----------------------------------------------------------------------------------------


def test_por_must_answer_the_command() -> None:
    packet = wrap_response(b"\x01\x90\x00", AES128, spi=CIPHERED_CC, tar=TAR, counter=7)
    with pytest.raises(UnidentifiedSecurityError):
        unwrap_response(packet, AES128, spi=CIPHERED_CC, tar=h("B00012"), counter=7)
    with pytest.raises(CounterLowError):
        unwrap_response(packet, AES128, spi=CIPHERED_CC, tar=TAR, counter=8)
    with pytest.raises(CounterHighError):
        unwrap_response(packet, AES128, spi=CIPHERED_CC, tar=TAR, counter=6)
    with pytest.raises(ChecksumError):
        unwrap_response(packet, SJA5, spi=CIPHERED_CC, tar=TAR, counter=7)


def test_status_only_por_is_never_accepted_as_ok() -> None:
    forged = h("027100000b0ab00011") + bytes(5) + b"\x00\x00"
    with pytest.raises(ChecksumError):
        unwrap_response(forged, SJA5, spi=CIPHERED_CC, tar=TAR, counter=0)
    with pytest.raises(CodecError):
        wrap_response(b"", None, spi=CIPHERED_CC, tar=TAR, counter=0)
    with pytest.raises(CodecError):
        wrap_response(b"\x01", None, spi=CIPHERED_CC, tar=TAR, counter=0, status=ResponseStatus.COUNTER_LOW)


def test_error_por_from_a_failed_unwrap() -> None:
    """The card answers a refused packet from the error's status, TAR, SPI and counter."""
    spi = Spi.from_bytes(h("1619"))
    packet = wrap_command(b"\x00", SJA5, spi=spi, tar=TAR, counter=3)
    with pytest.raises(CounterLowError) as caught:
        unwrap_command(packet, only(SJA5), last_counter=3)
    error = caught.value
    assert error.tar is not None and error.spi is not None and error.counter is not None
    por = wrap_response(b"", SJA5, spi=error.spi, tar=error.tar, counter=error.counter, status=error.status)
    response = unwrap_response(por, SJA5, spi=spi, tar=TAR, counter=3)
    assert (response.status, response.verified, response.data) == (ResponseStatus.COUNTER_LOW, True, b"")


def test_unsecured_por_needs_no_keys() -> None:
    spi = Spi.from_bytes(h("0601"))
    packet = wrap_response(b"\x01\x61\x32", None, spi=spi, tar=TAR, counter=0)
    assert packet == h("027100000e0ab0001100000000000000016132")
    assert unwrap_response(packet, None, spi=spi, tar=TAR, counter=0).data == b"\x01\x61\x32"
    with pytest.raises(CodecError):
        unwrap_response(packet, None, spi=CIPHERED_CC, tar=TAR, counter=0)


# --- key hygiene ----------------------------------------------------------------------------------------


def test_keyset_never_shows_its_keys() -> None:
    for keyset in (SJA5, AES128):
        for text in (repr(keyset), str(keyset)):
            assert keyset.kic.hex() not in text.lower()
            assert keyset.kid.hex() not in text.lower()
            assert f"kvn={keyset.kvn}" in text
    assert keyset_of("SJA5_SAMPLES") != SJA5  # identity, never a comparison of key bytes


@pytest.mark.parametrize(
    "arguments",
    [
        (0, CipherAlgorithm.AES_CBC, bytes(16), CcAlgorithm.AES_CMAC, bytes(16)),
        (16, CipherAlgorithm.AES_CBC, bytes(16), CcAlgorithm.AES_CMAC, bytes(16)),
        (1, CipherAlgorithm.AES_CBC, bytes(15), CcAlgorithm.AES_CMAC, bytes(16)),
        (1, CipherAlgorithm.TDES_CBC_2KEY, bytes(24), CcAlgorithm.AES_CMAC, bytes(16)),
        (1, CipherAlgorithm.DES_ECB, bytes(8), CcAlgorithm.AES_CMAC, bytes(16)),
        (1, CipherAlgorithm.IMPLICIT, bytes(16), CcAlgorithm.AES_CMAC, bytes(16)),
        (1, CipherAlgorithm.AES_CBC, bytes(16), CcAlgorithm.PROPRIETARY, bytes(16)),
        (1, CipherAlgorithm.AES_CBC, bytes(16), CcAlgorithm.DES_CBC, bytes(16)),
        (1, CipherAlgorithm.AES_CBC, "00" * 16, CcAlgorithm.AES_CMAC, bytes(16)),
    ],
    ids=["kvn0", "kvn16", "short-aes", "long-3des2", "des-ecb", "implicit", "proprietary-cc", "des-cc-16", "hex-string"],
)
def test_keyset_refuses_what_it_cannot_use(arguments: tuple[Any, ...]) -> None:
    with pytest.raises(CodecError) as caught:
        KeySet(*arguments)
    assert "00000000" not in str(caught.value)
