"""``simwallet phone``: a feature phone in front of a card in a PC/SC reader, to try its STK menu.

Spec: ETSI TS 102 223 (the card's toolkit as the handset simulator of
:mod:`simwallet.applet.handset` drives it); 3GPP TS 23.040 §9.2.2.2 and
TS 31.115 §4.2 (the SMS-SUBMIT and command packet each SEND SHORT MESSAGE is
summarized as); PC/SC through :mod:`simwallet.provisioning.reader`.

``phone stk --reader N`` powers the handset up against the card (USIM
selection, TERMINAL PROFILE, the proactive loop), shows the menu, and lets
the user pick items and answer the card's prompts, or runs ``--script``:
comma-separated entries, the first a menu item (identifier or text), then
the answers to the prompts in order, then the next menu item, and so on
(``--script "1,123456"``: balance with PIN 123456). Every DISPLAY TEXT is
printed, and every short message the card sends is printed as a summary: no
SMSC is attached to this command yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from simwallet.applet.protocols.cat import GetInkey, GetInput, SelectItem


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
    """A handset simulator in front of a card in a PC/SC reader."""


@phone.command("stk")
@click.option("--reader", required=True, metavar="N|NAME", help="The reader: index in `card readers`, or (part of) its name.")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True, help="The handset's language.")
@click.option("--script", metavar="ENTRIES", help='Run unattended: "item,answer,answer,…,item,…", e.g. "1,123456".')
@pass_app
def stk(app: AppContext, reader: str, language: str, script: str | None) -> None:
    """Power a handset up against the card and use its STK menu."""
    from simwallet.applet.errors import AppletError
    from simwallet.applet.handset import Handset
    from simwallet.applet.handset_user import ScriptedUser
    from simwallet.provisioning.reader import Pcsc, ReaderError, connected

    live = not app.json
    screen: list[str] = []
    messages: list[dict[str, Any]] = []

    def display(text: str) -> None:
        screen.append(text)
        if live:
            click.echo(f"[screen] {text}")

    def sms_out(tpdu: bytes) -> None:
        summary = sms_summary(tpdu)
        messages.append(summary)
        if live:
            fields = ", ".join(f"{key} {value}" for key, value in summary.items())
            click.echo(f"[sms out] {fields}")
            app.note("(no SMSC is attached: the message goes nowhere; the SMPP gateway will deliver it)")

    scripted = ScriptedUser(entry.strip() for entry in script.split(",")) if script is not None else None
    user = scripted if scripted is not None else ConsoleUser(lambda line: click.echo(line, err=True))
    try:
        with Pcsc() as pcsc, connected(pcsc, pcsc.resolve(reader), exclusive=False) as connection:
            handset = Handset(
                lambda capdu: connection.transmit(capdu).to_bytes(), language=language, sms_out=sms_out, user=user, on_display=display
            )
            handset.power_up()
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
            menu = [{"id": item.identifier, "text": item.text} for item in handset.menu()]
            title = handset.menu_title
    except ReaderError as exc:
        raise errors.RemoteFailure(str(exc), code="reader", json_output=app.json) from exc
    except AppletError as exc:
        raise errors.RemoteFailure(str(exc), code="card", json_output=app.json) from exc
    if app.json:
        render.emit_json({"menu_title": title, "menu": menu, "screen": screen, "sms": messages})
