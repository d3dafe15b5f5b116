"""``simwallet smsc``: the embedded SMSC simulator (SMPP 3.4 on loopback) for development, demos, tests and benchmarks.

``smsc run`` listens (127.0.0.1:2775 by default), prints one line when it is
ready (``smsc listening on HOST:PORT``, or under ``--json`` one document with
the port, which matters with ``--port 0``), and runs until SIGTERM or Ctrl-C:
then it stops accepting, unbinds every bind, and keeps what it still owes in
its store (``--state-dir``), so the next ``smsc run`` on the same directory
delivers it. Accounts come from ``--account`` (repeatable) and/or ``--config``
(TOML, see :mod:`simwallet.gateway.smsc.config`)::

    simwallet smsc run --port 2775 --state-dir /tmp/smsc \\
        --account gateway:secret:esme:10658000,*166:200 --account phones:secret:phones
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from simwallet.gateway.smsc import SmscConfig, SmscStats

ACCOUNT_METAVAR = "SYSTEM_ID:PASSWORD:KIND[:PREFIXES][:TPS]"


@click.group()
def smsc() -> None:
    """The embedded SMSC simulator: routes MO from simulated phones to ESMEs and MT back."""


def default_state_dir() -> Path:
    """``<user state dir>/smsc`` (platformdirs)."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("simwallet", appauthor=False)) / "smsc"


def build_config(
    config_file: Path | None,
    account_specs: tuple[str, ...],
    *,
    redeliver_after_s: float | None,
    queue_max: int | None,
    max_age_s: float | None,
) -> SmscConfig:
    """The config from ``--config`` and ``--account``, the timer options overriding the file; usage errors name the option."""
    from dataclasses import replace

    from simwallet.gateway.smsc import Account, SmscConfig, SmscConfigError

    try:
        base = SmscConfig.from_toml(config_file) if config_file is not None else SmscConfig(())
    except SmscConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    try:
        accounts = tuple(Account.parse(spec) for spec in account_specs)
    except SmscConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--account") from exc
    try:
        config = replace(
            base,
            accounts=base.accounts + accounts,
            redeliver_after_s=base.redeliver_after_s if redeliver_after_s is None else redeliver_after_s,
            queue_max=base.queue_max if queue_max is None else queue_max,
            max_age_s=base.max_age_s if max_age_s is None else max_age_s,
        )
    except SmscConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--account") from exc
    if not config.accounts:
        raise click.UsageError(f"no accounts: give --account {ACCOUNT_METAVAR} (repeatable) or --config FILE.toml")
    return config


async def serve(config: SmscConfig, state_dir: Path, host: str, port: int, ready: Callable[[int], None]) -> SmscStats:
    """Run the SMSC until SIGTERM or SIGINT; its counters at the end."""
    from simwallet.gateway.smsc import SmscServer

    server = SmscServer(config, state_dir)
    await server.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        ready(server.port)
        await stop.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await server.stop()
    return server.stats()


@smsc.command("run")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback unless you mean it).")
@click.option("--port", type=click.IntRange(0, 65535), default=2775, show_default=True, help="0: any free port (printed when ready).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the message store lives. [default: <user state dir>/smsc]",
)
@click.option("--account", "account_specs", multiple=True, metavar=ACCOUNT_METAVAR, help="An account (repeatable).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Accounts and limits (TOML).")
@click.option(
    "--redeliver-after",
    "redeliver_after_s",
    type=click.FloatRange(min=0.01),
    help="Seconds before an unacknowledged deliver_sm is sent again.",
)
@click.option("--queue-max", type=click.IntRange(min=1), help="Messages waiting per destination before ESME_RMSGQFUL.")
@click.option("--max-age", "max_age_s", type=click.FloatRange(min=0.01), help="Seconds a message without validity period is kept.")
@pass_app
def run(
    app: AppContext,
    host: str,
    port: int,
    state_dir: Path | None,
    account_specs: tuple[str, ...],
    config_file: Path | None,
    redeliver_after_s: float | None,
    queue_max: int | None,
    max_age_s: float | None,
) -> None:
    """Run the SMSC until SIGTERM or Ctrl-C; one line (the port) is printed when it is ready."""
    config = build_config(config_file, account_specs, redeliver_after_s=redeliver_after_s, queue_max=queue_max, max_age_s=max_age_s)
    directory = state_dir if state_dir is not None else default_state_dir()

    def ready(bound_port: int) -> None:
        if app.json:
            render.emit_json(
                {"host": host, "port": bound_port, "state_dir": str(directory), "accounts": [a.system_id for a in config.accounts]}
            )
        else:
            click.echo(f"smsc listening on {host}:{bound_port}")
        sys.stdout.flush()

    try:
        stats = asyncio.run(serve(config, directory, host, port, ready))
    except OSError as exc:
        raise errors.UserError(f"cannot listen on {host}:{port}: {exc}", code="listen_failed", field="port", json_output=app.json) from exc
    app.note(
        f"smsc stopped: {stats.total('accepted')} accepted, {stats.total('delivered')} delivered, "
        f"{stats.total('redelivered')} redelivered, {stats.total('throttled')} throttled, {stats.stored} still stored"
    )

