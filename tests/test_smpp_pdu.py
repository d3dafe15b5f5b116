"""SMPP 3.4 codec (simwallet.gateway.smpp): published vectors both ways, limits, round trips, stream splitting, hostile bytes.

Published vectors, each with its source in the comment above it:

* the bind_transmitter example that the SMPP v3.4 specification (Issue 1.2)
  prints in its PDU-format section, reproduced byte for byte in e.g.
  larvitsmpp's test suite;
* mozes/smpp.pdu ``tests/test_pdu_encoding.py`` (Apache-2.0): PDUs from
  Syniverse, Sybase and handset captures, an OTA (03.48) submit_sm, and error
  responses without a body.

No published data_sm, data_sm_resp or USSD PDU was found; those are built by
hand from the §4 field tables, byte by byte, with the bytes commented.
Interoperation runs both ways against smpplib 2.2.4.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import struct
from typing import Any

import pytest
import smpplib.command_codes  # type: ignore[import-untyped]
import smpplib.consts  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]
from codec_helpers import assert_both_ways, h
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simwallet.gateway.errors import GatewayError, RemotePeerError
from simwallet.gateway.smpp.errors import (
    CommandStatus,
    FieldError,
    FramingError,
    MalformedPdu,
    SmppError,
    SmppUsageError,
    command_status,
    status_name,
)
from simwallet.gateway.smpp.pdu import (
    BODY_TYPES,
    PDU_OCTETS_MAX,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduBody,
    PduReader,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    parse_pdu,
)
from simwallet.gateway.smpp.tlv import TYPED_TAGS, ItsSessionInfo, OptionalParams, Tlv, TlvTag, UssdServiceOp

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def both_ways(data: bytes, pdu: Pdu) -> None:
    assert_both_ways(parse_pdu, Pdu.to_bytes, data, pdu)


def tlvs(*items: tuple[int, bytes]) -> OptionalParams:
    """TLVs in the order given (published vectors fix the order)."""
    return OptionalParams(tuple(Tlv(tag, value) for tag, value in items))


# Published vectors: (id, hex, expected PDU).
VECTORS: list[tuple[str, str, Pdu]] = [
    # SMPP v3.4 Issue 1.2, PDU-format example (also larvitsmpp test/): bind_transmitter, system_id "SMPP3TEST",
    # password "secret08", system_type "SUBMIT1", interface_version 0x00 (sic), addr_ton 1, addr_npi 1, no address_range.
    (
        "spec-bind_transmitter",
        "0000002F000000020000000000000001534D50503354455354007365637265743038005355424D4954310000010100",
        Pdu(BindTransmitter("SMPP3TEST", "secret08", "SUBMIT1", 0x00, 1, 1, ""), 1),
    ),
    # mozes/smpp.pdu test_pdu_encoding.py, do_bind_conversion_test (request and response with sc_interface_version).
    *[
        (
            f"mozes-{name}",
            f"0000002d{code:08x}00000000000000027465737400736563726574004f5441003402063132372e302e302e2a00",
            Pdu(kind("test", "secret", "OTA", 0x34, 2, 6, "127.0.0.*"), 2),
        )
        for name, code, kind in (
            ("bind_transmitter", 2, BindTransmitter),
            ("bind_receiver", 1, BindReceiver),
            ("bind_transceiver", 9, BindTransceiver),
        )
    ],
    *[
        (
            f"mozes-{name}",
            f"0000001d{code:08x}000000000000000154534937353838000210000134",
            Pdu(kind("TSI7588", tlvs((0x0210, b"\x34"))), 1),
        )
        for name, code, kind in (
            ("bind_transmitter_resp", 0x80000002, BindTransmitterResp),
            ("bind_receiver_resp", 0x80000001, BindReceiverResp),
            ("bind_transceiver_resp", 0x80000009, BindTransceiverResp),
        )
    ],
    # mozes/smpp.pdu: Unbind, UnbindResp, GenericNack (ESME_RSYSERR, sequence 0), EnquireLink, EnquireLinkResp.
    ("mozes-unbind", "00000010000000060000000000000004", Pdu(Unbind(), 4)),
    ("mozes-unbind_resp", "00000010800000060000000000000005", Pdu(UnbindResp(), 5)),
    ("mozes-generic_nack", "00000010800000000000000800000000", Pdu(GenericNack(), 0, CommandStatus.ESME_RSYSERR)),
    ("mozes-enquire_link", "00000010000000150000000000000006", Pdu(EnquireLink(), 6)),
    ("mozes-enquire_link_resp", "00000010800000150000000000000007", Pdu(EnquireLinkResp(), 7)),
    # mozes/smpp.pdu test_DeliverSM_syniverse_MO_conversion: an MO, Latin-1 (data_coding 3).
    (
        "mozes-deliver_sm-syniverse-mo",
        "0000004d00000005000000009f88f12441575342440001013136353035353531323334000101313737333535353430373000"
        "000000000000000300117468657265206973206e6f2073706f6f6e",
        Pdu(
            DeliverSm(
                service_type="AWSBD",
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr="16505551234",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="17735554070",
                data_coding=3,
                short_message=b"there is no spoon",
            ),
            2676551972,
        ),
    ),
    # mozes/smpp.pdu test_DeliverSM_handset_ack_conversion: a delivery receipt with message_state and receipted_message_id.
    (
        "mozes-deliver_sm-receipt",
        "000000b900000005000000000000000a434d5400010036353135353535363738000100313233000400000000000000007669643a"
        "31383931323733333231207375623a30303120646c7672643a303031207375626d697420646174653a31333035303530383236"
        "20646f6e6520646174653a3133303530353038323620737461743a44454c49565244206572723a30303020546578743a444c56"
        "524420544f204d4f42494c45000427000102001e0009373042413841363900",
        Pdu(
            DeliverSm(
                service_type="CMT",
                source_addr_ton=1,
                source_addr="6515555678",
                dest_addr_ton=1,
                destination_addr="123",
                esm_class=0x04,
                short_message=b"id:1891273321 sub:001 dlvrd:001 submit date:1305050826 done date:1305050826"
                b" stat:DELIVRD err:000 Text:DLVRD TO MOBILE\x00",
                tlvs=tlvs((0x0427, b"\x02"), (0x001E, b"70BA8A69\x00")),
            ),
            10,
        ),
    ),
    # mozes/smpp.pdu test_DeliverSM_sybase_MO_conversion: data_coding 0xF2 (class 2), a NUL inside short_message.
    (
        "mozes-deliver_sm-sybase-mo",
        "0000003f000000050000000000000001434d540001003334313131343935303030303100010031323334353435350000000000000000f2000648454c4c4f00",
        Pdu(
            DeliverSm(
                service_type="CMT",
                source_addr_ton=1,
                source_addr="3411149500001",
                dest_addr_ton=1,
                destination_addr="12345455",
                data_coding=0xF2,
                short_message=b"HELLO\x00",
            ),
            1,
        ),
    ),
    # mozes/smpp.pdu test_DeliverSM_with_subaddress: source_subaddress and dest_subaddress, TLVs this codec keeps raw.
    (
        "mozes-deliver_sm-subaddress",
        "00000066000000050000000000000001424d38000101343631323334353637383900010131343034363635333431300000000000"
        "000000f2001b48656c6c6f2049276d206120626967672066616e206f6620796f7502020004a037343202030005a034313331",
        Pdu(
            DeliverSm(
                service_type="BM8",
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr="46123456789",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="14046653410",
                data_coding=0xF2,
                short_message=b"Hello I'm a bigg fan of you",
                tlvs=tlvs((0x0202, h("a0373432")), (0x0203, h("a034313331"))),
            ),
            1,
        ),
    ),
    # mozes/smpp.pdu test_DeliverSM_0348: an OTA secured packet, PID 0x7F, DCS 0xF6, UDHI set (esm_class 0x40).
    (
        "mozes-submit_sm-0348",
        "0000005c00000004000000000006f391000500303334380001013339363938303933343200407f0000000100f6002d0270000028"
        "15162115150000001bb5b34a2fab312cfa8ecdd7779158747ac742c463cdd53b41963e49979d95ac",
        Pdu(
            SubmitSm(
                source_addr_ton=5,
                source_addr="0348",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="3969809342",
                esm_class=0x40,
                protocol_id=0x7F,
                registered_delivery=1,
                data_coding=0xF6,
                short_message=h("027000002815162115150000001BB5B34A2FAB312CFA8ECDD7779158747AC742C463CDD53B41963E49979D95AC"),
            ),
            455569,
        ),
    ),
    # mozes/smpp.pdu test_SubmitSM_conversion: alphanumeric sender, delivery receipt requested.
    (
        "mozes-submit_sm-hello",
        "000000360000000400000000000024440005006d6f62696c65776179000101313230383233300000000000000100f2000548454c4c4f",
        Pdu(
            SubmitSm(
                source_addr_ton=5,
                source_addr="mobileway",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="1208230",
                registered_delivery=1,
                data_coding=0xF2,
                short_message=b"HELLO",
            ),
            9284,
        ),
    ),
    # mozes/smpp.pdu test_DeliverSM_with_network_error_code: a receipt with network_error_code (raw here).
    (
        "mozes-deliver_sm-network_error_code",
        "000000f30000000500000000000000010001013439313532353637393438383700010130343035313330363939390000000000"
        "000000f2008569643a62633539623861612d326664322d343033352d383131332d313933303165303530303739207375623a3030"
        "3120646c7672643a303031207375626d697420646174653a31353035303831343430353820646f6e6520646174653a3135303530"
        "3831343430353820737461743a44454c49565244206572723a30303020746578743a2d042300030300000427000102001e002562"
        "633539623861612d326664322d343033352d383131332d31393330316530353030373900",
        Pdu(
            DeliverSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr="4915256794887",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="04051306999",
                data_coding=0xF2,
                short_message=b"id:bc59b8aa-2fd2-4035-8113-19301e050079 sub:001 dlvrd:001 submit date:150508144058"
                b" done date:150508144058 stat:DELIVRD err:000 text:-",
                tlvs=tlvs((0x0423, h("030000")), (0x0427, b"\x02"), (0x001E, b"bc59b8aa-2fd2-4035-8113-19301e050079\x00")),
            ),
            1,
        ),
    ),
    # mozes/smpp.pdu test_SubmitSM_with_data_coding_mclass_1.
    (
        "mozes-submit_sm-dcs-f1",
        "000000470000000400000000000000020001013338353931353232323635360001013338353935333932363939320000000000"
        "000100f1000e6a736d7465737432206463206631",
        Pdu(
            SubmitSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr="385915222656",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="385953926992",
                registered_delivery=1,
                data_coding=0xF1,
                short_message=b"jsmtest2 dc f1",
            ),
            2,
        ),
    ),
    # mozes/smpp.pdu test_SubmitSMResp_error_has_no_body / test_Bind*Resp_error_has_no_body.
    ("mozes-submit_sm_resp-error", "000000108000000400000014000004d2", Pdu(SubmitSmResp(), 1234, CommandStatus.ESME_RMSGQFUL)),
    ("mozes-bind_receiver_resp-error", "00000010800000010000000e00000d80", Pdu(BindReceiverResp(), 3456, CommandStatus.ESME_RINVPASWD)),
    (
        "mozes-bind_transmitter_resp-error",
        "00000010800000020000000e00000d80",
        Pdu(BindTransmitterResp(), 3456, CommandStatus.ESME_RINVPASWD),
    ),
    (
        "mozes-bind_transceiver_resp-error",
        "00000010800000090000000e00000d80",
        Pdu(BindTransceiverResp(), 3456, CommandStatus.ESME_RINVPASWD),
    ),
]


@pytest.mark.parametrize(("data", "pdu"), [pytest.param(h(hexa), pdu, id=name) for name, hexa, pdu in VECTORS])
def test_published_vectors_both_ways(data: bytes, pdu: Pdu) -> None:
    both_ways(data, pdu)


def test_receipt_tlvs_read_typed() -> None:
    pdu = parse_pdu(h(next(hexa for name, hexa, _ in VECTORS if name == "mozes-deliver_sm-network_error_code")))
    assert isinstance(pdu.body, DeliverSm)
    assert pdu.body.tlvs.message_state == 2
    assert pdu.body.tlvs.receipted_message_id == "bc59b8aa-2fd2-4035-8113-19301e050079"
    assert pdu.body.tlvs.unknown == (Tlv(0x0423, h("030000")),)


def test_message_payload_beside_short_message_is_kept() -> None:
    # mozes/smpp.pdu test_DeliverSM_with_network_error_code (decode_encode, second variant): both carry text.
    data = h(
        "0000010a0000000500000000000000010001013439313532353637393438383700010130343035313330363939390000000000"
        "000000f2008569643a62633539623861612d326664322d343033352d383131332d313933303165303530303739207375623a3030"
        "3120646c7672643a303031207375626d697420646174653a31353035303831343430353820646f6e6520646174653a3135303530"
        "3831343430353820737461743a44454c49565244206572723a30303020746578743a2d04240013536f6d6520737472696e672070"
        "61796c6f6164042300030300000427000102001e002562633539623861612d326664322d343033352d383131332d313933303165"
        "30353030373900"
    )
    pdu = parse_pdu(data)
    assert isinstance(pdu.body, DeliverSm)
    assert pdu.body.payload == b"Some string payload"
    assert pdu.to_bytes() == data


def test_data_sm_built_from_the_field_table() -> None:
    # §4.7.1 data_sm, by hand: no published vector was found.
    data = h(
        "0000003b"  # command_length 59
        "00000103"  # command_id data_sm
        "00000000"  # command_status
        "0000002a"  # sequence_number 42
        "5553534400"  # service_type "USSD" and its NUL
        "0101"  # source_addr_ton 1 (international), source_addr_npi 1 (E.164)
        "3836313338303031333830303000"  # source_addr "8613800138000" and its NUL
        "0000"  # dest_addr_ton 0, dest_addr_npi 0
        "2a3136362300"  # destination_addr "*166#" and its NUL
        "00"  # esm_class
        "00"  # registered_delivery
        "0f"  # data_coding 0x0F
        "05010001"  # TLV ussd_service_op (0x0501), length 1
        "01"  # PSSR indication
        "13830002"  # TLV its_session_info (0x1383), length 2
        "0702"  # session 7, sequence 1, not the end
    )
    body = DataSm(
        service_type="USSD",
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="8613800138000",
        destination_addr="*166#",
        data_coding=0x0F,
        tlvs=OptionalParams.of(ussd_service_op=UssdServiceOp.PSSR_INDICATION, its_session_info=ItsSessionInfo(7, 1)),
    )
    both_ways(data, Pdu(body, 42))
    assert body.tlvs.its_session_info == ItsSessionInfo(7, 1, end_of_session=False)


def test_message_id_responses_built_from_the_field_tables() -> None:
    # §4.4.2 submit_sm_resp: message_id "A1B2" and its NUL.
    both_ways(h("00000015 80000004 00000000 00000007 4131423200"), Pdu(SubmitSmResp("A1B2"), 7))
    # §4.6.2 deliver_sm_resp: message_id unused, the NUL alone.
    both_ways(h("00000011 80000005 00000000 00000008 00"), Pdu(DeliverSmResp(), 8))
    # §4.7.2 data_sm_resp: message_id "9", then delivery_failure_reason (0x0425, kept raw) = 1.
    both_ways(h("00000017 80000103 00000000 00000009 3900 04250001 01"), Pdu(DataSmResp("9", tlvs((0x0425, b"\x01"))), 9))
    # A body at its defaults goes without a body only when the status is an error.
    assert len(Pdu(DeliverSmResp(), 8, CommandStatus.ESME_RX_T_APPN).to_bytes()) == 16


def test_error_response_with_a_nul_body_parses() -> None:
    # SMSCs that send the lone NUL of an empty message_id with an error status.
    pdu = parse_pdu(h("00000011 80000004 00000058 00000003 00"))
    assert pdu == Pdu(SubmitSmResp(), 3, CommandStatus.ESME_RTHROTTLED)


# smpplib's tables agree with ours (it is the reference for names and values).


def test_status_values_agree_with_smpplib() -> None:
    theirs = {name.removeprefix("SMPP_"): value for name, value in vars(smpplib.consts).items() if name.startswith("SMPP_ESME_")}
    assert theirs
    assert {status.name: status.value for status in CommandStatus} == theirs


def test_command_ids_agree_with_smpplib() -> None:
    assert {command.name.lower(): command.value for command in CommandId} == smpplib.command_codes.commands


def test_typed_tlv_tags_agree_with_smpplib() -> None:
    for tag in TlvTag:
        assert smpplib.consts.OPTIONAL_PARAMS[tag.name.lower()] == tag.value


def test_status_helpers() -> None:
    assert all(status.meaning for status in CommandStatus)
    assert command_status(0x58) is CommandStatus.ESME_RTHROTTLED
    assert command_status(0x45A) == 0x45A
    assert status_name(0x45A) == "0x0000045A"
    assert status_name(0x0E) == "ESME_RINVPASWD"


def test_errors_derive_from_the_gateway_root_and_pickle() -> None:
    error = MalformedPdu(CommandStatus.ESME_RINVSRCADR, "too long", field="source_addr", command_id=4, sequence_number=9)
    assert isinstance(error, SmppError)
    assert isinstance(error, GatewayError)
    assert isinstance(error, RemotePeerError)
    assert error.code == "ESME_RINVSRCADR"
    assert str(error) == "ESME_RINVSRCADR [source_addr]: too long"
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.command_status, again.field, again.command_id, again.sequence_number) == (
        MalformedPdu,
        CommandStatus.ESME_RINVSRCADR,
        "source_addr",
        4,
        9,
    )
    assert isinstance(FieldError(CommandStatus.ESME_RINVMSGLEN, "x"), ValueError)


# Limits (§4 tables: "Var. max N" counts the NUL), both ways.

# (body type, field, octets_max with the NUL, status naming it); written from the spec, not from the code.
C_STRING_LIMITS: list[tuple[type[PduBody], str, int, CommandStatus]] = [
    *[
        (kind, field, size, status)
        for kind in (BindTransmitter, BindReceiver, BindTransceiver)
        for field, size, status in (
            ("system_id", 16, CommandStatus.ESME_RINVSYSID),
            ("password", 9, CommandStatus.ESME_RINVPASWD),
            ("system_type", 13, CommandStatus.ESME_RINVSYSTYP),
            ("address_range", 41, CommandStatus.ESME_RINVSRCADR),
        )
    ],
    *[(kind, "system_id", 16, CommandStatus.ESME_RINVSYSID) for kind in (BindTransmitterResp, BindReceiverResp, BindTransceiverResp)],
    *[
        (kind, field, size, status)
        for kind in (SubmitSm, DeliverSm)
        for field, size, status in (
            ("service_type", 6, CommandStatus.ESME_RINVSERTYP),
            ("source_addr", 21, CommandStatus.ESME_RINVSRCADR),
            ("destination_addr", 21, CommandStatus.ESME_RINVDSTADR),
        )
    ],
    (DataSm, "service_type", 6, CommandStatus.ESME_RINVSERTYP),
    (DataSm, "source_addr", 65, CommandStatus.ESME_RINVSRCADR),
    (DataSm, "destination_addr", 65, CommandStatus.ESME_RINVDSTADR),
    *[(kind, "message_id", 65, CommandStatus.ESME_RINVMSGID) for kind in (SubmitSmResp, DeliverSmResp, DataSmResp)],
]


def with_length(frame: bytes) -> bytes:
    return struct.pack(">I", len(frame)) + frame[4:]


@pytest.mark.parametrize(
    ("kind", "field", "size", "status"),
    [pytest.param(*row, id=f"{row[0].__name__}-{row[1]}") for row in C_STRING_LIMITS],
)
def test_c_string_limits_both_ways(kind: type[PduBody], field: str, size: int, status: CommandStatus) -> None:
    at_limit = kind(**{field: "7" * (size - 1)})
    data = Pdu(at_limit, 5).to_bytes()
    assert parse_pdu(data).body == at_limit
    with pytest.raises(FieldError) as local:
        kind(**{field: "7" * size})
    assert (local.value.field, local.value.command_status) == (field, status)
    # The same field one octet too long on the wire.
    longer = with_length(data.replace(b"7" * (size - 1) + b"\0", b"7" * size + b"\0", 1))
    with pytest.raises(MalformedPdu) as remote:
        parse_pdu(longer)
    assert (remote.value.field, remote.value.command_status) == (field, status)
    assert (remote.value.command_id, remote.value.sequence_number) == (kind.command_id, 5)


@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        ("short_message", b"x" * 255, CommandStatus.ESME_RINVMSGLEN),
        ("schedule_delivery_time", "2605161200000", CommandStatus.ESME_RINVSCHED),
        ("validity_period", "26051612000000+", CommandStatus.ESME_RINVEXPIRY),
        ("source_addr", "86\x00138", CommandStatus.ESME_RINVSRCADR),
        ("destination_addr", "余额", CommandStatus.ESME_RINVDSTADR),
        ("esm_class", 256, CommandStatus.ESME_RINVESMCLASS),
        ("priority_flag", -1, CommandStatus.ESME_RINVPRTFLG),
        ("source_addr_ton", "1", CommandStatus.ESME_RINVSRCTON),
        ("short_message", "text", CommandStatus.ESME_RINVMSGLEN),
    ],
)
def test_other_field_limits(field: str, value: Any, status: CommandStatus) -> None:
    with pytest.raises(FieldError) as caught:
        SubmitSm(**{field: value})
    assert (caught.value.field, caught.value.command_status) == (field, status)


def test_time_fields_take_sixteen_characters() -> None:
    body = SubmitSm(schedule_delivery_time="260516120000000+", validity_period="000001000000000R", short_message=b"x")
    both_ways(Pdu(body, 3).to_bytes(), Pdu(body, 3))


def test_latin1_octets_survive() -> None:
    body = DeliverSm(source_addr="é\xff", short_message=bytes(range(254)))
    assert parse_pdu(Pdu(body, 1).to_bytes()).body == body


@pytest.mark.parametrize(
    ("tail", "status", "field"),
    [
        ("0427 0002 0202", CommandStatus.ESME_RINVPARLEN, "message_state"),
        ("020e 0001 00", CommandStatus.ESME_RINVOPTPARAMVAL, "sar_total_segments"),
        ("0427 0001 02 0427 0001 03", CommandStatus.ESME_RINVOPTPARSTREAM, "message_state"),
        ("0427 0005 02", CommandStatus.ESME_RINVOPTPARSTREAM, "message_state"),
        ("04", CommandStatus.ESME_RINVOPTPARSTREAM, "tlv"),
        ("001e 0042" + "41" * 65 + "00", CommandStatus.ESME_RINVOPTPARAMVAL, "receipted_message_id"),
    ],
)
def test_bad_tlvs_on_the_wire(tail: str, status: CommandStatus, field: str) -> None:
    data = with_length(Pdu(DeliverSm(short_message=b"x"), 77).to_bytes() + h(tail))
    with pytest.raises(MalformedPdu) as caught:
        parse_pdu(data)
    assert (caught.value.command_status, caught.value.field, caught.value.sequence_number) == (status, field, 77)


def test_tlv_limits_when_built() -> None:
    with pytest.raises(FieldError, match="sar_msg_ref_num"):
        OptionalParams.of(sar_msg_ref_num=0x10000)
    with pytest.raises(FieldError, match="receipted_message_id"):
        OptionalParams.of(receipted_message_id="9" * 65)
    with pytest.raises(FieldError, match="its_session_info"):
        ItsSessionInfo(1, 128)
    with pytest.raises(FieldError, match="tlv 0x1400"):
        Tlv(0x1400, bytes(0x10000))
    with pytest.raises(FieldError, match="appears twice"):
        OptionalParams((Tlv(0x020C, b"\0\1"), Tlv(0x020C, b"\0\2")))
    assert OptionalParams.of(receipted_message_id="9" * 64).receipted_message_id == "9" * 64


@pytest.mark.parametrize(
    ("hexa", "status", "field"),
    [
        # Cut inside system_id (no NUL before the end).
        ("00000014 00000002 00000000 00000001 41424344", CommandStatus.ESME_RINVCMDLEN, "system_id"),
        # Cut after password: system_type missing.
        ("00000015 00000002 00000000 00000001 41004200", CommandStatus.ESME_RINVCMDLEN, "system_type"),
        # submit_sm whose sm_length says 255.
        ("0000002A 00000004 00000000 00000001 00 0000 00 0000 00 000000 00 00 00000000 ff 41", CommandStatus.ESME_RINVMSGLEN, "sm_length"),
        # submit_sm whose sm_length overruns the PDU.
        ("0000002A 00000004 00000000 00000001 00 0000 00 0000 00 000000 00 00 00000000 05 41", CommandStatus.ESME_RINVCMDLEN, "sm_length"),
        # enquire_link with a body.
        ("00000011 00000015 00000000 00000001 00", CommandStatus.ESME_RINVCMDLEN, None),
        # Unknown command_id (query_sm is not handled), and a made-up one.
        ("00000010 00000003 00000000 00000001", CommandStatus.ESME_RINVCMDID, None),
        ("00000010 f0000009 00000000 00000001", CommandStatus.ESME_RINVCMDID, None),
    ],
)
def test_malformed_bodies_name_the_header(hexa: str, status: CommandStatus, field: str | None) -> None:
    data = with_length(h(hexa))
    with pytest.raises(MalformedPdu) as caught:
        parse_pdu(data)
    assert (caught.value.command_status, caught.value.field) == (status, field)
    assert caught.value.command_id == int.from_bytes(data[4:8], "big")
    assert caught.value.sequence_number == 1


@pytest.mark.parametrize("hexa", ["", "0000000f000000060000000000000000", "00000011 00000015 00000000 00000001", "00000010 000000"])
def test_parse_pdu_refuses_bad_lengths(hexa: str) -> None:
    with pytest.raises(FramingError) as caught:
        parse_pdu(h(hexa))
    assert caught.value.command_status == CommandStatus.ESME_RINVCMDLEN


def test_usage_errors_of_pdu() -> None:
    with pytest.raises(FieldError, match="sequence_number"):
        Pdu(EnquireLink(), 1 << 32)
    with pytest.raises(SmppUsageError, match="not a PDU body"):
        Pdu(PduBody(), 1)  # type: ignore[abstract]


# Round trips over the whole domain (hypothesis), every PDU type.


def c_strings(octets_max: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=octets_max - 1)


octet = st.integers(0, 255)
times = st.one_of(st.just(""), st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=16, max_size=16))
raw_tlvs = st.lists(
    st.builds(Tlv, st.integers(0, 0xFFFF).filter(lambda tag: tag not in TYPED_TAGS), st.binary(max_size=40)),
    max_size=3,
)
optional_params = st.builds(
    OptionalParams.of,
    receipted_message_id=st.none() | c_strings(65),
    user_message_reference=st.none() | st.integers(0, 0xFFFF),
    sar_msg_ref_num=st.none() | st.integers(0, 0xFFFF),
    sar_total_segments=st.none() | st.integers(1, 255),
    sar_segment_seqnum=st.none() | st.integers(1, 255),
    sc_interface_version=st.none() | octet,
    message_payload=st.none() | st.binary(max_size=600),
    message_state=st.none() | octet,
    ussd_service_op=st.none() | octet,
    its_session_info=st.none() | st.builds(ItsSessionInfo, octet, st.integers(0, 127), st.booleans()),
    unknown=raw_tlvs,
)
REQUESTS: dict[type[PduBody], st.SearchStrategy[PduBody]] = {
    **{
        kind: st.builds(kind, c_strings(16), c_strings(9), c_strings(13), octet, octet, octet, c_strings(41))
        for kind in (BindTransmitter, BindReceiver, BindTransceiver)
    },
    **{
        kind: st.builds(
            kind,
            c_strings(6),
            octet,
            octet,
            c_strings(21),
            octet,
            octet,
            c_strings(21),
            octet,
            octet,
            octet,
            times,
            times,
            octet,
            octet,
            octet,
            octet,
            st.binary(max_size=254),
            optional_params,
        )
        for kind in (SubmitSm, DeliverSm)
    },
    DataSm: st.builds(DataSm, c_strings(6), octet, octet, c_strings(65), octet, octet, c_strings(65), octet, octet, octet, optional_params),
    Unbind: st.builds(Unbind),
    EnquireLink: st.builds(EnquireLink),
}
RESPONSES: dict[type[PduBody], st.SearchStrategy[PduBody]] = {
    **{kind: st.builds(kind, c_strings(16), optional_params) for kind in (BindTransmitterResp, BindReceiverResp, BindTransceiverResp)},
    **{kind: st.builds(kind, c_strings(65), optional_params) for kind in (SubmitSmResp, DeliverSmResp, DataSmResp)},
    **{kind: st.builds(kind) for kind in (UnbindResp, EnquireLinkResp, GenericNack)},
}
pdus = st.one_of(
    st.builds(Pdu, st.one_of(*REQUESTS.values()), st.integers(0, 0xFFFFFFFF)),
    st.builds(Pdu, st.one_of(*RESPONSES.values()), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF).map(command_status)),
)


def test_strategies_cover_every_body_type() -> None:
    assert {*REQUESTS, *RESPONSES} == set(BODY_TYPES.values())


@FAST
@given(pdus)
def test_round_trip(pdu: Pdu) -> None:
    data = pdu.to_bytes()
    assert int.from_bytes(data[:4], "big") == len(data)
    assert parse_pdu(data) == pdu
    assert parse_pdu(data).to_bytes() == data


@FAST
@given(REQUESTS[SubmitSm])
def test_parsed_bodies_pass_their_own_checks(body: PduBody) -> None:
    parsed = parse_pdu(Pdu(body, 1).to_bytes()).body
    assert isinstance(parsed, SubmitSm)
    # The decoder skips the constructor's checks; running them on what it built must change nothing.
    assert SubmitSm(*(getattr(parsed, spec.name) for spec in dataclasses.fields(parsed))) == parsed


# The stream splitter.

STREAM = [pdu for _, _, pdu in VECTORS]
STREAM_BYTES = b"".join(pdu.to_bytes() for pdu in STREAM)


def read_all(reader: PduReader) -> list[Pdu]:
    return list(reader)


def test_reader_whole() -> None:
    reader = PduReader()
    reader.feed(STREAM_BYTES)
    assert read_all(reader) == STREAM
    assert reader.buffered_octets == 0


def test_reader_byte_at_a_time() -> None:
    reader = PduReader()
    got: list[Pdu] = []
    for index in range(len(STREAM_BYTES)):
        reader.feed(STREAM_BYTES[index : index + 1])
        got.extend(reader)
    assert got == STREAM


def test_reader_keeps_trailing_partial_data() -> None:
    reader = PduReader()
    tail = STREAM[1].to_bytes()[:20]
    reader.feed(STREAM_BYTES + tail)
    assert read_all(reader) == STREAM
    assert reader.buffered_octets == 20
    reader.feed(STREAM[1].to_bytes()[20:])
    assert read_all(reader) == [STREAM[1]]


@FAST
@given(st.lists(st.integers(1, 200), max_size=400))
def test_reader_random_chunking(cuts: list[int]) -> None:
    reader = PduReader()
    got: list[Pdu] = []
    position = 0
    for size in cuts:
        reader.feed(STREAM_BYTES[position : position + size])
        position += size
        got.extend(reader)
    reader.feed(STREAM_BYTES[position:])
    got.extend(reader)
    assert got == STREAM


def test_reader_goes_on_after_a_malformed_pdu() -> None:
    reader = PduReader()
    reader.feed(h("00000010 00000003 00000000 0000000b") + STREAM_BYTES)
    with pytest.raises(MalformedPdu) as caught:
        reader.next_pdu()
    assert (caught.value.command_status, caught.value.command_id, caught.value.sequence_number) == (CommandStatus.ESME_RINVCMDID, 3, 11)
    assert read_all(reader) == STREAM


@pytest.mark.parametrize(
    ("hexa", "sequence"),
    [("0000000f", None), ("0000000f 00000015 00000000 00000021", 0x21), (f"{PDU_OCTETS_MAX + 1:08x}", None), ("47455420 2f20", None)],
)
def test_reader_framing_errors_are_final(hexa: str, sequence: int | None) -> None:
    reader = PduReader()
    reader.feed(h(hexa))
    with pytest.raises(FramingError) as caught:
        reader.next_pdu()
    assert caught.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert caught.value.sequence_number == sequence
    reader.feed(STREAM_BYTES)
    with pytest.raises(FramingError):
        reader.next_pdu()


def test_reader_accepts_the_largest_pdu() -> None:
    body = DataSm(tlvs=OptionalParams.of(message_payload=bytes(0xFFFF)))
    data = Pdu(body, 1).to_bytes()
    assert len(data) <= PDU_OCTETS_MAX
    reader = PduReader()
    reader.feed(data)
    assert read_all(reader) == [Pdu(body, 1)]


def drain_hostile(reader: PduReader) -> None:
    while True:
        try:
            if reader.next_pdu() is None:
                return
        except MalformedPdu:
            continue
        except FramingError:
            return


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_only_smpp_errors_escape_random_bytes(data: bytes) -> None:
    with contextlib.suppress(SmppError):
        parse_pdu(data)
    reader = PduReader()
    reader.feed(data)
    drain_hostile(reader)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAM), st.data())
def test_only_smpp_errors_escape_damaged_pdus(pdu: Pdu, data: st.DataObject) -> None:
    raw = bytearray(pdu.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(4, len(raw) - 1))] = data.draw(octet)
    cut = data.draw(st.integers(16, len(raw)))
    damaged = with_length(bytes(raw[:cut]))
    try:
        parsed = parse_pdu(damaged)
    except SmppError:
        return
    # Whatever parses re-encodes to something that parses the same.
    assert parse_pdu(parsed.to_bytes()) == parsed


# Interoperation with smpplib 2.2.4, both ways.


class _Client:
    """The client object smpplib takes its sequence numbers from."""

    sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def smpplib_pdu(name: str, sequence: int, **fields: Any) -> bytes:
    made = smpplib.smpp.make_pdu(name, client=_Client(), **fields)
    made.sequence = sequence  # smpplib ignores a sequence= argument when a client is given
    data: bytes = made.generate()
    return data


def test_smpplib_submit_sm_parses_here() -> None:
    data = smpplib_pdu(
        "submit_sm",
        17,
        service_type="",
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="WALLET",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="8613800138000",
        esm_class=0,
        protocol_id=0,
        priority_flag=0,
        registered_delivery=1,
        replace_if_present_flag=0,
        data_coding=8,
        sm_default_msg_id=0,
        short_message="余额 100.00".encode("utf-16-be"),
        user_message_reference=4242,
        sar_msg_ref_num=300,
        sar_total_segments=2,
        sar_segment_seqnum=1,
        its_session_info=0x0703,
        ussd_service_op=17,
    )
    pdu = parse_pdu(data)
    assert pdu.sequence_number == 17
    body = pdu.body
    assert isinstance(body, SubmitSm)
    assert (body.source_addr_ton, body.source_addr, body.destination_addr, body.data_coding) == (5, "WALLET", "8613800138000", 8)
    assert body.short_message.decode("utf-16-be") == "余额 100.00"
    params = body.tlvs
    assert (params.user_message_reference, params.sar_msg_ref_num) == (4242, 300)
    assert (params.sar_total_segments, params.sar_segment_seqnum) == (2, 1)
    assert params.its_session_info == ItsSessionInfo(7, 1, end_of_session=True)
    assert params.ussd_service_op == UssdServiceOp.PSSR_RESPONSE
    assert pdu.to_bytes() == data


def test_smpplib_deliver_sm_receipt_parses_here() -> None:
    data = smpplib_pdu(
        "deliver_sm",
        99,
        source_addr="8613800138000",
        destination_addr="10086",
        esm_class=4,
        short_message=b"id:42 stat:DELIVRD",
        receipted_message_id="42",
        message_state=2,
        message_payload=None,
    )
    body = parse_pdu(data).body
    assert isinstance(body, DeliverSm)
    assert (body.tlvs.receipted_message_id, body.tlvs.message_state, body.short_message) == ("42", 2, b"id:42 stat:DELIVRD")


def smpplib_parse(data: bytes) -> Any:
    return smpplib.smpp.parse_pdu(data, client=_Client())


@FAST
@given(
    source=c_strings(21).filter(str.isascii),
    destination=c_strings(21).filter(str.isascii),
    text=st.binary(max_size=254),
    reference=st.integers(0, 0xFFFF),
    total=st.integers(1, 255),
    seqnum=st.integers(1, 255),
    sequence=st.integers(1, 0x7FFFFFFF),
)
def test_submit_sm_built_here_parses_in_smpplib(
    source: str, destination: str, text: bytes, reference: int, total: int, seqnum: int, sequence: int
) -> None:
    body = SubmitSm(
        source_addr=source,
        destination_addr=destination,
        registered_delivery=1,
        short_message=text,
        tlvs=OptionalParams.of(sar_msg_ref_num=reference, sar_total_segments=total, sar_segment_seqnum=seqnum, ussd_service_op=2),
    )
    theirs = smpplib_parse(Pdu(body, sequence).to_bytes())
    assert (theirs.command, theirs.sequence) == ("submit_sm", sequence)
    assert (theirs.source_addr, theirs.destination_addr, theirs.short_message) == (source.encode(), destination.encode(), text)
    assert (theirs.sar_msg_ref_num, theirs.sar_total_segments, theirs.sar_segment_seqnum) == (reference, total, seqnum)
    assert theirs.ussd_service_op == UssdServiceOp.USSR_REQUEST


def test_deliver_sm_built_here_parses_in_smpplib() -> None:
    body = DeliverSm(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="8613800138000",
        destination_addr="10086",
        esm_class=4,
        tlvs=OptionalParams.of(
            receipted_message_id="7f3a",
            message_state=2,
            user_message_reference=7,
            its_session_info=ItsSessionInfo(3, 2),
            message_payload=b"id:7f3a stat:DELIVRD",
        ),
    )
    theirs = smpplib_parse(Pdu(body, 5).to_bytes())
    assert (theirs.command, theirs.sequence, theirs.esm_class) == ("deliver_sm", 5, 4)
    assert (theirs.receipted_message_id, theirs.message_state, theirs.user_message_reference) == (b"7f3a", 2, 7)
    assert (theirs.its_session_info, theirs.message_payload) == (0x0304, b"id:7f3a stat:DELIVRD")


def test_responses_built_here_parse_in_smpplib() -> None:
    theirs = smpplib_parse(Pdu(SubmitSmResp("a1b2c3"), 8).to_bytes())
    assert (theirs.command, theirs.sequence, theirs.message_id, theirs.status) == ("submit_sm_resp", 8, b"a1b2c3", 0)
    theirs = smpplib_parse(Pdu(SubmitSmResp(), 9, CommandStatus.ESME_RTHROTTLED).to_bytes())
    assert (theirs.command, theirs.status) == ("submit_sm_resp", CommandStatus.ESME_RTHROTTLED)
