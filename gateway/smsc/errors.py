"""The error root of :mod:`simwallet.gateway.smsc` (the embedded SMSC simulator and its simulated phones).

::

    GatewayError
    └── SmscError                   code: a stable string
        ├── SmscConfigError         (ValueError) an account or limit that cannot be; ``field`` names it
        ├── SmscStoreError          (StoreError) the message store cannot be opened or written
        └── PhoneError              (ValueError) a phone client asked for something it cannot do
            └── InboxTimeout        (TimeoutError) no message came to the inbox in time

What the SMPP link itself does wrong stays an :class:`~simwallet.gateway.smpp.SmppError`
(:mod:`simwallet.gateway.smpp.aio`), raised as it is.
"""

from __future__ import annotations

from simwallet.gateway.errors import GatewayError, StoreError


class SmscError(GatewayError):
    """Root of every error raised by :mod:`simwallet.gateway.smsc`."""

    code = "smsc_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{where}{self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message,), dict(self.__dict__))


class SmscConfigError(SmscError, ValueError):
    """An account, limit or config file the SMSC cannot run with."""

    code = "smsc_config_invalid"


class SmscStoreError(SmscError, StoreError):
    """The SQLite message store could not be opened, read or written."""

    code = "smsc_store_error"


class PhoneError(SmscError, ValueError):
    """A phone client was asked for something it cannot do (an MSISDN it does not carry, a text too long)."""

    code = "phone_error"


class InboxTimeout(PhoneError, TimeoutError):
    """No message reached a simulated phone's inbox in time."""

    code = "phone_inbox_timeout"
