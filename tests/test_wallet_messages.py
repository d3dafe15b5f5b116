"""The wallet's application messages and personalization DGIs (simwallet.applet.protocols.wallet_messages).

Both ways with hand-built encodings (the layouts are the project's own, so the vectors are worked out from the
module docstrings: BCD digits per TS 23.040 §9.1.2.3, UCS2 per TS 102 223 §8.15), hypothesis round trips over
the whole domain, parsers fed truncated, trailing and random bytes, and the one-SMS capacity with AES and CC.
"""

from __future__ import annotations

import contextlib

import pytest
from codec_helpers import assert_both_ways, h
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols import gp
from simwallet.applet.protocols.cat import Dcs, TextString
from simwallet.applet.protocols.secured import (
    COUNTER_MAX,
    SMS_USER_DATA_MAX_OCTETS,
    CcAlgorithm,
    CipherAlgorithm,
    Tar,
    unwrap_command,
    wrap_command,
)
from simwallet.applet.protocols.wallet_messages import (
    ACCOUNT_DIGITS_MAX,
    AMOUNT_FEN_MAX,
    CODE_DIGITS_MAX,
    HISTORY_COUNT_MAX,
    MSISDN_DIGITS_MAX,
    MSISDN_DIGITS_MIN,
    REQUEST_ID_MAX,
    WALLET_PAYLOAD_OCTETS_MAX,
    WALLET_SPI,
    Operation,
    WalletDgi,
    WalletDgis,
    WalletKeySet,
    WalletMenuItem,
    WalletPersonalization,
    WalletRequest,
    WalletResponse,
    WalletStatus,
    operation_for_action,
    parse_wallet_dgis,
    pin_reset_dgi,
    request_id_for,
    wallet_personalization_dgis,
)

AES_KEYS = WalletKeySet(1, CipherAlgorithm.AES_CBC, bytes(range(16)), CcAlgorithm.AES_CMAC, bytes(range(16, 32)))
TAR = Tar(h("B00010"))

# --- requests ----------------------------------------------------------------------------------------------

REQUESTS = [
    pytest.param(
        # version 01, id 00000001, BALANCE, language "zh"
        "01 00000001 01  01 02 7A68",
        WalletRequest(request_id=1, operation=Operation.BALANCE, language="zh"),
        id="balance",
    ),
    pytest.param(
        # TOP_UP for 13800138000 (BCD 31 08 10 83 00 F0), 50.00 yuan = 5000 fen = 1388
        "01 01020304 02  01 02 656E  02 02 1388  03 06 31081083 00F0",
        WalletRequest(request_id=0x01020304, operation=Operation.TOP_UP, language="en", amount_fen=5000, msisdn="13800138000"),
        id="top-up-other",
    ),
    pytest.param(
        # PAY merchant 8888, 1 fen, no language
        "01 00000007 03  02 01 01  04 02 8888",
        WalletRequest(request_id=7, operation=Operation.PAY, amount_fen=1, merchant="8888"),
        id="pay-merchant",
    ),
    pytest.param(
        # BILL biller 123 (21 F3), account 4567890 (54 76 98 F0), 100.00 yuan = 2710
        "01 00000005 04  01 02 7A68  02 02 2710  05 02 21F3  06 04 547698F0",
        WalletRequest(request_id=5, operation=Operation.BILL, language="zh", amount_fen=10000, biller="123", account="4567890"),
        id="bill",
    ),
    pytest.param("01 00000002 05", WalletRequest(request_id=2, operation=Operation.BANK_BALANCE), id="bank-balance"),
    pytest.param("01 00000002 06", WalletRequest(request_id=2, operation=Operation.PIN_CHANGED), id="pin-changed"),
    pytest.param("01 FFFFFFFF 07  07 01 05", WalletRequest(request_id=REQUEST_ID_MAX, operation=Operation.HISTORY, count=5), id="history"),
]


@pytest.mark.parametrize(("data", "request_obj"), REQUESTS)
def test_request_both_ways(data: str, request_obj: WalletRequest) -> None:
    assert_both_ways(WalletRequest.from_bytes, WalletRequest.to_bytes, h(data), request_obj)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("02 00000001 01", "version"),
        ("01 00000001 09", "operation 09"),
        ("01 00000001 01  09 01 00", "unknown tag"),
        ("01 00000001 02  03 06 3108108300F0  02 02 1388", "strictly ascending"),
        ("01 00000001 02  02 02 1388  02 02 1388", "strictly ascending"),
        ("01 00000001 02  02 02 0013", "leading zero"),
        ("01 00000001 02  02 01 00", "outside 1"),
        ("01 00000001 02  02 06 010000000000", "outside 1..5"),
        ("01 00000001 02", "needs amount_fen"),
        ("01 00000001 01  02 01 01", "takes no amount_fen"),
        ("01 00000001 03  02 01 01", "exactly one payee"),
        ("01 00000001 03  02 01 01  03 02 2143  04 01 11", "exactly one payee"),
        ("01 00000001 01  01 02 5A48", "language"),
        ("01 00000001 02  02 01 01  03 02 2A43", "not a decimal digit"),
        ("01 00000001 02  02 01 01  03 02 F143", "not a decimal digit"),
        ("01 00000001 07  07 01 00", "history count"),
        ("01 00000001 07  07 01 15", "history count"),
    ],
)
def test_request_refusals(data: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        WalletRequest.from_bytes(h(data))


def test_request_builder_refusals() -> None:
    with pytest.raises(CodecError, match="needs"):
        WalletRequest(request_id=1, operation=Operation.BILL, amount_fen=1, biller="1")
    with pytest.raises(CodecError, match="request id"):
        WalletRequest(request_id=REQUEST_ID_MAX + 1, operation=Operation.BALANCE)
    with pytest.raises(CodecError, match="amount"):
        WalletRequest(request_id=1, operation=Operation.TOP_UP, amount_fen=AMOUNT_FEN_MAX + 1)
    with pytest.raises(CodecError, match="MSISDN"):
        WalletRequest(request_id=1, operation=Operation.TOP_UP, amount_fen=1, msisdn="12")
    assert request_id_for(COUNTER_MAX) == REQUEST_ID_MAX and request_id_for(0x1_0000_0005) == 5


def _digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=low, max_size=high)


LANGUAGES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=2)
AMOUNTS = st.integers(1, AMOUNT_FEN_MAX)


@st.composite
def requests(draw: st.DrawFn) -> WalletRequest:
    operation = draw(st.sampled_from(Operation))
    fields: dict[str, object] = {"language": draw(st.none() | LANGUAGES)}
    if operation is Operation.TOP_UP:
        fields |= {"amount_fen": draw(AMOUNTS), "msisdn": draw(st.none() | _digits(MSISDN_DIGITS_MIN, MSISDN_DIGITS_MAX))}
    elif operation is Operation.PAY:
        payee = draw(st.sampled_from(["msisdn", "merchant"]))
        low, high = (MSISDN_DIGITS_MIN, MSISDN_DIGITS_MAX) if payee == "msisdn" else (1, CODE_DIGITS_MAX)
        fields |= {"amount_fen": draw(AMOUNTS), payee: draw(_digits(low, high))}
    elif operation is Operation.BILL:
        fields |= {
            "amount_fen": draw(AMOUNTS),
            "biller": draw(_digits(1, CODE_DIGITS_MAX)),
            "account": draw(_digits(1, ACCOUNT_DIGITS_MAX)),
        }
    elif operation is Operation.HISTORY:
        fields["count"] = draw(st.none() | st.integers(1, HISTORY_COUNT_MAX))
    return WalletRequest(request_id=draw(st.integers(0, REQUEST_ID_MAX)), operation=operation, **fields)  # type: ignore[arg-type]


@given(requests())
def test_request_round_trip(request_obj: WalletRequest) -> None:
    data = request_obj.to_bytes()
    assert WalletRequest.from_bytes(data) == request_obj
    assert len(data) <= WALLET_PAYLOAD_OCTETS_MAX


@given(requests(), st.integers(1, COUNTER_MAX))
@settings(max_examples=50)
def test_every_request_fits_one_sms_with_aes_and_cc(request_obj: WalletRequest, counter: int) -> None:
    keyset = AES_KEYS.keyset()
    user_data = wrap_command(request_obj.to_bytes(), keyset, spi=WALLET_SPI, tar=TAR, counter=counter)
    assert len(user_data) <= SMS_USER_DATA_MAX_OCTETS
    packet = unwrap_command(user_data, lambda tar, kic, kid: keyset, last_counter=counter - 1)
    assert WalletRequest.from_bytes(packet.data) == request_obj


def test_the_largest_request_fits_with_room_to_spare() -> None:
    largest = WalletRequest(
        request_id=REQUEST_ID_MAX,
        operation=Operation.BILL,
        language="zh",
        amount_fen=AMOUNT_FEN_MAX,
        biller="9" * CODE_DIGITS_MAX,
        account="9" * ACCOUNT_DIGITS_MAX,
    )
    assert len(largest.to_bytes()) <= WALLET_PAYLOAD_OCTETS_MAX
    wrap_command(largest.to_bytes(), AES_KEYS.keyset(), spi=WALLET_SPI, tar=TAR, counter=COUNTER_MAX)
    # The bound is exact: 98 octets of secured data fill one SMS with AES and CC, 99 do not.
    wrap_command(bytes(WALLET_PAYLOAD_OCTETS_MAX), AES_KEYS.keyset(), spi=WALLET_SPI, tar=TAR, counter=1)
    with pytest.raises(CodecError):
        wrap_command(bytes(WALLET_PAYLOAD_OCTETS_MAX + 1), AES_KEYS.keyset(), spi=WALLET_SPI, tar=TAR, counter=1)


# --- responses ---------------------------------------------------------------------------------------------

RESPONSES = [
    pytest.param("01 00000005 00  10 03 04 4F4B", WalletResponse(request_id=5, status=WalletStatus.OK, text=TextString("OK")), id="ok"),
    pytest.param(
        # 余 4F59 额 989D 1 0 0 元 5143 in UCS2; balance 10000 fen = 2710
        "01 00000005 00  10 0D 08 4F59989D003100300030 5143  11 02 2710",
        WalletResponse.make(5, WalletStatus.OK, "余额100元", 10000),
        id="ucs2-balance",
    ),
    pytest.param(
        "01 00000009 02  10 03 04 4E6F  11 01 00",
        WalletResponse(request_id=9, status=WalletStatus.INSUFFICIENT_FUNDS, text=TextString("No", Dcs.GSM_8BIT), balance_fen=0),
        id="declined-zero-balance",
    ),
    pytest.param("01 00000001 FE  10 02 04 40", WalletResponse.make(1, 0xFE, "¡"), id="unknown-status"),
]


@pytest.mark.parametrize(("data", "response"), RESPONSES)
def test_response_both_ways(data: str, response: WalletResponse) -> None:
    assert_both_ways(WalletResponse.from_bytes, WalletResponse.to_bytes, h(data), response)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("01 00000005 00", "no text"),
        ("01 00000005 00  11 01 00", "no text"),
        ("01 00000005 00  10 00", "non-empty"),
        ("01 00000005 00  10 01 04", "non-empty"),
        ("01 00000005 00  10 03 00 4F4B", "GSM 8-bit or UCS2"),
        ("01 00000005 00  10 03 04 4F4B  12 00", "unknown tag"),
        ("01 00000005 00  11 01 00  10 03 04 4F4B", "strictly ascending"),
        ("01 00000005 00  10 03 04 4F4B  11 02 0001", "leading zero"),
    ],
)
def test_response_refusals(data: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        WalletResponse.from_bytes(h(data))


def test_response_text_must_fit_one_sms() -> None:
    WalletResponse.make(1, 0, "钱" * 41, AMOUNT_FEN_MAX)
    with pytest.raises(CodecError, match="does not fit one secured SMS"):
        WalletResponse.make(1, 0, "钱" * 42, AMOUNT_FEN_MAX)


GSM_TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:!?-()", min_size=1, max_size=80)
CJK_TEXT = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=41)


@st.composite
def responses(draw: st.DrawFn) -> WalletResponse:
    text = draw(GSM_TEXT | CJK_TEXT)
    balance = draw(st.none() | st.integers(0, AMOUNT_FEN_MAX))
    return WalletResponse.make(draw(st.integers(0, REQUEST_ID_MAX)), draw(st.integers(0, 0xFF)), text, balance)


@given(responses())
def test_response_round_trip(response: WalletResponse) -> None:
    data = response.to_bytes()
    assert WalletResponse.from_bytes(data) == response
    assert WalletResponse.from_bytes(data).to_bytes() == data


PARSERS = [pytest.param(WalletRequest.from_bytes, id="request"), pytest.param(WalletResponse.from_bytes, id="response")]


@pytest.mark.parametrize("parse", PARSERS)
@given(data=st.binary(max_size=120))
def test_random_bytes_raise_only_codec_error(parse: object, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        parse(data)  # type: ignore[operator]


@given(st.one_of(requests().map(lambda r: r.to_bytes()), responses().map(lambda r: r.to_bytes())), st.binary(min_size=1, max_size=4))
def test_truncated_and_trailing_bytes_raise_codec_error(data: bytes, trailing: bytes) -> None:
    for cut in range(len(data)):
        for parser in (WalletRequest.from_bytes, WalletResponse.from_bytes):
            with contextlib.suppress(CodecError):
                parser(data[:cut])
    for parser in (WalletRequest.from_bytes, WalletResponse.from_bytes):
        with contextlib.suppress(CodecError):
            parser(data + trailing)


# --- personalization DGIs ----------------------------------------------------------------------------------

MENU = (
    WalletMenuItem(1, Operation.BALANCE, (("en", "Balance"),)),
    WalletMenuItem(2, Operation.TOP_UP, (("en", "Top up"),)),
)
PERSO = WalletPersonalization("1065800010", h("B00010"), ("en",), (("en", "Wallet"),), MENU, "123456", AES_KEYS)
PERSO_DGIS = [
    # service number: TOA 81 (TON unknown, NPI ISDN), 1065800010 in BCD
    (0x0101, "81 0156080001", False),
    (0x0102, "B00010", False),
    (0x0103, "656E", False),
    (0x0104, "0101 0202", False),
    # "en", title "Wallet" (6 GSM octets), item 1 "Balance", item 2 "Top up"
    (0x0110, "656E 06 57616C6C6574 01 07 42616C616E6365 02 06 546F70207570", False),
    (0x0105, "03", False),
    (0x0106, "0000000000", False),
    (0x8101, "313233343536", True),
    (0x8102, "01 02 02 10 000102030405060708090A0B0C0D0E0F 10 101112131415161718191A1B1C1D1E1F", True),
]


def test_personalization_dgis_both_ways() -> None:
    expected = [(tag, h(value), sensitive) for tag, value, sensitive in PERSO_DGIS]
    assert wallet_personalization_dgis(PERSO) == expected
    assert all(sensitive == gp.is_sensitive_dgi(tag) for tag, _, sensitive in expected)
    assert parse_wallet_dgis((tag, value) for tag, value, _ in expected).personalization() == PERSO


def test_international_service_number_and_pin_reset() -> None:
    perso = WalletPersonalization("+8613800210500", h("B00010"), ("en",), (("en", "W"),), MENU[:1], "1234", AES_KEYS)
    assert perso.to_dgis()[0] == (WalletDgi.SERVICE_NUMBER, h("91 68310820 0105F0"), False)
    assert pin_reset_dgi() == (0x0107, h("01"), False)
    assert parse_wallet_dgis([(0x0107, h("01"))]) == WalletDgis(pin_reset=True)


def test_personalization_hides_its_secrets() -> None:
    text = repr(PERSO) + repr(parse_wallet_dgis((tag, h(value)) for tag, value, _ in PERSO_DGIS))
    assert "123456" not in text and "000102" not in text and "kvn=1" in text


@pytest.mark.parametrize(
    ("dgis", "message"),
    [
        ([(0x0109, "00")], "not one of the wallet's"),
        ([(0x0102, "B000")], "TAR"),
        ([(0x0103, "7A68 7A68")], "repeat"),
        ([(0x0103, "5A48")], "language"),
        ([(0x0104, "0101 0101")], "repeat"),
        ([(0x0104, "0109")], "operation 09"),
        ([(0x0105, "00")], "PIN try limit"),
        ([(0x0105, "10")], "PIN try limit"),
        ([(0x0107, "00")], "PIN reset"),
        ([(0x8101, "313233")], "PIN"),
        ([(0x8101, "3132333A")], "PIN"),
        ([(0x8102, "00 02 02 10" + "00" * 16 + "10" + "00" * 16)], "key version"),
        ([(0x8102, "01 07 02 10" + "00" * 16 + "10" + "00" * 16)], "algorithm"),
        ([(0x8102, "01 02 02 0F" + "00" * 15 + "10" + "00" * 16)], "key"),
        ([(0x0101, "A1 0156080001")], "ISDN"),
        ([(0x0102, "B00010"), (0x0102, "B00011")], "twice"),
        ([(0x0110, "656E 01 41"), (0x0111, "656E 01 42")], "twice"),
        ([(0x0110, "656E 05 41")], "announced"),
    ],
)
def test_dgi_refusals(dgis: list[tuple[int, str]], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_wallet_dgis((tag, h(value)) for tag, value in dgis)


def test_incomplete_or_inconsistent_personalization_is_named() -> None:
    with pytest.raises(CodecError, match="lacks service_number"):
        parse_wallet_dgis([(0x0102, h("B00010"))]).personalization()
    dgis = [(tag, h(value)) for tag, value, _ in PERSO_DGIS if tag != 0x0110] + [(0x0110, h("7A68 01 41 01 01 42 02 01 43"))]
    with pytest.raises(CodecError, match="menu texts"):
        parse_wallet_dgis(dgis).personalization()


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("balance", Operation.BALANCE),
        ("airtime_topup", Operation.TOP_UP),
        ("transfer", Operation.PAY),
        ("change_pin", Operation.PIN_CHANGED),
    ],
)
def test_profile_actions_name_operations(name: str, operation: Operation) -> None:
    assert operation_for_action(name) is operation


def test_unknown_profile_action_is_refused() -> None:
    with pytest.raises(CodecError, match="lottery"):
        operation_for_action("lottery")


KEYSETS = st.one_of(
    st.builds(
        WalletKeySet,
        st.integers(1, 15),
        st.just(CipherAlgorithm.AES_CBC),
        st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.just(CcAlgorithm.AES_CMAC),
        st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    ),
    st.builds(
        WalletKeySet,
        st.integers(1, 15),
        st.just(CipherAlgorithm.TDES_CBC_2KEY),
        st.binary(min_size=16, max_size=16),
        st.just(CcAlgorithm.TDES_CBC_2KEY),
        st.binary(min_size=16, max_size=16),
    ),
)
MENU_TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ", min_size=1, max_size=20) | st.text(
    alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=12
)


@st.composite
def personalizations(draw: st.DrawFn) -> WalletPersonalization:
    languages = tuple(draw(st.lists(LANGUAGES, min_size=1, max_size=4, unique=True)))
    ids = draw(st.lists(st.integers(1, 255), min_size=1, max_size=6, unique=True))
    menu = tuple(WalletMenuItem(i, draw(st.sampled_from(Operation)), tuple((lang, draw(MENU_TEXT)) for lang in languages)) for i in ids)
    number = draw(st.sampled_from(["", "+"])) + draw(_digits(3, 20))
    return WalletPersonalization(
        number,
        draw(st.binary(min_size=3, max_size=3)),
        languages,
        tuple((lang, draw(MENU_TEXT)) for lang in languages),
        menu,
        draw(_digits(4, 6)),
        draw(KEYSETS),
        draw(st.integers(1, 15)),
        draw(st.integers(0, COUNTER_MAX)),
    )


@given(personalizations())
def test_personalization_round_trip(perso: WalletPersonalization) -> None:
    dgis = wallet_personalization_dgis(perso)
    assert [tag for tag, _, sensitive in dgis if sensitive] == [WalletDgi.PIN, WalletDgi.KEYS]
    assert parse_wallet_dgis((tag, value) for tag, value, _ in dgis).personalization() == perso
    # What provisioning sends: whole DGIs in STORE DATA blocks, the sensitive ones encrypted.
    commands = gp.store_data_commands([gp.Dgi(tag, value) for tag, value, _ in dgis], dek=bytes(16))
    assert 1 <= len(commands) <= len(dgis)


@given(st.integers(0x0100, 0x8FFF), st.binary(max_size=60))
def test_random_dgis_raise_only_codec_error(tag: int, value: bytes) -> None:
    with contextlib.suppress(CodecError):
        parse_wallet_dgis([(tag, value)])


@given(personalizations(), st.data())
@settings(max_examples=50)
def test_truncated_dgis_raise_codec_error(perso: WalletPersonalization, data: st.DataObject) -> None:
    tag, value, _ = data.draw(st.sampled_from(wallet_personalization_dgis(perso)))
    cut = data.draw(st.integers(0, max(0, len(value) - 1)))
    with contextlib.suppress(CodecError):
        parse_wallet_dgis([(tag, value[:cut])])
