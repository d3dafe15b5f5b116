"""Load from a pool of simulated phones (``simwallet phone load``, the gateway benchmark): an open-loop schedule and its report.

Spec: as :mod:`simwallet.provisioning.phone_net` (SMPP 3.4 submit_sm and deliver_sm to and from the ``phones`` account).

Theory of operation. :func:`run_load` sends the commands of a :class:`LoadPlan`
from a :class:`~simwallet.gateway.smsc.phone.Phones` pool on an open-loop
schedule (message *i* is due at ``i / rate``, whatever the answers do) and
returns a frozen :class:`LoadReport`. Replies are matched to requests first in,
first out per phone (a reply names no request); latency runs from the time a
message was *due*, so a generator that falls behind shows it as latency (no
coordinated omission); throttled messages are counted, not resent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from simwallet.gateway.smpp.aio import SmppLinkError, SmppThrottled
from simwallet.gateway.smsc.errors import InboxTimeout
from simwallet.gateway.smsc.inbox import INBOXES_MAX, ReceivedMessage
from simwallet.gateway.smsc.phone import Phones
from simwallet.provisioning.phone_net import (
    CONNECT_TIMEOUT_S,
    SHORT_CODE,
    PhoneNetUsageError,
    SmscLogin,
    attached,
    drain,
)

# A load's limits: phones (the inboxes one client keeps), rate, duration, messages in all.
LOAD_USERS_MAX: Final = INBOXES_MAX
LOAD_RATE_MAX_PER_S: Final = 20_000.0
LOAD_DURATION_MAX_S: Final = 3600.0
LOAD_MESSAGES_MAX: Final = 1_000_000
# Sends of a load not yet answered by the SMSC; a message due beyond it is counted as not sent (memory stays bounded).
LOAD_IN_FLIGHT_MAX: Final = 4096
# How long a load waits for the last replies after its last message was due.
LOAD_REPLY_WAIT_S: Final = 10.0
# A load's inbox readers wake this often when nothing arrives (an inbox wait needs an end).
READER_WAKE_S: Final = 30.0

# The commands a load mix may name, as the phone types them ({payee}: the next phone of the pool).
LOAD_COMMANDS: Final[Mapping[str, str]] = {
    "BAL": "BAL {pin}",
    "TOPUP": "TOPUP 1 {pin}",
    "PAY": "PAY {payee} 0.01 {pin}",
    "HIST": "HIST {pin}",
}


# --- load ------------------------------------------------------------------------------------------------------


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """``"BAL:60,TOPUP:20"`` → ``(("BAL", 60), ("TOPUP", 20))``; a command without weight weighs 1."""
    mix: dict[str, int] = {}
    for entry in text.split(","):
        name, _, weight = entry.strip().partition(":")
        name = name.strip().upper()
        if name not in LOAD_COMMANDS:
            raise PhoneNetUsageError(f"{name or entry!r} is not one of {', '.join(LOAD_COMMANDS)}", field="mix")
        if name in mix:
            raise PhoneNetUsageError(f"{name} is named twice", field="mix")
        weight = weight.strip() or "1"
        if not weight.isdigit() or int(weight) < 1:
            raise PhoneNetUsageError(f"{name}: the weight {weight!r} is not a whole number above 0", field="mix")
        mix[name] = int(weight)
    return tuple(mix.items())


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """``users`` phones numbered from ``first`` send ``rate_per_s`` messages a second in all for ``duration_s``."""

    first: str
    users: int
    rate_per_s: float
    duration_s: float
    pin: str = field(repr=False)
    mix: tuple[tuple[str, int], ...] = (("BAL", 1),)
    to: str = SHORT_CODE
    reply_wait_s: float = LOAD_REPLY_WAIT_S

    def __post_init__(self) -> None:
        checks = (
            (self.first.isdigit(), "first", f"{self.first!r} is not an MSISDN (digits)"),
            (1 <= self.users <= LOAD_USERS_MAX, "users", f"{self.users} outside 1..{LOAD_USERS_MAX}"),
            (0 < self.rate_per_s <= LOAD_RATE_MAX_PER_S, "rate", f"{self.rate_per_s:g}/s outside (0, {LOAD_RATE_MAX_PER_S:g}]"),
            (0 < self.duration_s <= LOAD_DURATION_MAX_S, "duration", f"{self.duration_s:g} s outside (0, {LOAD_DURATION_MAX_S:g}]"),
            (self.rate_per_s * self.duration_s <= LOAD_MESSAGES_MAX, "rate", f"more than {LOAD_MESSAGES_MAX} messages"),
            (bool(self.mix) and all(name in LOAD_COMMANDS and weight > 0 for name, weight in self.mix), "mix", "not a mix"),
            (self.reply_wait_s >= 0, "reply_wait", "negative"),
        )
        for ok, name, problem in checks:
            if not ok:
                raise PhoneNetUsageError(f"{name}: {problem}", field=name)

    @property
    def messages(self) -> int:
        """Messages in all: rate × duration (at least one)."""
        return max(1, math.floor(self.rate_per_s * self.duration_s + 1e-9))


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``ordered`` (sorted, not empty)."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Latency:
    """MO → reply latency of the messages answered, in seconds."""

    count: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    mean_s: float

    @classmethod
    def of(cls, samples: list[float]) -> Latency | None:
        if not samples:
            return None
        ordered = sorted(samples)
        p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
        return cls(len(ordered), p50, p90, p99, ordered[-1], sum(ordered) / len(ordered))


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load did: every message due is accepted, throttled, failed or not sent; accepted ones are answered or lost."""

    planned: int
    accepted: int
    throttled: int
    failed: int
    not_sent: int
    replies: int
    # Messages that came to the pool with no request waiting for them (late replies of an earlier run, notices).
    unmatched: int
    # Seconds from the first message due to the last one, and to the end of the wait for replies.
    send_window_s: float
    elapsed_s: float
    latency: Latency | None
    # Messages due per command of the mix.
    by_command: tuple[tuple[str, int], ...]

    @property
    def lost(self) -> int:
        """Accepted messages whose reply did not come within the wait."""
        return self.accepted - self.replies


@dataclass(slots=True)
class _Request:
    """One message of a load: when it was due, and how far it got."""

    due: float
    state: Literal["sending", "accepted", "failed", "answered"] = "sending"


class _Tally:
    """The counters of one load, and the requests each phone has waiting for a reply."""

    def __init__(self, phones: Phones, to: str) -> None:
        self.phones, self.to = phones, to
        self.waiting: dict[str, collections.deque[_Request]] = collections.defaultdict(collections.deque)
        self.counts = collections.Counter[str]()
        self.latencies: list[float] = []
        self.open = 0
        self.settled = asyncio.Event()

    async def send(self, msisdn: str, text: str, reference: str, request: _Request) -> None:
        try:
            await self.phones.send_text(msisdn, self.to, text, reference=reference)
        except SmppThrottled:
            self._failed(request, "throttled")
        except SmppLinkError:
            self._failed(request, "failed")
        else:
            self.counts["accepted"] += 1
            if request.state == "sending":
                request.state = "accepted"

    def expect(self, msisdn: str, due: float) -> _Request:
        request = _Request(due)
        self.waiting[msisdn].append(request)
        self.open += 1
        self.settled.clear()
        return request

    def _failed(self, request: _Request, outcome: str) -> None:
        self.counts[outcome] += 1
        if request.state == "sending":
            request.state = "failed"
            self._close()

    def _close(self) -> None:
        self.open -= 1
        if not self.open:
            self.settled.set()

    def received(self, message: ReceivedMessage, now: float) -> None:
        queue = self.waiting.get(message.msisdn)
        while queue and queue[0].state == "failed":
            queue.popleft()
        if not queue or message.source != self.to or message.is_receipt or message.ussd_service_op is not None:
            self.counts["unmatched"] += 1
            return
        request = queue.popleft()
        request.state = "answered"
        self.counts["replies"] += 1
        self.latencies.append(now - request.due)
        self._close()

    async def read(self, msisdn: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(InboxTimeout):
                self.received(await self.phones.next_message(msisdn, READER_WAKE_S), loop.time())


async def run_load(phones: Phones, plan: LoadPlan, *, rng: random.Random) -> LoadReport:
    """Run ``plan`` from the first ``plan.users`` phones of the bound pool ``phones`` (module docstring)."""
    if len(phones) < plan.users or phones.msisdns[0] != plan.first:
        raise PhoneNetUsageError(f"the pool holds {len(phones)} phones from {phones.msisdns[0]}, not {plan.users} from {plan.first}")
    loop = asyncio.get_running_loop()
    msisdns = phones.msisdns[: plan.users]
    for msisdn in msisdns:
        await drain(phones, msisdn)
    run = f"{rng.getrandbits(40):010x}"
    names, weights = [name for name, _ in plan.mix], [weight for _, weight in plan.mix]
    tally = _Tally(phones, plan.to)
    tally.settled.set()
    by_command = collections.Counter[str]()
    readers = [loop.create_task(tally.read(msisdn)) for msisdn in msisdns]
    sends: set[asyncio.Task[None]] = set()
    start = loop.time()
    try:
        for index in range(plan.messages):
            due = start + index / plan.rate_per_s
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            msisdn, payee = msisdns[index % plan.users], msisdns[(index + 1) % plan.users]
            name = rng.choices(names, weights)[0]
            by_command[name] += 1
            if len(sends) >= LOAD_IN_FLIGHT_MAX:
                tally.counts["not_sent"] += 1
                continue
            text = LOAD_COMMANDS[name].format(pin=plan.pin, payee=payee)
            task = loop.create_task(tally.send(msisdn, text, f"load:{run}:{index}", tally.expect(msisdn, due)))
            sends.add(task)
            task.add_done_callback(sends.discard)
        if sends:
            await asyncio.gather(*sends)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(plan.reply_wait_s):
                await tally.settled.wait()
    finally:
        for task in (*readers, *sends):
            task.cancel()
        await asyncio.gather(*readers, *sends, return_exceptions=True)
    counts = tally.counts
    return LoadReport(
        planned=plan.messages,
        accepted=counts["accepted"],
        throttled=counts["throttled"],
        failed=counts["failed"],
        not_sent=counts["not_sent"],
        replies=counts["replies"],
        unmatched=counts["unmatched"],
        send_window_s=(plan.messages - 1) / plan.rate_per_s,
        elapsed_s=loop.time() - start,
        latency=Latency.of(tally.latencies),
        by_command=tuple(sorted(by_command.items())),
    )


async def load(login: SmscLogin, plan: LoadPlan, *, rng: random.Random, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> LoadReport:
    """Bind a pool for ``plan`` with ``login``, run it, unbind."""
    pool = Phones(login.host, login.port, login.system_id, login.password, first=plan.first, count=plan.users, rng=rng)
    async with attached(pool, connect_timeout_s=connect_timeout_s):
        return await run_load(pool, plan, rng=rng)
