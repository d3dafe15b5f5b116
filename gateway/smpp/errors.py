"""SMPP 3.4 command_status values (§5.1.3, Table 5-2) and the error root of :mod:`simwallet.gateway.smpp`.

Every error of the package is an :class:`SmppError` carrying the
``command_status`` that says what went wrong in SMPP's own terms, so a session
can put it straight into a response PDU. The split follows who is at fault::

    GatewayError
    └── SmppError                       code: the status name, command_status: the CommandStatus
        ├── SmppUsageError (ValueError) local misuse: a field beyond its limit, a PDU sent in the wrong state
        │   ├── FieldError              a field value that SMPP cannot carry; ``field`` names it
        │   └── WindowFull              the window of outstanding requests is full: wait for responses
        └── SmppProtocolError           remote: the peer sent bytes that are not SMPP (also a RemotePeerError)
            ├── MalformedPdu            the header is fine, the body is not: answer it, keep the link
            └── FramingError            command_length is impossible: the stream cannot be resynchronised

Decision: :class:`SmppError` derives from
:class:`~simwallet.gateway.errors.GatewayError` the way
:class:`~simwallet.gateway.errors.RequestError` does: ``code`` stays a stable
string (the status name, ``"ESME_RINVCMDLEN"``) and the typed value sits
beside it in ``command_status``.
"""

from __future__ import annotations

import enum

from simwallet.gateway.errors import GatewayError, RemotePeerError


class CommandStatus(enum.IntEnum):
    """§5.1.3 Table 5-2: the command_status values SMPP 3.4 defines."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF

    @property
    def meaning(self) -> str:
        """The description Table 5-2 gives."""
        return _MEANINGS[self]


# Table 5-2, "Description" column.
_MEANINGS: dict[CommandStatus, str] = {
    CommandStatus.ESME_ROK: "No Error",
    CommandStatus.ESME_RINVMSGLEN: "Message Length is invalid",
    CommandStatus.ESME_RINVCMDLEN: "Command Length is invalid",
    CommandStatus.ESME_RINVCMDID: "Invalid Command ID",
    CommandStatus.ESME_RINVBNDSTS: "Incorrect BIND Status for given command",
    CommandStatus.ESME_RALYBND: "ESME Already in Bound State",
    CommandStatus.ESME_RINVPRTFLG: "Invalid Priority Flag",
    CommandStatus.ESME_RINVREGDLVFLG: "Invalid Registered Delivery Flag",
    CommandStatus.ESME_RSYSERR: "System Error",
    CommandStatus.ESME_RINVSRCADR: "Invalid Source Address",
    CommandStatus.ESME_RINVDSTADR: "Invalid Dest Addr",
    CommandStatus.ESME_RINVMSGID: "Message ID is invalid",
    CommandStatus.ESME_RBINDFAIL: "Bind Failed",
    CommandStatus.ESME_RINVPASWD: "Invalid Password",
    CommandStatus.ESME_RINVSYSID: "Invalid System ID",
    CommandStatus.ESME_RCANCELFAIL: "Cancel SM Failed",
    CommandStatus.ESME_RREPLACEFAIL: "Replace SM Failed",
    CommandStatus.ESME_RMSGQFUL: "Message Queue Full",
    CommandStatus.ESME_RINVSERTYP: "Invalid Service Type",
    CommandStatus.ESME_RINVNUMDESTS: "Invalid number of destinations",
    CommandStatus.ESME_RINVDLNAME: "Invalid Distribution List name",
    CommandStatus.ESME_RINVDESTFLAG: "Destination flag is invalid (submit_multi)",
    CommandStatus.ESME_RINVSUBREP: "Invalid 'submit with replace' request",
    CommandStatus.ESME_RINVESMCLASS: "Invalid esm_class field data",
    CommandStatus.ESME_RCNTSUBDL: "Cannot Submit to Distribution List",
    CommandStatus.ESME_RSUBMITFAIL: "submit_sm or submit_multi failed",
    CommandStatus.ESME_RINVSRCTON: "Invalid Source address TON",
    CommandStatus.ESME_RINVSRCNPI: "Invalid Source address NPI",
    CommandStatus.ESME_RINVDSTTON: "Invalid Destination address TON",
    CommandStatus.ESME_RINVDSTNPI: "Invalid Destination address NPI",
    CommandStatus.ESME_RINVSYSTYP: "Invalid system_type field",
    CommandStatus.ESME_RINVREPFLAG: "Invalid replace_if_present flag",
    CommandStatus.ESME_RINVNUMMSGS: "Invalid number of messages",
    CommandStatus.ESME_RTHROTTLED: "Throttling error (ESME has exceeded allowed message limits)",
    CommandStatus.ESME_RINVSCHED: "Invalid Scheduled Delivery Time",
    CommandStatus.ESME_RINVEXPIRY: "Invalid message validity period (Expiry time)",
    CommandStatus.ESME_RINVDFTMSGID: "Predefined Message Invalid or Not Found",
    CommandStatus.ESME_RX_T_APPN: "ESME Receiver Temporary App Error Code",
    CommandStatus.ESME_RX_P_APPN: "ESME Receiver Permanent App Error Code",
    CommandStatus.ESME_RX_R_APPN: "ESME Receiver Reject Message Error Code",
    CommandStatus.ESME_RQUERYFAIL: "query_sm request failed",
    CommandStatus.ESME_RINVOPTPARSTREAM: "Error in the optional part of the PDU Body",
    CommandStatus.ESME_ROPTPARNOTALLWD: "Optional Parameter not allowed",
    CommandStatus.ESME_RINVPARLEN: "Invalid Parameter Length",
    CommandStatus.ESME_RMISSINGOPTPARAM: "Expected Optional Parameter missing",
    CommandStatus.ESME_RINVOPTPARAMVAL: "Invalid Optional Parameter Value",
    CommandStatus.ESME_RDELIVERYFAILURE: "Delivery Failure (used for data_sm_resp)",
    CommandStatus.ESME_RUNKNOWNERR: "Unknown Error",
}

_BY_VALUE: dict[int, CommandStatus] = {status.value: status for status in CommandStatus}


def command_status(value: int) -> int:
    """``value`` as a :class:`CommandStatus` when Table 5-2 names it, else the plain int.

    Values 0x400–0x4FF are the SMSC vendors' own (Table 5-2, "Reserved for SMSC
    vendor specific errors"); a peer may send any 32-bit value, so parsing never
    refuses an unknown one.
    """
    return _BY_VALUE.get(value, value)


def status_name(value: int) -> str:
    """``ESME_…`` for a known status, ``0x0000045A`` otherwise (for logs)."""
    known = _BY_VALUE.get(value)
    return known.name if known is not None else f"0x{value:08X}"


class SmppError(GatewayError):
    """Root of every error raised by :mod:`simwallet.gateway.smpp`.

    ``command_status`` is the status a response PDU would carry for this error;
    ``field`` names the PDU field at fault when there is one.
    """

    def __init__(self, code: CommandStatus, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code.name
        self.command_status = code
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code}{where}: {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take extra keyword arguments; they travel in the state dict.
        return (type(self), (self.command_status, self.message), dict(self.__dict__))


class SmppUsageError(SmppError, ValueError):
    """This process misused the package: a field beyond its limit, a PDU not allowed in the session's state."""


class FieldError(SmppUsageError):
    """A field value that SMPP 3.4 cannot carry (too long, out of range, not encodable); ``field`` names it."""


class WindowFull(SmppUsageError):
    """Every slot of the window of outstanding requests is taken; send again after a response or a timeout."""


class SmppProtocolError(SmppError, RemotePeerError):
    """The peer sent bytes that break SMPP 3.4.

    ``command_id`` and ``sequence_number`` are those of the offending PDU when
    its header could be read (None otherwise), so that the answer (a
    generic_nack or the request's own response) can echo them.
    """

    def __init__(
        self,
        code: CommandStatus,
        message: str,
        *,
        field: str | None = None,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        super().__init__(code, message, field=field)
        self.command_id = command_id
        self.sequence_number = sequence_number


class MalformedPdu(SmppProtocolError):
    """A PDU whose header is sound but whose body is not (or whose command_id is unknown).

    The reader has consumed it; the stream goes on with the next PDU.
    """


class FramingError(SmppProtocolError):
    """A command_length below the header's 16 octets or above the limit: the stream cannot go on."""
