"""TS 102 225 secured packet recipes: round trips over every algorithm and SPI, tampering, counters, security level."""

from __future__ import annotations

from typing import Any

import pytest
from codec_helpers import h
from hypothesis import given, settings
from hypothesis import strategies as st
from secured_helpers import AES128, CIPHERED_CC, SJA5, TAR, only

from simwallet.applet.errors import CodecError, SecurityError
from simwallet.applet.protocols import _ota_crypto
from simwallet.applet.protocols.secured import (
    COUNTER_MAX,
    SMS_USER_DATA_MAX_OCTETS,
    CcAlgorithm,
    ChecksumError,
    ChecksumType,
    CipherAlgorithm,
    CipheringError,
    CommandFrame,
    CompactRemoteResponse,
    CounterBlockedError,
    CounterHighError,
    CounterLowError,
    CounterMode,
    InsufficientSecurityError,
    KeySet,
    Kic,
    Kid,
    KidCc,
    MinimumSecurityLevel,
    OtaSecurityError,
    PorMode,
    PorTransport,
    RcAlgorithm,
    ResponseStatus,
    Spi,
    Tar,
    TarUnknownError,
    UnidentifiedSecurityError,
    check_counter,
    kid_from_bytes,
    unwrap_command,
    unwrap_response,
    wrap_command,
    wrap_response,
)

# --- round trips over every algorithm and SPI ----------------------------------------------------------

CIPHERS = [(CipherAlgorithm.DES_CBC, 8), (CipherAlgorithm.TDES_CBC_2KEY, 16), (CipherAlgorithm.TDES_CBC_3KEY, 24)] + [
    (CipherAlgorithm.AES_CBC, n) for n in (16, 24, 32)
]
MACS = [(CcAlgorithm.DES_CBC, 8), (CcAlgorithm.TDES_CBC_2KEY, 16), (CcAlgorithm.TDES_CBC_3KEY, 24)] + [
    (CcAlgorithm.AES_CMAC, n) for n in (16, 24, 32)
]

keysets = st.builds(
    lambda kvn, cipher, mac, rc, material: KeySet(kvn, cipher[0], material[: cipher[1]], mac[0], material[32 : 32 + mac[1]], rc),
    st.integers(1, 15),
    st.sampled_from(CIPHERS),
    st.sampled_from(MACS),
    st.sampled_from([RcAlgorithm.CRC16, RcAlgorithm.CRC32]),
    st.binary(min_size=64, max_size=64),
)
supported_checksums = st.sampled_from([ChecksumType.NONE, ChecksumType.REDUNDANCY_CHECK, ChecksumType.CRYPTOGRAPHIC_CHECKSUM])
wrappable_spis = st.builds(
    Spi,
    checksum=supported_checksums,
    ciphering=st.booleans(),
    counter=st.sampled_from(CounterMode),
    por=st.sampled_from(PorMode),
    por_checksum=supported_checksums,
    por_ciphered=st.booleans(),
    por_transport=st.sampled_from(PorTransport),
)


def packet_length(keyset: KeySet, checksum: ChecksumType, ciphered: bool, fixed: int, data_length: int) -> int:
    n = keyset.checksum_length(checksum)
    assert n is not None
    plain = fixed + n + data_length
    return plain + (_ota_crypto.padding_count(plain, keyset.block_size) if ciphered else 0)


@settings(max_examples=400)
@given(keysets, wrappable_spis, st.binary(max_size=260), st.integers(1, COUNTER_MAX), st.booleans())
def test_command_round_trip(keyset: KeySet, spi: Spi, data: bytes, counter: int, with_udh: bool) -> None:
    total = (3 if with_udh else 0) + 2 + 8 + packet_length(keyset, spi.checksum, spi.ciphering, 6, len(data))
    if with_udh and total > SMS_USER_DATA_MAX_OCTETS:
        with pytest.raises(CodecError):
            wrap_command(data, keyset, spi=spi, tar=TAR, counter=counter, with_udh=with_udh)
        return
    packet = wrap_command(data, keyset, spi=spi, tar=TAR, counter=counter, with_udh=with_udh)
    assert len(packet) == total
    result = unwrap_command(packet, only(keyset, TAR), last_counter=counter - 1)
    assert (result.data, result.counter, result.spi, result.with_udh) == (data, counter, spi, with_udh)
    assert result.last_counter == (counter if spi.counter >= CounterMode.HIGHER else counter - 1)
    assert CommandFrame.from_bytes(packet).to_bytes() == packet


@settings(max_examples=400)
@given(keysets, wrappable_spis, st.binary(max_size=120), st.integers(0, COUNTER_MAX), st.sampled_from(ResponseStatus))
def test_response_round_trip(keyset: KeySet, spi: Spi, data: bytes, counter: int, status: ResponseStatus) -> None:
    total = 3 + 2 + 4 + packet_length(keyset, spi.por_checksum, spi.por_ciphered, 7, len(data))
    if total > SMS_USER_DATA_MAX_OCTETS:
        with pytest.raises(CodecError):
            wrap_response(data, keyset, spi=spi, tar=TAR, counter=counter, status=status)
        return
    packet = wrap_response(data, keyset, spi=spi, tar=TAR, counter=counter, status=status)
    result = unwrap_response(packet, keyset, spi=spi, tar=TAR, counter=counter)
    assert (result.data, result.counter, result.status, result.verified) == (data, counter, status, True)


# --- tampering ----------------------------------------------------------------------------------------

TAMPER_KEYSETS = [
    pytest.param(SJA5, id="3DES"),
    pytest.param(AES128, id="AES128"),
    pytest.param(KeySet(5, CipherAlgorithm.AES_CBC, bytes(range(32)), CcAlgorithm.AES_CMAC, bytes(range(32, 56))), id="AES256-CMAC192"),
    pytest.param(KeySet(7, CipherAlgorithm.DES_CBC, bytes(range(8)), CcAlgorithm.TDES_CBC_3KEY, bytes(range(8, 32))), id="DES-3DES3"),
]


def flips(packet: bytes) -> list[tuple[int, bytes]]:
    return [
        (bit // 8, packet[: bit // 8] + bytes((packet[bit // 8] ^ (0x80 >> bit % 8),)) + packet[bit // 8 + 1 :])
        for bit in range(8 * len(packet))
    ]


def decodes(parse: Any, octets: bytes) -> bool:
    try:
        parse(octets)
    except CodecError:
        return False
    return True


@pytest.mark.parametrize("keyset", TAMPER_KEYSETS)
@pytest.mark.parametrize("spi_hex", ["0619", "1e19", "0609"])
def test_any_flipped_bit_of_a_ciphered_cc_command_is_refused(keyset: KeySet, spi_hex: str) -> None:
    """Body bits and every header bit whose field still decodes give 01; TAR bits 09; framing CodecError."""
    spi = Spi.from_bytes(h(spi_hex))
    script = bytes(range(23))
    packet = wrap_command(script, keyset, spi=spi, tar=TAR, counter=41, with_udh=True)
    # UDH 0-2, CPL 3-4, CHL 5, SPI 6-7, KIc 8, KID 9, TAR 10-12, CNTR onwards 13-
    for index, tampered in flips(packet):
        with pytest.raises((CodecError, SecurityError)) as caught:
            unwrap_command(tampered, only(keyset, TAR), last_counter=40)
        error = caught.value
        assert keyset.kid.hex() not in str(error).lower()
        assert keyset.kic.hex() not in str(error).lower()
        if index < 5:
            assert isinstance(error, CodecError), index
        elif index == 5:
            assert isinstance(error, CodecError | ChecksumError), index
        elif index in (6, 7):
            expected = ChecksumError if decodes(Spi.from_bytes, tampered[6:8]) else CodecError
            assert type(error) is expected, (index, tampered[6:8].hex())
        elif index == 8:
            assert type(error) is (ChecksumError if decodes(Kic.from_bytes, tampered[8:9]) else CodecError), index
        elif index == 9:
            assert type(error) is (ChecksumError if decodes(KidCc.from_bytes, tampered[9:10]) else CodecError), index
        elif index < 13:
            assert isinstance(error, TarUnknownError) and error.status == 0x09
        else:
            assert isinstance(error, ChecksumError) and error.status == 0x01, index


def test_every_flipped_bit_after_the_framing_is_01_for_a_single_keyset_card() -> None:
    """With one key set for every TAR, all changes past CHL that keep the codings valid are CC failures."""
    packet = wrap_command(b"\x80\xe6" * 10, AES128, spi=CIPHERED_CC, tar=TAR, counter=0, with_udh=False)
    statuses = set()
    for index, tampered in flips(packet):
        if index < 3:
            continue
        try:
            unwrap_command(tampered, only(AES128), last_counter=0)
        except OtaSecurityError as error:
            statuses.add(error.status)
        except CodecError:
            assert index < 7  # only SPI, KIc and KID codings can stop being valid
        else:
            pytest.fail(f"a packet with bit flipped in octet {index} was accepted")
    assert statuses == {ResponseStatus.CHECKSUM_FAILED}


@pytest.mark.parametrize("keyset", TAMPER_KEYSETS)
def test_any_flipped_bit_of_a_ciphered_cc_por_is_refused(keyset: KeySet) -> None:
    packet = wrap_response(CompactRemoteResponse(1, 0x9000, b"\x01\x02").to_bytes(), keyset, spi=CIPHERED_CC, tar=TAR, counter=9)
    # UDH 0-2, RPL 3-4, RHL 5, TAR 6-8, CNTR onwards 9-
    for index, tampered in flips(packet):
        with pytest.raises((CodecError, SecurityError)) as caught:
            unwrap_response(tampered, keyset, spi=CIPHERED_CC, tar=TAR, counter=9)
        error = caught.value
        if index < 5:
            assert isinstance(error, CodecError)
        elif index == 5:
            assert isinstance(error, CodecError | ChecksumError)
        elif index < 9:
            assert isinstance(error, UnidentifiedSecurityError) and error.status == 0x06
        else:
            assert isinstance(error, ChecksumError) and error.status == 0x01


# --- counters -------------------------------------------------------------------------------------------

COUNTER_TABLE = [
    # mode, received, last accepted, new last accepted or the error
    (CounterMode.NO_COUNTER, 0, 0, 0),
    (CounterMode.NO_COUNTER, 5, 9, 9),
    (CounterMode.NO_COUNTER, 0, COUNTER_MAX, COUNTER_MAX),
    (CounterMode.NO_CHECK, 3, 9, 9),
    (CounterMode.NO_CHECK, 10, COUNTER_MAX, COUNTER_MAX),
    (CounterMode.HIGHER, 10, 9, 10),
    (CounterMode.HIGHER, 1000, 9, 1000),
    (CounterMode.HIGHER, 9, 9, CounterLowError),
    (CounterMode.HIGHER, 0, 9, CounterLowError),
    (CounterMode.HIGHER, COUNTER_MAX, COUNTER_MAX - 1, COUNTER_MAX),
    (CounterMode.HIGHER, COUNTER_MAX, COUNTER_MAX, CounterBlockedError),
    (CounterMode.ONE_HIGHER, 10, 9, 10),
    (CounterMode.ONE_HIGHER, 1, 0, 1),
    (CounterMode.ONE_HIGHER, 9, 9, CounterLowError),
    (CounterMode.ONE_HIGHER, 8, 9, CounterLowError),
    (CounterMode.ONE_HIGHER, 11, 9, CounterHighError),
    (CounterMode.ONE_HIGHER, COUNTER_MAX, COUNTER_MAX - 1, COUNTER_MAX),
    (CounterMode.ONE_HIGHER, 0, COUNTER_MAX, CounterBlockedError),
]
STATUS_OF = {CounterLowError: 0x02, CounterHighError: 0x03, CounterBlockedError: 0x04}


@pytest.mark.parametrize(
    ("mode", "received", "last", "outcome"), COUNTER_TABLE, ids=lambda value: getattr(value, "name", getattr(value, "__name__", str(value)))
)
def test_counter_policy(mode: CounterMode, received: int, last: int, outcome: Any) -> None:
    if isinstance(outcome, int):
        assert check_counter(mode, received, last) == outcome
        return
    with pytest.raises(outcome) as caught:
        check_counter(mode, received, last)
    assert caught.value.status == STATUS_OF[outcome]
    # The same outcome through a whole packet, carrying the packet's TAR, SPI and counter.
    spi = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, mode)
    packet = wrap_command(b"\xa0\xc0\x00\x00\x16", SJA5, spi=spi, tar=TAR, counter=received)
    with pytest.raises(outcome) as caught:
        unwrap_command(packet, only(SJA5, TAR), last_counter=last)
    assert (caught.value.tar, caught.value.spi, caught.value.counter) == (TAR, spi, received)


def test_counter_is_checked_only_after_the_cc() -> None:
    """A replayed packet with a changed octet is a CC failure (01), not a counter report (02)."""
    spi = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER)
    packet = bytearray(wrap_command(b"\x00\xb0\x00\x00\x10", SJA5, spi=spi, tar=TAR, counter=5))
    with pytest.raises(CounterLowError):
        unwrap_command(bytes(packet), only(SJA5), last_counter=5)
    packet[-1] ^= 1
    with pytest.raises(ChecksumError):
        unwrap_command(bytes(packet), only(SJA5), last_counter=5)


def test_out_of_range_counters_are_refused() -> None:
    with pytest.raises(CodecError):
        wrap_command(b"", SJA5, spi=CIPHERED_CC, tar=TAR, counter=COUNTER_MAX + 1)
    with pytest.raises(CodecError):
        wrap_command(b"", SJA5, spi=CIPHERED_CC, tar=TAR, counter=-1)
    with pytest.raises(CodecError):
        check_counter(CounterMode.HIGHER, 1, COUNTER_MAX + 1)


# --- security level, TAR, key references ---------------------------------------------------------------


def test_minimum_security_level_is_enforced_per_tar() -> None:
    strict = MinimumSecurityLevel(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, ciphering=True, counter=CounterMode.HIGHER)
    weak = wrap_command(b"\x00\xa4", SJA5, spi=Spi.from_bytes(h("0619")), tar=TAR, counter=1)
    with pytest.raises(InsufficientSecurityError) as caught:
        unwrap_command(weak, only(SJA5), last_counter=0, minimum_security=strict)
    assert caught.value.status == 0x0A
    assert caught.value.tar == TAR
    relaxed = {TAR: MinimumSecurityLevel(ChecksumType.CRYPTOGRAPHIC_CHECKSUM)}
    assert unwrap_command(weak, only(SJA5), last_counter=0, minimum_security=relaxed.__getitem__).data == b"\x00\xa4"
    good = wrap_command(b"\x00\xa4", SJA5, spi=Spi.from_bytes(h("1619")), tar=TAR, counter=1)
    assert unwrap_command(good, only(SJA5), last_counter=0, minimum_security=strict).last_counter == 1


def test_unknown_tar_is_09_with_the_tar() -> None:
    packet = wrap_command(b"", SJA5, spi=CIPHERED_CC, tar=h("B00012"), counter=0)
    with pytest.raises(TarUnknownError) as caught:
        unwrap_command(packet, only(SJA5, TAR), last_counter=0)
    assert caught.value.status == 0x09
    assert caught.value.tar == Tar(h("B00012"))
    assert caught.value.spi == CIPHERED_CC


def test_the_lookup_may_refuse_itself() -> None:
    def lookup(tar: Tar, kic: Kic, kid: Kid) -> KeySet | None:
        raise CipheringError("no ciphering key of that version")

    with pytest.raises(CipheringError) as caught:
        unwrap_command(wrap_command(b"", SJA5, spi=CIPHERED_CC, tar=TAR, counter=0), lookup, last_counter=0)
    assert caught.value.tar == TAR


def test_wrong_keys_fail_the_cc() -> None:
    other = KeySet(3, CipherAlgorithm.TDES_CBC_2KEY, bytes(16), CcAlgorithm.TDES_CBC_2KEY, SJA5.kid)
    with pytest.raises(ChecksumError):
        unwrap_command(wrap_command(b"\x01" * 9, SJA5, spi=CIPHERED_CC, tar=TAR, counter=0), only(other), last_counter=0)


def test_a_genuine_packet_naming_another_key_version_is_refused() -> None:
    """The CC verifies, but KIc/KID name key version 4 while the key set is version 3."""
    renamed = KeySet(4, SJA5.kic_algorithm, SJA5.kic, SJA5.kid_algorithm, SJA5.kid)
    packet = wrap_command(b"\x00", renamed, spi=CIPHERED_CC, tar=TAR, counter=0)
    with pytest.raises(CipheringError):
        unwrap_command(packet, only(SJA5), last_counter=0)
    with pytest.raises(ChecksumError):
        unwrap_command(wrap_command(b"\x00", renamed, spi=Spi.from_bytes(h("0219")), tar=TAR, counter=0), only(SJA5), last_counter=0)


def test_padding_count_is_checked_after_the_cc() -> None:
    """A correctly CC'd packet whose PCNTR exceeds the block is a ciphering error (05)."""
    spi = Spi.from_bytes(h("0219"))
    frame = CommandFrame.from_bytes(wrap_command(b"\x00" * 9, SJA5, spi=spi, tar=TAR, counter=0, with_udh=False))
    body = bytearray(frame.body)
    body[5] = 3  # PCNTR without ciphering
    header = CommandFrame(frame.spi, frame.kic, frame.kid, frame.tar, 8, bytes(body), False).clear_header()
    body[6:14] = _ota_crypto.des_cbc_mac(SJA5.kid, header + bytes(body[:6]) + bytes(body[14:]))
    with pytest.raises(CipheringError) as caught:
        unwrap_command(header + bytes(body), only(SJA5), last_counter=0)
    assert caught.value.status == 0x05


def test_digital_signatures_are_refused() -> None:
    spi = Spi(ChecksumType.DIGITAL_SIGNATURE)
    with pytest.raises(CodecError):
        wrap_command(b"", SJA5, spi=spi, tar=TAR, counter=0)
    frame = CommandFrame(spi, SJA5.kic_ref, kid_from_bytes(b"\x35", spi.checksum), TAR, 8, bytes(14), False)
    with pytest.raises(ChecksumError):
        unwrap_command(frame.to_bytes(), only(SJA5), last_counter=0)
