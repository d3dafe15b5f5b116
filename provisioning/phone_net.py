"""Simulated phones on the network for ``simwallet phone``: a text and its reply, a USSD dialogue, a card's SMS, and load.

Spec: SMPP 3.4 §4.4.1 (submit_sm), §4.6.1 (deliver_sm), §5.3.2.44
(``ussd_service_op``: 1 PSSR indication, 2 USSR request, 3 USSN request, 17
PSSR response, 18 USSR confirm); 3GPP TS 24.090 (a mobile-initiated USSD
dialogue); TS 23.040 §9.2.2 (SMS-SUBMIT, SMS-DELIVER); TS 31.111 §7.1.1.2
(SMS-PP data download: TP-PID 7F goes to the card by ENVELOPE).

Theory of operation
-------------------
Every command attaches a :class:`~simwallet.gateway.smsc.phone.PhoneClient`
(one MSISDN) or a :class:`~simwallet.gateway.smsc.phone.Phones` pool to the
SMSC's ``phones`` account with :func:`attach`. It first opens one TCP
connection, so that "nothing listens there" is told at once rather than after
the bind's time-out; both become :class:`SmscUnreachable`.

* :func:`send_and_wait` sends a text with a client reference and waits for the
  reply from the number it went to.
* :func:`ussd_dialogue` dials a code and walks the dialogue: every screen goes
  to a :class:`UssdUser`; a screen that asks (USSR request) gets the user's
  answer, asked in a worker thread so that the bind keeps answering the SMSC
  while a person types, as a USSR confirm; any other operation ends it.
* :class:`AirLink` is the air for a handset that drives a card in the calling
  thread (PC/SC and the terminal's prompts stay where they are): an event loop
  of its own thread holds the bind; each SMS-SUBMIT the card sends becomes a
  submit_sm (:func:`~simwallet.gateway.smsc.air.submit_sm_for`), and each
  SMS-PP the SMSC delivers becomes the SMS-DELIVER the card gets by ENVELOPE
  (:func:`~simwallet.gateway.smsc.air.sms_deliver_for`).
* Load from a pool of phones is :mod:`simwallet.provisioning.phone_load`.

Decisions:

* What is in an inbox before a command sends cannot be its reply (a message
  the SMSC kept for the number and delivered at bind time): it is dropped.
* A text lost on the link (no response, connection cut) is sent again with the
  same client reference, at most :data:`SEND_ATTEMPTS_MAX` times in all: the
  SMSC answers a copy with the first message id and delivers it once.
* Load replies are matched to requests first in, first out per phone (a reply
  names no request); the phones of a pool take turns, so one phone rarely has
  two requests out. Latency runs from the time a message was *due*, not from
  when its send began, so a generator that falls behind shows it as latency
  rather than hiding it (no coordinated omission). Throttled messages are
  counted, not resent: the load measures the SMSC's limit, it does not hide it.
* The clock of scheduling and latency is the event loop's (``loop.time()``),
  the one the SMPP driver's deadlines use; the service centre time stamp of a
  downloaded SMS comes from an injected wall clock; the mix and the run's
  references from an injected RNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol, Self, TypeVar

from simwallet.gateway.errors import GatewayError
from simwallet.gateway.smpp import UssdServiceOp
from simwallet.gateway.smpp.aio import SmppLinkError, SmppRequestError
from simwallet.gateway.smsc.air import sms_deliver_for, submit_sm_for
from simwallet.gateway.smsc.errors import InboxTimeout
from simwallet.gateway.smsc.inbox import PROTOCOL_ID_SIM_DATA_DOWNLOAD, ReceivedMessage
from simwallet.gateway.smsc.phone import PhoneClient
from simwallet.provisioning.errors import ProvisioningError

T = TypeVar("T")
C = TypeVar("C", bound=PhoneClient)

# A TCP connect to an SMSC on the same site answers in milliseconds.
PROBE_TIMEOUT_S: Final = 5.0
# How long a command waits for its bind to come up.
CONNECT_TIMEOUT_S: Final = 10.0
# A text lost on the link is sent this many times in all (with one client reference: the SMSC keeps one copy).
SEND_ATTEMPTS_MAX: Final = 3
# How long a command waits for the network's answer.
REPLY_WAIT_S: Final = 10.0
# Screens of one USSD dialogue; beyond, the network is in a loop.
USSD_SCREENS_MAX: Final = 32
# Messages the network and the card exchange for one menu selection; beyond, they are in a loop.
STK_MESSAGES_MAX: Final = 16
# The SMS short code of the wallet.
SHORT_CODE: Final = "10658000"

# A menu option ("6 修改密码") names a PIN without asking for one; any other line that names one asks.
_OPTION_LINE: Final = re.compile(r"\s*\d+\s")
_PIN_WORDS: Final = re.compile(r"密码|\bPIN\b", re.IGNORECASE)


class PhoneNetError(ProvisioningError):
    """Root of this module's errors: a machine-readable ``code`` and the ``field`` at fault."""

    code = "phone_net_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PhoneNetUsageError(PhoneNetError, ValueError):
    """A plan, mix or argument that cannot be run (local misuse)."""

    code = "phone_usage"


class SmscFailure(PhoneNetError):
    """The SMSC (or the gateway behind it) failed the phone: the remote peer's fault."""

    code = "smsc_failure"


class SmscUnreachable(SmscFailure, ConnectionError):
    """Nothing answers at the SMSC's address, or no bind came up in time, or the link was lost."""

    code = "smsc_unreachable"


class SmscRefused(SmscFailure):
    """The SMSC refused the bind or a message; ``status`` is its command_status name."""

    code = "smsc_refused"

    def __init__(self, message: str, *, status: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status


class NoReply(SmscFailure, TimeoutError):
    """The network did not answer in time."""

    code = "no_reply"


@dataclass(frozen=True, slots=True)
class SmscLogin:
    """Where the SMSC is and the ``phones`` account to bind with."""

    host: str
    port: int
    system_id: str = "phones"
    password: str = field(default="", repr=False)

    def phone(self, msisdn: str) -> PhoneClient:
        """A client carrying the one MSISDN."""
        if not msisdn.isdigit():
            raise PhoneNetUsageError(f"MSISDN {msisdn!r} must be digits (international form, e.g. 8613800138000)", field="msisdn")
        return PhoneClient(self.host, self.port, self.system_id, self.password, re.escape(msisdn))


async def attach(client: C, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> C:
    """Bind ``client`` (module docstring); :class:`SmscUnreachable` or :class:`SmscRefused` when it cannot."""
    where = f"{client.host}:{client.port}"
    try:
        async with asyncio.timeout(min(PROBE_TIMEOUT_S, connect_timeout_s)):
            _, writer = await asyncio.open_connection(client.host, client.port)
    except OSError as exc:  # TimeoutError included
        why = exc.strerror or "no answer"
        raise SmscUnreachable(f"cannot reach the SMSC at {where}: {why} (is `simwallet smsc run` running there?)", field="smsc") from exc
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    try:
        await client.start(timeout_s=connect_timeout_s)
    except SmppRequestError as exc:
        await client.stop()
        raise SmscRefused(
            f"the SMSC at {where} refused the bind ({exc.code}): check --system-id and the password", status=exc.code
        ) from exc
    except SmppLinkError as exc:
        await client.stop()
        raise SmscUnreachable(f"no bind with the SMSC at {where}: {exc}", field="smsc") from exc
    return client


@contextlib.asynccontextmanager
async def attached(client: C, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> AsyncIterator[C]:
    """``client`` bound for the duration of the block, unbound after."""
    await attach(client, connect_timeout_s=connect_timeout_s)
    try:
        yield client
    finally:
        await client.stop()


async def drain(phone: PhoneClient, msisdn: str) -> int:
    """Drop what waits in ``msisdn``'s inbox (it came before anything was sent); how many."""
    dropped = 0
    while phone.unread(msisdn):
        await phone.next_message(msisdn, 0.0)
        dropped += 1
    return dropped


async def next_reply(phone: PhoneClient, msisdn: str, wait_s: float, accept: Callable[[ReceivedMessage], bool]) -> ReceivedMessage:
    """The next message to ``msisdn`` that ``accept`` takes, within ``wait_s`` (others are dropped); else :class:`NoReply`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            message = await phone.next_message(msisdn, max(0.0, deadline - loop.time()))
        except InboxTimeout as exc:
            raise NoReply(f"no answer to {msisdn} within {wait_s:g} s (is the gateway bound to the SMSC?)", field="wait") from exc
        if accept(message):
            return message


def _smpp_failure(exc: SmppLinkError, what: str) -> SmscFailure:
    if isinstance(exc, SmppRequestError):
        return SmscRefused(f"the SMSC refused {what} ({exc.code})", status=exc.code)
    return SmscUnreachable(f"{what} was lost on the link to the SMSC: {exc}", field="smsc")


# --- a text and its reply ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    """A text sent and the reply it got."""

    msisdn: str
    to: str
    message_ids: tuple[str, ...]
    reply: ReceivedMessage
    # Messages that waited in the inbox before the text was sent, dropped.
    dropped: int = 0


async def send_text(phone: PhoneClient, msisdn: str, to: str, text: str, *, reference: str) -> tuple[str, ...]:
    """Send ``text`` with a client reference, again on a lost link (module docstring); the message id of each part."""
    for attempt in range(1, SEND_ATTEMPTS_MAX + 1):
        try:
            return await phone.send_text(msisdn, to, text, reference=reference)
        except SmppRequestError as exc:
            raise _smpp_failure(exc, f"the text from {msisdn}") from exc
        except SmppLinkError as exc:
            if attempt == SEND_ATTEMPTS_MAX:
                raise _smpp_failure(exc, f"the text from {msisdn}") from exc
    raise AssertionError("unreachable")


async def send_and_wait(phone: PhoneClient, msisdn: str, to: str, text: str, *, reference: str, wait_s: float = REPLY_WAIT_S) -> SendResult:
    """Send ``text`` from ``msisdn`` to ``to`` and wait for the reply from ``to`` (:class:`NoReply` after ``wait_s``)."""
    dropped = await drain(phone, msisdn)
    ids = await send_text(phone, msisdn, to, text, reference=reference)

    def from_to(message: ReceivedMessage) -> bool:
        return message.source == to and not message.is_receipt and message.ussd_service_op is None

    reply = await next_reply(phone, msisdn, wait_s, from_to)
    return SendResult(msisdn, to, ids, reply, dropped)


# --- USSD ------------------------------------------------------------------------------------------------------


def asks_for_pin(text: str) -> bool:
    """Whether a USSD screen asks for a PIN (密码/PIN outside the menu options): its answer is typed hidden, never kept."""
    return any(_PIN_WORDS.search(line) for line in text.splitlines() if not _OPTION_LINE.match(line))


@dataclass(frozen=True, slots=True)
class UssdScreen:
    """What the network showed: its text and ``ussd_service_op`` (2 asks for an answer; any other ends the dialogue)."""

    text: str
    op: int

    @property
    def ends(self) -> bool:
        return self.op != UssdServiceOp.USSR_REQUEST

    @property
    def hidden(self) -> bool:
        return not self.ends and asks_for_pin(self.text)


@dataclass(frozen=True, slots=True)
class UssdStep:
    """A screen and what the user answered: ``answer`` is None when hidden (a PIN) or when none was given."""

    screen: UssdScreen
    answered: bool = False
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class UssdResult:
    """A whole dialogue: each screen with its answer (PINs never kept)."""

    msisdn: str
    code: str
    steps: tuple[UssdStep, ...]
    # True when the network ended the dialogue; False when the user left it open (no answer).
    ended: bool


class UssdUser(Protocol):
    """The person at the phone: sees every screen, answers those that ask (None: leave the dialogue)."""

    def show(self, screen: UssdScreen) -> None: ...

    def answer(self, screen: UssdScreen) -> str | None: ...


async def ussd_dialogue(phone: PhoneClient, msisdn: str, code: str, user: UssdUser, *, wait_s: float = REPLY_WAIT_S) -> UssdResult:
    """Dial ``code`` from ``msisdn`` and walk the dialogue with ``user`` (module docstring)."""
    await drain(phone, msisdn)
    answer: str | None = code
    op = UssdServiceOp.PSSR_INDICATION
    steps: list[UssdStep] = []
    for _ in range(USSD_SCREENS_MAX):
        try:
            await phone.send_ussd(msisdn, answer or "", op)
        except SmppLinkError as exc:
            raise _smpp_failure(exc, f"the USSD string from {msisdn}") from exc
        message = await next_reply(phone, msisdn, wait_s, lambda m: m.ussd_service_op is not None)
        screen = UssdScreen(message.text or "", message.ussd_service_op or 0)
        user.show(screen)
        if screen.ends:
            steps.append(UssdStep(screen))
            return UssdResult(msisdn, code, tuple(steps), ended=True)
        answer = await asyncio.to_thread(user.answer, screen)
        steps.append(UssdStep(screen, bool(answer), None if screen.hidden else answer or None))
        if not answer:
            return UssdResult(msisdn, code, tuple(steps), ended=False)
        op = UssdServiceOp.USSR_CONFIRM
    raise SmscFailure(f"the USSD dialogue went on for more than {USSD_SCREENS_MAX} screens", field="code")


# --- the air of a handset with a card ----------------------------------------------------------------------------


class Card(Protocol):
    """What :class:`AirLink` needs of :class:`~simwallet.applet.handset.Handset`: SMS-PP download to the card."""

    def deliver_sms_pp(self, tpdu: bytes) -> bytes | None: ...


def is_sim_download(message: ReceivedMessage) -> bool:
    """A binary message for the card (TP-PID 7F), not one for the person."""
    return message.protocol_id == PROTOCOL_ID_SIM_DATA_DOWNLOAD and message.text is None


class AirLink:
    """The air between a handset driven in the calling thread and the SMSC (module docstring).

    ``sms_out`` is the handset's SEND SHORT MESSAGE callback: it sends at once,
    keeps a failure for :meth:`deliver_answers` (the card's session must not be
    cut in the middle), and counts the answer the network owes.
    :meth:`deliver_answers` waits for those answers and downloads each to the
    card; what the card sends while it handles one is owed an answer too.
    """

    def __init__(
        self,
        login: SmscLogin,
        msisdn: str,
        *,
        clock: Callable[[], datetime],
        wait_s: float = REPLY_WAIT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.msisdn = msisdn
        self._phone = login.phone(msisdn)
        self._clock = clock
        self._wait_s = wait_s
        self._connect_timeout_s = connect_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"air-{msisdn}", daemon=True)
        self._owed = 0
        self._failure: GatewayError | PhoneNetError | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._run(attach(self._phone, connect_timeout_s=self._connect_timeout_s))
            self._run(drain(self._phone, self.msisdn))
        except BaseException:
            self._shut_down()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._run(self._phone.stop())
        finally:
            self._shut_down()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _shut_down(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def sms_out(self, tpdu: bytes) -> str | None:
        """Send the card's SMS-SUBMIT from this MSISDN; the SMSC's message id, or None after a failure."""
        if self._failure is not None:
            return None
        try:
            message_id = self._run(self._phone.submit(submit_sm_for(tpdu, self.msisdn)))
        except SmppLinkError as exc:
            self._failure = _smpp_failure(exc, "the card's SMS")
            return None
        except GatewayError as exc:  # PhoneError: not an SMS-SUBMIT
            self._failure = exc
            return None
        self._owed += 1
        return message_id

    def deliver_answers(self, card: Card, *, on_message: Callable[[ReceivedMessage], None] | None = None) -> tuple[ReceivedMessage, ...]:
        """Download to ``card`` each answer the network owes; every message that came (``on_message`` sees it first).

        :class:`NoReply` when an answer does not come within the wait; a failure kept by :meth:`sms_out` is raised here.
        """
        received: list[ReceivedMessage] = []
        for _ in range(STK_MESSAGES_MAX):
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if not self._owed:
                return tuple(received)
            message = self._run(next_reply(self._phone, self.msisdn, self._wait_s, lambda m: not m.is_receipt))
            received.append(message)
            if on_message is not None:
                on_message(message)
            if is_sim_download(message):
                self._owed -= 1
                card.deliver_sms_pp(sms_deliver_for(message, self._clock().replace(microsecond=0)))
        raise SmscFailure(f"the card and the network exchanged more than {STK_MESSAGES_MAX} messages", field="msisdn")
