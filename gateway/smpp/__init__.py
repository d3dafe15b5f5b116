"""simwallet.gateway.smpp: SMPP 3.4, the pure layers the gateway (ESME) and the embedded SMSC share.

* :mod:`.errors` — :class:`CommandStatus` (Table 5-2) and the error root :class:`SmppError`.
* :mod:`.tlv` — optional parameters (:class:`OptionalParams`, :class:`Tlv`).
* :mod:`.codec` — command_id values and the generic body codec (field kinds, checks, encoder, decoder).
* :mod:`.bodies` — one frozen dataclass per PDU body, each declaring its wire layout once.
* :mod:`.pdu` — :class:`Pdu`, :func:`parse_pdu` and the stream splitter :class:`PduReader`.
* :mod:`.window` — sequence numbers, the window of outstanding requests, :func:`backoff_s`.
* :mod:`.session` — :class:`SmppSession`, the sans-I/O state machine of either side.

Only :mod:`.aio`, the asyncio driver both sides use, opens sockets and reads the clock; the layers above it are pure.
"""

from simwallet.gateway.smpp.errors import (
    CommandStatus,
    FieldError,
    FramingError,
    MalformedPdu,
    SmppError,
    SmppProtocolError,
    SmppUsageError,
    WindowFull,
)
from simwallet.gateway.smpp.pdu import (
    PDU_OCTETS_MAX,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Header,
    Pdu,
    PduBody,
    PduReader,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    parse_pdu,
)
from simwallet.gateway.smpp.session import (
    ConnectionClosed,
    Event,
    ProtocolViolation,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Role,
    SessionConfig,
    SessionState,
    SmppSession,
    Throttled,
    Unbound,
    UnexpectedResponse,
)
from simwallet.gateway.smpp.tlv import ItsSessionInfo, MessageState, OptionalParams, Tlv, TlvTag, UssdServiceOp
from simwallet.gateway.smpp.window import backoff_s

__all__ = [
    "PDU_OCTETS_MAX",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CommandId",
    "CommandStatus",
    "ConnectionClosed",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "Event",
    "FieldError",
    "FramingError",
    "GenericNack",
    "Header",
    "ItsSessionInfo",
    "MalformedPdu",
    "MessageState",
    "OptionalParams",
    "Pdu",
    "PduBody",
    "PduReader",
    "ProtocolViolation",
    "RequestFailed",
    "RequestReceived",
    "ResponseReceived",
    "ResponseTimedOut",
    "Role",
    "SessionConfig",
    "SessionState",
    "SmppError",
    "SmppProtocolError",
    "SmppSession",
    "SmppUsageError",
    "SubmitSm",
    "SubmitSmResp",
    "Throttled",
    "Tlv",
    "TlvTag",
    "Unbind",
    "UnbindResp",
    "Unbound",
    "UnexpectedResponse",
    "UssdServiceOp",
    "WindowFull",
    "backoff_s",
    "parse_pdu",
]
