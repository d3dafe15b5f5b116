"""The SMSC killed in the middle of a load and started again: every MO gets exactly one reply and causes exactly one posting.

The SMSC runs as its own process (``simwallet smsc run``) so that SIGKILL
takes it down as a power cut would take an SMSC's front end; the gateway and
the phones (in this process) reconnect by themselves. Phones give each
message a client reference, so one sent again after a lost answer is not a
second message; the gateway does the same for its replies. The database is
real (SQLite and the throwaway PostgreSQL).
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import sys
from pathlib import Path

from gateway_helpers import fund, register
from test_gateway_sms import PIN_A, SHORT_CODE, World, world  # noqa: F401 (the fixture)

from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.esme.app import Gateway, GatewayConfig
from simwallet.gateway.smpp.aio import SmppLinkError
from simwallet.gateway.smsc.phone import Phones

PHONES = 20
MESSAGES_EACH = 3
FIRST = 8613800140000
DEADLINE_S = 60.0


async def start_smsc(state_dir: Path, port: int = 0) -> tuple[asyncio.subprocess.Process, int]:
    code = "from simwallet.provisioning.cli import main; main()"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "smsc", "run", "--port", str(port), "--state-dir", str(state_dir), "--redeliver-after", "2",
        f"--account=gateway:gwsecret:esme:{SHORT_CODE}", "--account=phones:phsecret:phones",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 20.0)).decode()
    match = re.fullmatch(r"smsc listening on 127\.0\.0\.1:(\d+)\n", line)
    assert match, line
    return process, int(match.group(1))


def customers(world: World) -> list[str]:  # noqa: F811 (the fixture's value)
    registry = CardRegistry(world.engine, world.ledger)
    numbers = []
    for n in range(PHONES):
        msisdn = str(FIRST + n)
        register(registry, f"8986001234567892{n:03d}", f"460001234569{n:03d}", msisdn, f"customer:R{n}")
        fund(world.ledger, f"fund-r{n}", f"customer:R{n}", 10_000)
        world.service.set_pin(msisdn, PIN_A)
        numbers.append(msisdn)
    return numbers


def test_a_killed_smsc_costs_no_reply_and_no_posting_twice(world: World, tmp_path: Path) -> None:  # noqa: F811
    numbers = customers(world)

    async def send_until_taken(phones: Phones, msisdn: str, k: int) -> None:
        while True:
            try:
                await phones.send_text(msisdn, SHORT_CODE, f"TOPUP 1 {PIN_A}", reference=f"{msisdn}-{k}")
                return
            except SmppLinkError:
                await asyncio.sleep(0.2)  # the SMSC is down or just back: the same message again, by its reference

    async def scenario() -> dict[str, list[str]]:
        state = tmp_path / "smsc"
        process, port = await start_smsc(state)
        stop = asyncio.Event()
        gateway = Gateway(GatewayConfig(port=port, system_id="gateway", password="gwsecret"), world.service)
        task = asyncio.create_task(gateway.run(stop))
        phones = Phones("127.0.0.1", port, "phones", "phsecret", first=str(FIRST), count=PHONES)
        await phones.start()
        replies: dict[str, list[str]] = collections.defaultdict(list)
        try:
            sent = 0

            async def one_phone(msisdn: str) -> None:
                nonlocal sent
                for k in range(MESSAGES_EACH):
                    await send_until_taken(phones, msisdn, k)
                    sent += 1

            senders = asyncio.gather(*(one_phone(m) for m in numbers))
            while sent < PHONES:  # a third of the load is in: pull the plug
                await asyncio.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await asyncio.sleep(0.5)
            process, _ = await start_smsc(state, port)
            await asyncio.wait_for(senders, DEADLINE_S)

            async def collect(msisdn: str) -> None:
                while len(replies[msisdn]) < MESSAGES_EACH:
                    message = await phones.next_message(msisdn, DEADLINE_S)
                    replies[msisdn].append(message.text or "")

            await asyncio.wait_for(asyncio.gather(*(collect(m) for m in numbers)), DEADLINE_S)
            await asyncio.sleep(3.0)  # past the SMSC's redelivery time: anything owed twice would show now
            for msisdn in numbers:
                while phones.unread(msisdn):
                    replies[msisdn].append((await phones.next_message(msisdn, 1.0)).text or "")
            return replies
        finally:
            await phones.stop()
            stop.set()
            await asyncio.wait_for(task, 20.0)
            process.send_signal(signal.SIGTERM)
            await process.wait()

    replies = asyncio.run(scenario())
    assert sorted(len(replies[m]) for m in numbers) == [MESSAGES_EACH] * PHONES
    assert all("Top-up" in text or "top" in text.lower() for texts in replies.values() for text in texts)
    assert world.service_transfers() == PHONES * MESSAGES_EACH
    for n in range(PHONES):
        assert world.ledger.account(f"customer:R{n}/customer_wallet").balance == 10_000 - MESSAGES_EACH * 100
