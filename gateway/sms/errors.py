"""The errors of :mod:`simwallet.gateway.sms`, split by who is at fault.

::

    GatewayError
    └── SmsError                          root of this package; ``code`` is machine-readable
        ├── CommandSyntaxError (ValueError)   the sender: an SMS command that does not parse
        ├── MoDecodeError (ValueError)        the peer: MO parts that do not decode or reassemble
        ├── SegmentError (ValueError)         this process: a reply that cannot be segmented
        └── CatalogueError (TypeError)        this process: an unknown message or wrong parameters

* :class:`CommandSyntaxError` is expected traffic, not a fault of the gateway:
  it says which command was recognised (``command``, None for none), the
  sender's language (``lang``) and which catalogue message answers it
  (``message_id`` with ``params``), so the service can reply
  ``render(err.message_id, err.lang, **err.params)``. Its text never echoes
  the sender's input, so a PIN typed in the wrong place cannot leak into a
  log through it.
* :class:`MoDecodeError` — the short_message bytes, their data_coding or
  their concatenation information are wrong (remote protocol error).
* :class:`SegmentError`, :class:`CatalogueError` — a bug of the caller: a
  reply longer than the part limit, a reference out of range, a message id
  that does not exist, a missing or unexpected parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from simwallet.gateway.errors import GatewayError

if TYPE_CHECKING:
    from simwallet.gateway.sms.catalogue import Lang, MessageId
    from simwallet.gateway.sms.commands import CommandKind


class SmsError(GatewayError):
    """Root of every error raised by :mod:`simwallet.gateway.sms`."""

    code: str = "sms_error"


class CommandSyntaxError(SmsError, ValueError):
    """An SMS command that does not parse; carries what is needed to answer it.

    ``detail`` says what was wrong in words of this module, never in the
    sender's own characters (they may hold a PIN).
    """

    code = "sms_syntax"

    def __init__(
        self,
        command: CommandKind | None,
        lang: Lang,
        message_id: MessageId,
        detail: str,
        params: Mapping[str, int | str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.command = command
        self.lang = lang
        self.message_id = message_id
        self.detail = detail
        self.params: Mapping[str, int | str] = dict(params or {})

    def __str__(self) -> str:
        what = self.command.value if self.command is not None else "unknown command"
        return f"{self.code} [{what}, {self.lang.value}, reply {self.message_id.value}]: {self.detail}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.command, self.lang, self.message_id, self.detail, dict(self.params)))


class MoDecodeError(SmsError, ValueError):
    """Mobile-originated parts whose bytes, coding or concatenation are wrong.

    ``code`` is ``mo_malformed`` (bytes or concatenation fields),
    ``mo_unsupported_coding`` (a data_coding this gateway does not read) or
    ``mo_too_long`` (more parts or octets than the named limits allow).
    """

    code = "mo_malformed"

    def __init__(self, message: str, code: str = "mo_malformed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.code))


class SegmentError(SmsError, ValueError):
    """Misuse of :mod:`.segments`: a reply that needs too many parts, a bad reference, bad bounds."""

    code = "reply_unsegmentable"


class CatalogueError(SmsError, TypeError):
    """A reply asked for wrongly: unknown message id or language, a missing, unexpected or mistyped parameter."""

    code = "catalogue_misuse"
