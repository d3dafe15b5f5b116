"""The SMSC options of ``simwallet phone``: the login, the MSISDN argument, and the network's errors as exit codes.

Spec: SMPP 3.4 binds of the SMSC's ``phones`` account through
:mod:`simwallet.provisioning.phone_net`. Shared by the commands that bind to
the SMSC (``phone send``, ``ussd`` and ``load`` in ``cli/phone.py``, ``phone
stk`` in ``cli/phone_stk.py``): ``--smsc HOST:PORT``, ``--system-id``, the
password from the first line of ``--password-file`` or
``SIMWALLET_PHONES_PASSWORD``, ``--connect-timeout`` and ``--wait``. An SMSC
that cannot be reached, refuses, or does not answer in time exits 3; a plan
that cannot be run exits 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from simwallet.provisioning.cli import errors
from simwallet.provisioning.cli.context import AppContext

if TYPE_CHECKING:
    from simwallet.provisioning.phone_net import SmscLogin

F = TypeVar("F", bound=Callable[..., Any])

PASSWORD_ENV = "SIMWALLET_PHONES_PASSWORD"  # noqa: S105 (the name of the variable, not a password)
DEFAULT_SMSC = "127.0.0.1:2775"


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT, e.g. {DEFAULT_SMSC}", param_hint="--smsc")
    return host, int(port)


def check_msisdn(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The callback of an MSISDN argument or option: digits in international form, at most 20."""
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


def smsc_login(app: AppContext, smsc: str, system_id: str, password_file: Path | None) -> SmscLogin:
    """The phones account's login from the network options."""
    from simwallet.provisioning.cli.keys import read_passphrase_file
    from simwallet.provisioning.phone_net import SmscLogin

    host, port = _address(smsc)
    password = read_passphrase_file(password_file, json_output=app.json) if password_file else os.environ.get(PASSWORD_ENV, "")
    return SmscLogin(host, port, system_id, password)


@contextlib.contextmanager
def network_errors(app: AppContext) -> Iterator[None]:
    """The SMSC's failures exit 3 (a remote peer); a plan that cannot be run exits 1."""
    from simwallet.provisioning.phone_net import PhoneNetError, SmscFailure

    try:
        yield
    except SmscFailure as exc:
        raise errors.RemoteFailure(exc.message, code=exc.code, field=exc.field, json_output=app.json) from exc
    except PhoneNetError as exc:
        raise errors.UserError(exc.message, code=exc.code, field=exc.field, json_output=app.json) from exc
