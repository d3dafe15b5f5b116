"""``simwallet wallet``: the service hall's side of the wallet PIN that SMS and USSD commands carry.

``wallet pin-set MSISDN`` sets (or resets) a customer's wallet PIN and clears
the wrong tries; ``wallet unlock MSISDN`` clears the wrong tries after three
wrong PINs locked the wallet; ``wallet pin-state MSISDN`` shows whether a PIN
is set, the tries left and the lock. The clerk checks the holder's ID first.
The PIN comes from ``--pin-file`` (its first line) or a hidden prompt with
confirmation, never from the command line, and is never printed. Verifiers
are keyed with the key store's ``card-secrets`` master, as the gateway's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.keys import keystore_option, open_keystore, passphrase_option, read_passphrase_file

if TYPE_CHECKING:
    from simwallet.gateway.wallet import PinState, WalletService


@click.group()
def wallet() -> None:
    """Wallet PINs at the service hall: set, unlock, show."""


def _service(app: AppContext, keystore_path: Path | None, passphrase_file: Path | None) -> WalletService:
    from simwallet.gateway.cards import CardRegistry
    from simwallet.gateway.keystore import KeyFamily
    from simwallet.gateway.wallet import WalletService, pin_verification_key

    keystore = open_keystore(app, keystore_path, passphrase_file)
    pin_key = pin_verification_key(keystore.active(KeyFamily.CARD_SECRETS).secrets_master())
    ledger = app.ledger()
    return WalletService(app.engine, ledger, CardRegistry(app.engine, ledger), pin_key=pin_key)


def _show(app: AppContext, msisdn: str, state: PinState, what: str) -> None:
    document: dict[str, Any] = {
        "msisdn": msisdn,
        "customer": state.customer_ref,
        "pin_set": state.pin_set,
        "tries_left": state.tries_left,
        "locked": state.locked,
    }
    if app.json:
        render.emit_json(document)
        return
    lock = "locked" if state.locked else f"{state.tries_left} tries left"
    click.echo(f"{what}: {msisdn} ({state.customer_ref}): PIN {'set' if state.pin_set else 'not set'}, {lock}")


def _call(app: AppContext, action: Any) -> Any:
    from simwallet.gateway.errors import GatewayError

    try:
        return action()
    except GatewayError as exc:
        raise errors.UserError(str(exc), code=getattr(exc, "code", "wallet"), field="msisdn", json_output=app.json) from exc


@wallet.command("pin-set")
@click.argument("msisdn")
@click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The new PIN: first line of this file.")
@keystore_option
@passphrase_option
@pass_app
def pin_set(app: AppContext, msisdn: str, pin_file: Path | None, keystore_path: Path | None, passphrase_file: Path | None) -> None:
    """Set the wallet PIN of MSISDN's customer (6 digits; the wrong tries are cleared)."""
    if pin_file is not None:
        pin = read_passphrase_file(pin_file, json_output=app.json)
    else:
        pin = str(click.prompt("New wallet PIN", hide_input=True, confirmation_prompt=True, err=True))
    service = _service(app, keystore_path, passphrase_file)
    _show(app, msisdn, _call(app, lambda: service.set_pin(msisdn, pin)), "PIN set")


@wallet.command("unlock")
@click.argument("msisdn")
@keystore_option
@passphrase_option
@pass_app
def unlock(app: AppContext, msisdn: str, keystore_path: Path | None, passphrase_file: Path | None) -> None:
    """Clear the wrong PIN tries of MSISDN's wallet."""
    service = _service(app, keystore_path, passphrase_file)
    _show(app, msisdn, _call(app, lambda: service.unlock(msisdn)), "unlocked")


@wallet.command("pin-state")
@click.argument("msisdn")
@keystore_option
@passphrase_option
@pass_app
def pin_state(app: AppContext, msisdn: str, keystore_path: Path | None, passphrase_file: Path | None) -> None:
    """Whether MSISDN's wallet has a PIN, its tries left, and the lock."""
    service = _service(app, keystore_path, passphrase_file)
    _show(app, msisdn, _call(app, lambda: service.pin_state(msisdn)), "wallet")
