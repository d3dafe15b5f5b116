"""TS 102 225 secured packet fields and frames: every coding both ways, reserved values, malformed input.

The recipes (wrap/unwrap), the published vectors and tampering are in test_secured.py.
"""

from __future__ import annotations

import contextlib

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError, SecurityError, TruncatedError
from simwallet.applet.protocols.secured import (
    COUNTER_MAX,
    CcAlgorithm,
    ChecksumType,
    CipherAlgorithm,
    CommandBody,
    CommandFrame,
    CompactRemoteResponse,
    CounterMode,
    KeySet,
    Kic,
    KidCc,
    KidOpaque,
    KidRc,
    MinimumSecurityLevel,
    PorMode,
    PorTransport,
    RcAlgorithm,
    ResponseBody,
    ResponseFrame,
    ResponseStatus,
    Spi,
    Tar,
    kid_from_bytes,
    unwrap_command,
    unwrap_response,
    wrap_command,
    wrap_response,
)
from simwallet.applet.protocols.secured_fields import decode_counter, encode_counter

SJA5 = KeySet(
    3,
    CipherAlgorithm.TDES_CBC_2KEY,
    h("300102030405060708090a0b0c0d0e0f"),
    CcAlgorithm.TDES_CBC_2KEY,
    h("301102030405060708090a0b0c0d0e0f"),
)
TAR = Tar(h("B00011"))

# --- SPI ---------------------------------------------------------------------------------------

SPI_EXAMPLES = [
    # Collection §4.1: the common values.
    pytest.param(
        "0619",
        Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.NO_COUNTER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True),
        id="06 19",
    ),
    pytest.param(
        "0609",
        Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.NO_COUNTER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, False),
        id="06 09",
    ),
    pytest.param("0601", Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.NO_COUNTER, PorMode.ALWAYS), id="06 01"),
    pytest.param(
        "1619",
        Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True),
        id="16 19",
    ),
    pytest.param(
        "0419", Spi(ChecksumType.NONE, True, CounterMode.NO_COUNTER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True), id="04 19"
    ),
    pytest.param(
        "0219",
        Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, False, CounterMode.NO_COUNTER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True),
        id="02 19",
    ),
    pytest.param("0001", Spi(por=PorMode.ALWAYS), id="00 01"),
    pytest.param(
        "1920", Spi(ChecksumType.REDUNDANCY_CHECK, False, CounterMode.ONE_HIGHER, por_transport=PorTransport.SMS_SUBMIT), id="19 20"
    ),
    pytest.param(
        "0f06", Spi(ChecksumType.DIGITAL_SIGNATURE, True, CounterMode.NO_CHECK, PorMode.ON_ERROR, ChecksumType.REDUNDANCY_CHECK), id="0F 06"
    ),
]


@pytest.mark.parametrize(("octets", "spi"), SPI_EXAMPLES)
def test_spi_examples(octets: str, spi: Spi) -> None:
    assert_both_ways(Spi.from_bytes, Spi.to_bytes, h(octets), spi)


def test_every_spi_value_round_trips_or_is_reserved() -> None:
    valid = 0
    for value in range(0x10000):
        octets = value.to_bytes(2, "big")
        reserved = octets[0] & 0xE0 or octets[1] & 0xC0 or octets[1] & 0x03 == 0x03
        if reserved:
            with pytest.raises(CodecError) as caught:
                Spi.from_bytes(octets)
            assert "reserved" in str(caught.value)
            continue
        spi = Spi.from_bytes(octets)
        assert spi.to_bytes() == octets
        assert Spi.from_bytes(spi.to_bytes()) == spi
        valid += 1
    # 5 bits of octet 1 (32) times PoR 3 x RC/CC/DS 4 x ciphered 2 x transport 2 (48).
    assert valid == 32 * 48


spis = st.builds(
    Spi,
    checksum=st.sampled_from(ChecksumType),
    ciphering=st.booleans(),
    counter=st.sampled_from(CounterMode),
    por=st.sampled_from(PorMode),
    por_checksum=st.sampled_from(ChecksumType),
    por_ciphered=st.booleans(),
    por_transport=st.sampled_from(PorTransport),
)


@given(spis)
def test_spi_round_trip(spi: Spi) -> None:
    assert_both_ways(Spi.from_bytes, Spi.to_bytes, spi.to_bytes(), spi)


@pytest.mark.parametrize("octets", ["", "06", "061900"])
def test_spi_length(octets: str) -> None:
    with pytest.raises(TruncatedError if len(octets) < 4 else CodecError):
        Spi.from_bytes(h(octets))


def test_spi_refuses_non_enum_fields() -> None:
    with pytest.raises(CodecError):
        Spi(checksum=2)  # type: ignore[arg-type]


# --- KIc and KID -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("octet", "kic"),
    [
        ("15", Kic(1, CipherAlgorithm.TDES_CBC_2KEY)),
        ("35", Kic(3, CipherAlgorithm.TDES_CBC_2KEY)),
        ("22", Kic(2, CipherAlgorithm.AES_CBC)),
        ("12", Kic(1, CipherAlgorithm.AES_CBC)),
        ("f9", Kic(15, CipherAlgorithm.TDES_CBC_3KEY)),
        ("01", Kic(0, CipherAlgorithm.DES_CBC)),
        ("00", Kic(0, CipherAlgorithm.IMPLICIT)),
        ("4d", Kic(4, CipherAlgorithm.DES_ECB)),
        ("73", Kic(7, CipherAlgorithm.PROPRIETARY)),
    ],
)
def test_kic_examples(octet: str, kic: Kic) -> None:
    assert_both_ways(Kic.from_bytes, Kic.to_bytes, h(octet), kic)


@pytest.mark.parametrize(
    ("parse", "algorithms"),
    [
        pytest.param(Kic.from_bytes, {a.value for a in CipherAlgorithm}, id="KIc"),
        pytest.param(KidCc.from_bytes, {a.value for a in CcAlgorithm}, id="KID-CC"),
        pytest.param(KidRc.from_bytes, {a.value for a in RcAlgorithm}, id="KID-RC"),
        pytest.param(KidOpaque.from_bytes, set(range(16)), id="KID-opaque"),
    ],
)
def test_every_key_octet_round_trips_or_is_reserved(parse: object, algorithms: set[int]) -> None:
    assert callable(parse)
    for value in range(256):
        octet = bytes((value,))
        if value & 0x0F not in algorithms:
            with pytest.raises(CodecError, match="reserved"):
                parse(octet)
            continue
        field = parse(octet)
        assert field.to_bytes() == octet
        assert parse(field.to_bytes()) == field


@pytest.mark.parametrize(
    ("octet", "checksum", "kid"),
    [
        ("15", ChecksumType.REDUNDANCY_CHECK, KidRc(1, RcAlgorithm.CRC32)),
        ("11", ChecksumType.REDUNDANCY_CHECK, KidRc(1, RcAlgorithm.CRC16)),
        ("03", ChecksumType.REDUNDANCY_CHECK, KidRc(0, RcAlgorithm.PROPRIETARY)),
        ("15", ChecksumType.CRYPTOGRAPHIC_CHECKSUM, KidCc(1, CcAlgorithm.TDES_CBC_2KEY)),
        ("22", ChecksumType.CRYPTOGRAPHIC_CHECKSUM, KidCc(2, CcAlgorithm.AES_CMAC)),
        ("39", ChecksumType.CRYPTOGRAPHIC_CHECKSUM, KidCc(3, CcAlgorithm.TDES_CBC_3KEY)),
        ("15", ChecksumType.NONE, KidOpaque(0x15)),
        ("1d", ChecksumType.DIGITAL_SIGNATURE, KidOpaque(0x1D)),
    ],
)
def test_kid_coding_follows_the_spi(octet: str, checksum: ChecksumType, kid: KidCc | KidRc | KidOpaque) -> None:
    assert_both_ways(lambda data: kid_from_bytes(data, checksum), lambda value: value.to_bytes(), h(octet), kid)


def test_kid_reserved_for_a_cc() -> None:
    with pytest.raises(CodecError):
        kid_from_bytes(b"\x1d", ChecksumType.CRYPTOGRAPHIC_CHECKSUM)  # 11 with DES is reserved for a CC


@pytest.mark.parametrize("parse", [Kic.from_bytes, KidCc.from_bytes, KidRc.from_bytes, KidOpaque.from_bytes])
def test_key_octet_length(parse: object) -> None:
    assert callable(parse)
    with pytest.raises(TruncatedError):
        parse(b"")
    with pytest.raises(CodecError):
        parse(b"\x15\x15")


def test_key_index_range() -> None:
    with pytest.raises(CodecError):
        Kic(16, CipherAlgorithm.AES_CBC)
    with pytest.raises(CodecError):
        KidCc(-1, CcAlgorithm.AES_CMAC)
    with pytest.raises(CodecError):
        KidOpaque(256)


# --- TAR, CNTR, status, MSL ------------------------------------------------------------------------------


def test_tar() -> None:
    assert_both_ways(Tar.from_bytes, Tar.to_bytes, h("B00011"), TAR)
    assert repr(TAR) == "Tar(B00011)"
    with pytest.raises(TruncatedError):
        Tar.from_bytes(h("B000"))
    with pytest.raises(CodecError):
        Tar.from_bytes(h("B0001100"))
    with pytest.raises(CodecError):
        Tar(h("B000"))


@given(st.integers(0, COUNTER_MAX))
def test_counter_round_trip(counter: int) -> None:
    assert_both_ways(decode_counter, encode_counter, counter.to_bytes(5, "big"), counter)


def test_counter_limits() -> None:
    assert encode_counter(COUNTER_MAX) == b"\xff" * 5
    for bad in (-1, COUNTER_MAX + 1, True):
        with pytest.raises(CodecError):
            encode_counter(bad)


def test_every_response_status_value() -> None:
    known = {status.value for status in ResponseStatus}
    assert known == set(range(0x0D))
    for value in range(256):
        body = bytes(5) + bytes((0, value))
        if value in known:
            assert ResponseBody.from_bytes(body, 0).status == value
        else:
            with pytest.raises(CodecError, match="reserved"):
                ResponseBody.from_bytes(body, 0)


def test_every_minimum_security_level_round_trips_or_is_reserved() -> None:
    valid = 0
    for value in range(256):
        octet = bytes((value,))
        if value & 0xE0:
            with pytest.raises(CodecError):
                MinimumSecurityLevel.from_bytes(octet)
            continue
        level = MinimumSecurityLevel.from_bytes(octet)
        assert_both_ways(MinimumSecurityLevel.from_bytes, MinimumSecurityLevel.to_bytes, octet, level)
        valid += 1
    assert valid == 32


@given(st.integers(0, 0x1F), spis)
def test_minimum_security_level_order(level_octet: int, spi: Spi) -> None:
    level = MinimumSecurityLevel.from_bytes(bytes((level_octet,)))
    meets = spi.checksum >= level.checksum and (spi.ciphering or not level.ciphering) and spi.counter >= level.counter
    if meets:
        level.require(spi)
    else:
        with pytest.raises(SecurityError):
            level.require(spi)


# --- frames and bodies -----------------------------------------------------------------------------------

bodies = st.builds(
    CommandBody,
    counter=st.integers(0, COUNTER_MAX),
    padding_count=st.integers(0, 255),
    checksum=st.sampled_from([b"", b"\x01\x02", bytes(4), bytes(range(8))]),
    secured_data=st.binary(max_size=64),
)


@given(bodies)
def test_command_body_round_trip(body: CommandBody) -> None:
    n = len(body.checksum)
    assert_both_ways(lambda data: CommandBody.from_bytes(data, n), CommandBody.to_bytes, body.to_bytes(), body)


@given(
    st.integers(0, COUNTER_MAX),
    st.integers(0, 255),
    st.sampled_from(ResponseStatus),
    st.sampled_from([b"", bytes(4), bytes(range(8))]),
    st.binary(max_size=64),
)
def test_response_body_round_trip(counter: int, pcntr: int, status: ResponseStatus, checksum: bytes, data: bytes) -> None:
    body = ResponseBody(counter, pcntr, status, checksum, data)
    assert_both_ways(lambda octets: ResponseBody.from_bytes(octets, len(checksum)), ResponseBody.to_bytes, body.to_bytes(), body)


@given(spis, st.integers(0, 15), st.sampled_from([0, 2, 4, 8, 20]), st.binary(max_size=150), st.booleans())
def test_command_frame_round_trip(spi: Spi, index: int, checksum_length: int, data: bytes, with_udh: bool) -> None:
    body = bytes(6 + checksum_length) + data
    kid = kid_from_bytes(bytes((index << 4 | 0x05,)), spi.checksum)
    if with_udh and 3 + 2 + 8 + len(body) > 140:
        with pytest.raises(CodecError):
            CommandFrame(spi, Kic(index, CipherAlgorithm.AES_CBC), kid, TAR, checksum_length, body, with_udh)
        return
    frame = CommandFrame(spi, Kic(index, CipherAlgorithm.AES_CBC), kid, TAR, checksum_length, body, with_udh)
    assert_both_ways(CommandFrame.from_bytes, CommandFrame.to_bytes, frame.to_bytes(), frame)


@given(st.sampled_from([0, 4, 8, 30]), st.binary(max_size=150), st.booleans())
def test_response_frame_round_trip(checksum_length: int, data: bytes, with_udh: bool) -> None:
    body = bytes(7 + checksum_length) + data
    if with_udh and 3 + 2 + 4 + len(body) > 140:
        with pytest.raises(CodecError):
            ResponseFrame(TAR, checksum_length, body, with_udh)
        return
    frame = ResponseFrame(TAR, checksum_length, body, with_udh)
    assert_both_ways(ResponseFrame.from_bytes, ResponseFrame.to_bytes, frame.to_bytes(), frame)


def test_frame_refuses_a_kid_of_the_wrong_kind() -> None:
    with pytest.raises(CodecError):
        CommandFrame(Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM), Kic(1, CipherAlgorithm.AES_CBC), KidOpaque(0x12), TAR, 8, bytes(14))


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=256))
def test_compact_remote_response_round_trip(count: int, sw: int, data: bytes) -> None:
    response = CompactRemoteResponse(count, sw, data)
    assert_both_ways(CompactRemoteResponse.from_bytes, CompactRemoteResponse.to_bytes, response.to_bytes(), response)


def test_compact_remote_response_limits() -> None:
    with pytest.raises(TruncatedError):
        CompactRemoteResponse.from_bytes(b"\x01\x90")
    with pytest.raises(CodecError):
        CompactRemoteResponse.from_bytes(bytes(3 + 257))


# --- malformed input: only CodecError (parsers) or SecurityError (recipes) escapes ---------------------------

SAMPLE_COMMAND = wrap_command(b"\x00\xa4\x00\x04\x02\x3f\x00", SJA5, spi=Spi.from_bytes(h("1619")), tar=TAR, counter=5)
SAMPLE_PLAIN = wrap_command(b"\x00\xa4\x00\x04\x02\x3f\x00", SJA5, spi=Spi.from_bytes(h("0019")), tar=TAR, counter=5, with_udh=False)
SAMPLE_POR = wrap_response(b"\x01\x90\x00", SJA5, spi=Spi.from_bytes(h("1619")), tar=TAR, counter=5)


def lookup(tar: Tar, kic: object, kid: object) -> KeySet | None:
    return SJA5 if tar == TAR else None


@pytest.mark.parametrize("packet", [SAMPLE_COMMAND, SAMPLE_PLAIN], ids=["udh-ciphered", "plain"])
def test_every_truncation_of_a_command_is_truncated(packet: bytes) -> None:
    for end in range(len(packet)):
        with pytest.raises(TruncatedError):
            CommandFrame.from_bytes(packet[:end])
        with pytest.raises(TruncatedError):
            unwrap_command(packet[:end], lookup, last_counter=0)


def test_every_truncation_of_a_por_is_truncated() -> None:
    for end in range(len(SAMPLE_POR)):
        with pytest.raises(TruncatedError):
            ResponseFrame.from_bytes(SAMPLE_POR[:end])


@pytest.mark.parametrize("packet", [SAMPLE_COMMAND, SAMPLE_PLAIN, SAMPLE_POR], ids=["command", "plain", "por"])
def test_trailing_octets_are_refused(packet: bytes) -> None:
    parse = ResponseFrame.from_bytes if packet is SAMPLE_POR else CommandFrame.from_bytes
    for extra in (b"\x00", b"\xff" * 3):
        with pytest.raises(CodecError) as caught:
            parse(packet + extra)
        assert not isinstance(caught.value, TruncatedError)


def feed(packet: bytes) -> None:
    """Every parser and recipe over the same bytes: only the package's codec and security errors may escape."""
    spi = Spi.from_bytes(h("1619"))
    for attempt in (
        lambda: CommandFrame.from_bytes(packet),
        lambda: ResponseFrame.from_bytes(packet),
        lambda: unwrap_command(packet, lookup, last_counter=4),
        lambda: unwrap_response(packet, SJA5, spi=spi, tar=TAR, counter=5),
        lambda: unwrap_response(packet, None, spi=Spi(), tar=TAR, counter=5),
        lambda: CompactRemoteResponse.from_bytes(packet),
        lambda: Spi.from_bytes(packet[:2]),
        lambda: Kic.from_bytes(packet[:1]),
    ):
        with contextlib.suppress(CodecError, SecurityError):
            attempt()


@given(st.binary(max_size=160))
def test_random_bytes(packet: bytes) -> None:
    feed(packet)


@given(st.sampled_from([SAMPLE_COMMAND, SAMPLE_PLAIN, SAMPLE_POR]), st.data())
def test_mutated_packets(packet: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(packet)))
    cut = data.draw(st.integers(0, 4))
    insert = data.draw(st.binary(max_size=4))
    feed(packet[:position] + insert + packet[position + cut :])


@pytest.mark.parametrize("packet", [SAMPLE_COMMAND, SAMPLE_PLAIN, SAMPLE_POR], ids=["command", "plain", "por"])
def test_one_byte_at_a_time(packet: bytes) -> None:
    for end in range(len(packet) + 1):
        feed(packet[:end])
