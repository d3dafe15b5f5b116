"""Card profiles: schema and semantic errors with file:line:column, jinja2 rendering, and the shipped profiles end to end."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from simwallet.applet.card.spec import CardSpec
from simwallet.applet.protocols.efs import (
    AccessClasses,
    AdministrativeData,
    DiallingNumber,
    HplmnSearchPeriod,
    Imsi,
    LanguageList,
    ServiceProviderName,
    ServiceTable,
    SmsParameters,
    Ton,
    luhn_check_digit,
    validity_minutes,
)
from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.profile import (
    CARD_TYPES_DIR,
    PROFILES_DIR,
    FileKind,
    Profile,
    ProfileError,
    load_card_type,
    load_profile,
)
from simwallet.provisioning.values import CardValueError, Secret

BASE = """\
profile: tp
card_type: usim-wallet
values:
  iccid: {required: true}
  imsi: {required: true}
  msisdn: {required: true, country_code: "86"}
  customer: {required: true}
  nickname: {pattern: "[A-Za-z ]{1,20}"}
  pin1: {required: true}
files:
  ADF.USIM/EF.IMSI: {imsi: "{{ imsi }}"}
  ADF.USIM/EF.SPN: {name: Wallet, display_condition: 1}
  ADF.USIM/EF.MSISDN: {records: [{alpha: Me, number: "+{{ msisdn_e164 }}"}]}
wallet:
  language: en
  service_number: "1065800010"
  tar: "B00010"
  menu_title: {en: Wallet}
  menu: [{id: 1, action: balance, title: {en: Balance}}]
pins:
  pin1: {initial: "{{ pin1 }}"}
"""


def iccid(payload: str) -> str:
    return payload + str(luhn_check_digit(payload))


CMCC_VALUES = {
    "iccid": iccid("8986001234567890123"),
    "imsi": "460001234567897",
    "msisdn": "13800138000",
    "customer": "C-0001",
    "pin1": "864209",
    "puk1": "13572468",
}
EN_VALUES = {"iccid": iccid("894400000000000001"), "imsi": "234150000000012", "msisdn": "07700900123", "customer": "uk_42"}
BASE_VALUES = {"iccid": CMCC_VALUES["iccid"], "imsi": "460001234567890", "msisdn": "13800138000", "customer": "C-1", "pin1": "2468"}


def write(tmp_path: Path, text: str, name: str = "tp") -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, name: str = "tp") -> Profile:
    return load_profile(write(tmp_path, text, name), card_types_dir=CARD_TYPES_DIR)


def where(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """The 1-based line and column of the ``occurrence``-th ``needle`` in ``text``."""
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    return line, start - (text.rfind("\n", 0, start) + 1) + 1


def error_of(tmp_path: Path, text: str) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, text)
    return info.value


def assert_at(error: ProfileError, text: str, needle: str, field: str, message: str, occurrence: int = 1) -> None:
    line, column = where(text, needle, occurrence)
    assert (error.line, error.column, error.field) == (line, column, field), str(error)
    assert message in error.message, str(error)
    assert str(error).splitlines()[0] == f"{error.path}:{line}:{column}: {field}: {error.message}"


# --- the base profile -----------------------------------------------------------------------------


def test_base_profile_loads_and_renders(tmp_path: Path) -> None:
    profile = load(tmp_path, BASE)
    out = profile.render(BASE_VALUES)
    assert [w.path for w in out.files] == ["MF/ADF.USIM/EF.IMSI", "MF/ADF.USIM/EF.SPN", "MF/ADF.USIM/EF.MSISDN"]
    msisdn = out.file("ADF.USIM/EF.MSISDN")
    assert msisdn.kind is FileKind.RECORD and len(msisdn.records) == 2 and msisdn.records[1] == b"\xff" * 30
    assert DiallingNumber.from_bytes(msisdn.records[0]) == DiallingNumber("Me", "8613800138000", Ton.INTERNATIONAL)
    assert out.pins[0].initial == Secret("2468") and out.pins[0].enabled is None


def test_profile_errors_are_provisioning_errors(tmp_path: Path) -> None:
    assert issubclass(ProfileError, ProvisioningError)


# --- schema errors ------------------------------------------------------------------------------------


def test_wrong_type_names_field_line_and_column(tmp_path: Path) -> None:
    text = BASE.replace("display_condition: 1", "display_condition: one")
    assert_at(error_of(tmp_path, text), text, "one}", "files.ADF.USIM/EF.SPN.display_condition", "0..3")


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    text = BASE.replace('  tar: "B00010"\n', "")
    assert_at(error_of(tmp_path, text), text, "wallet:", "wallet.tar", "required, and missing")


def test_missing_top_level_field(tmp_path: Path) -> None:
    text = BASE.replace("card_type: usim-wallet\n", "")
    error = error_of(tmp_path, text)
    assert (error.line, error.field, error.message) == (1, "card_type", "required, and missing")


def test_unknown_codec_field_points_at_the_key(tmp_path: Path) -> None:
    text = BASE.replace('{imsi: "{{ imsi }}"}', '{imsi: "{{ imsi }}", colour: red}')
    assert_at(error_of(tmp_path, text), text, "colour", "files.ADF.USIM/EF.IMSI.colour", "unknown field (fields here: imsi)")


def test_every_schema_error_is_reported_in_file_order(tmp_path: Path) -> None:
    text = BASE.replace("display_condition: 1", "display_condition: 9").replace("id: 1,", "id: 0,")
    error = error_of(tmp_path, text)
    assert [issue.field for issue in error.issues] == ["files.ADF.USIM/EF.SPN.display_condition", "wallet.menu[0].id"]
    assert len(str(error).splitlines()) == 2


def test_the_closest_alternative_explains_a_record(tmp_path: Path) -> None:
    text = BASE.replace("{alpha: Me,", "{alpha: Me, colour: red,")
    assert_at(error_of(tmp_path, text), text, "colour", "files.ADF.USIM/EF.MSISDN.records[0].colour", "unknown field (fields here: alpha,")
    text = BASE.replace("wallet:\n", "  ADF.USIM/EF.SMSP: {records: [{validity: 5, validity_minutes: 10}]}\nwallet:\n", 1)
    assert_at(error_of(tmp_path, text), text, "{validity:", "files.ADF.USIM/EF.SMSP.records[0]", "validity_minutes, not both")
    text = BASE.replace("card_type: usim-wallet\n", "card_type: usim-wallet\nkeys: {ota: 0}\n")
    assert_at(error_of(tmp_path, text), text, "0}", "keys.ota", "'active' or a number 1..127")


def test_a_pin_written_into_the_profile_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('initial: "{{ pin1 }}"', 'initial: "1234"')
    error = error_of(tmp_path, text)
    assert_at(error, text, '"1234"', "pins.pin1.initial", "never from the profile")


def test_a_file_without_codec_needs_hex(tmp_path: Path) -> None:
    text = BASE + "  # trailing\n"
    text = text.replace("wallet:\n", "  DF.GSM/EF.PLMNSEL: {plmns: [46000]}\nwallet:\n", 1)
    error = error_of(tmp_path, text)
    assert_at(error, text, "DF.GSM/EF.PLMNSEL", "files.DF.GSM/EF.PLMNSEL.hex", "written raw: {hex:")
    assert [issue.field for issue in error.issues] == ["files.DF.GSM/EF.PLMNSEL.hex", "files.DF.GSM/EF.PLMNSEL.plmns"]


# --- semantic errors ----------------------------------------------------------------------------------


def test_unknown_file_path_suggests_the_right_one(tmp_path: Path) -> None:
    text = BASE.replace("ADF.USIM/EF.SPN:", "DF.TELECOM/EF.SPN:")
    error = error_of(tmp_path, text)
    assert_at(error, text, "DF.TELECOM/EF.SPN", "files.DF.TELECOM/EF.SPN", "no such file in card type 'usim-wallet'")
    assert "MF/ADF.USIM/EF.SPN" in error.message and "MF/DF.GSM/EF.SPN" in error.message


def test_literal_too_long_for_its_file_is_found_when_loading(tmp_path: Path) -> None:
    text = BASE.replace("name: Wallet", "name: 中国移动通信集团公司")
    assert_at(error_of(tmp_path, text), text, "中国移动通信集团公司", "files.ADF.USIM/EF.SPN.name", "too long for EF.SPN (16 bytes)")


def test_rendered_value_too_long_for_its_record(tmp_path: Path) -> None:
    text = BASE.replace("alpha: Me", 'alpha: "{{ nickname }}"')
    profile = load(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        profile.render({**BASE_VALUES, "nickname": "Abcdefghij Klmnopq"})
    assert_at(info.value, text, '"{{ nickname }}"', "files.ADF.USIM/EF.MSISDN.records[0].alpha", "(16 bytes)")
    assert profile.render({**BASE_VALUES, "nickname": "Ann"}).file("ADF.USIM/EF.MSISDN").records[0][:3] == b"Ann"


def test_undeclared_name_in_a_template_is_found_when_loading(tmp_path: Path) -> None:
    text = BASE.replace('{imsi: "{{ imsi }}"}', '{imsi: "{{ imsii }}"}')
    assert_at(error_of(tmp_path, text), text, '"{{ imsii }}"', "files.ADF.USIM/EF.IMSI.imsi", "'imsii' is not a declared value")


def test_optional_value_not_given_is_a_render_error_naming_it(tmp_path: Path) -> None:
    text = BASE.replace("alpha: Me", 'alpha: "{{ nickname }}"')
    profile = load(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        profile.render(BASE_VALUES)
    assert_at(info.value, text, '"{{ nickname }}"', "files.ADF.USIM/EF.MSISDN.records[0].alpha", "nickname not given for this card")


def test_template_syntax_error(tmp_path: Path) -> None:
    text = BASE.replace('{imsi: "{{ imsi }}"}', '{imsi: "{{ imsi "}')
    assert_at(error_of(tmp_path, text), text, '"{{ imsi "', "files.ADF.USIM/EF.IMSI.imsi", "template syntax")


def test_secret_outside_pins_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("name: Wallet", 'name: "{{ pin1 }}"')
    assert_at(error_of(tmp_path, text), text, '"{{ pin1 }}"', "files.ADF.USIM/EF.SPN.name", "secret")


def test_pin_reference_must_be_a_declared_pin(tmp_path: Path) -> None:
    text = BASE.replace('initial: "{{ pin1 }}"', 'initial: "{{ customer }}"')
    assert_at(error_of(tmp_path, text), text, '"{{ customer }}"', "pins.pin1.initial", "not a declared pin value")


def test_profile_name_must_match_its_file(tmp_path: Path) -> None:
    assert_at(error_of(tmp_path, BASE.replace("profile: tp", "profile: qq")), BASE, "tp\n", "profile", "must agree")


def test_missing_card_type(tmp_path: Path) -> None:
    text = BASE.replace("card_type: usim-wallet", "card_type: usim-nothing")
    assert_at(error_of(tmp_path, text), text, "usim-nothing", "card_type", "no card type 'usim-nothing'")


def test_wallet_checks(tmp_path: Path) -> None:
    text = BASE.replace('tar: "B00010"', 'tar: "B0001"').replace("language: en", "language: zh")
    error = error_of(tmp_path, text)
    assert [issue.field for issue in error.issues] == ["wallet.language"]
    text = BASE.replace('tar: "B00010"', 'tar: "B0001"')
    assert_at(error_of(tmp_path, text), text, '"B0001"', "wallet.tar", "3 bytes of hex")


def test_default_must_pass_its_own_check(tmp_path: Path) -> None:
    text = BASE.replace('nickname: {pattern: "[A-Za-z ]{1,20}"}', 'nickname: {pattern: "[A-Za-z ]{1,20}", default: "R2D2"}')
    assert_at(error_of(tmp_path, text), text, '"R2D2"', "values.nickname.default", "does not match")


def test_option_of_another_kind(tmp_path: Path) -> None:
    text = BASE.replace("imsi: {required: true}", "imsi: {required: true, country_code: '86'}")
    assert_at(error_of(tmp_path, text), text, "'86'", "values.imsi.country_code", "applies to msisdn values")


# --- YAML itself ------------------------------------------------------------------------------------


def test_duplicate_key(tmp_path: Path) -> None:
    text = BASE.replace("  ADF.USIM/EF.SPN:", "  ADF.USIM/EF.IMSI: {imsi: x}\n  ADF.USIM/EF.SPN:")
    assert_at(error_of(tmp_path, text), text, "ADF.USIM/EF.IMSI", "files.ADF.USIM/EF.IMSI", "given twice (first on line 11)", 2)


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    text = BASE.replace("menu_title: {en: Wallet}", "menu_title: {en: Wallet")
    error = error_of(tmp_path, text)
    assert error.line is not None and error.line >= where(text, "menu_title")[0]


def test_anchors_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("menu_title: {en: Wallet}", "menu_title: &t {en: Wallet}")
    error = error_of(tmp_path, text)
    assert error.line == where(text, "menu_title")[0] and "anchors" in error.message


# --- raw files and sizes ----------------------------------------------------------------------------


def test_raw_hex_is_padded_to_the_file(tmp_path: Path) -> None:
    text = BASE.replace("wallet:\n", '  DF.GSM/EF.PLMNSEL: {hex: "64F000"}\n  DF.TELECOM/EF.EXT1: {hex: ["02 0B", null]}\nwallet:\n', 1)
    out = load(tmp_path, text).render(BASE_VALUES)
    plmnsel = out.file("DF.GSM/EF.PLMNSEL")
    assert plmnsel.kind is FileKind.TRANSPARENT and plmnsel.data == bytes.fromhex("64F000") + b"\xff" * 21
    assert plmnsel.fid == bytes.fromhex("6F30") and plmnsel.adf_aid is None
    ext1 = out.file("DF.TELECOM/EF.EXT1")
    assert len(ext1.records) == 10 and ext1.records[0] == b"\x02\x0b" + b"\xff" * 11


@pytest.mark.parametrize(
    ("entry", "needle", "field", "message"),
    [
        (
            'DF.GSM/EF.PLMNSEL: {hex: "' + "00" * 25 + '"}',
            "DF.GSM/EF.PLMNSEL",
            "files.DF.GSM/EF.PLMNSEL",
            "do not fit EF.PLMNSEL (24 bytes)",
        ),
        ('DF.GSM/EF.PLMNSEL: {hex: ["00"]}', "DF.GSM/EF.PLMNSEL", "files.DF.GSM/EF.PLMNSEL", "hex is one string"),
        ('DF.TELECOM/EF.EXT1: {hex: "00"}', "DF.TELECOM/EF.EXT1", "files.DF.TELECOM/EF.EXT1", "hex is a list"),
        ('DF.TELECOM/EF.EXT1: {hex: ["' + "00" * 14 + '"]}', '"0000', "files.DF.TELECOM/EF.EXT1.hex[0]", "record 1 is 14 bytes"),
        ('DF.GSM/EF.PLMNSEL: {hex: "6G"}', '"6G"', "files.DF.GSM/EF.PLMNSEL.hex", "is not hex"),
        ("ADF.USIM/EF.SMSP: {records: [null, null, null]}", "records: [null", "files.ADF.USIM/EF.SMSP.records", "3 records, EF.SMSP has 2"),
        ("ADF.USIM/EF.UST: {services: [200]}", "services", "files.ADF.USIM/EF.UST.services", "needs 25 bytes, the file has 17"),
        ("ADF.USIM/EF.LI: {languages: [en, EN]}", "EN]", "files.ADF.USIM/EF.LI.languages[1]", "two-letter"),
        (
            "ADF.USIM/EF.SMSP: {records: [{validity_minutes: 7}]}",
            "7}",
            "files.ADF.USIM/EF.SMSP.records[0].validity_minutes",
            "no relative encoding",
        ),
    ],
)
def test_literal_file_problems(tmp_path: Path, entry: str, needle: str, field: str, message: str) -> None:
    text = BASE.replace("wallet:\n", f"  {entry}\nwallet:\n", 1)
    assert_at(error_of(tmp_path, text), text, needle, field, message)


# --- card types ---------------------------------------------------------------------------------------

CARD_TYPE = """\
card:
  name: tiny
  atr: "3B9F96801FC78031A073BE21136743200718000001A5"
  pins:
    pin1: {tries: 3, unblock_tries: 10}
    adm1: {tries: 10}
  files:
    name: MF
    fid: "3F00"
    type: df
    children:
      - {name: EF.ICCID, fid: "2FE2", type: transparent, size: 10}
      - {name: EF.PL, fid: "2F05", type: transparent, size: 4}
"""


def card_type_error(tmp_path: Path, text: str) -> ProfileError:
    path = tmp_path / "tiny.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_card_type(path)
    assert info.value.path == str(path)
    return info.value


def test_card_type_loads_and_builds(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(CARD_TYPE, encoding="utf-8")
    card = load_card_type(path)
    assert CardSpec.from_mapping(card).name == "tiny"


def test_shipped_card_type_builds() -> None:
    card = load_card_type(CARD_TYPES_DIR / "usim-wallet.yaml")
    assert CardSpec.from_mapping(card).name == "usim-wallet"


def test_card_type_security_domain_errors_have_their_line(tmp_path: Path) -> None:
    text = CARD_TYPE.replace("  files:\n", '  gp: {isd_aid: "A000000151000000", key_version: 1, cplc: {colour: "00"}}\n  files:\n')
    assert_at(card_type_error(tmp_path, text), text, '"00"', "card.gp.cplc.colour", "unknown field")


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message"),
    [
        ("size: 4}", "size: 4, records: 2}", "2}", "card.files.children[1].records", "not allowed for this file type"),
        ("type: transparent, size: 4", "type: linear, size: 4", "linear", "card.files.children[1].type", "a file type is"),
        ("{name: EF.PL,", "{name: DF.PL,", "DF.PL", "card.files.children[1].name", "named EF.<name>"),
        ('fid: "2F05"', 'fid: "2FE2"', '"2FE2", type: transparent, size: 4', "card.files.children[1].fid", "repeats a sibling"),
        ('A5"', 'A6"', '"3B9F', "card.atr", "check byte"),
        ("    adm1: {tries: 10}\n", "", "pins:", "card.pins.adm1", "required, and missing"),
    ],
)
def test_card_type_errors(tmp_path: Path, old: str, new: str, needle: str, field: str, message: str) -> None:
    text = CARD_TYPE.replace(old, new)
    assert text != CARD_TYPE
    assert_at(card_type_error(tmp_path, text), text, needle, field, message)


# --- the shipped profiles -----------------------------------------------------------------------------


def test_cmcc_profile_renders_and_decodes_back() -> None:
    profile = load_profile("wallet-cmcc-zh")
    assert profile.card_type["name"] == "usim-wallet" and profile.mnc_length == 2
    out = profile.render(CMCC_VALUES)
    imsi = CMCC_VALUES["imsi"]
    for path in ("ADF.USIM/EF.IMSI", "DF.GSM/EF.IMSI"):
        assert Imsi.from_bytes(out.file(path).data) == Imsi(imsi)
    for path in ("ADF.USIM/EF.ACC", "DF.GSM/EF.ACC"):
        assert AccessClasses.from_bytes(out.file(path).data) == AccessClasses(frozenset({7}))
    spn = ServiceProviderName.from_bytes(out.file("ADF.USIM/EF.SPN").data)
    assert (spn.name, int(spn.display_condition)) == ("中国移动", 1)
    for path in ("ADF.USIM/EF.MSISDN", "DF.TELECOM/EF.MSISDN"):
        record = DiallingNumber.from_bytes(out.file(path).records[0])
        assert (record.alpha, record.number, record.ton) == ("本机号码", "8613800138000", Ton.INTERNATIONAL)
    smsp = SmsParameters.from_bytes(out.file("ADF.USIM/EF.SMSP").records[0])
    assert smsp.service_centre is not None and smsp.service_centre.number == "8613800210500"
    assert (smsp.alpha, smsp.dcs, smsp.validity) == ("短信中心", 8, 167) and validity_minutes(167) == 1440
    assert LanguageList.from_bytes(out.file("ADF.USIM/EF.LI").data).languages == ("zh", "en")
    assert LanguageList.from_bytes(out.file("MF/EF.PL").data).languages == ("zh", "en")
    assert ServiceTable.from_bytes(out.file("ADF.USIM/EF.UST").data).services == {10, 12, 19, 21, 27, 28, 29, 30, 31, 33}
    assert AdministrativeData.from_bytes(out.file("ADF.USIM/EF.AD").data).mnc_length == 2
    assert HplmnSearchPeriod.from_bytes(out.file("ADF.USIM/EF.HPPLMN").data).period == 10
    assert out.file("ADF.USIM/EF.IMSI").adf_aid == bytes.fromhex("A0000000871002FF86FF0389FFFFFFFF")
    assert out.wallet.language == "zh" and out.wallet.tar == bytes.fromhex("B00010")
    assert [item.title("zh") for item in out.wallet.menu][:2] == ["余额查询", "话费充值"]
    assert out.values["channel"] == "hall"
    (pin,) = out.pins
    assert (pin.name, pin.initial, pin.unblock, pin.enabled) == ("pin1", Secret("864209"), Secret("13572468"), True)


def test_cmcc_profile_in_english() -> None:
    out = load_profile("wallet-cmcc-zh").render({**CMCC_VALUES, "language": "en"})
    assert LanguageList.from_bytes(out.file("ADF.USIM/EF.LI").data).languages == ("en", "zh")
    assert out.wallet.language == "en"


def test_english_profile_renders_and_decodes_back() -> None:
    profile = load_profile(PROFILES_DIR / "wallet-en.yaml")
    out = profile.render(EN_VALUES)
    record = DiallingNumber.from_bytes(out.file("ADF.USIM/EF.MSISDN").records[0])
    assert (record.alpha, record.number) == ("My number", "447700900123")
    named = profile.render({**EN_VALUES, "nickname": "Ann Lee"})
    assert DiallingNumber.from_bytes(named.file("ADF.USIM/EF.MSISDN").records[0]).alpha == "Ann Lee"
    assert Imsi.from_bytes(out.file("ADF.USIM/EF.IMSI").data).mcc == "234"
    # Optional PINs that were not given: the card keeps its own.
    assert out.pins == ()
    assert out.wallet.menu[0].title("en") == "Balance"


def test_personalization_repr_shows_no_pin() -> None:
    out = load_profile("wallet-cmcc-zh").render(CMCC_VALUES)
    for shown in (repr(out), str(out), repr(out.values), repr(out.pins)):
        assert "864209" not in shown and "13572468" not in shown


def test_bad_card_values_name_the_value_and_row() -> None:
    profile = load_profile("wallet-cmcc-zh")
    with pytest.raises(CardValueError) as info:
        profile.render({**CMCC_VALUES, "imsi": "460011234567890", "pin1": "12"}, row=5)
    assert info.value.row == 5 and [n for n, _ in info.value.problems] == ["imsi", "pin1"]
    assert str(info.value).startswith("row 5: imsi: ")


def test_batch_preflight_allows_extra_columns() -> None:
    profile = load_profile("wallet-cmcc-zh")
    values = profile.check_values({**CMCC_VALUES, "batch": "2026-11"}, row=2, allow_extra=True)
    assert values.row == 2 and values.msisdn == "13800138000"


def test_keys_default_to_active(tmp_path: Path) -> None:
    profile = load(tmp_path, BASE.replace("card_type: usim-wallet\n", "card_type: usim-wallet\nkeys: {ota: 3}\n"))
    assert (profile.keys.scp03, profile.keys.ota, profile.keys.wallet) == ("active", 3, "active")


def test_render_is_deterministic_and_cards_differ() -> None:
    profile = load_profile("wallet-cmcc-zh")
    first, again = profile.render(CMCC_VALUES), profile.render(CMCC_VALUES)
    assert first.files == again.files
    other = profile.render({**CMCC_VALUES, "imsi": "460021234567891", "msisdn": "+8613900139000"})
    changed = {a.path for a, b in zip(first.files, other.files, strict=True) if a != b}
    assert changed == {
        "MF/ADF.USIM/EF.IMSI",
        "MF/ADF.USIM/EF.ACC",
        "MF/ADF.USIM/EF.MSISDN",
        "MF/DF.GSM/EF.IMSI",
        "MF/DF.GSM/EF.ACC",
        "MF/DF.TELECOM/EF.MSISDN",
    }


def test_profile_text_in_docstring_is_a_valid_shape(tmp_path: Path) -> None:
    """The example of the module docstring, completed with a PUK, loads (the documentation does not drift)."""
    import simwallet.provisioning.profile as module

    doc = module.__doc__ or ""
    example = textwrap.dedent(doc.split("The profile format (``cards/profiles/<profile>.yaml``)::\n", 1)[1].split("\n\nEvery string", 1)[0])
    example = example.replace("profile: wallet-cmcc-zh", "profile: doc").replace(
        "  pin1: {required: true}", "  pin1: {required: true}\n  puk1: {}"
    )
    example = example.replace('      MF/EF.XYZ: {hex: "00 01 02"}         # the raw escape, for a file without a codec\n', "")
    example = example.replace('MF/EF.XYZ: {hex: "00 01 02"}', 'DF.GSM/EF.PLMNSEL: {hex: "00 01 02"}')
    profile = load(tmp_path, example, "doc")
    assert profile.name == "doc"
