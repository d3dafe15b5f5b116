"""The root ``simwallet`` group: global options, the typed context, and error translation at the edge.

Theory of operation (after click's "complex applications"): the root callback
turns the global options into a frozen :class:`~.context.AppContext` and
stores it as ``ctx.obj``; commands receive it with ``pass_app``.
:class:`RootGroup` wraps the whole invocation, subcommand parsing included,
and turns backend errors into exit codes (:mod:`.errors`).

Where the database URL comes from, first match wins: ``--db``, ``$SIMWALLET_DB``,
``db`` in the ``--config`` file, then a SQLite file in the user's data directory.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from simwallet.provisioning.cli import errors
from simwallet.provisioning.cli.card import card
from simwallet.provisioning.cli.context import AppContext
from simwallet.provisioning.cli.db import db
from simwallet.provisioning.cli.gateway import gateway
from simwallet.provisioning.cli.keys import keys
from simwallet.provisioning.cli.ledger import ledger
from simwallet.provisioning.cli.phone import phone
from simwallet.provisioning.cli.promo import promo
from simwallet.provisioning.cli.simulate import simulate
from simwallet.provisioning.cli.smsc import smsc
from simwallet.provisioning.cli.wallet import wallet

# Keys a --config file may hold, with their TOML types.
CONFIG_KEYS: dict[str, type] = {"db": str, "json": bool}
# A config file is a few lines; refuse anything that is clearly not one.
CONFIG_FILE_BYTES_MAX = 64 * 1024


class RootGroup(click.Group):
    """The root group: translates expected errors raised anywhere below it into :class:`errors.CliError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            app = ctx.find_object(AppContext)
            error = errors.translate(exc, json_output=app.json if app is not None else False)
            if error is None:
                raise
            logging.getLogger(__name__).debug("%s", error.code, exc_info=exc)
            raise error from exc


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML config file; an unknown key or a value of the wrong type is a usage error naming it."""
    try:
        data = path.read_bytes()
        if len(data) > CONFIG_FILE_BYTES_MAX:
            raise click.BadParameter(f"{path}: larger than {CONFIG_FILE_BYTES_MAX} bytes", param_hint="--config")
        config = tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from exc
    for key, value in config.items():
        expected = CONFIG_KEYS.get(key)
        if expected is None:
            known = ", ".join(CONFIG_KEYS)
            raise click.BadParameter(f"{path}: unknown key {key!r} (known keys: {known})", param_hint="--config")
        if not isinstance(value, expected):
            raise click.BadParameter(f"{path}: {key} must be {expected.__name__}, not {type(value).__name__}",
                                     param_hint="--config")
    return config


def _setup_logging(verbosity: int) -> None:
    level = logging.ERROR if verbosity < 0 else {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    # -vvv also shows the SQL statements.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO if verbosity >= 3 else logging.WARNING)


@click.group(cls=RootGroup, epilog=errors.EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", metavar="URL", envvar="SIMWALLET_DB",
              help="Database URL: sqlite:///PATH or postgresql://… [env SIMWALLET_DB; then `db` in --config;"
                   " then a SQLite file in the user data directory]")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), envvar="SIMWALLET_CONFIG",
              help="TOML file with defaults: db = \"URL\", json = true. [env SIMWALLET_CONFIG]")
@click.option("--json/--no-json", "json_output", default=None, help="Print one JSON document on stdout (errors too).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv debug, -vvv SQL).")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors: no notes on stderr.")
@click.version_option(package_name="simwallet", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, config_path: Path | None, json_output: bool | None, verbose: int,
        quiet: bool) -> None:
    """simwallet: the SIM-wallet ledger, promotions and provisioning toolchain."""
    if verbose and quiet:
        raise click.UsageError("-v and -q exclude each other")
    config = load_config(config_path) if config_path is not None else {}
    if db_url is None or ctx.get_parameter_source("db_url") not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        db_url = config.get("db") or db_url
    if not db_url:
        from simwallet.gateway.store.engine import default_url

        db_url = default_url()
    _check_url(db_url)
    verbosity = -1 if quiet else verbose
    _setup_logging(verbosity)
    ctx.obj = AppContext(db_url=db_url, json=bool(config.get("json", False)) if json_output is None else json_output,
                         verbosity=verbosity, close_later=ctx.call_on_close)


def _check_url(url: str) -> None:
    import sqlalchemy as sa

    try:
        backend = sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError as exc:
        raise click.BadParameter("not a database URL such as sqlite:///path or postgresql://host/db", param_hint="--db") from exc
    if backend not in ("sqlite", "postgresql"):
        raise click.BadParameter(f"unsupported database {backend!r}: use sqlite:/// or postgresql://", param_hint="--db")


cli.add_command(ledger)
cli.add_command(promo)
cli.add_command(db)
cli.add_command(simulate)
cli.add_command(keys)
cli.add_command(phone)
cli.add_command(card)
cli.add_command(gateway)
cli.add_command(smsc)
cli.add_command(wallet)
