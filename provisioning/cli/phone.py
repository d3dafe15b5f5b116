"""``simwallet phone``: simulated phones on the SMSC (a text, a USSD dialogue, load) and a handset in front of a card.

Spec: SMPP 3.4 with ``ussd_service_op`` through
:mod:`simwallet.provisioning.phone_net`; the load generator of
:mod:`simwallet.provisioning.phone_load`. ``phone stk`` (the handset in front
of a card, ETSI TS 102 223 over PC/SC) is a plain command in
``cli/phone_stk.py`` that this group adds.

The network commands bind to the SMSC's ``phones`` account (``--smsc``,
``--system-id``, the password from ``--password-file`` or
``SIMWALLET_PHONES_PASSWORD``: the options of ``cli/phone_options.py``); an
SMSC that cannot be reached, refuses, or does not answer in time exits 3:

* ``phone send MSISDN TEXT`` sends a text (with a client reference, so a
  resend is one message) and prints the reply.
* ``phone ussd MSISDN [CODE]`` dials ``*166#`` and walks the dialogue, from
  the terminal (a PIN typed hidden) or ``--script "1,123456"``.
* ``phone load`` sends a mix of commands from a pool of phones on an open-loop
  schedule and prints counts and MO→reply latencies.
* ``phone stk [MSISDN] --reader N`` powers a handset up against the card and
  uses its STK menu (``--script "1,123456"``: balance with PIN 123456); with
  ``--smsc`` (or ``--network``) its short messages go over the SMSC.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simwallet.provisioning.cli import render
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.phone_options import DEFAULT_SMSC, check_msisdn, network_errors, network_options, smsc_login, wait_option
from simwallet.provisioning.cli.phone_stk import stk

if TYPE_CHECKING:
    from simwallet.provisioning.phone_load import LoadReport
    from simwallet.provisioning.phone_net import UssdScreen

SHORT_CODE = "10658000"
USSD_CODE = "*166#"
DEFAULT_MIX = "BAL:60,TOPUP:20,PAY:10,HIST:10"


@click.group()
def phone() -> None:
    """Simulated phones on the SMSC (send, ussd, load) and a handset in front of a card (stk)."""


phone.add_command(stk)


# --- phone send ---------------------------------------------------------------------------------------------------


@phone.command("send")
@click.argument("msisdn", callback=check_msisdn)
@click.argument("text")
@click.option("--to", default=SHORT_CODE, show_default=True, help="Where the text goes (the wallet's short code).")
@click.option("--reference", metavar="REF", help="The message's client reference [default: a new one]; the same again is a resend.")
@wait_option
@network_options(DEFAULT_SMSC)
@pass_app
def send(
    app: AppContext,
    msisdn: str,
    text: str,
    to: str,
    reference: str | None,
    wait_s: float,
    smsc: str,
    system_id: str,
    password_file: Path | None,
    connect_timeout_s: float,
) -> None:
    """Send TEXT from MSISDN and print the reply."""
    from simwallet.provisioning.phone_net import attached, send_and_wait

    login = smsc_login(app, smsc, system_id, password_file)
    reference = reference or f"cli:{secrets.token_hex(8)}"

    async def run() -> Any:
        async with attached(login.phone(msisdn), connect_timeout_s=connect_timeout_s) as client:
            return await send_and_wait(client, msisdn, to, text, reference=reference, wait_s=wait_s)

    with network_errors(app):
        result = asyncio.run(run())
    reply = result.reply
    if app.json:
        render.emit_json(
            {
                "msisdn": msisdn,
                "to": to,
                "reference": reference,
                "message_ids": list(result.message_ids),
                "reply": {"source": reply.source, "text": reply.text, "data_coding": reply.data_coding},
            }
        )
        return
    if result.dropped:
        app.note(f"({result.dropped} message(s) waiting for {msisdn} before the text was sent were dropped)")
    app.note(f"sent to {to} as {', '.join(result.message_ids)}; the reply from {reply.source}:")
    click.echo(reply.text if reply.text is not None else f"(binary, {len(reply.short_message)} octets)")


# --- phone ussd ---------------------------------------------------------------------------------------------------


class UssdConsole:
    """The person at the terminal: sees each screen and types each answer (hidden when it asks for a PIN)."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self._echo = echo

    def show(self, screen: UssdScreen) -> None:
        if self._echo is not None:
            self._echo(screen.text + ("\n" if not screen.ends else ""))

    def answer(self, screen: UssdScreen) -> str | None:
        return str(click.prompt(">", prompt_suffix=" ", default="", show_default=False, hide_input=screen.hidden, err=True)) or None


class UssdScript(UssdConsole):
    """Answers from ``--script`` in order, echoed (a PIN as stars); an empty script leaves the dialogue."""

    def __init__(self, answers: list[str], echo: Callable[[str], None] | None) -> None:
        super().__init__(echo)
        self._answers = deque(answers)

    def answer(self, screen: UssdScreen) -> str | None:
        answer = self._answers.popleft() if self._answers else None
        if answer is not None and self._echo is not None:
            self._echo("> " + ("*" * len(answer) if screen.hidden else answer))
        return answer


@phone.command("ussd")
@click.argument("msisdn", callback=check_msisdn)
@click.argument("code", default=USSD_CODE)
@click.option("--script", metavar="ANSWERS", help='Answer unattended: "1,123456" (menu item 1, then the PIN).')
@wait_option
@network_options(DEFAULT_SMSC)
@pass_app
def ussd(
    app: AppContext,
    msisdn: str,
    code: str,
    script: str | None,
    wait_s: float,
    smsc: str,
    system_id: str,
    password_file: Path | None,
    connect_timeout_s: float,
) -> None:
    """Dial CODE from MSISDN and walk the dialogue until the network ends it."""
    from simwallet.provisioning.phone_net import attached, ussd_dialogue

    login = smsc_login(app, smsc, system_id, password_file)
    echo = None if app.json else click.echo
    user = UssdScript([a.strip() for a in script.split(",")], echo) if script is not None else UssdConsole(echo)

    async def run() -> Any:
        async with attached(login.phone(msisdn), connect_timeout_s=connect_timeout_s) as client:
            return await ussd_dialogue(client, msisdn, code, user, wait_s=wait_s)

    with network_errors(app):
        result = asyncio.run(run())
    if app.json:
        screens = [
            {"text": s.screen.text, "op": s.screen.op, "hidden": s.screen.hidden, "answered": s.answered, "answer": s.answer}
            for s in result.steps
        ]
        render.emit_json({"msisdn": msisdn, "code": code, "ended": result.ended, "screens": screens})
    elif not result.ended:
        app.note("(the dialogue was left open: the network ends it after its time-out)")


# --- phone load ---------------------------------------------------------------------------------------------------


@phone.command("load")
@click.option("--users", type=click.IntRange(1, 100_000), default=10, show_default=True, help="Phones in the pool.")
@click.option("--rate", "rate_per_s", type=click.FloatRange(0, 20_000, min_open=True), default=50.0, show_default=True, help="Messages/s.")
@click.option("--duration", "duration_s", type=click.FloatRange(0, 3600, min_open=True), default=10.0, show_default=True, help="Seconds.")
@click.option("--mix", "mix_text", default=DEFAULT_MIX, show_default=True, help="Commands and their weights (BAL, TOPUP, PAY, HIST).")
@click.option("--first", required=True, callback=check_msisdn, help="The first phone's MSISDN; the others follow it.")
@click.option("--pin", required=True, envvar="SIMWALLET_LOAD_PIN", help="The PIN every phone types. [env SIMWALLET_LOAD_PIN]")
@click.option("--to", default=SHORT_CODE, show_default=True, help="Where the commands go.")
@click.option(
    "--reply-wait",
    "reply_wait_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the last replies.",
)
@click.option("--seed", type=int, help="Seed of the mix and the run's references. [default: random]")
@network_options(DEFAULT_SMSC)
@pass_app
def load(
    app: AppContext,
    users: int,
    rate_per_s: float,
    duration_s: float,
    mix_text: str,
    first: str,
    pin: str,
    to: str,
    reply_wait_s: float,
    seed: int | None,
    smsc: str,
    system_id: str,
    password_file: Path | None,
    connect_timeout_s: float,
) -> None:
    """Send a mix of commands from a pool of phones at a fixed rate; print counts and MO→reply latencies."""
    from simwallet.provisioning import phone_load, phone_net

    try:
        mix = phone_load.parse_mix(mix_text)
    except phone_net.PhoneNetUsageError as exc:
        raise click.BadParameter(exc.message, param_hint="--mix") from exc
    login = smsc_login(app, smsc, system_id, password_file)
    rng = random.Random(seed if seed is not None else secrets.randbits(64))  # noqa: S311 (a mix, not a secret)
    with network_errors(app):
        plan = phone_load.LoadPlan(first, users, rate_per_s, duration_s, pin, mix, to, reply_wait_s)
        app.note(f"load: {plan.messages} messages from {users} phones at {rate_per_s:g}/s for {duration_s:g} s to {to}")
        report = asyncio.run(phone_load.load(login, plan, rng=rng, connect_timeout_s=connect_timeout_s))
    if app.json:
        render.emit_json(load_document(report))
        return
    click.echo(
        f"messages  {report.planned} planned: {report.accepted} accepted, {report.throttled} throttled, "
        f"{report.failed} failed, {report.not_sent} not sent"
    )
    click.echo(f"replies   {report.replies} ({report.lost} lost, {report.unmatched} unmatched)")
    latency = load_document(report)["latency_ms"]
    if latency is not None:
        click.echo("latency   " + "  ".join(f"{key} {latency[key]:.1f} ms" for key in ("p50", "p90", "p99", "max")))
    click.echo("mix       " + ", ".join(f"{name} {count}" for name, count in report.by_command))
    click.echo(f"elapsed   {report.elapsed_s:.2f} s (sending {report.send_window_s:.2f} s)")


def load_document(report: LoadReport) -> dict[str, Any]:
    """The JSON form of a load report (latencies in milliseconds)."""
    latency = report.latency
    return {
        "planned": report.planned,
        "accepted": report.accepted,
        "throttled": report.throttled,
        "failed": report.failed,
        "not_sent": report.not_sent,
        "replies": report.replies,
        "lost": report.lost,
        "unmatched": report.unmatched,
        "send_window_s": round(report.send_window_s, 6),
        "elapsed_s": round(report.elapsed_s, 6),
        "by_command": dict(report.by_command),
        "latency_ms": None
        if latency is None
        else {
            "count": latency.count,
            **{key: round(getattr(latency, f"{key}_s") * 1000, 3) for key in ("p50", "p90", "p99", "max", "mean")},
        },
    }
