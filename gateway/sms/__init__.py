"""simwallet.gateway.sms: the pure parts of the SMS channel.

* :mod:`.commands` — the command language of the short code (``余额 123456``,
  ``TOPUP 100 123456`` …) parsed into typed commands.
* :mod:`.catalogue` — every reply, in Chinese and English, rendered from a
  message id and checked parameters.
* :mod:`.segments` — replies into SMPP submit_sm segments (GSM 7-bit or UCS2,
  concatenated with a user data header) and mobile-originated parts back into
  text.
* :mod:`.errors` — the package's error root, :class:`SmsError`.

Nothing here does I/O: the SMPP session and the services that run commands
against the ledger sit on top.
"""

from simwallet.gateway.sms.catalogue import Biller, EntryKind, HistoryEntry, Lang, LimitKind, MessageId, render
from simwallet.gateway.sms.commands import (
    Balance,
    BankBalance,
    Bill,
    ChangePin,
    Command,
    CommandKind,
    Help,
    History,
    Pay,
    PayeeKind,
    Start,
    Stop,
    TopUp,
    parse_command,
)
from simwallet.gateway.sms.errors import CatalogueError, CommandSyntaxError, MoDecodeError, SegmentError, SmsError
from simwallet.gateway.sms.segments import IncompleteMessage, MoMessage, MoPart, Reassembler, Segment, encode_reply

__all__ = [
    "Balance",
    "BankBalance",
    "Bill",
    "Biller",
    "CatalogueError",
    "ChangePin",
    "Command",
    "CommandKind",
    "CommandSyntaxError",
    "EntryKind",
    "Help",
    "History",
    "HistoryEntry",
    "IncompleteMessage",
    "Lang",
    "LimitKind",
    "MessageId",
    "MoDecodeError",
    "MoMessage",
    "MoPart",
    "Pay",
    "PayeeKind",
    "Reassembler",
    "Segment",
    "SegmentError",
    "SmsError",
    "Start",
    "Stop",
    "TopUp",
    "encode_reply",
    "parse_command",
    "render",
]
