"""``simwallet phone``: simulated phones on the SMSC (a text, a USSD dialogue, load) and a handset in front of a card.

Spec: ETSI TS 102 223 (the card's toolkit as the handset simulator of
:mod:`simwallet.applet.handset` drives it); 3GPP TS 23.040 §9.2.2 and
TS 31.115 §4.2 (the SMS-SUBMIT and command packet each SEND SHORT MESSAGE is
summarized as); SMPP 3.4 with ``ussd_service_op`` through
:mod:`simwallet.provisioning.phone_net`; PC/SC through :mod:`simwallet.provisioning.reader`.

The network commands bind to the SMSC's ``phones`` account (``--smsc``,
``--system-id``, the password from ``--password-file`` or
``SIMWALLET_PHONES_PASSWORD``); an SMSC that cannot be reached, refuses, or
does not answer in time exits 3:

* ``phone send MSISDN TEXT`` sends a text (with a client reference, so a
  resend is one message) and prints the reply.
* ``phone ussd MSISDN [CODE]`` dials ``*166#`` and walks the dialogue, from
  the terminal (a PIN typed hidden) or ``--script "1,123456"``.
* ``phone load`` sends a mix of commands from a pool of phones on an open-loop
  schedule and prints counts and MO→reply latencies.
* ``phone stk [MSISDN] --reader N`` powers a handset up against the card and
  uses its STK menu, from the terminal or ``--script``: entries separated by
  commas, the first a menu item (identifier or text), then the answers to the
  prompts in order, then the next item (``--script "1,123456"``: balance with
  PIN 123456). Every DISPLAY TEXT is printed. With ``--smsc`` (or
  ``--network``) each short message the card sends goes to the SMSC from
  MSISDN and the SMS-PP answers come back to the card, so the card's screen
  shows the gateway's answer; without, each is printed as a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from simwallet.applet.handset import Handset
    from simwallet.applet.protocols.cat import GetInkey, GetInput, SelectItem
    from simwallet.gateway.smsc.inbox import ReceivedMessage
    from simwallet.provisioning.phone_load import LoadReport
    from simwallet.provisioning.phone_net import AirLink, SmscLogin, UssdScreen

F = TypeVar("F", bound=Callable[..., Any])

PASSWORD_ENV = "SIMWALLET_PHONES_PASSWORD"  # noqa: S105 (the name of the variable, not a password)
DEFAULT_SMSC = "127.0.0.1:2775"
SHORT_CODE = "10658000"
USSD_CODE = "*166#"
DEFAULT_MIX = "BAL:60,TOPUP:20,PAY:10,HIST:10"


def sms_summary(tpdu: bytes) -> dict[str, Any]:
    """What a technician wants to see of an SMS-SUBMIT with a command packet (the counter only when not ciphered)."""
    from simwallet.applet.errors import CodecError
    from simwallet.applet.protocols.secured import CommandFrame
    from simwallet.applet.protocols.sms import parse_sms_submit
    from simwallet.applet.protocols.sms_udh import IEI_CPI

    summary: dict[str, Any] = {"tpdu_octets": len(tpdu)}
    try:
        submit = parse_sms_submit(tpdu)
    except CodecError as exc:
        return {**summary, "error": f"not an SMS-SUBMIT: {exc}"}
    summary |= {"destination": str(submit.da), "pid": f"{submit.pid:02X}", "dcs": f"{submit.dcs.value:02X}"}
    header = submit.ud.header
    if header is None or header.find(IEI_CPI) is None:
        return {**summary, "user_data_octets": len(submit.ud.body)}
    try:
        frame = CommandFrame.from_bytes(submit.ud.body)
    except CodecError as exc:
        return {**summary, "error": f"no command packet: {exc}"}
    counter: int | str = "ciphered" if frame.spi.ciphering else int.from_bytes(frame.body[:5], "big")
    return {
        **summary,
        "tar": frame.tar.to_bytes().hex().upper(),
        "spi": frame.spi.to_bytes().hex().upper(),
        "kic": frame.kic.to_bytes().hex().upper(),
        "kid": frame.kid.to_bytes().hex().upper(),
        "counter": counter,
        "packet_octets": len(submit.ud.body) + 3,
    }


class ConsoleUser:
    """The person at the terminal answers the card's prompts (hidden input for a PIN)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo

    def get_input(self, command: GetInput) -> str | None:
        text = command.text.text or ""
        answer = click.prompt(text, default="", show_default=False, hide_input=command.hidden, err=True)
        return str(answer) or None

    def get_inkey(self, command: GetInkey) -> str | None:
        answer = click.prompt(command.text.text or "", default="", show_default=False, err=True)
        return str(answer)[:1] or None

    def select_item(self, command: SelectItem) -> int | None:
        from simwallet.applet.handset_user import item_for

        if command.title:
            self._echo(command.title)
        for item in command.items:
            self._echo(f"  {item.identifier}. {item.text}")
        answer = str(click.prompt("?", default="", show_default=False, err=True))
        return item_for(command, answer) if answer else None


@click.group()
def phone() -> None:
    """Simulated phones on the SMSC (send, ussd, load) and a handset in front of a card (stk)."""


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT, e.g. {DEFAULT_SMSC}", param_hint="--smsc")
    return host, int(port)


def _msisdn(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not (value.isdigit() and len(value) <= 20):
        raise click.BadParameter(f"{value!r}: digits in international form, e.g. 8613800138000")
    return value


def network_options(smsc_default: str | None) -> Callable[[F], F]:
    """--smsc, --system-id, --password-file and --connect-timeout, shared by the commands that bind to the SMSC."""
    options = (
        click.option("--smsc", default=smsc_default, show_default=True, metavar="HOST:PORT", help="The SMSC's address."),
        click.option("--system-id", default="phones", show_default=True, help="The phones account to bind with."),
        click.option(
            "--password-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"The account's password: the first line of this file. [else env {PASSWORD_ENV}]",
        ),
        click.option(
            "--connect-timeout",
            "connect_timeout_s",
            type=click.FloatRange(min=0.1),
            default=10.0,
            show_default=True,
            help="Seconds to wait for the bind.",
        ),
    )

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


wait_option = click.option(
    "--wait", "wait_s", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds to wait for the network's answer."
)


def _login(app: AppContext, smsc: str, system_id: str, password_file: Path | None) -> SmscLogin:
    from simwallet.provisioning.cli.keys import read_passphrase_file
    from simwallet.provisioning.phone_net import SmscLogin

    host, port = _address(smsc)
    password = read_passphrase_file(password_file, json_output=app.json) if password_file else os.environ.get(PASSWORD_ENV, "")
    return SmscLogin(host, port, system_id, password)


@contextlib.contextmanager
def _network_errors(app: AppContext) -> Iterator[None]:
    """The SMSC's failures exit 3 (a remote peer); a plan that cannot be run exits 1."""
    from simwallet.provisioning.phone_net import PhoneNetError, SmscFailure

    try:
        yield
    except SmscFailure as exc:
        raise errors.RemoteFailure(exc.message, code=exc.code, field=exc.field, json_output=app.json) from exc
    except PhoneNetError as exc:
        raise errors.UserError(exc.message, code=exc.code, field=exc.field, json_output=app.json) from exc


def _received(message: ReceivedMessage) -> dict[str, Any]:
    return {
        "source": message.source,
        "pid": f"{message.protocol_id:02X}",
        "dcs": f"{message.data_coding:02X}",
        "octets": len(message.short_message),
        "text": message.text,
    }


# --- phone send ---------------------------------------------------------------------------------------------------


@phone.command("send")
@click.argument("msisdn", callback=_msisdn)
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

    login = _login(app, smsc, system_id, password_file)
    reference = reference or f"cli:{secrets.token_hex(8)}"

    async def run() -> Any:
        async with attached(login.phone(msisdn), connect_timeout_s=connect_timeout_s) as client:
            return await send_and_wait(client, msisdn, to, text, reference=reference, wait_s=wait_s)

    with _network_errors(app):
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
@click.argument("msisdn", callback=_msisdn)
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

    login = _login(app, smsc, system_id, password_file)
    echo = None if app.json else click.echo
    user = UssdScript([a.strip() for a in script.split(",")], echo) if script is not None else UssdConsole(echo)

    async def run() -> Any:
        async with attached(login.phone(msisdn), connect_timeout_s=connect_timeout_s) as client:
            return await ussd_dialogue(client, msisdn, code, user, wait_s=wait_s)

    with _network_errors(app):
        result = asyncio.run(run())
    if app.json:
        screens = [
            {"text": s.screen.text, "op": s.screen.op, "hidden": s.screen.hidden, "answered": s.answered, "answer": s.answer}
            for s in result.steps
        ]
        render.emit_json({"msisdn": msisdn, "code": code, "ended": result.ended, "screens": screens})
    elif not result.ended:
        app.note("(the dialogue was left open: the network ends it after its time-out)")


# --- phone stk ----------------------------------------------------------------------------------------------------


class StkConsole:
    """What ``phone stk`` shows: the card's screen, the SMS it sends (to the SMSC when attached), and what comes back."""

    def __init__(self, app: AppContext, air: AirLink | None) -> None:
        self._app, self._air, self._live = app, air, not app.json
        self.screen: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    def display(self, text: str) -> None:
        self.screen.append(text)
        if self._live:
            click.echo(f"[screen] {text}")

    def sms_out(self, tpdu: bytes) -> None:
        summary = sms_summary(tpdu)
        if self._air is not None:
            summary["message_id"] = self._air.sms_out(tpdu)
        self.messages.append(summary)
        if self._live:
            fields = ", ".join(f"{key} {value}" for key, value in summary.items())
            click.echo(f"[sms out] {fields}")
            if self._air is None:
                self._app.note("(no SMSC is attached: the message goes nowhere; give --smsc to send it)")

    def sms_in(self, message: ReceivedMessage) -> None:
        entry = _received(message)
        self.received.append(entry)
        if self._live:
            what = "downloaded to the card" if message.text is None else repr(message.text)
            click.echo(f"[sms in] from {entry['source']}, pid {entry['pid']}, dcs {entry['dcs']}, {entry['octets']} octets: {what}")

    def answers(self, handset: Handset) -> None:
        """Hand the card what the network owes it (nothing without an SMSC)."""
        if self._air is not None:
            self._air.deliver_answers(handset, on_message=self.sms_in)


@phone.command("stk")
@click.argument("msisdn", required=False, callback=_msisdn)
@click.option("--reader", required=True, metavar="N|NAME", help="The reader: index in `card readers`, or (part of) its name.")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True, help="The handset's language.")
@click.option("--script", metavar="ENTRIES", help='Run unattended: "item,answer,answer,…,item,…", e.g. "1,123456".')
@click.option("--network", "use_network", is_flag=True, help=f"Attach to the SMSC (at {DEFAULT_SMSC} unless --smsc says).")
@wait_option
@network_options(None)
@pass_app
def stk(
    app: AppContext,
    msisdn: str | None,
    reader: str,
    language: str,
    script: str | None,
    use_network: bool,
    wait_s: float,
    smsc: str | None,
    system_id: str,
    password_file: Path | None,
    connect_timeout_s: float,
) -> None:
    """Power a handset up against the card and use its STK menu (over the SMSC with --smsc or --network)."""
    from simwallet.applet.errors import AppletError
    from simwallet.applet.handset import Handset
    from simwallet.applet.handset_user import ScriptedUser
    from simwallet.provisioning.reader import Pcsc, ReaderError, connected

    live = not app.json
    air = _air_link(app, msisdn, smsc, use_network, system_id, password_file, wait_s, connect_timeout_s)
    out = StkConsole(app, air)
    scripted = ScriptedUser(entry.strip() for entry in script.split(",")) if script is not None else None
    user = scripted if scripted is not None else ConsoleUser(lambda line: click.echo(line, err=True))
    try:
        with (
            _network_errors(app),
            air if air is not None else contextlib.nullcontext(),
            Pcsc() as pcsc,
            connected(pcsc, pcsc.resolve(reader), exclusive=False) as connection,
        ):
            handset = Handset(
                lambda capdu: connection.transmit(capdu).to_bytes(),
                language=language,
                sms_out=out.sms_out,
                user=user,
                on_display=out.display,
            )
            handset.power_up()
            out.answers(handset)
            if live:
                click.echo(f"{handset.menu_title or '(no menu)'}")
                for item in handset.menu():
                    click.echo(f"  {item.identifier}. {item.text}")
            while handset.menu():
                choice = (
                    scripted.next_answer() if scripted is not None else str(click.prompt("Menu item (empty to quit)", default="", err=True))
                )
                if not choice:
                    break
                handset.select(int(choice) if choice.isdigit() else choice)
                out.answers(handset)
            menu = [{"id": item.identifier, "text": item.text} for item in handset.menu()]
            title = handset.menu_title
    except ReaderError as exc:
        raise errors.RemoteFailure(str(exc), code="reader", json_output=app.json) from exc
    except AppletError as exc:
        raise errors.RemoteFailure(str(exc), code="card", json_output=app.json) from exc
    if app.json:
        document: dict[str, Any] = {"menu_title": title, "menu": menu, "screen": out.screen, "sms": out.messages}
        if air is not None:
            document["network"] = {"msisdn": msisdn, "received": out.received}
        render.emit_json(document)


def _air_link(
    app: AppContext,
    msisdn: str | None,
    smsc: str | None,
    use_network: bool,
    system_id: str,
    password_file: Path | None,
    wait_s: float,
    connect_timeout_s: float,
) -> AirLink | None:
    """The SMSC link of ``phone stk`` when --smsc or --network asks for one."""
    if smsc is None and not use_network:
        if msisdn is not None:
            app.note(f"(no SMSC is attached: {msisdn} is used only with --smsc or --network)")
        return None
    if msisdn is None:
        raise click.UsageError("over the network the phone needs its number: phone stk MSISDN --reader N --smsc HOST:PORT")
    from datetime import datetime

    from simwallet.gateway.ledger.limits import LOCAL_TZ
    from simwallet.provisioning.phone_net import AirLink

    login = _login(app, smsc or DEFAULT_SMSC, system_id, password_file)
    return AirLink(login, msisdn, clock=lambda: datetime.now(LOCAL_TZ), wait_s=wait_s, connect_timeout_s=connect_timeout_s)


# --- phone load ---------------------------------------------------------------------------------------------------


@phone.command("load")
@click.option("--users", type=click.IntRange(1, 100_000), default=10, show_default=True, help="Phones in the pool.")
@click.option("--rate", "rate_per_s", type=click.FloatRange(0, 20_000, min_open=True), default=50.0, show_default=True, help="Messages/s.")
@click.option("--duration", "duration_s", type=click.FloatRange(0, 3600, min_open=True), default=10.0, show_default=True, help="Seconds.")
@click.option("--mix", "mix_text", default=DEFAULT_MIX, show_default=True, help="Commands and their weights (BAL, TOPUP, PAY, HIST).")
@click.option("--first", required=True, callback=_msisdn, help="The first phone's MSISDN; the others follow it.")
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
    login = _login(app, smsc, system_id, password_file)
    rng = random.Random(seed if seed is not None else secrets.randbits(64))  # noqa: S311 (a mix, not a secret)
    with _network_errors(app):
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
