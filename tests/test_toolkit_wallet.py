"""The toolkit engine (simwallet.applet.card.toolkit) and the wallet applet (simwallet.applet.card.wallet) on a real card.

The engine is driven first through its Toolkit methods with small in-test toolkit applets (TS 102 223 sequences:
TERMINAL PROFILE, the language, SET UP MENU, a menu session, 9300 while busy, SMS-PP download by TAR). Then the
whole wallet: a usim-wallet card made by the card maker, the wallet installed and personalized through the ISD
over SCP03, a handset (``Handset(uicc.apdu)``) choosing menu items, and the backend's side played by the test
with the wallet keys diversified from their master (tests/wallet_helpers.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from codec_helpers import h
from wallet_helpers import (
    ICCID,
    SCTS,
    SERVICE_NUMBER,
    TAR,
    WALLET_PIN,
    Backend,
    Card,
    IsdSession,
    install_wallet,
    manufacture,
    personalized_card,
    reload,
    transmit,
)

from simwallet.applet.card.image import CardStore
from simwallet.applet.card.toolkit import AppletMenu, Session, SmsPpResult, ToolkitContext, ToolkitEngine
from simwallet.applet.card.wallet import WALLET_INSTANCE_AID, WalletApplet, WalletState
from simwallet.applet.errors import CardStatusError, CodecError
from simwallet.applet.handset import Handset
from simwallet.applet.handset_user import Prompt, ScriptedUser
from simwallet.applet.protocols import gp
from simwallet.applet.protocols.cat import (
    DisplayText,
    EventDownload,
    Facility,
    GeneralResult,
    GetInput,
    Item,
    LocalInformationType,
    MenuSelection,
    ProvideLocalInformation,
    ResponseLength,
    SendShortMessage,
    SetUpMenu,
    SmsPpDownload,
    TerminalProfile,
    TerminalResponse,
    TextString,
    parse_proactive_command,
)
from simwallet.applet.protocols.secured import (
    ChecksumType,
    CounterMode,
    PorMode,
    ResponseStatus,
    Spi,
    Tar,
    unwrap_response,
    wrap_command,
)
from simwallet.applet.protocols.sms import (
    DCS_SIM_DATA_DOWNLOAD,
    Address,
    Npi,
    RawIe,
    SmsDeliver,
    Ton,
    UserData,
    UserDataHeader,
)
from simwallet.applet.protocols.wallet_messages import WALLET_SPI, Operation, WalletStatus, pin_reset_dgi

PROFILE = TerminalProfile.from_facilities(
    [
        Facility.PROFILE_DOWNLOAD,
        Facility.SET_UP_MENU,
        Facility.GET_INPUT,
        Facility.DISPLAY_TEXT,
        Facility.PROVIDE_LOCAL_INFORMATION_LANGUAGE,
    ]
)

# --- the engine with in-test applets -----------------------------------------------------------------------


class Applet:
    """A toolkit applet that asks for an amount, sends an SMS and says done; SMS-PP answers AA."""

    def __init__(self, aid: bytes, title: str, texts: tuple[str, ...], tar: bytes = b"") -> None:
        self.aid = aid
        self.title = title
        self.texts = texts
        self.tars = (tar,) if tar else ()
        self.menu_revision = 0
        self.seen: list[tuple[str, object]] = []
        self.fail = False

    def toolkit_menu(self, context: ToolkitContext) -> AppletMenu | None:
        self.seen.append(("menu", context.language))
        return AppletMenu(self.title, tuple(Item(10 + i, text) for i, text in enumerate(self.texts)))

    def menu_selection(self, item: int, help_request: bool, context: ToolkitContext) -> Session | None:
        self.seen.append(("selected", item))
        return self._flow()

    def _flow(self) -> Session:
        answer = yield GetInput(text=TextString("Amount"), response_length=ResponseLength(1, 6))
        if self.fail:
            raise RuntimeError("applet bug")
        self.seen.append(("input", answer.text.text if answer.text else None))
        yield SendShortMessage(tpdu=h("0100038121F30004 00"))
        yield DisplayText(text=TextString("Done"))

    def sms_pp_download(self, deliver: SmsDeliver, packet: bytes, context: ToolkitContext) -> SmsPpResult:
        self.seen.append(("sms", packet))
        return SmsPpResult(h("AA"), None)


def fetch(engine: ToolkitEngine) -> object:
    length = engine.pending_length()
    assert length > 0
    data = engine.fetch()
    assert len(data) == length and engine.pending_length() == 0
    return parse_proactive_command(data)


def answer(engine: ToolkitEngine, command: object, general: int = GeneralResult.PERFORMED_SUCCESSFULLY, **kw: object) -> None:
    engine.terminal_response(TerminalResponse.answer(command.details, general, **kw).to_bytes())  # type: ignore[attr-defined, arg-type]


@pytest.fixture
def engine() -> Iterator[tuple[ToolkitEngine, Applet, Applet]]:
    first = Applet(h("F0 01 02 03 04"), "Shop", ("Buy", "Sell"))
    second = Applet(h("F0 05 06 07 08"), "Other", ("News",), tar=h("B00020"))
    engine = ToolkitEngine()
    engine.register(first)
    engine.register(second)
    yield engine, first, second


def start(engine: ToolkitEngine, profile: TerminalProfile = PROFILE, language: str = "EN") -> SetUpMenu:
    engine.terminal_profile(profile.to_bytes())
    command = fetch(engine)
    if profile.supports(Facility.PROVIDE_LOCAL_INFORMATION_LANGUAGE):
        assert isinstance(command, ProvideLocalInformation) and command.qualifier == LocalInformationType.LANGUAGE_SETTING
        answer(engine, command, language=language)
        command = fetch(engine)
    assert isinstance(command, SetUpMenu)
    answer(engine, command)
    assert engine.pending_length() == 0 and not engine.busy
    return command


def test_terminal_profile_asks_the_language_then_sets_up_one_menu(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, first, second = engine
    menu = start(toolkit)
    assert menu.title == "Shop"
    assert menu.items == (Item(1, "Buy"), Item(2, "Sell"), Item(3, "News"))
    assert toolkit.menu_items == {1: (first.aid, 10), 2: (first.aid, 11), 3: (second.aid, 10)}
    assert toolkit.language == "en" and ("menu", "en") in first.seen


def test_without_the_language_facility_the_menu_comes_first(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, first, _ = engine
    start(toolkit, TerminalProfile.from_facilities([Facility.SET_UP_MENU]))
    assert toolkit.language is None and ("menu", None) in first.seen


def test_without_set_up_menu_nothing_is_pending(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, _, _ = engine
    toolkit.terminal_profile(TerminalProfile.from_facilities([Facility.DISPLAY_TEXT]).to_bytes())
    assert toolkit.pending_length() == 0 and not toolkit.busy


def test_menu_selection_runs_the_applet_session(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, first, _ = engine
    start(toolkit)
    assert toolkit.envelope(MenuSelection(2).to_bytes()) == b""
    numbers = []
    for kind, reply in ((GetInput, {"text": TextString("42")}), (SendShortMessage, {}), (DisplayText, {})):
        command = fetch(toolkit)
        assert isinstance(command, kind)
        numbers.append(command.number)  # type: ignore[attr-defined]
        answer(toolkit, command, **reply)
    assert not toolkit.busy and ("selected", 11) in first.seen and ("input", "42") in first.seen
    assert numbers == sorted(set(numbers))


def test_envelopes_while_busy_answer_9300(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, _, _ = engine
    start(toolkit)
    toolkit.envelope(MenuSelection(1).to_bytes())
    sms = SmsPpDownload(_deliver(Tar(h("B00020")), b"\x00" * 16)).to_bytes()
    for envelope in (MenuSelection(3).to_bytes(), sms):
        with pytest.raises(CardStatusError) as waiting:  # a command waits for FETCH
            toolkit.envelope(envelope)
        assert waiting.value.sw == 0x9300
    command = fetch(toolkit)
    with pytest.raises(CardStatusError) as fetched:  # fetched, its terminal response not yet in
        toolkit.envelope(sms)
    assert fetched.value.sw == 0x9300
    answer(toolkit, command, GeneralResult.PROACTIVE_SESSION_TERMINATED_BY_USER)
    assert toolkit.busy  # the in-test applet goes on regardless; the wallet's flows stop
    toolkit.power_off()
    assert not toolkit.busy and toolkit.pending_length() == 0 and toolkit.menu_items == {}


def test_terminal_responses_are_checked(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, _, _ = engine
    with pytest.raises(CardStatusError) as nothing:
        answer(toolkit, ProvideLocalInformation(number=1, qualifier=4))
    assert nothing.value.sw == 0x6985
    toolkit.terminal_profile(PROFILE.to_bytes())
    command = fetch(toolkit)
    with pytest.raises(CardStatusError) as other:
        answer(toolkit, ProvideLocalInformation(number=(command.number % 200) + 1, qualifier=4))  # type: ignore[attr-defined]
    with pytest.raises(CardStatusError) as garbage:
        toolkit.terminal_response(h("81 03 01"))
    assert other.value.sw == garbage.value.sw == 0x6A80
    answer(toolkit, command, language="zh")
    assert isinstance(fetch(toolkit), SetUpMenu)


def test_a_failing_session_ends_and_frees_the_toolkit(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, first, _ = engine
    start(toolkit)
    first.fail = True
    toolkit.envelope(MenuSelection(1).to_bytes())
    command = fetch(toolkit)
    with pytest.raises(RuntimeError):
        answer(toolkit, command, text=TextString("1"))
    assert not toolkit.busy and toolkit.pending_length() == 0


def test_a_new_menu_revision_sends_set_up_menu_again(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, _, second = engine
    start(toolkit)
    second.texts, second.menu_revision = ("News", "Weather"), 1
    command = fetch(toolkit)
    assert isinstance(command, SetUpMenu) and command.items[-1] == Item(4, "Weather")


def test_a_language_selection_event_sends_the_menu_again(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, first, _ = engine
    start(toolkit)
    assert toolkit.envelope(EventDownload.language_selection("zh").to_bytes()) == b""
    assert isinstance(fetch(toolkit), SetUpMenu) and toolkit.language == "zh" and first.seen[-1] == ("menu", "zh")


def _deliver(tar: Tar, data: bytes, spi: Spi = WALLET_SPI) -> bytes:
    packet = wrap_command(data, Backend().keyset, spi=spi, tar=tar, counter=1, with_udh=False)
    oa = Address(Ton.UNKNOWN, Npi.ISDN, SERVICE_NUMBER)
    return SmsDeliver(oa=oa, scts=SCTS, ud=UserData(packet, UserDataHeader((RawIe(0x70),))), pid=0x7F, dcs=DCS_SIM_DATA_DOWNLOAD).to_bytes()


def test_sms_pp_download_goes_to_the_applet_of_the_tar(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, first, second = engine
    start(toolkit)
    tpdu = _deliver(Tar(h("B00020")), b"hello")
    assert toolkit.envelope(SmsPpDownload(tpdu).to_bytes()) == h("AA")
    assert [kind for kind, _ in second.seen] == ["menu", "sms"] and all(kind != "sms" for kind, _ in first.seen)


def test_sms_pp_download_to_an_unknown_tar_gets_por_09(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, _, _ = engine
    spi = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER, PorMode.ALWAYS, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True)
    por = toolkit.envelope(SmsPpDownload(_deliver(Tar(h("B0FFFF")), b"x", spi)).to_bytes())
    result = unwrap_response(por, None, spi=spi, tar=h("B0FFFF"), counter=0)
    assert result.status is ResponseStatus.TAR_UNKNOWN and not result.verified
    assert toolkit.envelope(SmsPpDownload(_deliver(Tar(h("B0FFFF")), b"x")).to_bytes()) == b""


def test_malformed_envelopes_answer_6a80(engine: tuple[ToolkitEngine, Applet, Applet]) -> None:
    toolkit, _, _ = engine
    for data in (h("D3 02 01"), SmsPpDownload(h("00")).to_bytes(), h("D0 00")):
        with pytest.raises(CardStatusError) as refused:
            toolkit.envelope(data)
        assert refused.value.sw == 0x6A80
    with pytest.raises(CardStatusError) as no_menu:
        toolkit.envelope(MenuSelection(1).to_bytes())
    assert no_menu.value.sw == 0x6985


# --- the wallet on a real card ------------------------------------------------------------------------------


@pytest.fixture
def card(tmp_path: Path) -> Card:
    return personalized_card(tmp_path)


def phone(card: Card, *answers: str, language: str = "zh") -> Handset:
    handset = Handset(card.uicc.apdu, language=language, user=ScriptedUser(answers))
    handset.power_up()
    return handset


def test_balance_in_chinese(card: Card) -> None:
    handset, backend = phone(card, WALLET_PIN), Backend()
    assert handset.menu_title == "手机钱包"
    assert [item.text for item in handset.menu()] == ["余额查询", "话费充值", "付款", "缴费", "银行卡余额", "修改密码"]
    handset.select("余额查询")
    assert handset.user.prompts == [Prompt("input", "请输入钱包密码", hidden=True)]  # type: ignore[attr-defined]
    assert handset.screen == ["请求已发送，请稍候……"]
    [tpdu] = handset.sent
    submit, packet, request = backend.receive(tpdu)
    # TS 31.115 §4.2 in an ordinary MO SMS-SUBMIT: PID 00, DCS F6, UDH 70 00, to the service number.
    assert (submit.pid, submit.dcs, submit.da) == (0x00, DCS_SIM_DATA_DOWNLOAD, Address(Ton.UNKNOWN, Npi.ISDN, SERVICE_NUMBER))
    assert submit.ud.header == UserDataHeader((RawIe(0x70),)) and not submit.srr and submit.vp is None
    assert (packet.spi, packet.tar.to_bytes(), packet.counter) == (WALLET_SPI, TAR, 1)
    assert (request.operation, request.request_id, request.language) == (Operation.BALANCE, 1, "zh")
    assert handset.deliver_sms_pp(backend.answer(request.request_id, "您的余额为 100.00 元", balance_fen=10000)) == b""
    assert handset.screen[-1] == "您的余额为 100.00 元"
    assert card.wallet.state.server_counter == 1 and card.wallet.state.refused == 0


def test_balance_in_english(card: Card) -> None:
    handset, backend = phone(card, WALLET_PIN, language="en"), Backend()
    assert handset.menu_title == "Mobile Wallet" and handset.menu()[0] == Item(1, "Balance")
    handset.select("Balance")
    assert handset.screen == ["Request sent. Please wait..."]
    _, _, request = backend.receive(handset.sent[0])
    assert request.language == "en"
    handset.deliver_sms_pp(backend.answer(request.request_id, "Balance: 100.00 yuan", balance_fen=10000))
    assert handset.screen[-1] == "Balance: 100.00 yuan"


def test_a_language_the_wallet_lacks_falls_back_to_its_default(card: Card) -> None:
    assert phone(card, language="fr").menu_title == "手机钱包"


@pytest.mark.parametrize(
    ("item", "answers", "fields"),
    [
        ("话费充值", ("1", "50"), {"amount_fen": 5000, "msisdn": None}),
        ("话费充值", ("2", "13800138000", "30"), {"amount_fen": 3000, "msisdn": "13800138000"}),
        ("付款", ("付款给商户", "8888", "12"), {"amount_fen": 1200, "merchant": "8888"}),
        ("缴费", ("1001", "4567890", "99"), {"amount_fen": 9900, "biller": "1001", "account": "4567890"}),
        ("银行卡余额", (), {}),
    ],
)
def test_requests_carry_what_the_user_entered(card: Card, item: str, answers: tuple[str, ...], fields: dict[str, object]) -> None:
    handset = phone(card, *answers, WALLET_PIN)
    handset.select(item)
    _, _, request = Backend().receive(handset.sent[0])
    assert {name: getattr(request, name) for name in fields} == fields


def test_leaving_a_prompt_sends_nothing(card: Card) -> None:
    handset = phone(card)  # the script is empty: the user presses the red key at the first prompt
    handset.select("缴费")
    assert handset.sent == [] and handset.screen == [] and card.wallet.state.request_counter == 0


def test_three_wrong_pins_lock_the_wallet_until_the_service_hall_unlocks_it(card: Card) -> None:
    handset = phone(card, "000000", "111111", "222222")
    for _ in range(3):
        handset.select("余额查询")
    assert handset.screen == ["密码错误，还可尝试2次", "密码错误，还可尝试1次", "密码错误次数过多，钱包已锁定，请到营业厅解锁。"]
    handset.select("余额查询")
    assert handset.screen[-1].startswith("钱包已锁定") and handset.sent == [] and card.wallet.locked
    # The service hall: the card in a reader (no handset), INSTALL [for personalization], STORE DATA DGI 0107.
    card.uicc.power_off()
    card.uicc.power_on()
    IsdSession(card.uicc).store([pin_reset_dgi()])
    assert not card.wallet.locked and card.wallet.state.pin_tries_left == 3
    handset = phone(card, WALLET_PIN)
    handset.select("余额查询")
    assert len(handset.sent) == 1


def test_change_pin(card: Card) -> None:
    handset = phone(card, WALLET_PIN, "1357", "1357")
    handset.select("修改密码")
    assert handset.screen == ["密码已修改。"]
    _, _, request = Backend().receive(handset.sent[0])
    assert request.operation is Operation.PIN_CHANGED
    handset.user.feed(WALLET_PIN, "1357")  # type: ignore[attr-defined]
    handset.select("余额查询")
    handset.select("余额查询")
    assert handset.screen[1:] == ["密码错误，还可尝试2次", "请求已发送，请稍候……"]


def test_change_pin_refuses_two_different_new_pins(card: Card) -> None:
    handset = phone(card, WALLET_PIN, "1357", "2468")
    handset.select("修改密码")
    assert handset.screen == ["两次输入的新密码不一致，密码未修改。"] and handset.sent == []


def test_replayed_and_forged_responses_are_refused(card: Card) -> None:
    handset, backend = phone(card, WALLET_PIN), Backend()
    handset.select("余额查询")
    _, _, request = backend.receive(handset.sent[0])
    answer_tpdu = backend.answer(request.request_id, "OK 1")
    handset.deliver_sms_pp(answer_tpdu)
    shown = list(handset.screen)
    assert handset.deliver_sms_pp(answer_tpdu) == b""  # replay: CNTR not higher, no PoR asked for
    forged = bytearray(backend.answer(request.request_id, "OK 2"))
    forged[-5] ^= 0x01
    assert handset.deliver_sms_pp(bytes(forged)) == b""
    clear = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, False, CounterMode.HIGHER)
    handset.deliver_sms_pp(backend.answer(request.request_id, "OK 3", spi=clear))  # below the minimum security level
    assert handset.screen == shown and card.wallet.state.refused == 3


@pytest.mark.parametrize(
    ("tamper", "status"),
    [("replay", ResponseStatus.COUNTER_LOW), ("forge", ResponseStatus.CHECKSUM_FAILED)],
)
def test_a_refused_response_gets_the_por_its_spi_asks_for(card: Card, tamper: str, status: ResponseStatus) -> None:
    spi = Spi(ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True, CounterMode.HIGHER, PorMode.ON_ERROR, ChecksumType.CRYPTOGRAPHIC_CHECKSUM, True)
    handset, backend = phone(card), Backend()
    first = backend.answer(1, "first", spi=spi)
    assert handset.deliver_sms_pp(first) == b""  # accepted: no PoR on success
    tpdu = first if tamper == "replay" else bytes(bytearray(backend.answer(1, "second", spi=spi))[:-1] + b"\x00")
    por = handset.deliver_sms_pp(tpdu)
    assert por is not None
    # A packet whose CC fails tells the card no counter it can trust: its PoR carries CNTR 0.
    result = unwrap_response(por, backend.keyset, spi=spi, tar=TAR, counter=1 if tamper == "replay" else 0)
    assert result.status is status and handset.screen == ["first"]


def test_an_unpersonalized_wallet_offers_no_menu(tmp_path: Path) -> None:
    card = manufacture(tmp_path)
    install_wallet(card.uicc, personalize=False)
    handset = phone(card)
    assert handset.menu() == () and not card.wallet.personalized


def test_a_wallet_locked_by_the_issuer_leaves_the_menu(card: Card) -> None:
    session = IsdSession(card.uicc)
    session.ok(gp.set_status_command(gp.StatusType.APPLICATION, gp.SET_STATUS_LOCK, WALLET_INSTANCE_AID))
    assert phone(card).menu() == ()
    card.uicc.power_off()  # from the phone to the service hall's reader
    card.uicc.power_on()
    session = IsdSession(card.uicc)
    session.ok(gp.set_status_command(gp.StatusType.APPLICATION, gp.SET_STATUS_UNLOCK, WALLET_INSTANCE_AID))
    assert len(phone(card).menu()) == 6


def test_the_wallet_answers_select_with_its_fci_and_nothing_else(card: Card) -> None:
    selected = transmit(card.uicc, h("00A40400") + bytes([len(WALLET_INSTANCE_AID)]) + WALLET_INSTANCE_AID + h("00"))
    assert (selected.sw, selected.data) == (0x9000, h("6F 0E 84 0C") + WALLET_INSTANCE_AID)
    assert transmit(card.uicc, h("80CA00FE00")).sw == 0x6D00


def test_sensitive_dgis_must_come_encrypted(tmp_path: Path) -> None:
    card = manufacture(tmp_path)
    install_wallet(card.uicc, personalize=False)
    session = IsdSession(card.uicc)
    session.ok(gp.install_for_personalization_command(WALLET_INSTANCE_AID))
    clear = gp.store_data_blocks([gp.Dgi(0x8101, b"123456").to_bytes()], structure=gp.StoreDataStructure.DGI)
    assert session.send(clear[0]).sw == 0x6A80
    assert card.wallet.state.pin_digest is None


def test_the_request_counter_is_persisted_before_the_sms_leaves_and_survives_a_restart(tmp_path: Path) -> None:
    card, backend = personalized_card(tmp_path), Backend()
    stored_at_send: list[int] = []

    def sms_out(tpdu: bytes) -> None:
        image = CardStore(tmp_path).load(ICCID)
        stored_at_send.append(WalletState.from_mapping(image.apps[WALLET_INSTANCE_AID.hex().upper()]).request_counter)

    handset = Handset(card.uicc.apdu, user=ScriptedUser([WALLET_PIN]), sms_out=sms_out)
    handset.power_up()
    handset.select(1)
    _, first, request = backend.receive(handset.sent[0])
    old_answer = backend.answer(request.request_id, "first")
    handset.deliver_sms_pp(old_answer)
    # The card process restarts: the same card from its image.
    card = reload(tmp_path)
    handset = Handset(card.uicc.apdu, user=ScriptedUser([WALLET_PIN]), sms_out=sms_out)
    handset.power_up()
    handset.select(1)
    _, second, _ = backend.receive(handset.sent[0])  # the backend's "higher" check passes
    assert stored_at_send == [first.counter, second.counter] and second.counter > first.counter
    handset.deliver_sms_pp(old_answer)  # the backend's counter was persisted too: the old answer is a replay
    assert handset.screen == ["请求已发送，请稍候……"] and card.wallet.state.refused == 1


def test_personalizing_again_never_moves_the_counter_back(card: Card) -> None:
    handset = phone(card, WALLET_PIN)
    handset.select(1)
    card.uicc.power_off()
    card.uicc.power_on()
    IsdSession(card.uicc).store([(0x0106, h("0000000000"), False)])
    assert card.wallet.state.request_counter == 1


def test_status_and_balance_of_a_declined_answer_are_shown_as_sent(card: Card) -> None:
    handset, backend = phone(card), Backend()
    handset.deliver_sms_pp(backend.answer(7, "余额不足", status=WalletStatus.INSUFFICIENT_FUNDS, balance_fen=0))
    assert handset.screen == ["余额不足"]


# --- the wallet's language and state, without a card ------------------------------------------------------


class FileServices:
    """Card services that can read EF.LI (the accessor the wallet asks the UICC for)."""

    iccid = bytes(10)

    def __init__(self, ef_li: bytes) -> None:
        self.ef_li = ef_li
        self.saved = 0

    def persist(self) -> None:
        self.saved += 1

    def pin_verified(self, key_reference: int) -> bool:
        return False

    def read_file(self, path: str) -> bytes:
        assert path == "ADF.USIM/EF.LI"
        return self.ef_li


@pytest.mark.parametrize(
    ("handset", "ef_li", "expected"),
    [("en", "7A68FFFF", "en"), ("fr", "656E7A68", "en"), ("fr", "6672FFFF", "zh"), (None, "FFFF", "zh"), ("fr", "7A", "zh")],
)
def test_language_is_the_handsets_then_ef_li_then_the_default(handset: str | None, ef_li: str, expected: str, card: Card) -> None:
    wallet = WalletApplet(WALLET_INSTANCE_AID, FileServices(h(ef_li)), card.wallet.export_state())
    assert wallet.language(ToolkitContext(PROFILE, handset)) == expected


def test_wallet_state_round_trip_and_refusal(card: Card) -> None:
    state = card.wallet.state
    assert WalletState.from_mapping(state.to_mapping()) == state
    assert state.keys is not None and state.pin_digest is not None
    for secret in (state.keys.kic.hex(), state.keys.kid.hex(), state.pin_digest.hex(), WALLET_PIN):
        assert secret not in repr(card.wallet).lower()
    with pytest.raises(CodecError):
        WalletState.from_mapping({**state.to_mapping(), "menu": [[1, 99]]})
