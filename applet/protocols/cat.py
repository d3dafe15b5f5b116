"""The Card Application Toolkit codecs in one place: ETSI TS 102 223 (§5.2 profile, §6 proactive commands,
§6.8 terminal response, §7 envelopes, §8 data objects) and 3GPP TS 31.111.

Theory of operation. The codecs are pure functions and frozen dataclasses over
``bytes``, split by message family into sibling modules; this module re-exports
their public names so that the card's toolkit engine, the handset simulator and
the gateway import from one place:

* :func:`parse_proactive_command` / ``command.to_bytes()`` — the ``D0`` object
  FETCH returns (:mod:`.cat_commands`, :mod:`.cat_menus`);
* :func:`parse_terminal_response` / :class:`TerminalResponse` (:mod:`.cat_response`);
* :func:`parse_envelope` / :class:`MenuSelection`, :class:`SmsPpDownload`,
  :class:`EventDownload` (:mod:`.cat_envelope`);
* :func:`parse_terminal_profile` / :class:`TerminalProfile` (:mod:`.cat_profile`);
* the simple data objects (:mod:`.cat_tlv`) and enumerations (:mod:`.cat_enums`).

FETCH and the 91XX status word live in the card; the lengths here are the ones
those need (``PROACTIVE_COMMAND_BYTES_MAX`` = 256: XX = 00 means 256 bytes).
"""

from __future__ import annotations

from simwallet.applet.protocols.cat_command_base import (
    PROACTIVE_COMMAND_BYTES_MAX,
    PROACTIVE_COMMAND_TAG,
    ProactiveCommandBase,
)
from simwallet.applet.protocols.cat_commands import (
    DisplayText,
    GetInkey,
    GetInput,
    MoreTime,
    PlayTone,
    PollingOff,
    PollInterval,
    ProactiveCommand,
    ProvideLocalInformation,
    Refresh,
    SendShortMessage,
    SetUpEventList,
    UnknownProactiveCommand,
    parse_proactive_command,
    peek_command_details,
)
from simwallet.applet.protocols.cat_enums import (
    ICON_NOT_SELF_EXPLANATORY,
    ICON_SELF_EXPLANATORY,
    TON_NPI_INTERNATIONAL_ISDN,
    TON_NPI_UNKNOWN_ISDN,
    Alphabet,
    CommandType,
    Dcs,
    DeviceIdentity,
    DisplayTextQualifier,
    EventType,
    GeneralResult,
    GetInkeyQualifier,
    GetInputQualifier,
    LocalInformationType,
    PlayToneQualifier,
    RefreshMode,
    SelectItemQualifier,
    SendShortMessageQualifier,
    SetUpMenuQualifier,
    Tag,
    TerminalProblem,
    TimeUnit,
    Tone,
    known,
)
from simwallet.applet.protocols.cat_envelope import (
    ENVELOPE_BYTES_MAX,
    Envelope,
    EnvelopeTag,
    EventDownload,
    MenuSelection,
    SmsPpDownload,
    UnknownEnvelope,
    parse_envelope,
)
from simwallet.applet.protocols.cat_menus import (
    SelectItem,
    SetUpMenu,
)
from simwallet.applet.protocols.cat_profile import (
    TERMINAL_PROFILE_BYTES_MAX,
    Facility,
    TerminalProfile,
    parse_terminal_profile,
)
from simwallet.applet.protocols.cat_response import (
    TERMINAL_RESPONSE_BYTES_MAX,
    TerminalResponse,
    parse_terminal_response,
)
from simwallet.applet.protocols.cat_tlv import (
    Address,
    CommandDetails,
    CtlvReader,
    DeviceIdentities,
    Duration,
    FileList,
    IconIdentifier,
    Item,
    ItemIconIdentifierList,
    Language,
    ResponseLength,
    Result,
    TextString,
    dcs_alphabet,
    decode_ucs2,
    encode_ucs2,
)

__all__ = [
    "ENVELOPE_BYTES_MAX",
    "ICON_NOT_SELF_EXPLANATORY",
    "ICON_SELF_EXPLANATORY",
    "PROACTIVE_COMMAND_BYTES_MAX",
    "PROACTIVE_COMMAND_TAG",
    "TERMINAL_PROFILE_BYTES_MAX",
    "TERMINAL_RESPONSE_BYTES_MAX",
    "TON_NPI_INTERNATIONAL_ISDN",
    "TON_NPI_UNKNOWN_ISDN",
    "Address",
    "Alphabet",
    "CommandDetails",
    "CommandType",
    "CtlvReader",
    "Dcs",
    "DeviceIdentities",
    "DeviceIdentity",
    "DisplayText",
    "DisplayTextQualifier",
    "Duration",
    "Envelope",
    "EnvelopeTag",
    "EventDownload",
    "EventType",
    "Facility",
    "FileList",
    "GeneralResult",
    "GetInkey",
    "GetInkeyQualifier",
    "GetInput",
    "GetInputQualifier",
    "IconIdentifier",
    "Item",
    "ItemIconIdentifierList",
    "Language",
    "LocalInformationType",
    "MenuSelection",
    "MoreTime",
    "PlayTone",
    "PlayToneQualifier",
    "PollInterval",
    "PollingOff",
    "ProactiveCommand",
    "ProactiveCommandBase",
    "ProvideLocalInformation",
    "Refresh",
    "RefreshMode",
    "ResponseLength",
    "Result",
    "SelectItem",
    "SelectItemQualifier",
    "SendShortMessage",
    "SendShortMessageQualifier",
    "SetUpEventList",
    "SetUpMenu",
    "SetUpMenuQualifier",
    "SmsPpDownload",
    "Tag",
    "TerminalProblem",
    "TerminalProfile",
    "TerminalResponse",
    "TextString",
    "TimeUnit",
    "Tone",
    "UnknownEnvelope",
    "UnknownProactiveCommand",
    "dcs_alphabet",
    "decode_ucs2",
    "encode_ucs2",
    "known",
    "parse_envelope",
    "parse_proactive_command",
    "parse_terminal_profile",
    "parse_terminal_response",
    "peek_command_details",
]
