"""GlobalPlatform 2.3 command codecs (simwallet.applet.protocols.gp): vectors, both ways, round trips, hostile input.

Vectors come from tests/vectors/gp_card_content.json (provenance in tests/vectors/README.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.gp import (
    CPLC_FIELDS,
    LOCKED_BIT,
    STORE_DATA_BLOCK_MAX,
    ApplicationLifeCycle,
    CardRecognitionData,
    Cplc,
    DataTag,
    DeleteCommand,
    Dgi,
    GetStatusCommand,
    InstallCommand,
    InstallFor,
    InstallParameters,
    KeyInformation,
    Privilege,
    RegistryData,
    SecurityDomainFci,
    SetStatusCommand,
    StatusScope,
    StatusType,
    StoreDataCommand,
    StoreDataEncryption,
    StoreDataP1,
    StoreDataStructure,
    build_cplc,
    build_get_status,
    build_key_information,
    check_application_life_cycle,
    decrypt_sensitive,
    delete_command,
    encode_dgis,
    encode_privileges,
    encrypt_sensitive,
    get_data_command,
    get_status_command,
    install_for_install_command,
    install_for_make_selectable_command,
    install_for_personalization_command,
    is_locked,
    is_selectable,
    parse_cplc,
    parse_dgis,
    parse_get_data_command,
    parse_get_status,
    parse_key_information,
    parse_privileges,
    set_status_command,
    store_data_blocks,
    store_data_commands,
)
from simwallet.applet.protocols.tlv import Tlv

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "gp_card_content.json").read_text(encoding="utf-8"))

ELF = h("A0 00 00 05 59 10 10")
MODULE = h("A0 00 00 05 59 10 10 01")
APP = h("A0 00 00 05 59 10 10 01 01")
ISD = h("A0 00 00 01 51 00 00 00")
DEK = bytes(range(32, 48))

aids = st.binary(min_size=5, max_size=16)
privileges = st.integers(0, 0xFFFFFF).map(lambda value: Privilege(value & 0xFFFFF0))
system_objects = st.lists(st.builds(Tlv, st.sampled_from([0xC6, 0xC7, 0xC8, 0xCA, 0xD7, 0xD8]), st.binary(max_size=12)), max_size=3)
install_parameters = st.builds(
    InstallParameters,
    st.binary(max_size=40),
    st.none() | system_objects.map(tuple),
    st.lists(st.builds(Tlv, st.just(0xEA), st.binary(max_size=8)), max_size=1).map(tuple),
)


def both_ways_hex(parse: Callable[[bytes], Any], build: Callable[[Any], bytes], hex_text: str, obj: Any) -> None:
    assert_both_ways(parse, build, h(hex_text), obj)


def only_codec_errors(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(CodecError):
        parse(data)


# --- life cycles and privileges --------------------------------------------------------------------


@pytest.mark.parametrize("state", range(256))
def test_application_life_cycle_every_byte(state: int) -> None:
    # GP CS v2.3 Table 11-6: 03, 0xxxx111, and either with b8 (LOCKED).
    valid = (state & 0x7F) == 0x03 or state & 0x07 == 0x07
    if valid:
        assert check_application_life_cycle(state) == state
        assert is_locked(state) == bool(state & LOCKED_BIT)
        assert is_selectable(state) == (state & 0x07 == 0x07 and not state & LOCKED_BIT)
    else:
        with pytest.raises(CodecError):
            check_application_life_cycle(state)


def test_named_life_cycles() -> None:
    assert not is_selectable(ApplicationLifeCycle.INSTALLED)
    assert is_selectable(ApplicationLifeCycle.SELECTABLE)
    assert not is_selectable(ApplicationLifeCycle.SELECTABLE | LOCKED_BIT)
    assert is_selectable(ApplicationLifeCycle.PERSONALIZED)


@pytest.mark.parametrize("byte1", range(256))
def test_one_byte_privileges_every_value(byte1: int) -> None:
    # GP 2.1.1 one-byte privileges read as byte 1 of the three-byte form.
    privileges = parse_privileges(bytes([byte1]))
    assert encode_privileges(privileges) == bytes([byte1, 0, 0])


def test_privileges_both_ways() -> None:
    isd = Privilege.SECURITY_DOMAIN | Privilege.CARD_LOCK | Privilege.CARD_TERMINATE | Privilege.CARD_RESET | Privilege.CVM_MANAGEMENT
    assert_both_ways(parse_privileges, encode_privileges, h("9E 00 00"), isd)
    assert_both_ways(parse_privileges, encode_privileges, h("00 04 80"), Privilege.GLOBAL_REGISTRY | Privilege.RECEIPT_GENERATION)


@given(privileges)
def test_privileges_round_trip(value: Privilege) -> None:
    assert parse_privileges(encode_privileges(value)) == value


@pytest.mark.parametrize("data", [h("00 00 01"), h("00 00 0F"), h("00 00"), h("00 00 00 00"), b""])
def test_privileges_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        parse_privileges(data)


# --- INSTALL -----------------------------------------------------------------------------------------


def _system(pairs: list[list[str]] | None) -> tuple[Tlv, ...] | None:
    return None if pairs is None else tuple(Tlv(int(tag, 16), h(value)) for tag, value in pairs)


@pytest.mark.parametrize("vector", VECTORS["install_parameters"]["vectors"], ids=lambda v: v["id"])
def test_install_parameters_vectors(vector: dict[str, Any]) -> None:
    expected = InstallParameters(h(vector["application"]), _system(vector["system"]))
    assert_both_ways(InstallParameters.from_bytes, InstallParameters.to_bytes, h(vector["hex"]), expected)


def test_install_parameters_need_one_c9() -> None:
    for data in (h("EF 00"), h("C9 00 C9 00"), h("C9 00 EF 00 EF 00")):
        with pytest.raises(CodecError):
            InstallParameters.from_bytes(data)


INSTALL_AND_SELECTABLE = (
    "80 E6 0C 00 25 07 A0 00 00 05 59 10 10 08 A0 00 00 05 59 10 10 01 09 A0 00 00 05 59 10 10 01 01 03 00 00 00 04 C9 02 01 02 00 00"
)


def test_install_for_install_and_make_selectable_both_ways() -> None:
    obj = InstallCommand(InstallFor.INSTALL_AND_MAKE_SELECTABLE, APP, ELF, MODULE, Privilege(0), InstallParameters(h("01 02")))
    both_ways_hex(InstallCommand.from_bytes, InstallCommand.to_bytes, INSTALL_AND_SELECTABLE, obj)
    assert install_for_install_command(ELF, MODULE, APP, application_parameters=h("01 02")) == h(INSTALL_AND_SELECTABLE)


def test_install_for_install_only_with_privileges_and_token() -> None:
    obj = InstallCommand(InstallFor.INSTALL, APP, ELF, MODULE, Privilege.CARD_LOCK, InstallParameters(), token=h("AA BB"), more=True)
    data = h("07") + ELF + h("08") + MODULE + h("09") + APP + h("03 10 00 00 02 C9 00 02 AA BB")
    capdu = h("80 E6 84 00") + bytes([len(data)]) + data + h("00")
    assert_both_ways(InstallCommand.from_bytes, InstallCommand.to_bytes, capdu, obj)


def test_install_long_parameters_use_ber_length() -> None:
    parameters = InstallParameters(bytes(130))
    command = InstallCommand(InstallFor.INSTALL, APP, ELF, MODULE, Privilege(0), parameters)
    data = command.data()
    # C9 81 82 <130 bytes> is 133 bytes: the field length is 81 85.
    assert h("81 85 C9 81 82") in data
    assert InstallCommand.from_fields(command.p1, 0, data) == command
    # The same length in a longer form than needed is refused.
    padded = data.replace(h("03 00 00 00 81 85"), h("03 00 00 00 82 00 85"))
    with pytest.raises(CodecError):
        InstallCommand.from_fields(command.p1, 0, padded)


def test_install_for_make_selectable_both_ways() -> None:
    obj = InstallCommand(InstallFor.MAKE_SELECTABLE, APP, privileges=Privilege(0))
    capdu = h("80 E6 08 00 12 00 00 09") + APP + h("03 00 00 00 00 00 00")
    assert_both_ways(InstallCommand.from_bytes, InstallCommand.to_bytes, capdu, obj)
    assert install_for_make_selectable_command(APP) == capdu


def test_install_for_personalization_vector() -> None:
    vector = VECTORS["install_for_personalization"]
    obj = InstallCommand(InstallFor.PERSONALIZATION, h(vector["aid"]))
    assert_both_ways(InstallCommand.from_bytes, InstallCommand.to_bytes, h(vector["hex"]), obj)
    assert install_for_personalization_command(h(vector["aid"])) == h(vector["hex"])


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"kind": InstallFor.INSTALL, "application_aid": APP}, "install without load file"),
        ({"kind": InstallFor.INSTALL, "application_aid": APP, "load_file_aid": ELF, "module_aid": MODULE}, "no privileges"),
        ({"kind": InstallFor.PERSONALIZATION, "application_aid": APP, "privileges": Privilege(0)}, "perso with privileges"),
        ({"kind": InstallFor.MAKE_SELECTABLE, "application_aid": APP}, "make selectable without privileges"),
        ({"kind": InstallFor.PERSONALIZATION, "application_aid": h("A0 00")}, "short AID"),
    ],
)
def test_install_inconsistent_commands_refused(kwargs: dict[str, Any], why: str) -> None:
    with pytest.raises(CodecError):
        InstallCommand(**kwargs)


@pytest.mark.parametrize("p1", [0x02, 0x06, 0x10, 0x40, 0x00, 0x01, 0x24])
def test_install_unmodelled_p1_refused(p1: int) -> None:
    with pytest.raises(CodecError):
        InstallCommand.from_fields(p1, 0, h("00 00 05 A0 00 00 00 01 00 00 00"))


@st.composite
def install_commands(draw: st.DrawFn) -> InstallCommand:
    kind = draw(st.sampled_from(InstallFor))
    more = draw(st.booleans())
    if kind is InstallFor.PERSONALIZATION:
        return InstallCommand(kind, draw(aids), more=more)
    if kind is InstallFor.MAKE_SELECTABLE:
        return InstallCommand(kind, draw(aids), privileges=draw(privileges), token=draw(st.binary(max_size=8)), more=more)
    return InstallCommand(
        kind, draw(aids), draw(aids), draw(aids), draw(privileges), draw(install_parameters), draw(st.binary(max_size=16)), more
    )


@given(install_commands())
def test_install_round_trip(command: InstallCommand) -> None:
    assert InstallCommand.from_bytes(command.to_bytes()) == command


@given(install_commands())
def test_install_data_truncated_raises_codec_error(command: InstallCommand) -> None:
    data = command.data()
    for end in range(len(data)):
        with pytest.raises(CodecError):
            InstallCommand.from_fields(command.p1, 0, data[:end])
    with pytest.raises(CodecError):
        InstallCommand.from_fields(command.p1, 0, data + b"\x00")


# --- SET STATUS, DELETE ------------------------------------------------------------------------------


def test_set_status_both_ways() -> None:
    lock_card = SetStatusCommand(StatusType.ISSUER_SECURITY_DOMAIN, 0x7F)
    both_ways_hex(SetStatusCommand.from_bytes, SetStatusCommand.to_bytes, "80 F0 80 7F", lock_card)
    lock_app = SetStatusCommand(StatusType.APPLICATION, 0x80, APP)
    both_ways_hex(SetStatusCommand.from_bytes, SetStatusCommand.to_bytes, "80 F0 40 80 09 A0 00 00 05 59 10 10 01 01", lock_app)
    assert set_status_command(StatusType.APPLICATION, 0x80, APP) == lock_app.to_bytes()
    sd = SetStatusCommand(StatusType.SECURITY_DOMAIN_AND_APPLICATIONS, 0x80, ISD)
    both_ways_hex(SetStatusCommand.from_bytes, SetStatusCommand.to_bytes, "80 F0 60 80 08 A0 00 00 01 51 00 00 00", sd)


@given(st.sampled_from(StatusType), st.integers(0, 255), aids)
def test_set_status_round_trip(status_type: StatusType, state: int, aid: bytes) -> None:
    command = SetStatusCommand(status_type, state, aid)
    assert SetStatusCommand.from_bytes(command.to_bytes()) == command


@pytest.mark.parametrize("capdu", ["80 F0 20 80 05 A0 00 00 00 01", "80 F0 40 80", "80 F0 40 80 02 A0 00", "00 F0 80 7F", "80 F2 80 7F"])
def test_set_status_refused(capdu: str) -> None:
    with pytest.raises(CodecError):
        SetStatusCommand.from_bytes(h(capdu))


def test_delete_both_ways() -> None:
    both_ways_hex(
        DeleteCommand.from_bytes, DeleteCommand.to_bytes, "80 E4 00 00 0B 4F 09 A0 00 00 05 59 10 10 01 01 00", DeleteCommand(APP)
    )
    both_ways_hex(
        DeleteCommand.from_bytes, DeleteCommand.to_bytes, "80 E4 00 80 09 4F 07 A0 00 00 05 59 10 10 00", DeleteCommand(ELF, related=True)
    )
    assert delete_command(ELF, related=True) == DeleteCommand(ELF, True).to_bytes()


@pytest.mark.parametrize("data", ["4F 09 A0 00 00 05 59 10 10 01", "4F 00", "5C 05 A0 00 00 00 01", "4F 05 A0 00 00 00 01 00", ""])
def test_delete_data_refused(data: str) -> None:
    with pytest.raises(CodecError):
        DeleteCommand.from_fields(0, 0, h(data))


# --- STORE DATA and DGIs ------------------------------------------------------------------------------


@pytest.mark.parametrize("p1", range(256))
def test_store_data_p1_every_value(p1: int) -> None:
    # GP CS v2.3 Table 11-89: b3-b2 RFU, encryption 10 and structure 11 RFU.
    valid = not p1 & 0x06 and (p1 >> 5) & 3 != 2 and (p1 >> 3) & 3 != 3
    if valid:
        assert StoreDataP1.from_byte(p1).to_byte() == p1
    else:
        with pytest.raises(CodecError):
            StoreDataP1.from_byte(p1)


def test_store_data_command_both_ways() -> None:
    last_encrypted_dgi = StoreDataP1(True, StoreDataEncryption.ENCRYPTED, StoreDataStructure.DGI)
    obj = StoreDataCommand(last_encrypted_dgi, 3, h("01 01 01 AA"))
    both_ways_hex(StoreDataCommand.from_bytes, StoreDataCommand.to_bytes, "80 E2 E8 03 04 01 01 01 AA", obj)
    with_response = StoreDataCommand(StoreDataP1(structure=StoreDataStructure.BER_TLV, response_expected=True), 0, h("42 01 99"))
    both_ways_hex(StoreDataCommand.from_bytes, StoreDataCommand.to_bytes, "80 E2 11 00 03 42 01 99 00", with_response)


def test_dgi_both_ways() -> None:
    assert_both_ways(Dgi.from_bytes, Dgi.to_bytes, h("01 01 03 AA BB CC"), Dgi(0x0101, h("AA BB CC")))
    assert_both_ways(Dgi.from_bytes, Dgi.to_bytes, h("80 01 FE") + bytes(254), Dgi(0x8001, bytes(254)))
    # EMV CPS: 255 bytes and more take FF and two bytes.
    assert_both_ways(Dgi.from_bytes, Dgi.to_bytes, h("80 01 FF 00 FF") + bytes(255), Dgi(0x8001, bytes(255)))
    assert_both_ways(Dgi.from_bytes, Dgi.to_bytes, h("00 00 00"), Dgi(0, b""))


def test_dgi_long_form_for_a_short_length_refused() -> None:
    with pytest.raises(CodecError):
        Dgi.from_bytes(h("01 01 FF 00 03 AA BB CC"))


dgis = st.builds(Dgi, st.integers(0, 0xFFFF), st.binary(max_size=300))


@given(st.lists(dgis, max_size=5))
def test_dgis_round_trip(values: list[Dgi]) -> None:
    assert parse_dgis(encode_dgis(values)) == values


@given(dgis)
def test_dgi_truncated_or_trailing_raises_codec_error(dgi: Dgi) -> None:
    data = dgi.to_bytes()
    for end in range(len(data)):
        with pytest.raises(CodecError):
            Dgi.from_bytes(data[:end])
    with pytest.raises(CodecError):
        Dgi.from_bytes(data + b"\x00")


@given(st.binary(max_size=100), st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_sensitive_data_round_trip(plain: bytes, dek: bytes) -> None:
    encrypted = encrypt_sensitive(dek, plain)
    assert len(encrypted) % 16 == 0 and len(encrypted) > len(plain)
    assert decrypt_sensitive(dek, encrypted) == plain


def test_sensitive_data_with_another_dek_raises_codec_error() -> None:
    encrypted = encrypt_sensitive(DEK, b"PIN 1234")
    with pytest.raises(CodecError):
        decrypt_sensitive(bytes(16), encrypted)
    for bad in (b"", encrypted[:-1]):
        with pytest.raises(CodecError):
            decrypt_sensitive(DEK, bad)


def test_store_data_commands_pack_number_flag_and_encrypt() -> None:
    plain = [Dgi(0x0101, bytes(100)), Dgi(0x8001, b"secret key"), Dgi(0x0102, bytes(100)), Dgi(0x0103, bytes(100))]
    commands = [StoreDataCommand.from_bytes(c) for c in store_data_commands(plain, dek=DEK, block_max=230)]
    assert [c.block_number for c in commands] == [0, 1]
    assert [c.p1.last for c in commands] == [False, True]
    assert all(c.p1.structure is StoreDataStructure.DGI for c in commands)
    # Only the block carrying DGI 8001 says "encrypted data".
    assert [c.p1.encryption for c in commands] == [StoreDataEncryption.ENCRYPTED, StoreDataEncryption.NONE]
    received = [dgi for c in commands for dgi in parse_dgis(c.data)]
    assert [d.tag for d in received] == [0x0101, 0x8001, 0x0102, 0x0103]
    assert received[1].value != b"secret key"
    assert decrypt_sensitive(DEK, received[1].value) == b"secret key"
    assert received[0] == plain[0]


def test_store_data_commands_refusals() -> None:
    with pytest.raises(CodecError):  # a sensitive DGI and no DEK
        store_data_commands([Dgi(0x8001, b"k")])
    with pytest.raises(CodecError):  # a DGI larger than a block
        store_data_commands([Dgi(0x0101, bytes(STORE_DATA_BLOCK_MAX))])
    with pytest.raises(CodecError):  # more than 256 blocks
        store_data_blocks([b"\x01"] * 257, structure=StoreDataStructure.BER_TLV)
    with pytest.raises(CodecError):
        store_data_blocks([], structure=StoreDataStructure.BER_TLV)


# --- GET STATUS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["get_status_commands"]["valid"], ids=lambda v: v["id"])
def test_get_status_command_vectors(vector: dict[str, Any]) -> None:
    obj = GetStatusCommand(StatusScope(vector["scope"]), h(vector["aid_prefix"]), vector["tag_list"], vector["next"])
    assert_both_ways(GetStatusCommand.from_bytes, GetStatusCommand.to_bytes, h(vector["hex"]), obj)


@pytest.mark.parametrize("vector", VECTORS["get_status_commands"]["malformed"], ids=lambda v: v["id"])
def test_get_status_command_malformed_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        GetStatusCommand.from_bytes(h(vector["hex"]))


def test_get_status_command_with_tag_list_both_ways() -> None:
    obj = GetStatusCommand(StatusScope.APPLICATIONS, h("A0 00 00 05 59"), (0x4F, 0x9F70, 0xC5), next_occurrence=True)
    capdu = "80 F2 40 03 0D 4F 05 A0 00 00 05 59 5C 04 4F 9F 70 C5 00"
    both_ways_hex(GetStatusCommand.from_bytes, GetStatusCommand.to_bytes, capdu, obj)
    assert get_status_command(StatusScope.APPLICATIONS, h("A0 00 00 05 59"), tag_list=(0x4F, 0x9F70, 0xC5), next_occurrence=True) == h(
        capdu
    )


@pytest.mark.parametrize(
    "capdu",
    [
        "80 F2 80 00 02 4F 00 00",  # deprecated format
        "80 F2 80 06 02 4F 00 00",  # RFU bit
        "80 F2 08 02 02 4F 00 00",  # unknown scope
        "80 F2 80 02 02 5C 00 00",  # no 4F
        "80 F2 80 02 04 4F 00 4F 00 00",  # two 4F
        "80 F2 80 02 05 4F 00 5C 01 9F 00",  # tag list ends inside a tag
    ],
)
def test_get_status_command_refused(capdu: str) -> None:
    with pytest.raises(CodecError):
        GetStatusCommand.from_bytes(h(capdu))


@given(
    st.sampled_from(StatusScope),
    st.binary(max_size=16),
    st.none() | st.lists(st.sampled_from([0x4F, 0x9F70, 0xC5, 0xC4, 0xCE, 0x84, 0xCC, 0xDF8101]), max_size=8).map(tuple),
    st.booleans(),
)
def test_get_status_command_round_trip(scope: StatusScope, prefix: bytes, tags: tuple[int, ...] | None, following: bool) -> None:
    command = GetStatusCommand(scope, prefix, tags, following)
    assert GetStatusCommand.from_bytes(command.to_bytes()) == command


APP_ENTRY = RegistryData(APP, 0x07, Privilege(0), ELF, associated_sd=ISD)
APP_ENTRY_HEX = "E3 27 4F 09 A0 00 00 05 59 10 10 01 01 9F 70 01 07 C5 03 00 00 00 C4 07 A0 00 00 05 59 10 10 CC 08 A0 00 00 01 51 00 00 00"


def test_registry_data_both_ways() -> None:
    both_ways_hex(lambda d: RegistryData.from_tlv(Tlv.from_bytes(d)), RegistryData.to_bytes, APP_ENTRY_HEX, APP_ENTRY)
    elf = RegistryData(ELF, 0x01, load_file_version=h("01 00"), module_aids=(MODULE, MODULE + b"\x02"), associated_sd=ISD)
    elf_hex = (
        "E3 30 4F 07 A0 00 00 05 59 10 10 9F 70 01 01 CE 02 01 00 84 08 A0 00 00 05 59 10 10 01"
        " 84 09 A0 00 00 05 59 10 10 01 02 CC 08 A0 00 00 01 51 00 00 00"
    )
    both_ways_hex(lambda d: RegistryData.from_tlv(Tlv.from_bytes(d)), RegistryData.to_bytes, elf_hex, elf)
    assert_both_ways(parse_get_status, build_get_status, h(APP_ENTRY_HEX + elf_hex), [APP_ENTRY, elf])


def test_registry_data_skips_unmodelled_tags_and_refuses_duplicates() -> None:
    # CF (implicit selection parameter) is not modelled and is skipped.
    with_cf = h("E3 0E 4F 09 A0 00 00 05 59 10 10 01 01 CF 01 00")
    assert parse_get_status(with_cf) == [RegistryData(APP)]
    for bad in ("E3 03 9F 70 01", "E3 0E 4F 05 A0 00 00 00 01 4F 05 A0 00 00 00 02", "E3 0B 4F 05 A0 00 00 00 01 9F 70 02 07 07"):
        with pytest.raises(CodecError):
            parse_get_status(h(bad))


def test_registry_data_restricted_to_a_tag_list() -> None:
    assert APP_ENTRY.restricted((0x4F, 0x9F70)) == RegistryData(APP, 0x07)
    assert APP_ENTRY.restricted(None) == APP_ENTRY


registry_entries = st.builds(
    RegistryData,
    aids,
    st.none() | st.integers(0, 255),
    st.none() | privileges,
    st.none() | aids,
    st.none() | st.binary(max_size=8),
    st.lists(aids, max_size=8).map(tuple),
    st.none() | aids,
)


@given(st.lists(registry_entries, max_size=4))
def test_get_status_response_round_trip(entries: list[RegistryData]) -> None:
    assert parse_get_status(build_get_status(entries)) == entries


# --- GET DATA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["cplc"]["vectors"], ids=lambda v: v["id"])
def test_cplc_vectors(vector: dict[str, Any]) -> None:
    expected = Cplc(**{name: h(value) for name, value in vector["fields"].items()})
    assert_both_ways(parse_cplc, build_cplc, h(vector["hex"]), expected)
    assert_both_ways(Cplc.from_bytes, Cplc.to_bytes, h(vector["hex"])[3:], expected)


def test_cplc_layout_is_42_bytes_in_18_fields() -> None:
    assert len(CPLC_FIELDS) == 18
    assert sum(CPLC_FIELDS.values()) == 42


cplcs = st.fixed_dictionaries({name: st.binary(min_size=width, max_size=width) for name, width in CPLC_FIELDS.items()}).map(
    lambda values: Cplc(**values)
)


@given(cplcs)
def test_cplc_round_trip(cplc: Cplc) -> None:
    assert parse_cplc(build_cplc(cplc)) == cplc


@pytest.mark.parametrize("vector", VECTORS["key_information_data"]["vectors"], ids=lambda v: v["hex"])
def test_key_information_vectors(vector: dict[str, Any]) -> None:
    obj = KeyInformation(vector["key_id"], vector["kvn"], tuple(tuple(pair) for pair in vector["components"]))
    assert_both_ways(lambda d: KeyInformation.from_tlv(Tlv.from_bytes(d)), lambda k: k.to_tlv().to_bytes(), h(vector["hex"]), obj)


def test_key_information_template_both_ways() -> None:
    keys = tuple(KeyInformation(key_id, 0x30) for key_id in (1, 2, 3))
    template = "E0 12 C0 04 01 30 88 10 C0 04 02 30 88 10 C0 04 03 30 88 10"
    both_ways_hex(parse_key_information, build_key_information, template, keys)


@pytest.mark.parametrize("data", ["E0 06 C0 04 01 30 FF 80", "E0 05 C0 03 01 30 88", "E0 04 C0 02 01 30", "E1 00", "E0 02 C1 00"])
def test_key_information_refused(data: str) -> None:
    with pytest.raises(CodecError):
        parse_key_information(h(data))


@given(
    st.lists(
        st.builds(
            KeyInformation,
            st.integers(0, 255),
            st.integers(0, 255),
            st.lists(st.tuples(st.integers(0, 254), st.integers(0, 255)), min_size=1, max_size=4).map(tuple),
        ),
        max_size=8,
    )
)
def test_key_information_round_trip(keys: list[KeyInformation]) -> None:
    assert parse_key_information(build_key_information(tuple(keys))) == tuple(keys)


def test_card_data_vector() -> None:
    vector = VECTORS["card_data"]
    obj = CardRecognitionData(tuple(vector["gp_version"]), vector["scp"], vector["scp_i"])
    assert_both_ways(CardRecognitionData.from_bytes, CardRecognitionData.to_bytes, h(vector["hex"]), obj)


def test_card_data_default_is_gp_23_scp03_i70() -> None:
    expected = (
        "66 31 73 2F 06 07 2A 86 48 86 FC 6B 01 60 0C 06 0A 2A 86 48 86 FC 6B 02 02 03 00"
        " 63 09 06 07 2A 86 48 86 FC 6B 03 64 0B 06 09 2A 86 48 86 FC 6B 04 03 70"
    )
    both_ways_hex(CardRecognitionData.from_bytes, CardRecognitionData.to_bytes, expected, CardRecognitionData())


@given(
    st.lists(st.integers(0, 0x7F), min_size=1, max_size=4).map(tuple),
    st.integers(0, 255),
    st.integers(0, 255),
    st.none() | st.binary(max_size=10),
    st.none() | st.binary(max_size=10),
)
def test_card_data_round_trip(version: tuple[int, ...], scp: int, i: int, configuration: bytes | None, chip: bytes | None) -> None:
    data = CardRecognitionData(version, scp, i, configuration, chip)
    assert CardRecognitionData.from_bytes(data.to_bytes()) == data


def test_security_domain_fci_both_ways() -> None:
    fci = SecurityDomainFci(ISD, CardRecognitionData())
    expected = (
        "6F 41 84 08 A0 00 00 01 51 00 00 00 A5 35"
        " 73 2F 06 07 2A 86 48 86 FC 6B 01 60 0C 06 0A 2A 86 48 86 FC 6B 02 02 03 00 63 09 06 07 2A 86 48 86 FC 6B 03"
        " 64 0B 06 09 2A 86 48 86 FC 6B 04 03 70 9F 65 01 FF"
    )
    both_ways_hex(SecurityDomainFci.from_bytes, SecurityDomainFci.to_bytes, expected, fci)


@pytest.mark.parametrize("tag", list(DataTag))
def test_get_data_command_both_ways(tag: DataTag) -> None:
    capdu = bytes([0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00])
    assert_both_ways(parse_get_data_command, get_data_command, capdu, int(tag))
    # GP CS v2.3 §11.3.1 allows the ISO class too.
    assert parse_get_data_command(b"\x00" + capdu[1:]) == tag


# --- hostile input -------------------------------------------------------------------------------------

PARSERS: list[Callable[[bytes], object]] = [
    InstallCommand.from_bytes,
    lambda d: InstallCommand.from_fields(0x0C, 0, d),
    InstallParameters.from_bytes,
    SetStatusCommand.from_bytes,
    DeleteCommand.from_bytes,
    StoreDataCommand.from_bytes,
    Dgi.from_bytes,
    parse_dgis,
    GetStatusCommand.from_bytes,
    lambda d: GetStatusCommand.from_fields(0x40, 0x02, d),
    parse_get_status,
    parse_cplc,
    parse_key_information,
    CardRecognitionData.from_bytes,
    SecurityDomainFci.from_bytes,
    parse_get_data_command,
    parse_privileges,
    lambda d: decrypt_sensitive(DEK, d),
]


@pytest.mark.parametrize("parse", PARSERS)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_codec_error(parse: Callable[[bytes], object], data: bytes) -> None:
    only_codec_errors(parse, data)


@pytest.mark.parametrize("parse", PARSERS)
@given(data=st.binary(max_size=60))
def test_gp_shaped_random_bytes_raise_only_codec_error(parse: Callable[[bytes], object], data: bytes) -> None:
    # Random tails behind plausible headers reach deeper than random bytes alone.
    for head in (h("80 E6 0C 00"), h("80 F2 40 02"), h("E3"), h("9F 7F 2A"), h("E0"), h("66"), h("6F"), h("80 E2 88 00")):
        only_codec_errors(parse, head + bytes([len(data)]) + data)


@pytest.mark.parametrize(
    ("parse", "valid"),
    [
        (parse_cplc, h(VECTORS["cplc"]["vectors"][0]["hex"])),
        (parse_key_information, h("E0 0C C0 04 01 30 88 10 C0 04 02 30 88 10")),
        (CardRecognitionData.from_bytes, h(VECTORS["card_data"]["hex"])),
        (SecurityDomainFci.from_bytes, SecurityDomainFci(ISD, CardRecognitionData()).to_bytes()),
        (lambda d: RegistryData.from_tlv(Tlv.from_bytes(d)), h(APP_ENTRY_HEX)),
    ],
)
def test_truncated_and_trailing_raise_codec_error(parse: Callable[[bytes], object], valid: bytes) -> None:
    parse(valid)
    for end in range(len(valid)):
        with pytest.raises(CodecError):
            parse(valid[:end])
    with pytest.raises(CodecError):
        parse(valid + b"\x00")
