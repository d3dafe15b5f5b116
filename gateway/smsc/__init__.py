"""simwallet.gateway.smsc: the embedded SMSC simulator and the simulated phones attached to it (SMPP 3.4 on loopback).

* :mod:`.config` — accounts (``esme`` applications owning prefixes, ``phones``
  simulators carrying MSISDNs), limits and timers, from TOML or command-line specs.
* :mod:`.router` — the pure rules: routing, the deliver_sm built from a
  submit_sm, the message id TLV (:data:`SMSC_MESSAGE_ID_TAG`), token buckets,
  §7.1 times, Appendix B receipts.
* :mod:`.store` — the persistent message store (SQLite, WAL).
* :mod:`.server` — :class:`SmscServer`, store-and-forward with redelivery,
  throttling and receipts.
* :mod:`.phone` — :class:`PhoneClient` and :class:`Phones`, simulated handsets
  that send MO and receive MT over one bind; :mod:`.inbox` — what they receive.
* :mod:`.errors` — the package's error root, :class:`SmscError`.
"""

from simwallet.gateway.smsc.config import Account, AccountKind, SmscConfig
from simwallet.gateway.smsc.errors import PhoneError, SmscConfigError, SmscError, SmscStoreError
from simwallet.gateway.smsc.inbox import INBOX_MESSAGES_MAX, ReceivedMessage
from simwallet.gateway.smsc.phone import PhoneClient, Phones
from simwallet.gateway.smsc.router import SMSC_MESSAGE_ID_TAG, smsc_message_id
from simwallet.gateway.smsc.server import AccountStats, SmscServer, SmscStats

__all__ = [
    "INBOX_MESSAGES_MAX",
    "SMSC_MESSAGE_ID_TAG",
    "Account",
    "AccountKind",
    "AccountStats",
    "PhoneClient",
    "PhoneError",
    "Phones",
    "ReceivedMessage",
    "SmscConfig",
    "SmscConfigError",
    "SmscError",
    "SmscServer",
    "SmscStats",
    "SmscStoreError",
    "smsc_message_id",
]
