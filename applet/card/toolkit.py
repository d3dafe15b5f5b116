"""The card's Card Application Toolkit engine: proactive sessions, the menu, envelopes to the right applet.

Spec: ETSI TS 102 223 §4.11 (the proactive UICC: one command outstanding at a
time), §5.2 (TERMINAL PROFILE), §6.2 (proactive sessions: a command, its
TERMINAL RESPONSE, the next command), §6.4.7 / §6.6.7 (SET UP MENU), §6.4.15
(PROVIDE LOCAL INFORMATION, language), §6.8 (TERMINAL RESPONSE), §7.3 (MENU
SELECTION), §7.5.8 (language selection event), §8.6 (command numbers
01..FE); 3GPP TS 31.111 §7.1.1 (SMS-PP data download: the UICC's response data
goes back to the network, 9300 makes the ME retry later); TS 31.115 §4.2 and
ETSI TS 102 225 §5.1-5.2 (the command packet names the application by TAR,
the PoR is the response data); ETSI TS 102 221 §11.2 (the CAT APDUs).

Theory of operation
-------------------
A *session* is a generator owned by one applet: it yields proactive commands
and receives each command's :class:`~simwallet.applet.protocols.cat.TerminalResponse`
(``answer = yield GetInput(...)``). The engine runs one session at a time:

* TERMINAL PROFILE stores the ME's profile and starts the engine's own
  session: PROVIDE LOCAL INFORMATION (language) when the profile offers it,
  then SET UP MENU with the items of every toolkit applet, whose item
  identifiers the engine allocates (1, 2, … in applet order) and maps back;
* the session's first command is numbered and encoded; :meth:`pending_length`
  announces it (the UICC turns 9000 into 91XX), FETCH hands it out, and the
  TERMINAL RESPONSE, which must echo its number and type, goes back into the
  session, which yields the next command or ends;
* an ENVELOPE MENU SELECTION or SMS-PP DOWNLOAD while a session runs is
  refused with 9300 (toolkit busy); otherwise it goes to the applet that owns
  the item or the TAR (UDH IEI 70 and the command packet's TAR), which may
  start a session; an SMS-PP DOWNLOAD's response data (the PoR, if any) is
  the envelope's response;
* an applet that bumps its ``menu_revision`` gets a fresh SET UP MENU at the
  next idle moment of a toolkit session (the ME has sent TERMINAL PROFILE).

Toolkit applets are registered with :meth:`ToolkitEngine.register` or found
in the GlobalPlatform registry (any selectable application implementing
:class:`ToolkitApplet`; a locked or deleted applet drops out by itself).
Nothing here is persistent: the menu is rebuilt after every TERMINAL PROFILE
and a power-off ends every session.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from simwallet.applet.card.app import ApplicationRegistry, CardServices
from simwallet.applet.errors import CardStatusError, CodecError
from simwallet.applet.protocols.cat import (
    CommandDetails,
    EventDownload,
    EventType,
    Facility,
    Item,
    LocalInformationType,
    MenuSelection,
    ProactiveCommand,
    ProvideLocalInformation,
    SetUpMenu,
    SmsPpDownload,
    TerminalProfile,
    TerminalResponse,
    parse_envelope,
    parse_terminal_profile,
    parse_terminal_response,
)
from simwallet.applet.protocols.secured import CommandFrame, PorMode, ResponseStatus, wrap_response
from simwallet.applet.protocols.sms import SmsDeliver, parse_sms_deliver
from simwallet.applet.protocols.sms_udh import IEI_CPI

logger = logging.getLogger(__name__)

# TS 102 223 §8.6: command numbers 01..FE (00 and FF are reserved).
COMMAND_NUMBER_MAX: Final = 0xFE
# TS 102 223 §8.9: item identifiers are one octet; a handset shows far fewer items than this.
MENU_ITEMS_MAX: Final = 64
# TS 102 221 §10.2.1.1 / TS 102 223 §7: "proactive UICC busy, the ME shall retry the envelope later".
SW_TOOLKIT_BUSY: Final = 0x9300
SW_WRONG_LENGTH: Final = 0x6700
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
SW_INCORRECT_DATA: Final = 0x6A80

# A proactive session: yields commands, receives their terminal responses.
Session = Generator[ProactiveCommand, TerminalResponse, None]


@dataclass(frozen=True)
class ToolkitContext:
    """What a toolkit applet may want to know about the handset: its profile and its language."""

    profile: TerminalProfile
    # ISO 639 code from PROVIDE LOCAL INFORMATION or a language selection event; None when the ME gave none.
    language: str | None = None


@dataclass(frozen=True)
class AppletMenu:
    """An applet's part of SET UP MENU: a title and items numbered by the applet (the engine renumbers them)."""

    title: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class SmsPpResult:
    """What an applet makes of an SMS-PP DOWNLOAD: the envelope's response data (its PoR) and a session to run."""

    response: bytes = b""
    session: Session | None = None


@runtime_checkable
class ToolkitApplet(Protocol):
    """An applet that takes part in the toolkit: menu items, menu selections, SMS-PP data download to its TARs."""

    @property
    def aid(self) -> bytes: ...

    @property
    def tars(self) -> tuple[bytes, ...]:
        """The TARs (TS 102 225 §5.1.1) whose command packets go to this applet."""
        ...

    @property
    def menu_revision(self) -> int:
        """Changes whenever :meth:`toolkit_menu` would answer differently (the engine then sends SET UP MENU again)."""
        ...

    def toolkit_menu(self, context: ToolkitContext) -> AppletMenu | None:
        """The applet's menu items now, or None for none."""
        ...

    def menu_selection(self, item: int, help_request: bool, context: ToolkitContext) -> Session | None:
        """The user chose the applet's item ``item`` (its own numbering); the session to run, if any."""
        ...

    def sms_pp_download(self, deliver: SmsDeliver, packet: bytes, context: ToolkitContext) -> SmsPpResult:
        """An SMS-PP DOWNLOAD whose command packet (``packet``, without its UDH) names one of the applet's TARs."""
        ...


@dataclass
class _Running:
    owner: str
    session: Session
    context: ToolkitContext | None = None


class ToolkitEngine:
    """The UICC's :class:`~simwallet.applet.card.app.Toolkit`.

    ``registry`` lends it the installed toolkit applets (or :meth:`attach` it
    later); ``services`` names the card in the log when an applet's session fails.
    """

    def __init__(self, services: CardServices | None = None, registry: ApplicationRegistry | None = None) -> None:
        self._services = services
        self._registry = registry
        self._registered: list[ToolkitApplet] = []
        self._profile: TerminalProfile | None = None
        self._language: str | None = None
        self._queue: deque[_Running] = deque()
        self._current: _Running | None = None
        self._pending = b""
        self._outstanding: CommandDetails | None = None
        self._number = 0
        self._menu_map: dict[int, tuple[ToolkitApplet, int]] = {}
        self._menu_sent = False
        self._revisions: tuple[tuple[int, int], ...] | None = None

    def __repr__(self) -> str:
        return f"ToolkitEngine(profile={self._profile is not None}, busy={self.busy}, language={self._language!r})"

    def attach(self, registry: ApplicationRegistry) -> None:
        """Lend the engine the card's registry after both exist."""
        self._registry = registry

    def register(self, applet: ToolkitApplet) -> None:
        """Take part in the toolkit without being in the registry (an applet the card maker built in)."""
        if all(applet is not known for known in self._registered):
            self._registered.append(applet)

    # -- inspection --

    @property
    def busy(self) -> bool:
        """A proactive session is running or waiting to run: envelopes answer 9300."""
        return self._current is not None or bool(self._queue)

    @property
    def language(self) -> str | None:
        return self._language

    @property
    def menu_items(self) -> dict[int, tuple[bytes, int]]:
        """The last SET UP MENU's item identifiers: engine id to (applet AID, the applet's own item id)."""
        return {item: (applet.aid, local) for item, (applet, local) in self._menu_map.items()}

    def applets(self) -> Iterator[ToolkitApplet]:
        """The registered applets, then the registry's selectable toolkit applets, each once."""
        seen: list[ToolkitApplet] = []
        candidates: list[object] = [*self._registered]
        registry = self._registry
        if registry is not None:
            candidates += [app for app in registry if registry.find(app.aid) is app]
        for app in candidates:
            if isinstance(app, ToolkitApplet) and all(app is not s for s in seen):
                seen.append(app)
                yield app

    # -- Toolkit --

    def terminal_profile(self, profile: bytes) -> None:
        try:
            parsed = parse_terminal_profile(profile)
        except CodecError:
            raise CardStatusError(SW_WRONG_LENGTH) from None
        self._reset()
        self._profile = parsed
        self._queue.append(_Running("toolkit", self._startup()))
        self._advance()

    def pending_length(self) -> int:
        if not self._pending and not self.busy and self._profile is not None and self._revisions != self._menu_revisions():
            # An applet changed its menu (personalization, a lock): tell the ME at this idle moment.
            self._queue.append(_Running("toolkit", self._menu_session()))
            self._advance()
        return len(self._pending)

    def fetch(self) -> bytes:
        if not self._pending:
            raise CardStatusError(SW_CONDITIONS_NOT_SATISFIED)
        command, self._pending = self._pending, b""
        return command

    def terminal_response(self, data: bytes) -> None:
        expected = self._outstanding
        if expected is None or self._pending or self._current is None:
            raise CardStatusError(SW_CONDITIONS_NOT_SATISFIED, "no proactive command awaits a terminal response")
        try:
            response = parse_terminal_response(data)
        except CodecError:
            raise CardStatusError(SW_INCORRECT_DATA) from None
        if (response.command.number, response.command.type) != (expected.number, expected.type):
            raise CardStatusError(SW_INCORRECT_DATA, "the terminal response answers another command")
        self._outstanding = None
        self._step(self._current, response)
        self._advance()

    def envelope(self, data: bytes) -> bytes:
        try:
            envelope = parse_envelope(data)
        except CodecError:
            raise CardStatusError(SW_INCORRECT_DATA) from None
        if isinstance(envelope, EventDownload):
            self._event(envelope)
            return b""
        if not isinstance(envelope, MenuSelection | SmsPpDownload):
            raise CardStatusError(SW_INCORRECT_DATA, "this card handles menu selection, SMS-PP download and event envelopes")
        if self.busy:
            raise CardStatusError(SW_TOOLKIT_BUSY)
        if isinstance(envelope, MenuSelection):
            self._menu_selection(envelope)
            return b""
        return self._sms_pp(envelope)

    def power_off(self) -> None:
        self._reset()
        self._profile = None
        self._language = None

    # -- sessions --

    def _reset(self) -> None:
        for running in (self._current, *self._queue):
            if running is not None:
                running.session.close()
        self._queue.clear()
        self._current = None
        self._pending = b""
        self._outstanding = None
        self._menu_map = {}
        self._menu_sent = False
        self._revisions = None

    def _context(self) -> ToolkitContext:
        assert self._profile is not None
        return ToolkitContext(self._profile, self._language)

    def _start(self, owner: str, session: Session | None) -> None:
        if session is not None:
            self._queue.append(_Running(owner, session))
            self._advance()

    def _advance(self) -> None:
        """Start queued sessions until one yields a command (or none is left)."""
        while self._current is None and self._queue:
            running = self._queue.popleft()
            self._current = running
            self._step(running, None)

    def _step(self, running: _Running, response: TerminalResponse | None) -> None:
        """Feed ``response`` to the session (None: start it) and queue the command it yields next."""
        try:
            command = next(running.session) if response is None else running.session.send(response)
            self._number = self._number % COMMAND_NUMBER_MAX + 1
            numbered = dataclasses.replace(command, number=self._number)
            self._pending = numbered.to_bytes()
            self._outstanding = numbered.details
        except StopIteration:
            self._end(running)
        except Exception as exc:
            # A faulty applet must not keep the toolkit busy for ever; the UICC answers this command 6F00.
            card = self._services.iccid.hex().upper() if self._services is not None else "?"
            logger.error("card %s toolkit: session of %s raised %s; session ended", card, running.owner, type(exc).__name__)
            self._end(running)
            self._advance()
            raise

    def _end(self, running: _Running) -> None:
        if self._current is running:
            self._current = None
        self._pending = b""
        self._outstanding = None

    # -- the engine's own session: language, then the menu --

    def _startup(self) -> Session:
        profile = self._profile
        assert profile is not None
        if profile.supports(Facility.PROVIDE_LOCAL_INFORMATION_LANGUAGE):
            answer = yield ProvideLocalInformation(qualifier=LocalInformationType.LANGUAGE_SETTING)
            if answer.result.succeeded and answer.language:
                self._language = answer.language.lower()
        yield from self._menu_session()

    def _menu_revisions(self) -> tuple[tuple[int, int], ...]:
        return tuple((id(applet), applet.menu_revision) for applet in self.applets())

    def _menu_session(self) -> Session:
        profile = self._profile
        assert profile is not None
        self._revisions = self._menu_revisions()
        command, mapping = self._build_menu()
        if not profile.supports(Facility.SET_UP_MENU) or (command.removes_menu and not self._menu_sent):
            self._menu_map = {}
            return
        self._menu_map, self._menu_sent = mapping, not command.removes_menu
        yield command

    def _build_menu(self) -> tuple[SetUpMenu, dict[int, tuple[ToolkitApplet, int]]]:
        context = self._context()
        title: str | None = None
        items: list[Item] = []
        mapping: dict[int, tuple[ToolkitApplet, int]] = {}
        for applet in self.applets():
            menu = applet.toolkit_menu(context)
            if menu is None:
                continue
            title = menu.title if title is None else title
            for item in menu.items:
                if len(items) < MENU_ITEMS_MAX:
                    items.append(Item(len(items) + 1, item.text))
                    mapping[len(items)] = (applet, item.identifier)
        while items:
            try:
                return SetUpMenu(title=title or "", items=tuple(items)), mapping
            except CodecError:  # more than FETCH can carry (256 bytes): drop the last item
                mapping.pop(len(items))
                items.pop()
        return SetUpMenu.remove(), {}

    # -- envelopes --

    def _event(self, event: EventDownload) -> None:
        if event.event == EventType.LANGUAGE_SELECTION and event.language and self._profile is not None:
            self._language = event.language.lower()
            self._revisions = None  # the next idle moment sends the menu in the new language

    def _menu_selection(self, selection: MenuSelection) -> None:
        if self._profile is None:
            raise CardStatusError(SW_CONDITIONS_NOT_SATISFIED, "no TERMINAL PROFILE, no menu")
        target = self._menu_map.get(selection.item_identifier)
        if target is None:
            raise CardStatusError(SW_INCORRECT_DATA, "no such menu item")
        applet, local = target
        self._start(applet.aid.hex().upper(), applet.menu_selection(local, selection.help_request, self._context()))

    def _sms_pp(self, envelope: SmsPpDownload) -> bytes:
        try:
            deliver = parse_sms_deliver(envelope.tpdu)
            header = deliver.ud.header
            if header is None or header.find(IEI_CPI) is None:
                return b""  # TS 31.111 §7.1.1: data download without a command packet: nothing for an applet
            frame = CommandFrame.from_bytes(deliver.ud.body)
        except CodecError:
            raise CardStatusError(SW_INCORRECT_DATA) from None
        tar = frame.tar.to_bytes()
        applet = next((a for a in self.applets() if tar in a.tars), None)
        if applet is None:
            if frame.spi.por is PorMode.NONE:
                return b""
            # TS 102 225 §5.2.2: status 09; without the application's keys the PoR is the unsecured status-only form.
            return wrap_response(b"", None, spi=frame.spi, tar=frame.tar, counter=0, status=ResponseStatus.TAR_UNKNOWN)
        context = self._context() if self._profile is not None else ToolkitContext(TerminalProfile(b"\x00"))
        result = applet.sms_pp_download(deliver, deliver.ud.body, context)
        if self._profile is not None:
            self._start(applet.aid.hex().upper(), result.session)
        elif result.session is not None:
            result.session.close()  # no TERMINAL PROFILE yet: no ME to show anything to
        return result.response
