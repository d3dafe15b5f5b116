"""Replies into SMPP submit_sm segments, and mobile-originated parts back into text.

Spec: SMPP 3.4 §5.2.19 (``data_coding``), §5.2.12 (``esm_class``, bit 6 UDHI =
0x40), §5.3.2.22–24 (``sar_msg_ref_num``, ``sar_total_segments``,
``sar_segment_seqnum``), §4.4.1 (``short_message`` at most 254 octets);
3GPP TS 23.040 §9.2.3.24.1 and §9.2.3.24.8 (concatenation IEs ``00`` and
``08``); TS 23.038 §6.2.1 (GSM 7-bit default alphabet), §6.2.3 (UCS2).

Theory of operation. :func:`encode_reply` picks the alphabet: the GSM default
alphabet (:mod:`simwallet.applet.protocols.gsm7`, extension table included)
when every character is in it, UCS2 otherwise. In SMPP the GSM text travels
*unpacked*, one septet per octet, as most SMSCs expect with ``data_coding``
0x00; the SMSC packs it for the air interface. A text of at most 160 septets
(70 UTF-16 units) is one segment. A longer one is cut into parts of at most 153
septets (67 units), each after the 6-octet header ``05 00 03 ref total seq``
(TS 23.040 §9.2.3.24.1, built by :mod:`simwallet.applet.protocols.sms_udh`)
and with UDHI set in ``esm_class``. The cut falls between characters, so an
escape and its extension code (2 septets) or a surrogate pair (2 units) always
travel in one part; a part may therefore be one septet or unit short.

:class:`Reassembler` is the sans-I/O receiving side: :meth:`Reassembler.receive`
takes one :class:`MoPart` and the caller's clock reading and returns the
:class:`MoMessage` a part completes (or a single-part message at once), and
None while parts are missing. Concatenation comes either in a user data header
(IEI ``00`` with an 8-bit reference, ``08`` with a 16-bit one) or in the SAR
TLVs; parts are keyed by (source address, scheme, reference, total). Payloads
are joined before decoding, so a sender that split an escape sequence or a
surrogate pair between parts is still read correctly.

Decisions, each where the specs leave room:

* A part repeated (same key and sequence number) is ignored, the first copy
  kept; so is a part of a message completed within the timeout (an SMSC
  redelivering after a lost deliver_sm_resp).
* A concatenation IE that TS 23.040 §9.2.3.24.1 tells the receiver to ignore
  (0 parts, sequence number 0 or above the total) leaves the part a
  single-part message; SAR TLVs out of range are an error (SMPP has no such
  rule). When both a header and SAR TLVs are present, the header counts.
* Bounds: at most ``pending_max`` incomplete messages, each waiting at most
  ``timeout_s`` from its first part (``now`` is a monotonic clock in seconds);
  a message over time, or the oldest one when a new message finds no room, is
  dropped and reported by :meth:`Reassembler.expire` as an
  :class:`IncompleteMessage`, so the service can answer "message incomplete".
  Reports wait in a queue of at most ``pending_max`` (older ones beyond are
  counted in ``reports_lost``).
* Decoding: ``0x00`` unpacked GSM septets (an octet above 0x7F is an error),
  ``0x01`` IA5 (ASCII), ``0x03`` Latin-1, ``0x08`` UCS2 big-endian read as
  UTF-16 (surrogate pairs allowed, a lone surrogate is an error). Every other
  data_coding is refused with :class:`MoDecodeError` code
  ``mo_unsupported_coding``. No other exception escapes :meth:`~Reassembler.receive`.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.gsm7 import can_encode_gsm7, decode_gsm7, encode_gsm7
from simwallet.applet.protocols.sms_udh import Concatenation, UserDataHeader, parse_udh
from simwallet.gateway.sms.errors import MoDecodeError, SegmentError

# SMPP 3.4 §5.2.19 data_coding values this module reads or writes.
DATA_CODING_DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38 here, one septet per octet
DATA_CODING_IA5 = 0x01
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
# SMPP 3.4 §5.2.12: esm_class bit 6, UDHI indicator.
ESM_CLASS_UDHI = 0x40
# SMPP 3.4 §4.4.1: short_message holds at most 254 octets.
SHORT_MESSAGE_OCTETS_MAX = 254
# TS 23.038 / 23.040: one SMS holds 140 octets: 160 septets or 70 UCS2 units;
# with the 6-octet concatenation header 153 septets or 67 units.
SINGLE_SEPTETS_MAX = 160
SINGLE_UCS2_UNITS_MAX = 70
PART_SEPTETS_MAX = 153
PART_UCS2_UNITS_MAX = 67
# TS 23.040 §9.2.3.24.1: the 8-bit reference and the part counts are one octet.
REFERENCE_MAX = 0xFF
CONCATENATED_PARTS_MAX = 255
# A reply longer than 8 SMS is a bug of the reply, and 8 are already costly.
REPLY_PARTS_MAX = 8
# A command is short: 16 parts (about 2,400 GSM characters) is far beyond any.
MO_PARTS_MAX = 16
# Incomplete MO messages held at once: bounds memory to about 1000 × 16 × 254 octets.
PENDING_MAX = 1000
# Parts of one message arrive within seconds; three minutes covers SMSC retries.
REASSEMBLY_TIMEOUT_S = 180.0

_SUPPORTED_CODINGS = frozenset({DATA_CODING_DEFAULT, DATA_CODING_IA5, DATA_CODING_LATIN1, DATA_CODING_UCS2})
_SAR_REFERENCE_MAX = 0xFFFF


@dataclass(frozen=True, slots=True)
class Segment:
    """One submit_sm worth of a reply: ``data_coding``, ``esm_class`` and ``short_message``."""

    data_coding: int
    esm_class: int
    short_message: bytes


def _ucs2(text: str) -> bytes:
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise SegmentError(f"text holds a lone surrogate at index {exc.start}") from exc


def _units(text: str, *, gsm: bool) -> list[bytes]:
    """The encoding of each character: septets for GSM, UTF-16 big-endian for UCS2."""
    return [encode_gsm7(char) for char in text] if gsm else [_ucs2(char) for char in text]


def encode_reply(text: str, *, ref: int, parts_max: int = REPLY_PARTS_MAX) -> tuple[Segment, ...]:
    """The segments of ``text``: one without header, or 2..``parts_max`` with UDH reference ``ref``.

    Raises :class:`SegmentError` when ``ref`` is not 0..255 or the text needs
    more than ``parts_max`` parts.
    """
    if not 0 <= ref <= REFERENCE_MAX:
        raise SegmentError(f"concatenation reference {ref} outside 0..{REFERENCE_MAX}")
    if not 1 <= parts_max <= CONCATENATED_PARTS_MAX:
        raise SegmentError(f"parts_max {parts_max} outside 1..{CONCATENATED_PARTS_MAX}")
    gsm = can_encode_gsm7(text)
    coding = DATA_CODING_DEFAULT if gsm else DATA_CODING_UCS2
    # Octet budgets: a septet is one octet unpacked, a UCS2 unit two.
    single, part = (SINGLE_SEPTETS_MAX, PART_SEPTETS_MAX) if gsm else (2 * SINGLE_UCS2_UNITS_MAX, 2 * PART_UCS2_UNITS_MAX)
    if len(text) * (1 if gsm else 2) <= single:  # may fit one segment (a character takes 1-2 septets, 2 or 4 octets)
        whole = encode_gsm7(text) if gsm else _ucs2(text)
        if len(whole) <= single:
            return (Segment(coding, 0, whole),)
    units = _units(text, gsm=gsm)  # per character: a part never splits an escape pair or a UTF-16 pair
    chunks: list[bytearray] = [bytearray()]
    for unit in units:
        if len(chunks[-1]) + len(unit) > part:
            chunks.append(bytearray())
        chunks[-1] += unit
    if len(chunks) > parts_max:
        raise SegmentError(f"reply needs {len(chunks)} parts, more than {parts_max}")
    total = len(chunks)
    return tuple(
        Segment(coding, ESM_CLASS_UDHI, UserDataHeader((Concatenation(ref, total, seq),)).to_bytes() + bytes(chunk))
        for seq, chunk in enumerate(chunks, start=1)
    )


def decode_payload(data_coding: int, payload: bytes) -> str:
    """The text of a short_message payload (header removed) in ``data_coding``; MoDecodeError otherwise."""
    if data_coding == DATA_CODING_DEFAULT:
        if any(octet > 0x7F for octet in payload):
            raise MoDecodeError("GSM 7-bit (data_coding 0x00) short_message holds an octet above 0x7F")
        try:
            return decode_gsm7(payload)
        except CodecError as exc:
            raise MoDecodeError(f"GSM 7-bit text does not decode: {exc}") from exc
    if data_coding == DATA_CODING_IA5:
        try:
            return payload.decode("ascii")
        except UnicodeDecodeError as exc:
            raise MoDecodeError(f"IA5 (data_coding 0x01) octet {payload[exc.start]:#04x} above 0x7F at {exc.start}") from exc
    if data_coding == DATA_CODING_LATIN1:
        return payload.decode("latin-1")
    if data_coding == DATA_CODING_UCS2:
        if len(payload) % 2:
            raise MoDecodeError(f"UCS2 (data_coding 0x08) text of odd length {len(payload)}")
        try:
            return payload.decode("utf-16-be")
        except UnicodeDecodeError as exc:
            raise MoDecodeError(f"UCS2 text holds a lone surrogate at octet {exc.start}") from exc
    raise _unsupported(data_coding)


def _unsupported(data_coding: int) -> MoDecodeError:
    return MoDecodeError(
        f"data_coding {data_coding:#04x} is not supported (0x00 GSM 7-bit, 0x01 IA5, 0x03 Latin-1, 0x08 UCS2)",
        "mo_unsupported_coding",
    )


@dataclass(frozen=True, slots=True)
class MoPart:
    """One deliver_sm's worth of a mobile-originated message, with its optional SAR TLVs."""

    source: str
    data_coding: int
    esm_class: int
    short_message: bytes
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_id: str = ""  # the SMSC's id of this part (what a redelivery repeats), if the channel has one


@dataclass(frozen=True, slots=True)
class MoMessage:
    """A complete mobile-originated text, the number of parts it came in and their SMSC ids (in part order)."""

    source: str
    text: str
    parts: int
    # How it was delivered, not what it says: two deliveries of one message compare equal.
    message_ids: tuple[str, ...] = field(default=(), compare=False)


class DropReason(enum.StrEnum):
    """Why an incomplete message was given up."""

    TIMEOUT = "timeout"
    EVICTED = "evicted"


@dataclass(frozen=True, slots=True)
class IncompleteMessage:
    """A message dropped before all its parts came: the service may answer "message incomplete"."""

    source: str
    reference: int
    received: int
    total: int
    reason: DropReason
    message_ids: tuple[str, ...] = field(default=(), compare=False)  # the SMSC ids of the parts received


class _Scheme(enum.StrEnum):
    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"


@dataclass(frozen=True, slots=True)
class _Split:
    """A part with its header removed and its concatenation fields (None: a message of its own)."""

    payload: bytes
    scheme: _Scheme | None = None
    reference: int = 0
    total: int = 1
    sequence: int = 1


def _split(part: MoPart, parts_max: int) -> _Split:
    if part.data_coding not in _SUPPORTED_CODINGS:
        raise _unsupported(part.data_coding)
    if len(part.short_message) > SHORT_MESSAGE_OCTETS_MAX:
        raise MoDecodeError(f"short_message of {len(part.short_message)} octets exceeds {SHORT_MESSAGE_OCTETS_MAX}", "mo_too_long")
    split = _Split(part.short_message)
    if part.esm_class & ESM_CLASS_UDHI:
        try:
            header, end = parse_udh(part.short_message)
        except CodecError as exc:
            raise MoDecodeError(f"user data header does not parse: {exc}") from exc
        concatenation = header.concatenation
        split = _Split(part.short_message[end:])
        if concatenation is not None:
            scheme = _Scheme.UDH16 if concatenation.wide else _Scheme.UDH8
            split = _Split(split.payload, scheme, concatenation.reference, concatenation.total, concatenation.sequence)
    sar = (part.sar_msg_ref_num, part.sar_total_segments, part.sar_segment_seqnum)
    if split.scheme is None and any(value is not None for value in sar):
        reference, total, sequence = sar
        if reference is None or total is None or sequence is None:
            raise MoDecodeError("SAR TLVs must come as all three of sar_msg_ref_num, sar_total_segments, sar_segment_seqnum")
        if not (0 <= reference <= _SAR_REFERENCE_MAX and 1 <= total <= CONCATENATED_PARTS_MAX and 1 <= sequence <= total):
            raise MoDecodeError(f"SAR TLVs out of range: reference {reference}, segment {sequence} of {total}")
        split = _Split(split.payload, _Scheme.SAR, reference, total, sequence)
    if split.total > parts_max:
        raise MoDecodeError(f"message of {split.total} parts exceeds the limit of {parts_max}", "mo_too_long")
    if split.total == 1:
        return _Split(split.payload)
    return split


_Key = tuple[str, _Scheme, int, int]


@dataclass(slots=True)
class _Pending:
    first_seen: float
    parts: dict[int, tuple[int, bytes, str]] = field(default_factory=dict)  # sequence -> (coding, payload, SMSC id)
    copies: list[str] = field(default_factory=list)  # SMSC ids of parts received again while incomplete


class Reassembler:
    """Joins concatenated mobile-originated parts; bounded in messages held and in time."""

    def __init__(self, *, pending_max: int = PENDING_MAX, timeout_s: float = REASSEMBLY_TIMEOUT_S, parts_max: int = MO_PARTS_MAX) -> None:
        if pending_max < 1 or timeout_s <= 0 or not 1 <= parts_max <= CONCATENATED_PARTS_MAX:
            raise SegmentError(f"bad Reassembler bounds: pending_max {pending_max}, timeout_s {timeout_s}, parts_max {parts_max}")
        self.pending_max = pending_max
        self.timeout_s = timeout_s
        self.parts_max = parts_max
        # Insertion order is age order (the clock is monotonic): the oldest entry comes first.
        self._pending: dict[_Key, _Pending] = {}
        # Keys completed within the timeout, with the time of completion: late copies are ignored.
        self._completed: dict[_Key, float] = {}
        self._dropped: deque[IncompleteMessage] = deque()
        #: Drop reports discarded because nobody called expire() for too long.
        self.reports_lost = 0
        #: Whether the last part receive() took is held in an incomplete message (False: it completed one,
        #: or it was a late copy of a part of a message already complete, and nothing of it is kept).
        self.last_held = False

    @property
    def pending(self) -> int:
        """Incomplete messages held now."""
        return len(self._pending)

    def receive(self, part: MoPart, *, now: float) -> MoMessage | None:
        """The message ``part`` completes, or None; :class:`MoDecodeError` for a part that does not decode."""
        self.last_held = False
        split = _split(part, self.parts_max)
        self._expire(now)
        if split.scheme is None:
            return MoMessage(part.source, decode_payload(part.data_coding, split.payload), 1, (part.message_id,))
        key: _Key = (part.source, split.scheme, split.reference, split.total)
        if key in self._completed:
            return None
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.pending_max:
                oldest = next(iter(self._pending))
                self._drop(oldest, self._pending.pop(oldest), DropReason.EVICTED)
            entry = self._pending[key] = _Pending(now)
        self.last_held = True
        if split.sequence in entry.parts:
            entry.copies.append(part.message_id)
            return None
        entry.parts[split.sequence] = (part.data_coding, split.payload, part.message_id)
        if len(entry.parts) < split.total:
            return None
        self.last_held = False
        del self._pending[key]
        self._completed[key] = now
        while len(self._completed) > self.pending_max:
            del self._completed[next(iter(self._completed))]
        return MoMessage(part.source, _join(entry), split.total, _ids(entry))

    def expire(self, *, now: float) -> tuple[IncompleteMessage, ...]:
        """Drop messages older than ``timeout_s`` and report every message dropped since the last call."""
        self._expire(now)
        reports = tuple(self._dropped)
        self._dropped.clear()
        return reports

    def _expire(self, now: float) -> None:
        deadline = now - self.timeout_s
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if entry.first_seen > deadline:
                break
            del self._pending[key]
            self._drop(key, entry, DropReason.TIMEOUT)
        while self._completed and next(iter(self._completed.values())) <= deadline:
            del self._completed[next(iter(self._completed))]

    def _drop(self, key: _Key, entry: _Pending, reason: DropReason) -> None:
        if len(self._dropped) >= self.pending_max:
            self._dropped.popleft()
            self.reports_lost += 1
        source, _, reference, total = key
        self._dropped.append(IncompleteMessage(source, reference, len(entry.parts), total, reason, _ids(entry)))


def _ids(entry: _Pending) -> tuple[str, ...]:
    """The SMSC ids of a message's parts in part order, then those of copies received again."""
    return tuple(entry.parts[sequence][2] for sequence in sorted(entry.parts)) + tuple(entry.copies)


def _join(entry: _Pending) -> str:
    """The text of a complete message: payloads joined then decoded when they share a coding."""
    parts = [entry.parts[sequence][:2] for sequence in sorted(entry.parts)]
    codings = {coding for coding, _ in parts}
    if len(codings) == 1:
        return decode_payload(codings.pop(), b"".join(payload for _, payload in parts))
    return "".join(decode_payload(coding, payload) for coding, payload in parts)
