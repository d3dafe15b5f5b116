"""Simulated phones attached to the embedded SMSC: one transceiver bind carrying many MSISDNs.

Spec: SMPP 3.4 §4.1.5 (bind_transceiver, §5.2.7 address_range), §4.4.1
(submit_sm), §4.6 (deliver_sm), §5.3.2.44 (ussd_service_op); 3GPP TS 23.040
§9.2.3.24.1 (concatenation), TS 23.038 (GSM 7-bit, UCS2).

Theory of operation. A :class:`PhoneClient` binds to a ``phones`` account with
its MSISDN regular expression as address_range, and keeps the bind up: a
supervisor task rebinds with back-off whenever the connection drops (a
restarted SMSC, a network cut) until :meth:`PhoneClient.stop`. Sending is a
submit_sm per segment (:func:`~simwallet.gateway.sms.segments.encode_reply`:
GSM 7-bit when the text fits the alphabet, else UCS2, concatenated with an
8-bit reference header). Receiving answers every deliver_sm at once with
ESME_ROK and files it in the inbox of the MSISDN it is for; concatenated text
is joined first (:mod:`.inbox`), so :meth:`PhoneClient.next_message` hands out
whole messages.
:class:`Phones` is the same client over a numbered range of MSISDNs, with a
helper that sends from all of them for load generation.

Decisions:

* Receiving is :class:`~.inbox.Inboxes`' business (bounded inboxes, duplicates
  shown once, concatenated text joined); a deliver_sm for an MSISDN this
  client does not carry is refused with ESME_RINVDSTADR.
* A refused password or system_id stops the client (no retry can help); any
  other failure to bind is retried with :func:`~simwallet.gateway.smpp.backoff_s`.
* ``send_from_all`` counts throttled submissions instead of resending them: a
  load generator measures the SMSC's limit, it does not hide it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from simwallet.gateway.smpp import (
    BindTransceiver,
    CommandId,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    ItsSessionInfo,
    OptionalParams,
    Pdu,
    SessionConfig,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    UssdServiceOp,
)
from simwallet.gateway.smpp.aio import SmppConnection, SmppConnectionLost, SmppLinkError, SmppRequestError, bind_with_retry
from simwallet.gateway.smpp.tlv import VENDOR_CLIENT_REFERENCE, text_tlv
from simwallet.gateway.sms.errors import SmsError
from simwallet.gateway.sms.segments import MO_PARTS_MAX, REFERENCE_MAX, encode_reply
from simwallet.gateway.smsc.errors import PhoneError
from simwallet.gateway.smsc.inbox import INBOX_MESSAGES_MAX, INBOXES_MAX, Inboxes, ReceivedMessage

# How long sending waits for the bind to come (back) up.
BIND_WAIT_S = 10.0


class PhoneClient:
    """Simulated phones for the MSISDNs ``msisdns_regex`` matches, over one transceiver bind (module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        msisdns_regex: str,
        *,
        session_config: SessionConfig | None = None,
        inbox_max: int = INBOX_MESSAGES_MAX,
        rng: random.Random | None = None,
    ) -> None:
        try:
            self._pattern = re.compile(msisdns_regex)
        except re.error as exc:
            raise PhoneError(f"{msisdns_regex!r} is not a regular expression: {exc}", field="msisdns_regex") from exc
        self.host, self.port = host, port
        self._bind = BindTransceiver(system_id=system_id, password=password, address_range=msisdns_regex)
        self._session_config = session_config
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (concatenation references, jitter)
        self.inboxes = Inboxes(inbox_max)
        self._connection: SmppConnection | None = None
        self._bound = asyncio.Event()
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.binds = 0

    # Life cycle.

    async def start(self, *, timeout_s: float = BIND_WAIT_S) -> None:
        """Bind (retrying until ``timeout_s``); a refused password or system_id raises at once."""
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        await self._connected(timeout_s)

    async def stop(self) -> None:
        """Unbind and stop reconnecting."""
        self._stop.set()
        if self._connection is not None:
            await self._connection.unbind()
        if self._supervisor is not None:
            await self._supervisor

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    def carries(self, msisdn: str) -> bool:
        return self._pattern.fullmatch(msisdn) is not None

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                connection = await bind_with_retry(
                    self.host,
                    self.port,
                    self._bind,
                    on_request=self._on_request,
                    config=self._session_config,
                    rng=self._rng,
                    stop=self._stop,
                )
            except SmppConnectionLost:
                return
            except SmppLinkError as exc:
                # A refused bind: no retry helps; whoever waits to send hears of it.
                self._failure = exc
                self._bound.set()
                return
            self._connection = connection
            self.binds += 1
            self._bound.set()
            await connection.wait_closed()
            self._bound.clear()
            self._connection = None

    async def _connected(self, timeout_s: float = BIND_WAIT_S) -> SmppConnection:
        try:
            async with asyncio.timeout(timeout_s):
                while self._failure is None and (self._connection is None or self._connection.closed.is_set()):
                    await self._bound.wait()
                    # Bound and closed at once: the supervisor has yet to notice; let it run.
                    await asyncio.sleep(0)
        except TimeoutError as exc:
            raise SmppConnectionLost(f"not bound to {self.host}:{self.port} within {timeout_s} s") from exc
        if self._failure is not None:
            raise self._failure
        assert self._connection is not None
        return self._connection

    # Sending.

    async def submit(self, body: SubmitSm) -> str:
        """Send one submit_sm as it is; the SMSC's message id (SMPP errors raise as they are)."""
        if not self.carries(body.source_addr):
            raise PhoneError(f"{body.source_addr} is not one of the MSISDNs {self._pattern.pattern!r}", field="msisdn")
        connection = await self._connected()
        response = await connection.request(body)
        assert isinstance(response.body, SubmitSmResp)
        return response.body.message_id

    async def send_text(
        self,
        msisdn: str,
        to: str,
        text: str,
        *,
        registered_delivery: int = 0,
        parts_max: int = MO_PARTS_MAX,
        reference: str | None = None,
    ) -> tuple[str, ...]:
        """Send ``text`` from ``msisdn`` to ``to``, segmented; the message id of each part.

        With a ``reference`` (unique per message), each part carries a client reference derived from it, so
        sending the same message again after a lost answer is a duplicate the SMSC does not deliver twice.
        """
        ref = self._rng.randrange(REFERENCE_MAX + 1) if reference is None else hashlib.sha256(reference.encode()).digest()[0]
        try:
            segments = encode_reply(text, ref=ref, parts_max=parts_max)
        except SmsError as exc:
            raise PhoneError(str(exc), field="text") from exc
        ids = []
        for index, segment in enumerate(segments):
            tlvs = OptionalParams() if reference is None else OptionalParams.of(unknown=[_client_reference(reference, index)])
            body = SubmitSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=msisdn,
                destination_addr=to,
                esm_class=segment.esm_class,
                registered_delivery=registered_delivery,
                data_coding=segment.data_coding,
                short_message=segment.short_message,
                tlvs=tlvs,
            )
            ids.append(await self.submit(body))
        return tuple(ids)

    async def send_ussd(
        self,
        msisdn: str,
        text: str,
        op: int = UssdServiceOp.PSSR_INDICATION,
        *,
        to: str | None = None,
        its_session_info: ItsSessionInfo | None = None,
    ) -> str:
        """A USSD string (``*166#``) or answer (``1``) from ``msisdn``, in a submit_sm with ``ussd_service_op``.

        ``to`` defaults to the string itself when it is a dial string (starts
        with ``*`` or ``#``), else to the sender of the last USSD message this
        phone received.
        """
        if to is None:
            to = text if text[:1] in ("*", "#") else self.inboxes.ussd_peer(msisdn)
            if to is None:
                raise PhoneError(f"{msisdn} has no USSD dialogue to answer: give `to`", field="to")
        segments = encode_reply(text, ref=0, parts_max=1) if text else ()
        segment = segments[0] if segments else None
        body = SubmitSm(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=msisdn,
            destination_addr=to,
            data_coding=segment.data_coding if segment else 0,
            short_message=segment.short_message if segment else b"",
            tlvs=OptionalParams.of(ussd_service_op=int(op), its_session_info=its_session_info),
        )
        return await self.submit(body)

    # Receiving.

    async def next_message(self, msisdn: str, timeout_s: float = BIND_WAIT_S) -> ReceivedMessage:
        """The oldest unread message of ``msisdn``, waiting up to ``timeout_s`` (:class:`~.errors.InboxTimeout`)."""
        return await self.inboxes.next(msisdn, timeout_s)

    def unread(self, msisdn: str) -> int:
        return self.inboxes.unread(msisdn)

    def _on_request(self, connection: SmppConnection, pdu: Pdu) -> None:
        body = pdu.body
        if pdu.command_id != CommandId.DELIVER_SM or not isinstance(body, DeliverSm):
            connection.respond(pdu, status=CommandStatus.ESME_RINVCMDID)
        elif not self.carries(body.destination_addr):
            connection.respond(pdu, status=CommandStatus.ESME_RINVDSTADR)
        else:
            connection.respond(pdu, DeliverSmResp())
            self.inboxes.receive(body)


def range_regex(first: str, count: int) -> str:
    """A regular expression matching the ``count`` MSISDNs from ``first`` (and possibly a few more)."""
    last = str(int(first) + count - 1).zfill(len(first))
    if len(last) != len(first):
        raise PhoneError(f"{count} numbers from {first} change the number's length", field="count")
    common = 0
    while common < len(first) and first[common] == last[common]:
        common += 1
    free = len(first) - common
    return first[:common] + (f"[0-9]{{{free}}}" if free else "")


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one round of :meth:`Phones.send_from_all` did."""

    accepted: int
    throttled: int
    failed: int


class Phones(PhoneClient):
    """A pool of ``count`` phones numbered from ``first`` over one bind, for load generation."""

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        *,
        first: str,
        count: int,
        session_config: SessionConfig | None = None,
        inbox_max: int = INBOX_MESSAGES_MAX,
        rng: random.Random | None = None,
    ) -> None:
        if not first.isdigit() or not 1 <= count <= INBOXES_MAX:
            raise PhoneError(f"first {first!r} must be digits and count 1..{INBOXES_MAX}", field="count")
        regex = range_regex(first, count)
        super().__init__(host, port, system_id, password, regex, session_config=session_config, inbox_max=inbox_max, rng=rng)
        self.msisdns: tuple[str, ...] = tuple(str(int(first) + offset).zfill(len(first)) for offset in range(count))

    def __len__(self) -> int:
        return len(self.msisdns)

    async def send_from_all(self, to: str, text: Callable[[str], str] | str, *, concurrency: int = 64) -> LoadResult:
        """One message from every phone of the pool to ``to``, ``concurrency`` at a time; throttled ones are counted, not resent."""
        gate = asyncio.Semaphore(concurrency)
        counts = collections.Counter[str]()

        async def one(msisdn: str) -> None:
            async with gate:
                try:
                    await self.send_text(msisdn, to, text(msisdn) if callable(text) else text)
                    counts["accepted"] += 1
                except SmppRequestError as exc:
                    counts["throttled" if exc.command_status in _THROTTLING else "failed"] += 1
                except SmppLinkError:
                    counts["failed"] += 1

        await asyncio.gather(*(one(msisdn) for msisdn in self.msisdns))
        return LoadResult(counts["accepted"], counts["throttled"], counts["failed"])


def _client_reference(reference: str, part: int) -> Tlv:
    return text_tlv(VENDOR_CLIENT_REFERENCE, f"{reference}#{part}")


_THROTTLING = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
