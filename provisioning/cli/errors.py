"""Exit codes of the ``simwallet`` command and the translation of backend errors into them.

Theory of operation: commands call the library and let its errors rise. The
root group (``root.py``) catches them once, at the edge, and :func:`translate`
turns each into a :class:`CliError`, a :class:`click.ClickException` whose
``exit_code`` is one of :class:`ExitCode` and whose ``show`` prints either one
line on stderr or, under ``--json``, one JSON document on stdout. Errors that
are expected (a refused transfer, an unreachable database) never print a
traceback; ``-vv`` logs the underlying exception at DEBUG level. Anything else
is a bug and is left to Python's traceback.
"""

from __future__ import annotations

import enum
import logging
import sys
from typing import IO, Any

import click

from simwallet.gateway.errors import GatewayError, IntegrityViolation, RemotePeerError, RequestError, StoreError
from simwallet.provisioning.cli import render
from simwallet.provisioning.errors import ProvisioningError

log = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    OK = 0
    USER = 1  # the request was refused or malformed; nothing was written
    USAGE = 2  # click's own: unknown option, missing argument, bad --config
    REMOTE = 3  # a remote peer (bank host, SMSC) failed
    INTEGRITY = 4  # the stored ledger breaks an invariant (ledger verify)
    STORE = 5  # the database is unreachable, refused the work, or its schema is behind


EXIT_CODES_HELP = """\b
Exit codes:
  0  success (a duplicate request that was already posted included)
  1  request refused or malformed: bad amount, unknown account,
     insufficient funds, limit, idempotency conflict; nothing written
  2  usage: unknown option or command, missing argument, bad --config
  3  a remote peer (bank host, SMSC) failed
  4  integrity violation: `ledger verify` found a broken invariant
  5  database unreachable, schema behind (run `simwallet db upgrade`),
     or a database error
\b
With --json every command prints one JSON document on stdout, errors
included: {"error": {"code": ..., "field": ..., "message": ..., "exit_code": ...}}.
Without --json, errors are one line on stderr.
"""


class CliError(click.ClickException):
    """An expected failure: a machine-readable code, the field at fault, and an exit code."""

    exit_code = ExitCode.USER

    def __init__(self, message: str, *, code: str, field: str | None = None, json_output: bool = False,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.json_output = json_output
        self.extra = dict(extra or {})

    def document(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "field": self.field, "message": self.message,
                          "exit_code": int(self.exit_code), **self.extra}}

    def show(self, file: IO[Any] | None = None) -> None:
        if self.json_output:
            render.emit_json(self.document())
            return
        # Campaign file errors already read "file:line: field: …".
        where = f"{self.field}: " if self.field and f"{self.field}:" not in self.message else ""
        click.echo(f"Error: {where}{self.message} ({self.code})", err=True, file=file)


class UserError(CliError):
    exit_code = ExitCode.USER


class UsageFailure(CliError):
    exit_code = ExitCode.USAGE


class RemoteFailure(CliError):
    exit_code = ExitCode.REMOTE


class IntegrityFailure(CliError):
    exit_code = ExitCode.INTEGRITY


class StoreFailure(CliError):
    exit_code = ExitCode.STORE


def refused(exc: RequestError, *, json_output: bool, **extra: Any) -> UserError:
    """The error for a request the ledger refused; ``extra`` (the idempotency key) goes into the JSON document."""
    return UserError(exc.message, code=exc.code, field=exc.field, json_output=json_output, extra=extra)


def _first_lines(text: str) -> str:
    # SQLAlchemy appends "(Background on this error at: …)" and sometimes the
    # SQL statement with its parameters; neither helps the operator.
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith(("(Background on", "[SQL:", "[parameters:"))]
    return " ".join(kept) or text


# Backend error class -> CLI error class; the first match wins, so the root class comes last.
_BY_CLASS: tuple[tuple[type[GatewayError], type[CliError]], ...] = (
    (IntegrityViolation, IntegrityFailure),
    (RemotePeerError, RemoteFailure),
    (StoreError, StoreFailure),
    (GatewayError, UserError),
)


def _provisioning(exc: ProvisioningError, *, json_output: bool) -> CliError:
    """PC/SC, card and journal failures: a reader or card that fails is a remote peer (3); a refused step, a
    wrong card, a key with too few tries, a bad value or a journal for other input are the request's (1)."""
    # Imported here: only a program that raised one of these has loaded their modules (and pyscard).
    from simwallet.provisioning.journal import JournalError
    from simwallet.provisioning.personalize_card import PersonalizationError, TriesTooLowError, WrongCardError
    from simwallet.provisioning.reader import CardRemovedError, NoCardError, ReaderBusyError, ReaderError
    from simwallet.provisioning.values import CardValueError
    from simwallet.provisioning.yamlpos import ProfileError

    if isinstance(exc, PersonalizationError):
        code = "personalization_failed"
        if isinstance(exc, WrongCardError):
            code = "wrong_card"
        elif isinstance(exc, TriesTooLowError):
            code = "tries_too_low"
        return UserError(str(exc), code=code, field=exc.field, json_output=json_output, extra=exc.to_json())
    if isinstance(exc, ReaderError):
        code = {CardRemovedError: "card_removed", NoCardError: "no_card", ReaderBusyError: "reader_busy"}.get(type(exc), "reader_error")
        return RemoteFailure(str(exc), code=code, json_output=json_output, extra={"reader": exc.reader})
    if isinstance(exc, CardValueError):
        return UserError(str(exc), code="card_value_invalid", field=exc.name, json_output=json_output)
    if isinstance(exc, ProfileError):
        return UserError(str(exc), code="profile_invalid", json_output=json_output)
    if isinstance(exc, JournalError):
        return UserError(str(exc), code="journal_error", field="journal", json_output=json_output)
    return UserError(str(exc), code="provisioning_error", json_output=json_output)


def translate(exc: BaseException, *, json_output: bool) -> CliError | None:
    """The CLI error for an expected failure, or ``None`` for anything that is a bug."""
    if isinstance(exc, ProvisioningError):
        return _provisioning(exc, json_output=json_output)
    if isinstance(exc, RequestError):
        return refused(exc, json_output=json_output)
    if isinstance(exc, GatewayError):
        cls = next(cli_cls for gw_cls, cli_cls in _BY_CLASS if isinstance(exc, gw_cls))
        return cls(_first_lines(str(exc)), code=exc.code, json_output=json_output)
    if json_output and isinstance(exc, click.UsageError):
        param = exc.param if isinstance(exc, click.BadParameter) else None
        return UsageFailure(exc.format_message(), code="usage", field=param.name if param is not None else None, json_output=True)
    # Only a program that has imported SQLAlchemy can raise its errors; looking
    # it up here keeps `simwallet --help` from importing it.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        message = f"database error: {_first_lines(str(orig if orig is not None else exc))}"
        return StoreFailure(message, code=StoreError.code, json_output=json_output)
    return None
