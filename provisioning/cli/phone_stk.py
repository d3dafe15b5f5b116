"""``simwallet phone stk``: a handset powered up against the card in a PC/SC reader, using its STK menu.

Spec: ETSI TS 102 223 (the card's toolkit as the handset simulator of
:mod:`simwallet.applet.handset` drives it); 3GPP TS 23.040 §9.2.2 and
TS 31.115 §4.2 (the SMS-SUBMIT and command packet each SEND SHORT MESSAGE is
summarized as); PC/SC through :mod:`simwallet.provisioning.reader`. A plain
command, not a group: the ``phone`` group (``cli/phone.py``) adds it.

``phone stk [MSISDN] --reader N`` powers a handset up against the card and
uses its STK menu, from the terminal or ``--script``: entries separated by
commas, the first a menu item (identifier or text), then the answers to the
prompts in order, then the next item (``--script "1,123456"``: balance with
PIN 123456). Every DISPLAY TEXT is printed. With ``--smsc`` (or
``--network``) each short message the card sends goes to the SMSC from
MSISDN (the options of :mod:`.phone_options`) and the SMS-PP answers come
back to the card, so the card's screen shows the gateway's answer; without,
each is printed as a summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.phone_options import DEFAULT_SMSC, check_msisdn, network_errors, network_options, smsc_login, wait_option

if TYPE_CHECKING:
    from simwallet.applet.handset import Handset
    from simwallet.applet.protocols.cat import GetInkey, GetInput, SelectItem
    from simwallet.gateway.smsc.inbox import ReceivedMessage
    from simwallet.provisioning.phone_net import AirLink


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


def _received(message: ReceivedMessage) -> dict[str, Any]:
    return {
        "source": message.source,
        "pid": f"{message.protocol_id:02X}",
        "dcs": f"{message.data_coding:02X}",
        "octets": len(message.short_message),
        "text": message.text,
    }


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


@click.command("stk")
@click.argument("msisdn", required=False, callback=check_msisdn)
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
            network_errors(app),
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

    login = smsc_login(app, smsc or DEFAULT_SMSC, system_id, password_file)
    return AirLink(login, msisdn, clock=lambda: datetime.now(LOCAL_TZ), wait_s=wait_s, connect_timeout_s=connect_timeout_s)
