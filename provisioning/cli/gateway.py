"""``simwallet gateway``: the ESME serving SMS commands and the STK wallet's secured requests, with metrics and a clean stop.

``gateway run`` binds to the SMSC (``--smsc HOST:PORT``, ``--system-id``,
the password from ``--password-file`` or ``SIMWALLET_SMSC_PASSWORD``,
``--binds``), serves through the wallet service on the root ``--db``, keys
PIN verifiers with the key store's ``card-secrets`` master (the family that
already derives each card's PINs and unblock keys), checks STK requests with
each card's wallet keys diversified from the key store's ``wallet`` masters, and exposes ``/metrics``
and ``/health`` on ``--metrics-port``. It prints one line when serving and
stops on SIGTERM or Ctrl-C: what is queued is served and answered, then the
binds are unbound.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click

from simwallet.provisioning.cli import errors
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.keys import keystore_option, open_keystore, passphrase_option, read_passphrase_file

PASSWORD_ENV = "SIMWALLET_SMSC_PASSWORD"  # noqa: S105 (the name of the variable, not a password)


@click.group()
def gateway() -> None:
    """The SMPP gateway (ESME): SMS commands from feature phones, served by the wallet."""


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter("HOST:PORT, e.g. 127.0.0.1:2775")
    return host, int(port)


@gateway.command("run")
@click.option("--smsc", "smsc", default="127.0.0.1:2775", show_default=True, help="The SMSC's HOST:PORT.")
@click.option("--system-id", default="gateway", show_default=True, help="The bind's system_id.")
@click.option("--system-type", default="", help="The bind's system_type.")
@click.option(
    "--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=f"The bind password [else env {PASSWORD_ENV}]."
)
@click.option("--binds", type=click.IntRange(1, 16), default=1, show_default=True, help="Binds (or bind pairs) to keep up.")
@click.option(
    "--bind-type",
    type=click.Choice(["trx", "tx+rx"]),
    default="trx",
    show_default=True,
    help="Transceivers, or transmitter and receiver pairs.",
)
@click.option("--window", type=click.IntRange(1, 1024), default=64, show_default=True, help="Requests outstanding per bind.")
@click.option(
    "--throughput", type=click.FloatRange(min=0.1), default=None, help="submit_sm per second at most, over all binds (the SMSC agreement)."
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=9464, show_default=True, help="/metrics and /health (0: any free port)."
)
@keystore_option
@passphrase_option
@pass_app
def run(
    app: AppContext,
    smsc: str,
    system_id: str,
    system_type: str,
    password_file: Path | None,
    binds: int,
    bind_type: str,
    window: int,
    throughput: float | None,
    metrics_port: int,
    keystore_path: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    from simwallet.gateway.cards import CardRegistry
    from simwallet.gateway.esme.app import Gateway, GatewayConfig
    from simwallet.gateway.esme.metrics import GatewayMetrics, MetricsServer
    from simwallet.gateway.esme.stk_channel import StkChannel
    from simwallet.gateway.esme.stk_store import keystore_masters
    from simwallet.gateway.keystore import KeyFamily
    from simwallet.gateway.ledger.ledger import Ledger
    from simwallet.gateway.runtime import collect_periodically, tune_for_serving
    from simwallet.gateway.wallet.pins import pin_verification_key
    from simwallet.gateway.wallet.service import WalletService

    host, port = _address(smsc)
    password = read_passphrase_file(password_file, json_output=app.json) if password_file else os.environ.get(PASSWORD_ENV, "")
    keystore = open_keystore(app, keystore_path, passphrase_file)
    pin_key = pin_verification_key(keystore.active(KeyFamily.CARD_SECRETS).secrets_master())
    engine = app.serving_engine
    ledger = Ledger(engine)
    registry = CardRegistry(engine, ledger)
    service = WalletService(engine, ledger, registry, pin_key=pin_key)
    stk = StkChannel(engine, registry, keystore_masters(keystore))
    config = GatewayConfig(
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        system_type=system_type,
        binds=binds,
        bind_type=bind_type,
        window=window,
        throughput_per_s=throughput,
    )

    async def serve() -> None:
        metrics = GatewayMetrics()
        the_gateway = Gateway(config, service, stk=stk, metrics=metrics)
        server = MetricsServer(metrics, lambda: the_gateway.bound > 0, port=metrics_port)
        try:
            await server.start()
        except OSError as exc:
            raise errors.UserError(
                f"cannot listen on metrics port {metrics_port}: {exc.strerror}", code="port", json_output=app.json
            ) from exc
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        app.note(f"gateway: serving SMSC {host}:{port} as {system_id} ({binds} bind(s)); metrics on port {server.port}")
        tune_for_serving()  # a long-lived server: start-up's objects frozen, collections rarer ...
        collector = asyncio.create_task(collect_periodically(stop))  # ... and a full one every few seconds
        try:
            await the_gateway.run(stop)
        finally:
            stop.set()  # also when run() failed: the collector ends with it
            await collector
            await server.stop()

    asyncio.run(serve())
