"""The SMSC's pure rules: where a message goes, what the deliver_sm looks like, throughput, times, receipts.

Spec: SMPP 3.4 §4.4.1 (submit_sm), §4.6.1 (deliver_sm), §5.2.7 (address_range),
§5.2.12 (esm_class), §5.3.2.12 (receipted_message_id), §5.2.28 and §5.3.2.35
(message_state), §7.1 (time format), Appendix B (delivery receipt text).

Theory of operation. A submit_sm accepted from any bind becomes one stored
message with a *target*: the ``esme`` account owning the longest prefix of its
destination (``10658000``, ``*166``), else the phone with that MSISDN
(:func:`route`). Its deliver_sm is built once, at acceptance
(:func:`deliver_for`), and sent as stored on every attempt.

Decisions:

* The SMSC's message id travels in every deliver_sm in the vendor TLV
  :data:`SMSC_MESSAGE_ID_TAG` (0x1400, the first tag of §5.3.2's "reserved for
  SMSC vendor specific optional parameters" range), as a C-Octet String like
  receipted_message_id. SMPP 3.4 gives an MO deliver_sm no message id field, and
  real SMSCs put theirs in a vendor TLV (the gateway keys idempotency on it when
  present; :func:`smsc_message_id` reads it). A redelivery carries the same id.
  A receipt carries its own id there and the original's in receipted_message_id.
* The deliver_sm keeps the submit_sm's addresses, service_type, protocol_id,
  priority, data_coding, user data and every TLV (message_payload,
  ussd_service_op, its_session_info, sar_*, unknown ones); of esm_class only the
  GSM feature bits 7–6 (UDHI, reply path) pass, since bits 5–0 mean other things
  in deliver_sm (§5.2.12). schedule_delivery_time, validity_period and
  registered_delivery are the SMSC's business and are sent empty.
* An ESME may give each submit_sm its own reference in the vendor TLV
  :data:`CLIENT_REFERENCE_TAG` (0x1401); a second submit_sm from the same
  account with a reference it gave before is a duplicate (a reply sent again
  after a redelivery or a restart): it is answered with the first message's id
  and stored no second time. References are kept ``max_age_s``.
* Relative validity periods (§7.1.2) count a month as 30 days and a year as 365.
* Receipt dates are UTC; the receipt text is Appendix B's, with ``text:`` holding
  the first 20 octets of a text message (data_coding 0, 1 or 3; printable ASCII
  only) and nothing for other codings.
* Throughput: a token bucket per bind (:class:`TokenBucket`), refilled at the
  account's ``tps`` and holding its ``bucket_size``.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from simwallet.gateway.smpp import CommandStatus, DeliverSm, FieldError, MessageState, OptionalParams, SubmitSm
from simwallet.gateway.smpp.tlv import VENDOR_CLIENT_REFERENCE, VENDOR_SMSC_MESSAGE_ID, VENDOR_TEXT_CHARS_MAX, text_tlv, tlv_text
from simwallet.gateway.smsc.config import Account, AccountKind
from simwallet.gateway.smsc.errors import SmscConfigError

# The vendor TLVs (gateway/smpp/tlv.py): the message id this SMSC gives, and the reference a submitter gives;
# the same reference from the same account again is a duplicate, answered with the first message id and not
# delivered twice (as operators' SMSCs offer), remembered max_age_s.
SMSC_MESSAGE_ID_TAG = VENDOR_SMSC_MESSAGE_ID
CLIENT_REFERENCE_TAG = VENDOR_CLIENT_REFERENCE
# §5.2.12: esm_class bits 7–6 (UDHI 0x40, reply path 0x80) mean the same in submit_sm and deliver_sm.
ESM_CLASS_GSM_FEATURES = 0xC0
# §5.2.12: esm_class bits 5–2 = 0001 in deliver_sm: SMSC delivery receipt.
ESM_CLASS_DELIVERY_RECEIPT = 0x04
# §5.2.17: registered_delivery bits 1–0 = 01 or 10 ask for a receipt (on success and failure, or failure only).
RECEIPT_ON_SUCCESS_AND_FAILURE = 0x01
RECEIPT_ON_FAILURE = 0x02
# Appendix B: the receipt quotes the first 20 characters of the message.
RECEIPT_TEXT_CHARS = 20
# §5.2.7 address_range: at most 40 characters (41 with the NUL).
ADDRESS_RANGE_CHARS_MAX = 40
_TEXT_CODINGS = frozenset({0x00, 0x01, 0x03})
_DAY_S = 86_400


class TargetKind(enum.StrEnum):
    """Who a stored message is for."""

    ESME = "esme"  # the binds of an ESME account (target: its system_id)
    PHONE = "phone"  # the phones bind whose address_range matches (target: the MSISDN)


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    name: str

    @property
    def key(self) -> str:
        """The queue a message waits in: ``esme:gateway``, ``phone:8613800000001``."""
        return f"{self.kind.value}:{self.name}"


def route(accounts: tuple[Account, ...], destination: str) -> Target:
    """The ESME account owning the longest prefix of ``destination``, else the phone ``destination``."""
    best: Account | None = None
    best_length = 0
    for account in accounts:
        if account.kind is not AccountKind.ESME:
            continue
        for prefix in account.prefixes:
            if len(prefix) > best_length and destination.startswith(prefix):
                best, best_length = account, len(prefix)
    if best is not None:
        return Target(TargetKind.ESME, best.system_id)
    return Target(TargetKind.PHONE, destination)


def compile_address_range(text: str) -> re.Pattern[str] | None:
    """The bind's address_range as a regular expression (None for an empty one, which matches every MSISDN)."""
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise SmscConfigError(f"address_range {text!r} is not a regular expression: {exc}", field="address_range") from exc


def carries(address_range: re.Pattern[str] | None, msisdn: str) -> bool:
    return address_range is None or address_range.fullmatch(msisdn) is not None


class TokenBucket:
    """``rate`` tokens per second, at most ``size`` held; :meth:`take` spends one if there is one."""

    def __init__(self, rate: float, size: float, now: float) -> None:
        self.rate = rate
        self.size = size
        self._tokens = size
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.size, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def client_reference(submit: SubmitSm) -> str | None:
    """The ESME's own reference of a submit_sm (vendor TLV :data:`CLIENT_REFERENCE_TAG`), by which duplicates are suppressed."""
    if not submit.tlvs.get(CLIENT_REFERENCE_TAG):
        return None
    text = tlv_text(submit.tlvs, CLIENT_REFERENCE_TAG)
    return None if text is None else text[:VENDOR_TEXT_CHARS_MAX]


def smsc_message_id(tlvs: OptionalParams) -> str | None:
    """The SMSC message id a deliver_sm carries in :data:`SMSC_MESSAGE_ID_TAG`, or None."""
    return tlv_text(tlvs, SMSC_MESSAGE_ID_TAG)


def _with_message_id(tlvs: OptionalParams, message_id: str) -> OptionalParams:
    kept = tuple(item for item in tlvs.items if item.tag != SMSC_MESSAGE_ID_TAG)
    return OptionalParams((*kept, text_tlv(SMSC_MESSAGE_ID_TAG, message_id)))


def deliver_for(submit: SubmitSm, message_id: str) -> DeliverSm:
    """The deliver_sm that hands ``submit`` on (module docstring: what passes and what does not)."""
    return DeliverSm(
        service_type=submit.service_type,
        source_addr_ton=submit.source_addr_ton,
        source_addr_npi=submit.source_addr_npi,
        source_addr=submit.source_addr,
        dest_addr_ton=submit.dest_addr_ton,
        dest_addr_npi=submit.dest_addr_npi,
        destination_addr=submit.destination_addr,
        esm_class=submit.esm_class & ESM_CLASS_GSM_FEATURES,
        protocol_id=submit.protocol_id,
        priority_flag=submit.priority_flag,
        data_coding=submit.data_coding,
        short_message=submit.short_message,
        tlvs=_with_message_id(submit.tlvs, message_id),
    )


def parse_smpp_time(text: str, now: float) -> float | None:
    """§7.1 ``YYMMDDhhmmsstnnp`` as epoch seconds: absolute (p ``+``/``-``) or relative to ``now`` (p ``R``); "" is None.

    Raises :class:`~simwallet.gateway.smpp.FieldError` (ESME_RINVEXPIRY) for anything else.
    """
    if not text:
        return None
    if len(text) != 16 or not text[:15].isdigit() or text[15] not in "+-R":
        raise FieldError(CommandStatus.ESME_RINVEXPIRY, f"{text!r} is not YYMMDDhhmmsstnnp", field="validity_period")
    yy, mo, dd, hh, mi, ss = (int(text[i : i + 2]) for i in range(0, 12, 2))
    if text[15] == "R":
        return now + ((yy * 365 + mo * 30 + dd) * _DAY_S + hh * 3600 + mi * 60 + ss)
    tenths, quarters = int(text[12]), int(text[13:15])
    try:
        local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000, tzinfo=dt.UTC)
    except ValueError as exc:
        raise FieldError(CommandStatus.ESME_RINVEXPIRY, f"{text!r}: {exc}", field="validity_period") from exc
    offset = dt.timedelta(minutes=15 * quarters)
    # §7.1.1: "+" means local time is ahead of UTC by nn quarter hours.
    utc = local - offset if text[15] == "+" else local + offset
    return utc.timestamp()


def receipt_date(epoch: float) -> str:
    """Appendix B ``YYMMDDhhmm`` (UTC)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%y%m%d%H%M")


# Appendix B stat values by message_state.
_STAT = {
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}


def wants_receipt(registered_delivery: int, state: MessageState) -> bool:
    """§5.2.17: bits 1–0 are 01 (any final outcome) or 10 (failures only)."""
    asked = registered_delivery & 0x03
    return asked == RECEIPT_ON_SUCCESS_AND_FAILURE or (asked == RECEIPT_ON_FAILURE and state is not MessageState.DELIVERED)


def receipt_for(
    original: DeliverSm,
    original_id: str,
    receipt_id: str,
    state: MessageState,
    *,
    submitted_at: float,
    done_at: float,
    error: int = 0,
) -> DeliverSm:
    """The delivery receipt (esm_class 0x04) for the message ``original_id``, addressed back to its sender."""
    quoted = b""
    if original.data_coding in _TEXT_CODINGS:
        user_data = original.payload
        if original.esm_class & 0x40 and user_data:
            user_data = user_data[1 + user_data[0] :]
        quoted = bytes(octet for octet in user_data[:RECEIPT_TEXT_CHARS] if 0x20 <= octet < 0x7F)
    delivered = 1 if state is MessageState.DELIVERED else 0
    text = (
        f"id:{original_id} sub:001 dlvrd:{delivered:03d} submit date:{receipt_date(submitted_at)} "
        f"done date:{receipt_date(done_at)} stat:{_STAT.get(state, 'UNKNOWN')} err:{error % 1000:03d} text:"
    ).encode("ascii") + quoted
    tlvs = OptionalParams.of(
        receipted_message_id=original_id,
        message_state=int(state),
        unknown=(text_tlv(SMSC_MESSAGE_ID_TAG, receipt_id),),
    )
    return DeliverSm(
        source_addr_ton=original.dest_addr_ton,
        source_addr_npi=original.dest_addr_npi,
        source_addr=original.destination_addr,
        dest_addr_ton=original.source_addr_ton,
        dest_addr_npi=original.source_addr_npi,
        destination_addr=original.source_addr,
        esm_class=ESM_CLASS_DELIVERY_RECEIPT,
        short_message=text[:254],
        tlvs=tlvs,
    )
