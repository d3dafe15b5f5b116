"""SMS text: choosing the alphabet, splitting into concatenated segments and reassembling them
(3GPP TS 23.038 §6.2.1, §6.2.3; TS 23.040 §9.2.3.24.1, §9.2.3.24.8).

Theory of operation. :func:`encode_text` sends text in the GSM 7-bit default
alphabet when every character is in it and in UCS2 otherwise. UCS2 is written
as UTF-16BE, so a character outside the BMP becomes a surrogate pair, as
handsets do (TS 23.038 §6.2.3 names UCS2; the pairs are what every current
sender puts there). :func:`split_for_concatenation` fills segments greedily,
character by character, so an extension-table character (escape + code) and a
surrogate pair are never cut: a segment ends early rather than split one.

Capacities follow from the header. Without one a message holds 160 septets or
140 octets (70 UCS2 units). The 8-bit reference concatenation IE makes a
6-octet header: 7 septets with 1 fill bit, leaving 153 septets, or 134 octets
(67 UCS2 units); the 16-bit reference IE makes 7 octets: 152 septets, 133
octets (66 UCS2 units).

:class:`Reassembler` is the receiving side, a pure state object: segments are
keyed by (source, IE kind, reference, total), the clock is injected, a set
that stays open longer than ``expiry_s`` after its first segment is dropped,
and when ``open_messages_max`` sets are open the oldest is dropped to make
room. Every drop is counted by reason; a segment already held is ignored and
counted as a duplicate. A part without a (valid) concatenation IE is a whole
message, returned at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.gsm7 import can_encode_gsm7, decode_gsm7, encode_gsm7
from simwallet.applet.protocols.sms_dcs import Alphabet, DataCoding
from simwallet.applet.protocols.sms_udh import (
    SEGMENTS_MAX,
    UD_OCTETS_MAX,
    UD_SEPTETS_MAX,
    Concatenation,
    InformationElement,
    PortAddressing,
    UserData,
    UserDataHeader,
    header_septets,
)

# A reassembly set may wait this long for its missing segments; the SC
# normally delivers all segments within seconds, and a handset that never
# sees the last one must not hold the others for ever.
REASSEMBLY_EXPIRY_S = 300.0
# Sets open at once; beyond this the oldest is dropped (a sender that never
# completes its messages cannot grow the state without bound).
REASSEMBLY_OPEN_MESSAGES_MAX = 1024
_UCS2 = "utf-16-be"


def encode_text(text: str, message_class: int | None = None) -> tuple[DataCoding, bytes]:
    """(DCS, body): GSM 7-bit septets when the text fits the default alphabet, UTF-16BE (UCS2) octets otherwise."""
    if can_encode_gsm7(text):
        return DataCoding.build(Alphabet.GSM7, message_class), encode_gsm7(text)
    return DataCoding.build(Alphabet.UCS2, message_class), _ucs2(text)


def _ucs2(text: str) -> bytes:
    try:
        return text.encode(_UCS2)
    except UnicodeEncodeError as exc:
        raise CodecError(f"text holds a lone surrogate at index {exc.start}") from exc


def decode_text(coding: DataCoding, body: bytes) -> str:
    """The text of a user data body under ``coding``; CodecError for 8-bit or compressed data and bad UCS2."""
    if coding.compressed:
        raise CodecError("compressed user data (TS 23.042) is not supported")
    if coding.alphabet is Alphabet.GSM7:
        return decode_gsm7(body)
    if coding.alphabet is Alphabet.EIGHT_BIT:
        raise CodecError("8-bit user data is not text")
    if len(body) % 2:
        raise CodecError(f"UCS2 user data of odd length {len(body)}")
    try:
        return body.decode(_UCS2)
    except UnicodeDecodeError as exc:
        raise CodecError(f"UCS2 user data holds a broken surrogate pair at octet {exc.start}", exc.start) from exc


@dataclass(frozen=True)
class SplitText:
    """Text cut for sending: the DCS shared by all parts and each part's user data."""

    coding: DataCoding
    parts: tuple[UserData, ...]


def _units(text: str, gsm7: bool) -> list[bytes]:
    """Each character's encoding: septets (1 or 2) or UTF-16BE octets (2 or 4)."""
    if gsm7:
        return [encode_gsm7(char) for char in text]
    return [_ucs2(char) for char in text]


def _pack(units: list[bytes], capacity: int) -> list[bytes]:
    segments: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > capacity:
            segments.append(current)
            current = b""
        current += unit
    segments.append(current)
    return segments


def _capacity(gsm7: bool, elements: tuple[InformationElement, ...]) -> int:
    if not elements:
        return UD_SEPTETS_MAX if gsm7 else UD_OCTETS_MAX
    header = len(UserDataHeader(elements).to_bytes())
    return UD_SEPTETS_MAX - header_septets(header) if gsm7 else UD_OCTETS_MAX - header


def split_for_concatenation(
    text: str,
    reference: int,
    *,
    wide_reference: bool = False,
    ports: PortAddressing | None = None,
    message_class: int | None = None,
    segments_max: int = SEGMENTS_MAX,
) -> SplitText:
    """The parts of ``text``: one without a concatenation IE when it fits, else up to ``segments_max`` segments.

    ``reference`` (8 or 16 bits, ``wide_reference``) comes from the caller,
    who owns the counter (STYLE: no hidden state). ``ports`` adds application
    port addressing to every part.
    """
    if not 1 <= segments_max <= SEGMENTS_MAX:
        raise CodecError(f"segments_max {segments_max} outside 1..{SEGMENTS_MAX}")
    coding, _ = encode_text(text, message_class)
    gsm7 = coding.alphabet is Alphabet.GSM7
    units = _units(text, gsm7)
    base: tuple[InformationElement, ...] = (ports,) if ports is not None else ()
    # Checks the reference even when the text fits one message.
    probe = Concatenation(reference, 1, 1, wide=wide_reference)
    single = _pack(units, _capacity(gsm7, base))
    if len(single) == 1:
        return SplitText(coding, (UserData(single[0], UserDataHeader(base) if base else None),))
    segments = _pack(units, _capacity(gsm7, (probe, *base)))
    if len(segments) > segments_max:
        raise CodecError(f"text needs {len(segments)} segments, more than {segments_max}")
    total = len(segments)
    parts = tuple(
        UserData(body, UserDataHeader((Concatenation(reference, total, number, wide=wide_reference), *base)))
        for number, body in enumerate(segments, start=1)
    )
    return SplitText(coding, parts)


class DropReason(Enum):
    """Why a reassembly set was abandoned."""

    EXPIRED = "expired"
    OVERFLOW = "overflow"


@dataclass
class _Pending:
    first_seen: float
    parts: dict[int, tuple[DataCoding, bytes]] = field(default_factory=dict)


_Key = tuple[str, bool, int, int]


class Reassembler:
    """Collects concatenated segments per sender and returns each message's text once complete."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        expiry_s: float = REASSEMBLY_EXPIRY_S,
        open_messages_max: int = REASSEMBLY_OPEN_MESSAGES_MAX,
    ) -> None:
        if expiry_s <= 0 or open_messages_max < 1:
            raise ValueError("expiry_s must be positive and open_messages_max at least 1")
        self._clock = clock
        self._expiry_s = expiry_s
        self._open_max = open_messages_max
        self._pending: OrderedDict[_Key, _Pending] = OrderedDict()
        self._drops: dict[DropReason, int] = dict.fromkeys(DropReason, 0)
        self._duplicates = 0

    @property
    def open_messages(self) -> int:
        """Sets waiting for segments."""
        return len(self._pending)

    @property
    def drops(self) -> dict[DropReason, int]:
        """Abandoned sets by reason (a copy)."""
        return dict(self._drops)

    @property
    def duplicates(self) -> int:
        """Segments ignored because the same one was already held."""
        return self._duplicates

    def expire(self) -> int:
        """Drop the sets older than ``expiry_s``; returns how many."""
        now = self._clock()
        stale = [key for key, pending in self._pending.items() if now - pending.first_seen >= self._expiry_s]
        for key in stale:
            del self._pending[key]
        self._drops[DropReason.EXPIRED] += len(stale)
        return len(stale)

    def add(self, source: str, udh: UserDataHeader | None, part: bytes, coding: DataCoding) -> str | None:
        """Add one received part (its body, as in :class:`UserData`); the whole text when this completes it."""
        concatenation = udh.concatenation if udh is not None else None
        if concatenation is None or concatenation.total == 1:
            return decode_text(coding, part)
        self.expire()
        key = (source, concatenation.wide, concatenation.reference, concatenation.total)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._open_max:
                self._pending.popitem(last=False)
                self._drops[DropReason.OVERFLOW] += 1
            pending = self._pending[key] = _Pending(self._clock())
        if concatenation.sequence in pending.parts:
            self._duplicates += 1
            return None
        pending.parts[concatenation.sequence] = (coding, part)
        if len(pending.parts) < concatenation.total:
            return None
        del self._pending[key]
        ordered = [pending.parts[number] for number in range(1, concatenation.total + 1)]
        codings = {(c.alphabet, c.compressed) for c, _ in ordered}
        if len(codings) == 1:
            # One alphabet: decode the joined bodies, so a pair or escape a sender did cut still reads.
            return decode_text(ordered[0][0], b"".join(body for _, body in ordered))
        return "".join(decode_text(c, body) for c, body in ordered)
