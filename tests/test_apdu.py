"""Command and response APDUs (ISO/IEC 7816-4 §5.1) and status words (§5.1.3, TS 102 221 §10.2.1)."""

from __future__ import annotations

import contextlib

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CardStatusError, CodecError, TruncatedError
from simwallet.applet.protocols.apdu import (
    DATA_LENGTH_MAX,
    LE_MAX,
    STATUS_WORDS,
    SW1_FAMILIES,
    ApduCase,
    CommandApdu,
    Ins,
    ResponseApdu,
    describe_sw,
)

byte = st.integers(0, 0xFF)
# Data over the whole length domain without drawing 65535 random bytes one by one.
apdu_data = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda n, fill: bytes([fill]) * n, st.integers(0, DATA_LENGTH_MAX), byte),
)
apdu_le = st.one_of(st.none(), st.integers(1, 300), st.integers(1, LE_MAX))
commands = st.builds(CommandApdu, byte, byte, byte, byte, apdu_data, apdu_le, st.booleans())


COMMAND_VECTORS = [
    # Case 1: MANAGE CHANNEL close channel 1 (TS 102 221 §11.1.17).
    ("case1", h("00 70 80 01"), CommandApdu(0x00, Ins.MANAGE_CHANNEL, 0x80, 0x01)),
    # Case 2 short, from a USIM trace: GET RESPONSE of 0x56 bytes, READ BINARY of 10.
    ("get-response", h("00 C0 00 00 56"), CommandApdu(0x00, Ins.GET_RESPONSE, 0, 0, le=0x56)),
    ("read-binary", h("00 B0 00 00 0A"), CommandApdu(0x00, Ins.READ_BINARY, 0, 0, le=10)),
    ("le-00-is-256", h("00 B0 00 00 00"), CommandApdu(0x00, Ins.READ_BINARY, 0, 0, le=256)),
    # Case 3 short: SELECT MF by FID (TS 102 221 §11.1.1).
    ("select-mf", h("00 A4 00 04 02 3F 00"), CommandApdu(0x00, Ins.SELECT, 0x00, 0x04, h("3F 00"))),
    # Case 4 short: SELECT ADF.USIM by AID with Le 00.
    (
        "select-aid",
        h("00 A4 04 04 10 A0 00 00 00 87 10 02 FF FF FF FF 89 07 09 00 00 00"),
        CommandApdu(0x00, Ins.SELECT, 0x04, 0x04, h("A0 00 00 00 87 10 02 FF FF FF FF 89 07 09 00 00"), 256),
    ),
    # GlobalPlatform INITIALIZE UPDATE with an 8-byte host challenge (GP 2.3 §11.8, case 4).
    (
        "initialize-update",
        h("80 50 00 00 08 01 02 03 04 05 06 07 08 00"),
        CommandApdu(0x80, Ins.INITIALIZE_UPDATE, 0, 0, h("01 02 03 04 05 06 07 08"), 256),
    ),
    # Case 2 extended: 00 + two bytes, 0000 meaning 65536.
    ("case2e-65536", h("00 B0 00 00 00 00 00"), CommandApdu(0x00, Ins.READ_BINARY, 0, 0, le=65536)),
    ("case2e-257", h("00 B0 00 00 00 01 01"), CommandApdu(0x00, Ins.READ_BINARY, 0, 0, le=257)),
    # Extended form for small values is kept as sent.
    ("case2e-small", h("00 B0 00 00 00 00 10"), CommandApdu(0x00, Ins.READ_BINARY, 0, 0, le=16, extended=True)),
    ("case3e", h("00 D6 00 00 00 01 00") + bytes(256), CommandApdu(0x00, Ins.UPDATE_BINARY, 0, 0, bytes(256))),
    (
        "case4e",
        h("80 E2 90 00 00 01 2C") + bytes(300) + h("00 00"),
        CommandApdu(0x80, Ins.STORE_DATA, 0x90, 0x00, bytes(300), 65536),
    ),
    ("case4e-small", h("00 A4 00 04 00 00 02 3F 00 00 20"), CommandApdu(0x00, Ins.SELECT, 0, 4, h("3F 00"), 32, extended=True)),
]


@pytest.mark.parametrize(("data", "obj"), [pytest.param(d, o, id=i) for i, d, o in COMMAND_VECTORS])
def test_command_vectors(data: bytes, obj: CommandApdu) -> None:
    assert_both_ways(CommandApdu.from_bytes, CommandApdu.to_bytes, data, obj)


def test_cases_and_extended_normalisation() -> None:
    assert CommandApdu(0, 0xA4, 0, 0).case is ApduCase.CASE_1
    assert CommandApdu(0, 0xB0, 0, 0, le=1).case is ApduCase.CASE_2
    assert CommandApdu(0, 0xD6, 0, 0, b"x").case is ApduCase.CASE_3
    assert CommandApdu(0, 0xA4, 0, 0, b"x", 1).case is ApduCase.CASE_4
    # Needed extended form is switched on; case 1 has no length field to extend.
    assert CommandApdu(0, 0xD6, 0, 0, bytes(256)).extended
    assert CommandApdu(0, 0xB0, 0, 0, le=257).extended
    assert not CommandApdu(0, 0xB0, 0, 0, le=256).extended
    assert CommandApdu(0, 0xA4, 0, 0, extended=True) == CommandApdu(0, 0xA4, 0, 0)
    assert CommandApdu(0, 0xA4, 1, 2).header == h("00 A4 01 02")


@pytest.mark.parametrize("le", range(256))
def test_every_short_le_byte(le: int) -> None:
    assert_both_ways(CommandApdu.from_bytes, CommandApdu.to_bytes, bytes([0x00, 0xB0, 0, 0, le]), CommandApdu(0, 0xB0, 0, 0, le=le or 256))


def test_every_header_byte_value() -> None:
    for value in range(256):
        for position in range(4):
            header = bytearray(4)
            header[position] = value
            apdu = CommandApdu(*header)
            assert_both_ways(CommandApdu.from_bytes, CommandApdu.to_bytes, bytes(header), apdu)


@pytest.mark.parametrize(
    ("data", "truncated"),
    [
        pytest.param(b"", True, id="empty"),
        pytest.param(h("00 A4 00"), True, id="short-header"),
        pytest.param(h("00 A4 00 04 03 3F 00"), False, id="lc-longer-than-data"),
        pytest.param(h("00 A4 00 04 01 3F 00 00 00"), False, id="lc-shorter-than-data"),
        pytest.param(h("00 A4 00 04 00 01"), False, id="extended-field-cut"),
        pytest.param(h("00 A4 00 04 00 00 00 3F"), False, id="extended-lc-0000"),
        pytest.param(h("00 A4 00 04 00 00 03 3F 00"), False, id="extended-lc-mismatch"),
    ],
)
def test_malformed_commands(data: bytes, truncated: bool) -> None:
    with pytest.raises(CodecError) as info:
        CommandApdu.from_bytes(data)
    assert isinstance(info.value, TruncatedError) is truncated


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 256},
        {"p1": -1},
        {"le": 0},
        {"le": LE_MAX + 1},
        {"data": bytes(DATA_LENGTH_MAX + 1)},
    ],
)
def test_invalid_fields_are_refused(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"cla": 0, "ins": 0xA4, "p1": 0, "p2": 0, **kwargs}
    with pytest.raises(CodecError):
        CommandApdu(**fields)  # type: ignore[arg-type]


@given(commands)
def test_command_round_trip(apdu: CommandApdu) -> None:
    data = apdu.to_bytes()
    assert_both_ways(CommandApdu.from_bytes, CommandApdu.to_bytes, data, apdu)
    assert (len(data) > 4 + 1 + 255 + 1) <= apdu.extended


@given(commands)
def test_command_trailing_byte_is_refused_or_reinterpreted(apdu: CommandApdu) -> None:
    # An APDU is one whole message: an extra byte never yields the same APDU.
    with contextlib.suppress(CodecError):
        assert CommandApdu.from_bytes(apdu.to_bytes() + b"\x00") != apdu


@given(st.binary(max_size=80))
def test_command_parser_raises_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        apdu = CommandApdu.from_bytes(data)
        assert apdu.to_bytes() == data


# ------------------------------------------------------------------ responses


RESPONSE_VECTORS = [
    ("ok", h("90 00"), ResponseApdu(b"", 0x9000)),
    ("more-data", h("61 56"), ResponseApdu(b"", 0x6156)),
    # READ BINARY of EF.ICCID from a USIM trace.
    ("iccid", h("98 88 12 01 00 00 00 17 58 F5 90 00"), ResponseApdu(h("98 88 12 01 00 00 00 17 58 F5"), 0x9000)),
    ("not-found", h("6A 82"), ResponseApdu.status(0x6A82)),
]


@pytest.mark.parametrize(("data", "obj"), [pytest.param(d, o, id=i) for i, d, o in RESPONSE_VECTORS])
def test_response_vectors(data: bytes, obj: ResponseApdu) -> None:
    assert_both_ways(ResponseApdu.from_bytes, ResponseApdu.to_bytes, data, obj)


def test_every_status_word_round_trips_and_has_a_meaning() -> None:
    for sw in range(0x10000):
        data = sw.to_bytes(2, "big")
        response = ResponseApdu.from_bytes(b"\x01" + data)
        assert response == ResponseApdu(b"\x01", sw) and response.to_bytes() == b"\x01" + data
        assert response.sw1 == data[0] and response.sw2 == data[1]
        assert describe_sw(sw)


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    response = ResponseApdu(data, sw)
    assert_both_ways(ResponseApdu.from_bytes, ResponseApdu.to_bytes, response.to_bytes(), response)


@given(st.binary(max_size=8))
def test_response_parser_raises_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        ResponseApdu.from_bytes(data)


def test_response_limits() -> None:
    for data in (b"", b"\x90"):
        with pytest.raises(TruncatedError):
            ResponseApdu.from_bytes(data)
    with pytest.raises(CodecError):
        ResponseApdu(b"", 0x10000)
    with pytest.raises(CodecError):
        ResponseApdu(bytes(LE_MAX + 1), 0x9000)


@pytest.mark.parametrize("sw", [0x9000, 0x6100, 0x61FF, 0x9110, 0x9200, 0x9F22])
def test_success_words(sw: int) -> None:
    response = ResponseApdu.status(sw)
    assert response.is_success()
    assert response.check() is response


@pytest.mark.parametrize("sw", [0x6283, 0x63C2, 0x6982, 0x6A82, 0x6D00, 0x9300, 0x9862, 0x6C10, 0x9001])
def test_error_words_raise_with_sw(sw: int) -> None:
    response = ResponseApdu.status(sw)
    assert not response.is_success()
    with pytest.raises(CardStatusError) as info:
        response.check()
    assert info.value.sw == sw and info.value.sw1 == sw >> 8 and info.value.sw2 == sw & 0xFF
    assert info.value.meaning == describe_sw(sw) == response.meaning
    assert str(info.value).startswith(f"{sw:04X}: ")


def test_warnings() -> None:
    assert ResponseApdu.status(0x6282).is_warning()
    assert ResponseApdu.status(0x63C1).is_warning()
    assert not ResponseApdu.status(0x6A82).is_warning()


@pytest.mark.parametrize(
    ("sw", "meaning"),
    [
        (0x9000, "Normal ending of the command"),
        (0x6110, "16 response bytes still available (GET RESPONSE)"),
        (0x6100, "256 response bytes still available (GET RESPONSE)"),
        (0x6C0A, "Wrong Le field; exact length is 10"),
        (0x9120, "Normal ending; proactive command of 32 bytes pending (FETCH)"),
        (0x9F0F, "Normal ending; 15 response bytes available (GSM 11.11)"),
        (0x9300, "SIM Application Toolkit is busy; command cannot be executed at present"),
        (0x63C3, "Verification failed, 3 retries left"),
        (0x63C0, "Verification failed, 0 retries left"),
        (0x6400, "Execution error: no information given, state of non-volatile memory unchanged"),
        (0x6581, "Execution error: memory problem"),
        (0x6700, "Wrong length"),
        (0x6881, "Logical channel not supported"),
        (0x6882, "Secure messaging not supported"),
        (0x6982, "Security status not satisfied"),
        (0x6983, "Authentication/PIN method blocked"),
        (0x6984, "Referenced data invalidated"),
        (0x6985, "Conditions of use not satisfied"),
        (0x6986, "Command not allowed (no EF selected)"),
        (0x6A80, "Incorrect parameters in the data field"),
        (0x6A81, "Function not supported"),
        (0x6A82, "File or application not found"),
        (0x6A83, "Record not found"),
        (0x6A84, "Not enough memory space in the file"),
        (0x6A86, "Incorrect parameters P1-P2"),
        (0x6A88, "Referenced data not found"),
        (0x6B00, "Wrong parameters P1-P2"),
        (0x6D00, "Instruction code not supported or invalid"),
        (0x6E00, "Class not supported"),
        (0x6F00, "Technical problem, no precise diagnosis"),
        (0x9862, "Authentication error, application specific"),
        (0x9863, "Security session or association expired"),
        (0x62AA, "Warning: state of non-volatile memory unchanged (SW2 = AA)"),
        (0x6F12, "Technical problem, no precise diagnosis (SW2 = 12)"),
        (0x1234, "Unknown status word"),
    ],
)
def test_describe_sw(sw: int, meaning: str) -> None:
    assert describe_sw(sw) == meaning


def test_status_tables_are_read_only_and_describe_sw_checks_range() -> None:
    with pytest.raises(TypeError):
        STATUS_WORDS[0x9000] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        SW1_FAMILIES[0x61] = "x"  # type: ignore[index]
    for sw in (-1, 0x10000):
        with pytest.raises(CodecError):
            describe_sw(sw)


def test_instruction_bytes() -> None:
    expected = {
        "SELECT": 0xA4, "STATUS": 0xF2, "READ_BINARY": 0xB0, "UPDATE_BINARY": 0xD6, "READ_RECORD": 0xB2,
        "UPDATE_RECORD": 0xDC, "VERIFY": 0x20, "CHANGE": 0x24, "DISABLE": 0x26, "ENABLE": 0x28, "UNBLOCK": 0x2C,
        "GET_RESPONSE": 0xC0, "TERMINAL_PROFILE": 0x10, "ENVELOPE": 0xC2, "FETCH": 0x12, "TERMINAL_RESPONSE": 0x14,
        "INITIALIZE_UPDATE": 0x50, "EXTERNAL_AUTHENTICATE": 0x82, "PUT_KEY": 0xD8, "STORE_DATA": 0xE2,
        "INSTALL": 0xE6, "GET_STATUS": 0xF2, "GET_DATA": 0xCA, "SET_STATUS": 0xF0,
    }
    for name, value in expected.items():
        assert Ins[name] == value
    assert Ins["GET_STATUS"] is Ins.STATUS  # an alias: same byte, told apart by CLA and application
