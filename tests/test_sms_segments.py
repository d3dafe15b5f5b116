"""Reply segmentation and MO reassembly (gateway/sms/segments.py): boundaries, vectors, round trips, bad input."""

from __future__ import annotations

import random

import pytest
from codec_helpers import h
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.applet.protocols.gsm7 import GSM7_CHARACTERS, GSM7_EXTENSION_CHARACTERS, encode_gsm7
from simwallet.gateway.sms.errors import MoDecodeError, SegmentError, SmsError
from simwallet.gateway.sms.segments import (
    DATA_CODING_DEFAULT,
    DATA_CODING_IA5,
    DATA_CODING_LATIN1,
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    MO_PARTS_MAX,
    PART_SEPTETS_MAX,
    PART_UCS2_UNITS_MAX,
    REPLY_PARTS_MAX,
    SHORT_MESSAGE_OCTETS_MAX,
    SINGLE_SEPTETS_MAX,
    SINGLE_UCS2_UNITS_MAX,
    DropReason,
    IncompleteMessage,
    MoMessage,
    MoPart,
    Reassembler,
    Segment,
    decode_payload,
    encode_reply,
)

SOURCE = "8613800138000"
UDH_OCTETS = 6


def parts_of(segments: tuple[Segment, ...], source: str = SOURCE) -> list[MoPart]:
    return [MoPart(source, s.data_coding, s.esm_class, s.short_message) for s in segments]


def reassemble(parts: list[MoPart], **bounds: int) -> str:
    """Feed ``parts`` in the order given; the one message they complete."""
    reassembler = Reassembler(**bounds)
    done = [m for m in (reassembler.receive(p, now=0.0) for p in parts) if m is not None]
    assert len(done) == 1
    assert reassembler.pending == 0
    return done[0].text


def body(segment: Segment) -> bytes:
    return segment.short_message[UDH_OCTETS:] if segment.esm_class & ESM_CLASS_UDHI else segment.short_message


# ------------------------------------------------------------------ part sizes at the boundaries


@pytest.mark.parametrize(
    ("text", "coding", "sizes"),
    [
        ("", DATA_CODING_DEFAULT, [0]),
        ("a" * SINGLE_SEPTETS_MAX, DATA_CODING_DEFAULT, [160]),
        ("a" * (SINGLE_SEPTETS_MAX + 1), DATA_CODING_DEFAULT, [153, 8]),
        ("a" * (2 * PART_SEPTETS_MAX), DATA_CODING_DEFAULT, [153, 153]),
        ("a" * (2 * PART_SEPTETS_MAX + 1), DATA_CODING_DEFAULT, [153, 153, 1]),
        ("a" * (8 * PART_SEPTETS_MAX), DATA_CODING_DEFAULT, [153] * 8),
        # An extension character is two septets: 80 of them fill one SMS, 81 do not.
        ("€" * 80, DATA_CODING_DEFAULT, [160]),
        ("€" * 81, DATA_CODING_DEFAULT, [152, 10]),
        # An escape sequence is never split: the part stops one septet short.
        ("a" * 152 + "{" + "b" * 10, DATA_CODING_DEFAULT, [152, 12]),
        ("中" * SINGLE_UCS2_UNITS_MAX, DATA_CODING_UCS2, [140]),
        ("中" * (SINGLE_UCS2_UNITS_MAX + 1), DATA_CODING_UCS2, [134, 8]),
        ("中" * (3 * PART_UCS2_UNITS_MAX), DATA_CODING_UCS2, [134, 134, 134]),
        # A surrogate pair (two units) is never split either.
        ("中" * 66 + "😀" + "中" * 4, DATA_CODING_UCS2, [132, 12]),
        ("😀" * 35, DATA_CODING_UCS2, [140]),
        ("😀" * 36, DATA_CODING_UCS2, [132, 12]),
        # One character outside the GSM alphabet sends the whole text in UCS2.
        ("a" * 100 + "ç", DATA_CODING_UCS2, [134, 68]),
    ],
    ids=lambda v: v if isinstance(v, int) else None,
)
def test_part_sizes(text: str, coding: int, sizes: list[int]) -> None:
    segments = encode_reply(text, ref=7)
    assert [len(body(s)) for s in segments] == sizes
    assert {s.data_coding for s in segments} == {coding}
    multi = len(segments) > 1
    assert all(s.esm_class == (ESM_CLASS_UDHI if multi else 0) for s in segments)
    assert all(len(s.short_message) <= SHORT_MESSAGE_OCTETS_MAX for s in segments)
    assert reassemble(parts_of(segments)) == text


def test_gsm_text_is_unpacked_septets() -> None:
    # One septet per octet (SMPP data_coding 0 as most SMSCs take it): 'A' is 0x41, '@' 0x00, '€' 1B 65.
    (segment,) = encode_reply("A@€", ref=0)
    assert segment == Segment(DATA_CODING_DEFAULT, 0, h("41 00 1B 65"))
    (segment,) = encode_reply("余额", ref=0)
    assert segment == Segment(DATA_CODING_UCS2, 0, h("4F59 989D"))


# ------------------------------------------------------------------ UDH vectors


def test_udh_vector_how2s() -> None:
    # how2s.org, "How to encode binary SMS headers for multipart messages":
    # UDH 05 00 03 0F 02 02 is part 2 of 2 with reference 0F.
    segments = encode_reply("x" * 200, ref=0x0F)
    assert [s.short_message[:UDH_OCTETS] for s in segments] == [h("05 00 03 0F 02 01"), h("05 00 03 0F 02 02")]


def test_udh_vector_three_parts() -> None:
    # Wikipedia, "Concatenated SMS" (fields 1-6: 05, 00, 03, reference, total, sequence), with the
    # reference A4 of the 3-part example of routomessaging.com "Long Message and Concatenation":
    # 00 03 A4 03 01 / 02 / 03 after the UDHL 05. 3 × 67 UCS2 units need 3 parts.
    segments = encode_reply("中" * (3 * PART_UCS2_UNITS_MAX), ref=0xA4)
    assert [s.short_message[:UDH_OCTETS] for s in segments] == [h("05 00 03 A4 03 01"), h("05 00 03 A4 03 02"), h("05 00 03 A4 03 03")]
    assert all(s.esm_class == ESM_CLASS_UDHI for s in segments)


def test_reply_limits() -> None:
    assert len(encode_reply("a" * (REPLY_PARTS_MAX * PART_SEPTETS_MAX), ref=0)) == REPLY_PARTS_MAX
    with pytest.raises(SegmentError):
        encode_reply("a" * (REPLY_PARTS_MAX * PART_SEPTETS_MAX + 1), ref=0)
    assert len(encode_reply("a" * 2000, ref=0, parts_max=14)) == 14
    for ref in (-1, 256):
        with pytest.raises(SegmentError):
            encode_reply("x", ref=ref)
    with pytest.raises(SegmentError):
        encode_reply("x", ref=0, parts_max=256)
    with pytest.raises(SegmentError):
        encode_reply("a\ud800", ref=0)


# ------------------------------------------------------------------ round trips

ascii_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=1200)
gsm_text = st.text(alphabet=st.sampled_from(sorted(GSM7_CHARACTERS)), max_size=1200)
extension_heavy = st.text(alphabet=st.sampled_from([*sorted(GSM7_EXTENSION_CHARACTERS), "a", " "]), max_size=1200)
chinese = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=1200)
emoji = st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=1200)
mixed = st.text(alphabet=st.sampled_from([*"abc ", "€", "[", "中", "文", "😀", "🇨", "\n"]), max_size=1200)
any_text = st.text(max_size=1200)
texts = st.one_of(ascii_text, gsm_text, extension_heavy, chinese, emoji, mixed, any_text)


@given(text=texts, ref=st.integers(0, 255), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_round_trip_any_order_with_duplicates(text: str, ref: int, seed: int) -> None:
    segments = encode_reply(text, ref=ref, parts_max=255)
    septets_or_units = [len(body(s)) for s in segments]
    if segments[0].data_coding == DATA_CODING_UCS2:
        assert all(n <= 2 * (PART_UCS2_UNITS_MAX if len(segments) > 1 else SINGLE_UCS2_UNITS_MAX) for n in septets_or_units)
    else:
        assert all(n <= (PART_SEPTETS_MAX if len(segments) > 1 else SINGLE_SEPTETS_MAX) for n in septets_or_units)
    # Parts arrive shuffled and some twice; the message completes exactly once.
    parts = parts_of(segments)
    rng = random.Random(seed)
    parts += rng.sample(parts, k=len(parts) // 2)
    rng.shuffle(parts)
    reassembler = Reassembler(parts_max=255)
    done = [m for m in (reassembler.receive(p, now=1.0) for p in parts) if m is not None]
    assert done == [MoMessage(SOURCE, text, len(segments))]
    # With the default limit, a text needing more parts is refused, never cut.
    if len(segments) > REPLY_PARTS_MAX:
        with pytest.raises(SegmentError):
            encode_reply(text, ref=ref)
    else:
        assert encode_reply(text, ref=ref) == segments


# ------------------------------------------------------------------ reassembly


def test_single_parts_in_every_coding() -> None:
    r = Reassembler()
    cases = [
        (DATA_CODING_DEFAULT, encode_gsm7("BAL 123456 €"), "BAL 123456 €"),
        (DATA_CODING_IA5, b"BAL 123456", "BAL 123456"),
        (DATA_CODING_LATIN1, "ça 100".encode("latin-1"), "ça 100"),
        (DATA_CODING_UCS2, "余额 123456".encode("utf-16-be"), "余额 123456"),
        (DATA_CODING_UCS2, "😀".encode("utf-16-be"), "😀"),
    ]
    for coding, data, text in cases:
        assert r.receive(MoPart(SOURCE, coding, 0, data), now=0.0) == MoMessage(SOURCE, text, 1)


def test_udh_without_concatenation_is_stripped() -> None:
    # A port-addressing header only (IEI 05, TS 23.040 §9.2.3.24.4): a message of its own.
    part = MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("06 05 04 0B 84 23 F0") + b"hi")
    assert Reassembler().receive(part, now=0.0) == MoMessage(SOURCE, "hi", 1)


def test_ignored_concatenation_ie_makes_a_single_message() -> None:
    # §9.2.3.24.1: sequence number 0 (or above the total) means "ignore the whole IE".
    part = MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 01 02 00") + b"hi")
    assert Reassembler().receive(part, now=0.0) == MoMessage(SOURCE, "hi", 1)


def test_sixteen_bit_reference() -> None:
    # IEI 08 (TS 23.040 §9.2.3.24.8): 16-bit reference 0x1234, two parts.
    first = MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("06 08 04 12 34 02 01") + b"TOPUP 100 ")
    second = MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("06 08 04 12 34 02 02") + b"123456")
    r = Reassembler()
    assert r.receive(second, now=0.0) is None
    assert r.receive(first, now=1.0) == MoMessage(SOURCE, "TOPUP 100 123456", 2)


def test_sar_tlvs() -> None:
    r = Reassembler()
    parts = [
        MoPart(SOURCE, DATA_CODING_UCS2, 0, t.encode("utf-16-be"), 0x1234, 3, n) for n, t in ((1, "充值"), (3, "123456"), (2, " 100 "))
    ]
    assert r.receive(parts[0], now=0.0) is None
    assert r.receive(parts[1], now=0.0) is None
    assert r.receive(parts[1], now=0.0) is None  # a duplicate changes nothing
    assert r.receive(parts[2], now=0.0) == MoMessage(SOURCE, "充值 100 123456", 3)
    # A late copy of a part of the completed message is ignored, not started anew.
    assert r.receive(parts[0], now=1.0) is None
    assert r.pending == 0


def test_split_surrogate_pair_and_escape_from_another_sender() -> None:
    # Some handsets cut between the halves of a pair or after the escape; joining before decoding copes.
    pair = "😀".encode("utf-16-be")
    r = Reassembler()
    assert r.receive(MoPart(SOURCE, DATA_CODING_UCS2, ESM_CLASS_UDHI, h("05 00 03 09 02 01") + pair[:2]), now=0.0) is None
    assert r.receive(MoPart(SOURCE, DATA_CODING_UCS2, ESM_CLASS_UDHI, h("05 00 03 09 02 02") + pair[2:]), now=0.0).text == "😀"  # type: ignore[union-attr]
    assert r.receive(MoPart(SOURCE, DATA_CODING_DEFAULT, ESM_CLASS_UDHI, h("05 00 03 0A 02 01 61 1B")), now=0.0) is None
    assert r.receive(MoPart(SOURCE, DATA_CODING_DEFAULT, ESM_CLASS_UDHI, h("05 00 03 0A 02 02 65")), now=0.0).text == "a€"  # type: ignore[union-attr]


def test_same_reference_from_two_sources_stays_apart() -> None:
    r = Reassembler()
    for source in ("8613800000001", "8613800000002"):
        assert r.receive(MoPart(source, DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 01 02 01") + source.encode()), now=0.0) is None
    assert r.pending == 2
    done = r.receive(MoPart("8613800000002", DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 01 02 02") + b"!"), now=0.0)
    assert done == MoMessage("8613800000002", "8613800000002!", 2)


def test_timeout_drops_and_reports() -> None:
    r = Reassembler(timeout_s=10.0)
    assert r.receive(MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 05 03 01") + b"a"), now=100.0) is None
    assert r.receive(MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 05 03 02") + b"b"), now=105.0) is None
    assert r.expire(now=109.9) == ()
    assert r.expire(now=110.0) == (IncompleteMessage(SOURCE, 5, 2, 3, DropReason.TIMEOUT),)
    assert r.pending == 0
    assert r.expire(now=200.0) == ()
    # The last part, too late, starts a new message that can never complete, and times out in turn.
    assert r.receive(MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 05 03 03") + b"c"), now=111.0) is None
    assert r.expire(now=121.0) == (IncompleteMessage(SOURCE, 5, 1, 3, DropReason.TIMEOUT),)


def test_pending_bound_evicts_the_oldest() -> None:
    r = Reassembler(pending_max=2)
    for ref in range(3):
        part = MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, bytes([5, 0, 3, ref, 2, 1]) + b"x")
        assert r.receive(part, now=float(ref)) is None
    assert r.pending == 2
    assert r.expire(now=3.0) == (IncompleteMessage(SOURCE, 0, 1, 2, DropReason.EVICTED),)
    # Reports wait in a bounded queue; beyond it the oldest are counted as lost.
    for ref in range(3, 8):
        r.receive(MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, bytes([5, 0, 3, ref, 2, 1]) + b"x"), now=4.0)
    assert [report.reference for report in r.expire(now=4.0)] == [4, 5]
    assert r.reports_lost == 3


@pytest.mark.parametrize(
    ("part", "code"),
    [
        (MoPart(SOURCE, 0x04, 0, b"\x01\x02"), "mo_unsupported_coding"),
        (MoPart(SOURCE, 0x02, 0, b""), "mo_unsupported_coding"),
        (MoPart(SOURCE, 0xF0, 0, b"hi"), "mo_unsupported_coding"),
        (MoPart(SOURCE, DATA_CODING_DEFAULT, 0, b"\x80"), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, 0, b"caf\xe9"), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_UCS2, 0, b"\x4f"), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_UCS2, 0, h("D8 3D")), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, b""), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, ESM_CLASS_UDHI, h("05 00 03 01")), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, 0, b"x" * 255), "mo_too_long"),
        (MoPart(SOURCE, DATA_CODING_IA5, 0, b"x", 1, 2, None), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, 0, b"x", 1, 2, 3), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, 0, b"x", 0x10000, 2, 1), "mo_malformed"),
        (MoPart(SOURCE, DATA_CODING_IA5, 0, b"x", 1, MO_PARTS_MAX + 1, 1), "mo_too_long"),
    ],
)
def test_bad_parts(part: MoPart, code: str) -> None:
    r = Reassembler()
    with pytest.raises(MoDecodeError) as info:
        r.receive(part, now=0.0)
    assert info.value.code == code
    assert r.pending == 0


def test_undecodable_complete_message_is_dropped_with_an_error() -> None:
    r = Reassembler()
    assert r.receive(MoPart(SOURCE, DATA_CODING_UCS2, ESM_CLASS_UDHI, h("05 00 03 01 02 01 00")), now=0.0) is None
    with pytest.raises(MoDecodeError):
        r.receive(MoPart(SOURCE, DATA_CODING_UCS2, ESM_CLASS_UDHI, h("05 00 03 01 02 02 41 42")), now=0.0)
    assert r.pending == 0


def test_decode_payload_names_the_supported_codings() -> None:
    with pytest.raises(MoDecodeError, match="0x00 GSM 7-bit, 0x01 IA5, 0x03 Latin-1, 0x08 UCS2"):
        decode_payload(0x05, b"")


def test_bad_bounds() -> None:
    for bounds in ({"pending_max": 0}, {"timeout_s": 0.0}, {"parts_max": 0}, {"parts_max": 256}):
        with pytest.raises(SegmentError):
            Reassembler(**bounds)  # type: ignore[arg-type]


mo_parts = st.builds(
    MoPart,
    source=st.sampled_from(["a", "b"]),
    data_coding=st.sampled_from([0x00, 0x01, 0x03, 0x08, 0x04, 0x18, 0xFF]),
    esm_class=st.sampled_from([0x00, 0x40, 0xC3]),
    short_message=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda ref, total, seq, data: bytes([5, 0, 3, ref, total, seq]) + data,
            st.integers(0, 3),
            st.integers(0, 4),
            st.integers(0, 4),
            st.binary(max_size=20),
        ),
    ),
    sar_msg_ref_num=st.none() | st.integers(-1, 0x10000),
    sar_total_segments=st.none() | st.integers(0, 300),
    sar_segment_seqnum=st.none() | st.integers(0, 300),
)


@given(parts=st.lists(mo_parts, max_size=20), times=st.lists(st.floats(0, 1000), min_size=20, max_size=20))
@settings(max_examples=300, deadline=None)
def test_random_parts_raise_only_the_package_error(parts: list[MoPart], times: list[float]) -> None:
    r = Reassembler(pending_max=4, timeout_s=50.0)
    for part, now in zip(parts, sorted(times), strict=False):
        try:
            message = r.receive(part, now=now)
        except MoDecodeError:
            continue
        assert message is None or isinstance(message.text, str)
        assert r.pending <= 4
    assert all(isinstance(report, IncompleteMessage) for report in r.expire(now=2000.0))
    assert r.pending == 0


def test_errors_share_the_package_root() -> None:
    for error in (MoDecodeError("x"), SegmentError("x")):
        assert isinstance(error, SmsError) and isinstance(error, ValueError)


def test_a_completed_message_carries_its_parts_smsc_ids_in_part_order() -> None:
    parts = encode_reply("x" * 200, ref=7)
    assert len(parts) == 2
    reassembler = Reassembler()
    second = MoPart("8613800138000", parts[1].data_coding, parts[1].esm_class, parts[1].short_message, message_id="B2")
    first = MoPart("8613800138000", parts[0].data_coding, parts[0].esm_class, parts[0].short_message, message_id="A1")
    assert reassembler.receive(second, now=0.0) is None
    message = reassembler.receive(first, now=1.0)
    assert message is not None and message.text == "x" * 200 and message.message_ids == ("A1", "B2")
    single = reassembler.receive(MoPart("8613800138000", 0, 0, b"BAL", message_id="C3"), now=2.0)
    assert single is not None and single.message_ids == ("C3",)
