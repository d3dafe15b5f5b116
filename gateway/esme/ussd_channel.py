"""The USSD menu channel, sans I/O: deliver_sm with ``ussd_service_op`` in, menus and service requests out.

Spec: SMPP 3.4 §5.3.2.44 (``ussd_service_op``: 0 PSSD indication, 1 PSSR
indication, 2 USSR request, 3 USSN request, 16 PSSD response, 17 PSSR
response, 18 USSR confirm, 19 USSN confirm); 3GPP TS 24.090 (a mobile-initiated
dialogue: opened by the dialled string, any number of USSR request/confirm
exchanges inside it, closed by the PSSR response); the dialogue of
:mod:`.ussd_menus`; the commands of :mod:`simwallet.gateway.sms.commands`,
which SMS and USSD share.

Theory of operation
-------------------
A subscriber dials ``*166#``: the SMSC delivers a PSSR indication (op 1).
:meth:`UssdChannel.receive` opens a session for the number and answers with the
main menu in a USSR request (op 2: the dialogue goes on). Each answer comes as
a USSR confirm (op 18) and goes to the session's :class:`~.ussd_menus.Dialogue`,
which checks it at once: the next prompt (op 2); the same prompt after a
one-line error (``retries_max`` times at one step, then the dialogue ends);
or, with every input in and the PIN last, a :class:`UssdServe` carrying the
:class:`ServiceRequest`. :meth:`UssdChannel.complete` renders the service's
answer as the PSSR response (op 17) that ends the dialogue.

The operation selects the handler (:data:`_OPS`: the state table of
operations); an answer goes to the handler of the dialogue's step. Any other
operation ends the dialogue with a clear text (PSSD, phase 1 USSD, with a
PSSD response). Every step names the deliver_sm tokens to answer once its text
is placed (submit_sm accepted), so nothing is acknowledged before it is acted on:

* :class:`UssdReply` — send ``text`` with ``op`` from ``service_code`` to
  ``msisdn``, then answer ``tokens``; ``end`` when it closes the dialogue. An
  empty ``text`` means: send nothing, only answer the tokens.
* :class:`UssdServe` — have ``request`` served, then call
  :meth:`~UssdChannel.complete` with ``session`` and the reply, and act on the
  :class:`UssdReply` it gives, which answers the tokens (``UssdServe.tokens``
  are the same, for information). A request that cannot be served (queue full,
  service failure) is completed with
  :func:`~simwallet.gateway.wallet.outcomes.unavailable`.
* :class:`UssdHold` — a copy of the answer being served: keep the token;
  the reply of :meth:`~UssdChannel.complete` answers it.

Copies and idempotency. An SMSC delivers a deliver_sm again when its answer was
lost. The one a session processed last (same ``smsc_id``) gets its reply again
and the state does not move; an older one is answered with nothing sent; a
copy of the final answer while it is served is held (up to
:data:`HELD_TOKENS_MAX`), and after it gets the final text again. The request key is ``ussd:<msisdn>:<smsc_id of the final answer>``,
so a copy that reaches the service anyway meets the stored reply. The driver
must give each MO message its own ``smsc_id`` (the SMSC's message id): a digest
of the text alone makes two equal answers in a row ("2", then "2") look like
one message delivered twice.

Ending. A session ends with its final reply; by a new PSSR indication from the
same number (a phone has one dialogue at a time); after ``timeout_s`` without
an answer (:meth:`~UssdChannel.expire` reports it, with its held tokens and a
"session timed out" text); or when ``sessions_max`` are open and a new one
needs room (the least recently active is evicted and reported). An ended
session leaves a tombstone for ``timeout_s``: its copies get the final reply,
and the next answer from the number is told the session timed out (or ended)
and to dial again. An answer from a number with neither is told so in both
languages. A reply that comes after its session ended is sent as a USSN
request (op 3), a notice outside any dialogue.

Dialled strings (decisions, :data:`SHORTCUTS`): ``*166#`` the menu in Chinese;
``*166*1#`` the balance (straight to the PIN); ``*166*2#`` the menu in
English; ``*166*2*1#`` the balance in English. Other strings under the service
code get the menu; others end with "unknown code". A PIN in a dialled string is
never read (dialled strings stay in call logs).

PINs. An answer holding a PIN stays in the session only as long as the command
needs it (a PIN change's old and new PIN, across two steps); the references are
dropped when the request is built. No reply, ``repr`` or error shows an answer.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from simwallet.gateway.esme import ussd_menus as menus
from simwallet.gateway.esme.sms_channel import normalize_address
from simwallet.gateway.esme.ussd_menus import Dialogue, Refusal, Say, Step, UssdUsageError, fit_ussd, say, say_both
from simwallet.gateway.ledger.model import Channel
from simwallet.gateway.smpp.tlv import UssdServiceOp
from simwallet.gateway.sms.catalogue import Lang, render
from simwallet.gateway.sms.commands import CommandKind
from simwallet.gateway.wallet.outcomes import MSISDN_RE, REQUEST_KEY_LEN_MAX, ServiceReply, ServiceRequest

# A dialogue idles while the subscriber reads and types; networks drop theirs after one to a few minutes.
USSD_SESSION_TIMEOUT_S: Final = 120.0
# Open sessions at most (about 1 kB each): far above the dialogues one gateway process holds at once.
USSD_SESSIONS_MAX: Final = 100_000
# Wrong answers re-prompted at one step; the next wrong one ends the dialogue.
INPUT_RETRIES_MAX: Final = 2
# Answers one dialogue may take (back to the menu again and again); then it ends.
SESSION_ANSWERS_MAX: Final = 50
# SMSC ids a session remembers, so that a late copy of an earlier answer is not read as a new one.
SEEN_IDS_MAX: Final = 32
# Copies of a final answer held while it is served; more are answered with nothing sent (an SMSC repeating itself).
HELD_TOKENS_MAX: Final = 16
# Reports of ended sessions waiting for expire() at most (more are counted in reports_lost).
REPORTS_MAX: Final = 10_000
# A service code: * or #, up to 8 digits, #.
SERVICE_CODE_CHARS_MAX: Final = 10
DEFAULT_SERVICE_CODE: Final = "*166#"
#: What may follow ``*<code>*`` in a dialled string: the language, and the command to go to (None: the menu).
SHORTCUTS: Mapping[str, tuple[Lang, CommandKind | None]] = {
    "1": (Lang.ZH, CommandKind.BALANCE),
    "2": (Lang.EN, None),
    "2*1": (Lang.EN, CommandKind.BALANCE),
}


class EndReason(enum.StrEnum):
    """Why a session ended."""

    COMPLETED = "completed"  # its final reply was given (the service's answer, or the channel's last word)
    TIMEOUT = "timeout"
    EVICTED = "evicted"


@dataclass(frozen=True, slots=True)
class UssdInbound:
    """One deliver_sm carrying USSD, as the channel reads it; ``token`` is the driver's handle for answering it."""

    token: Hashable
    smsc_id: str
    msisdn: str  # source_addr
    service_code: str  # destination_addr: the dialled string of a PSSR indication, the code answered otherwise
    op: int  # ussd_service_op
    text: str = field(repr=False)  # the decoded short_message: may be a PIN


@dataclass(frozen=True, slots=True)
class UssdReply:
    """Send ``text`` with ``op`` (nothing if empty), then answer ``tokens``; ``end`` when the dialogue is over."""

    msisdn: str
    op: UssdServiceOp
    text: str
    tokens: tuple[Hashable, ...]
    end: bool
    service_code: str = DEFAULT_SERVICE_CODE  # the submit_sm's source_addr


@dataclass(frozen=True, slots=True)
class SessionRef:
    """The session of a :class:`UssdServe`, for :meth:`UssdChannel.complete`."""

    msisdn: str
    serial: int


@dataclass(frozen=True, slots=True)
class UssdServe:
    """Have ``request`` served, then pass the reply to :meth:`UssdChannel.complete` with ``session``."""

    request: ServiceRequest
    msisdn: str
    tokens: tuple[Hashable, ...]
    session: SessionRef
    service_code: str = DEFAULT_SERVICE_CODE


@dataclass(frozen=True, slots=True)
class UssdHold:
    """Keep the deliver_sm unanswered: a copy of the answer being served, answered with its reply."""


@dataclass(frozen=True, slots=True)
class UssdEnded:
    """A session ended without a last word: ``reply`` says so (send it if the dialogue may be open) and answers its tokens."""

    msisdn: str
    reason: EndReason
    reply: UssdReply


UssdStep = UssdReply | UssdServe | UssdHold


@dataclass(slots=True)
class _Session:
    msisdn: str
    serial: int
    service_code: str
    dialogue: Dialogue
    touched: float
    serving: bool = False
    errors: int = 0  # wrong answers at the current step
    answers: int = 0
    last_smsc_id: str = ""
    last_reply: UssdReply | None = None  # without tokens; None while serving
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_IDS_MAX))
    held: list[Hashable] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Ended:
    """What is left of an ended session: enough to answer its copies and the answers that come too late."""

    serial: int
    reason: EndReason
    lang: Lang
    ended: float
    last_smsc_id: str
    seen: frozenset[str]
    final: UssdReply | None  # without tokens


def request_key(msisdn: str, smsc_id: str) -> str:
    """``ussd:<msisdn>:<smsc_id>``; a digest of the id stands in for one a request key cannot hold."""
    key = f"ussd:{msisdn}:{smsc_id}"
    if len(key) <= REQUEST_KEY_LEN_MAX and key.isprintable() and "#" not in key:
        return key
    return f"ussd:{msisdn}:h" + hashlib.sha256(smsc_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class UssdChannel:
    """The USSD dialogues of one gateway process, bounded in sessions, time and answers (see the module docstring)."""

    def __init__(
        self,
        service_code: str = DEFAULT_SERVICE_CODE,
        timeout_s: float = USSD_SESSION_TIMEOUT_S,
        sessions_max: int = USSD_SESSIONS_MAX,
        *,
        retries_max: int = INPUT_RETRIES_MAX,
    ) -> None:
        digits = service_code[1:-1]
        if not (service_code[:1] in ("*", "#") and service_code.endswith("#") and digits.isascii() and digits.isdecimal()):
            raise UssdUsageError("service code must be * or #, digits and #")
        if len(service_code) > SERVICE_CODE_CHARS_MAX or timeout_s <= 0 or sessions_max < 1 or retries_max < 0:
            raise UssdUsageError(f"bad bounds: service code of {len(service_code)} characters, timeout_s {timeout_s}, "
                                 f"sessions_max {sessions_max}, retries_max {retries_max}")  # fmt: skip
        self.service_code = service_code
        self.timeout_s = timeout_s
        self.sessions_max = sessions_max
        self.retries_max = retries_max
        self._base = service_code[:-1]  # "*166": its dialled strings are "*166#" and "*166*…#"
        # Insertion order is activity order: a session moves to the end when it takes an answer.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._ended: OrderedDict[str, _Ended] = OrderedDict()
        self._reports: deque[UssdEnded] = deque()
        self._serial = 0
        self._now = 0.0  # the latest clock reading seen (complete() takes none)
        #: Reports of ended sessions discarded because nobody called expire() for too long.
        self.reports_lost = 0

    @property
    def sessions(self) -> int:
        """Open sessions now."""
        return len(self._sessions)

    @property
    def held(self) -> int:
        """deliver_sm held unanswered now (copies of answers being served)."""
        return sum(len(s.held) for s in self._sessions.values())

    # -- receiving ------------------------------------------------------------------------------------

    def receive(self, inbound: UssdInbound, now: float) -> UssdStep:
        """What to do with one USSD deliver_sm; ``now`` is a monotonic clock in seconds."""
        if not inbound.smsc_id:
            raise UssdUsageError("a USSD message needs the SMSC's id (smsc_id) to be told from its copies")
        self._now = max(self._now, now)
        self._expire(now)
        msisdn = normalize_address(inbound.msisdn)
        if msisdn is None or MSISDN_RE.fullmatch(msisdn) is None:
            # Nobody to answer: acknowledge and drop.
            return UssdReply("", UssdServiceOp.PSSR_RESPONSE, "", (inbound.token,), True, self.service_code)
        copy = self._copy(msisdn, inbound)
        if copy is not None:
            return copy
        try:
            op = UssdServiceOp(inbound.op)
        except ValueError:
            return self._unsupported(msisdn, inbound, now)
        return _OPS.get(op, UssdChannel._unsupported)(self, msisdn, inbound, now)

    def _copy(self, msisdn: str, inbound: UssdInbound) -> UssdStep | None:
        """The step for a copy of a message already processed (None: not a copy)."""
        s = self._sessions.get(msisdn)
        tomb = self._ended.get(msisdn) if s is None else None
        seen: Collection[str]
        if s is not None:
            last_id, seen, again = s.last_smsc_id, s.seen, s.last_reply
        elif tomb is not None:
            last_id, seen, again = tomb.last_smsc_id, tomb.seen, tomb.final
        else:
            return None
        if inbound.smsc_id == last_id:
            if again is not None:
                return replace(again, tokens=(inbound.token,))
            if s is not None and s.serving and len(s.held) < HELD_TOKENS_MAX:  # the final answer, being served
                s.held.append(inbound.token)
                return UssdHold()
        elif inbound.smsc_id not in seen:
            return None
        return self._ack(msisdn, inbound, self.service_code)

    def _start(self, msisdn: str, inbound: UssdInbound, now: float) -> UssdReply:
        """A PSSR indication: a new dialogue, replacing any open one of the number (its held tokens are answered)."""
        old = self._sessions.pop(msisdn, None)
        held = tuple(old.held) if old is not None else ()
        self._ended.pop(msisdn, None)
        dialled = ("".join(inbound.text.split()) or inbound.service_code).rstrip("#") + "#"  # some SMSCs drop the final #
        shortcut = self._shortcut(dialled)
        if shortcut is None:
            text = say_both(Say.UNKNOWN_CODE, code=self.service_code)
            return UssdReply(msisdn, UssdServiceOp.PSSR_RESPONSE, text, (*held, inbound.token), True, self.service_code)
        lang, flow = shortcut
        self._make_room(now)
        self._serial += 1
        s = self._sessions[msisdn] = _Session(msisdn, self._serial, self.service_code, Dialogue(lang), now)
        s.dialogue.start(flow)
        return replace(self._prompt(s, inbound, menus.prompt(s.dialogue)), tokens=(*held, inbound.token))

    def _answer(self, msisdn: str, inbound: UssdInbound, now: float) -> UssdStep:
        """A USSR confirm: the subscriber's answer to the prompt of the session's step."""
        s = self._sessions.get(msisdn)
        if s is None:
            return self._no_session(msisdn, inbound)
        if s.serving:
            # The phone waits for our reply and sends nothing: a stray message of the peer, not read.
            return self._ack(msisdn, inbound, s.service_code)
        s.touched = now
        self._sessions.move_to_end(msisdn)
        s.answers += 1
        if s.answers > SESSION_ANSWERS_MAX:
            return self._finish(s, inbound, say(Say.ENDED, s.dialogue.lang, code=self.service_code), now)
        d, answer = s.dialogue, menus.normalise_answer(inbound.text)
        result = Step.MENU if answer == menus.BACK and d.step is not Step.MENU else menus.read_answer(d, answer)
        if isinstance(result, Step):
            if result is Step.MENU:
                d.start(None)  # back to the menu, or the language switched: forget the flow
            d.step, s.errors = result, 0
            return self._prompt(s, inbound, menus.prompt(d))
        if isinstance(result, Refusal):
            return self._refused(s, inbound, result, now)
        key = request_key(msisdn, inbound.smsc_id)
        request = ServiceRequest(key=key, channel=Channel.USSD, msisdn=msisdn, command=result, lang=d.lang)
        d.forget_pins()  # the PINs live in the request now, and only there
        s.serving, s.held = True, [inbound.token]
        self._remember(s, inbound.smsc_id, None)
        return UssdServe(request, msisdn, (inbound.token,), SessionRef(msisdn, s.serial), s.service_code)

    def _refused(self, s: _Session, inbound: UssdInbound, refusal: Refusal, now: float) -> UssdReply:
        """The same prompt again after the error line, or the end after too many wrong answers at one step."""
        s.errors += 1
        d = s.dialogue
        if s.errors > self.retries_max:
            return self._finish(s, inbound, say(Say.TOO_MANY_ERRORS, d.lang, code=self.service_code), now)
        d.step = refusal.back_to or d.step
        return self._prompt(s, inbound, refusal.error + "\n" + menus.prompt(d))

    def _confirmed(self, msisdn: str, inbound: UssdInbound, now: float) -> UssdReply:
        """USSN confirm (op 19): the phone saw a notice of ours. Nothing to say; a session, if any, is unchanged."""
        s = self._sessions.get(msisdn)
        return self._ack(msisdn, inbound, s.service_code if s is not None else self.service_code)

    def _unsupported(self, msisdn: str, inbound: UssdInbound, now: float) -> UssdReply:
        """An operation no subscriber's dialogue sends here: end it with a clear text."""
        op = UssdServiceOp.PSSD_RESPONSE if inbound.op == UssdServiceOp.PSSD_INDICATION else UssdServiceOp.PSSR_RESPONSE
        s = self._sessions.get(msisdn)
        if s is None:
            return UssdReply(msisdn, op, say_both(Say.UNSUPPORTED, code=self.service_code), (inbound.token,), True, self.service_code)
        return replace(self._finish(s, inbound, say(Say.UNSUPPORTED, s.dialogue.lang, code=self.service_code), now), op=op)

    def _no_session(self, msisdn: str, inbound: UssdInbound) -> UssdReply:
        tomb, code = self._ended.get(msisdn), self.service_code
        if tomb is None:
            text = say_both(Say.ENDED, code=code)
        else:
            text = say(Say.TIMED_OUT if tomb.reason is EndReason.TIMEOUT else Say.ENDED, tomb.lang, code=code)
        return UssdReply(msisdn, UssdServiceOp.PSSR_RESPONSE, text, (inbound.token,), True, code)

    # -- replying ------------------------------------------------------------------------------------------

    def _ack(self, msisdn: str, inbound: UssdInbound, service_code: str) -> UssdReply:
        """Answer the deliver_sm and send nothing."""
        return UssdReply(msisdn, UssdServiceOp.USSR_REQUEST, "", (inbound.token,), False, service_code)

    def _prompt(self, s: _Session, inbound: UssdInbound, text: str) -> UssdReply:
        reply = UssdReply(s.msisdn, UssdServiceOp.USSR_REQUEST, fit_ussd(text), (inbound.token,), False, s.service_code)
        self._remember(s, inbound.smsc_id, reply)
        return reply

    def _remember(self, s: _Session, smsc_id: str, reply: UssdReply | None) -> None:
        if s.last_smsc_id:
            s.seen.append(s.last_smsc_id)
        s.last_smsc_id = smsc_id
        s.last_reply = replace(reply, tokens=()) if reply is not None else None

    def _finish(self, s: _Session, inbound: UssdInbound, text: str, now: float) -> UssdReply:
        """End the session with ``text`` as its last word (op 17)."""
        tokens = (*s.held, inbound.token)
        self._remember(s, inbound.smsc_id, UssdReply(s.msisdn, UssdServiceOp.PSSR_RESPONSE, fit_ussd(text), (), True, s.service_code))
        final = self._bury(s, EndReason.COMPLETED, now)
        assert final is not None
        return replace(final, tokens=tokens)

    def complete(self, session: SessionRef, reply: ServiceReply) -> UssdReply:
        """The service's ``reply`` to the request of ``session``: the PSSR response (op 17) that ends the dialogue.

        It answers the tokens of the request and of its copies held since. A
        session that ended meanwhile (timed out, evicted, replaced by a new
        dialogue) has no dialogue left: the text comes as a USSN request (op 3,
        a notice) with no tokens (they were answered when it ended). Completing
        a session a second time gives an empty text.
        """
        if not isinstance(session, SessionRef) or not isinstance(reply, ServiceReply):
            raise UssdUsageError("complete() takes the SessionRef of a UssdServe and the service's ServiceReply")
        s = self._sessions.get(session.msisdn)
        if s is not None and s.serial == session.serial and s.serving:
            text = fit_ussd(render(reply.message_id, s.dialogue.lang, **reply.params))
            s.last_reply = UssdReply(s.msisdn, UssdServiceOp.PSSR_RESPONSE, text, (), True, s.service_code)
            tokens = tuple(s.held)
            final = self._bury(s, EndReason.COMPLETED, self._now)
            assert final is not None
            return replace(final, tokens=tokens)
        tomb = self._ended.get(session.msisdn)
        if tomb is not None and tomb.serial == session.serial and tomb.reason is EndReason.COMPLETED:
            return UssdReply(session.msisdn, UssdServiceOp.PSSR_RESPONSE, "", (), True, self.service_code)
        text = fit_ussd(render(reply.message_id, reply.lang, **reply.params))
        return UssdReply(session.msisdn, UssdServiceOp.USSN_REQUEST, text, (), True, self.service_code)

    # -- ending -----------------------------------------------------------------------------------------------

    def _bury(self, s: _Session, reason: EndReason, now: float) -> UssdReply | None:
        """Close ``s`` and leave its tombstone; the final reply it keeps (COMPLETED only)."""
        self._sessions.pop(s.msisdn, None)
        s.dialogue.forget_pins()
        final = s.last_reply if reason is EndReason.COMPLETED else None
        self._ended.pop(s.msisdn, None)
        self._ended[s.msisdn] = _Ended(s.serial, reason, s.dialogue.lang, now, s.last_smsc_id, frozenset(s.seen), final)
        while len(self._ended) > self.sessions_max:
            self._ended.popitem(last=False)
        return final

    def _report(self, s: _Session, reason: EndReason, now: float) -> None:
        """End ``s`` without a last word and report it, with its held tokens, to expire()."""
        text = say(Say.TIMED_OUT if reason is EndReason.TIMEOUT else Say.ENDED, s.dialogue.lang, code=self.service_code)
        reply = UssdReply(s.msisdn, UssdServiceOp.PSSR_RESPONSE, text, tuple(s.held), True, s.service_code)
        self._bury(s, reason, now)
        if len(self._reports) >= REPORTS_MAX:
            self._reports.popleft()
            self.reports_lost += 1
        self._reports.append(UssdEnded(s.msisdn, reason, reply))

    def _make_room(self, now: float) -> None:
        while len(self._sessions) >= self.sessions_max:
            self._report(next(iter(self._sessions.values())), EndReason.EVICTED, now)

    def expire(self, now: float) -> list[UssdEnded]:
        """End the sessions idle for ``timeout_s``; report every session ended without a last word since the last call."""
        self._now = max(self._now, now)
        self._expire(now)
        out = list(self._reports)
        self._reports.clear()
        return out

    def _expire(self, now: float) -> None:
        deadline = now - self.timeout_s
        while self._sessions:
            s = next(iter(self._sessions.values()))
            if s.touched > deadline:
                break
            self._report(s, EndReason.TIMEOUT, now)
        while self._ended and next(iter(self._ended.values())).ended <= deadline:
            self._ended.popitem(last=False)

    def _shortcut(self, dialled: str) -> tuple[Lang, CommandKind | None] | None:
        """(language, command) of a dialled string under the service code; None for one outside it."""
        if dialled == self.service_code:
            return Lang.ZH, None
        if not dialled.startswith(self._base + "*"):
            return None
        return SHORTCUTS.get(dialled[len(self._base) + 1 : -1], (Lang.ZH, None))


# The state table of operations (SMPP 3.4 §5.3.2.44): what each ussd_service_op from a phone does; any other ends.
_OPS: Mapping[UssdServiceOp, Callable[[UssdChannel, str, UssdInbound, float], UssdStep]] = {
    UssdServiceOp.PSSR_INDICATION: UssdChannel._start,
    UssdServiceOp.USSR_CONFIRM: UssdChannel._answer,
    UssdServiceOp.USSN_CONFIRM: UssdChannel._confirmed,
}
