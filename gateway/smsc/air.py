"""The air side of a simulated phone: the handset's SMS TPDUs as the SMSC's SMPP fields, both ways.

Spec: 3GPP TS 23.040 §9.2.2.1 (SMS-DELIVER) and §9.2.2.2 (SMS-SUBMIT);
SMPP 3.4 §4.4.1 and §4.6.1 (submit_sm and deliver_sm fields: TP-PID is
protocol_id, TP-DCS is data_coding, TP-UDHI is esm_class bit 6, the user data
with its header is short_message); TS 31.111 §7.1.1.2 (an SMS-DELIVER with
TP-PID 7F is downloaded to the card by ENVELOPE).

Theory of operation. What the network does between a phone and an SMSC,
reduced to the two conversions a phone simulator attached to the SMSC needs:
:func:`submit_sm_for` turns the SMS-SUBMIT the card (SEND SHORT MESSAGE) or
the phone produced into the submit_sm the phones bind sends, and
:func:`sms_deliver_for` turns a message the SMSC delivered into the
SMS-DELIVER TPDU the handset gets (and hands to the card when it is SMS-PP).
Pure: no socket, no clock (the service centre time stamp is given).
"""

from __future__ import annotations

from datetime import datetime

from simwallet.applet.protocols.sms import Address, Npi, SmsDeliver, Ton, UserData, parse_sms_submit
from simwallet.applet.protocols.sms_dcs import DataCoding
from simwallet.applet.protocols.sms_udh import parse_udh
from simwallet.gateway.smpp import SubmitSm
from simwallet.gateway.sms.segments import ESM_CLASS_UDHI
from simwallet.gateway.smsc.errors import PhoneError
from simwallet.gateway.smsc.inbox import ReceivedMessage

# SMPP 3.4 §5.2.5/§5.2.6: TON international, NPI ISDN (E.164), as a phone's own number is sent.
TON_INTERNATIONAL = 1
NPI_ISDN = 1


def submit_sm_for(tpdu: bytes, msisdn: str) -> SubmitSm:
    """The submit_sm a phone's SMS-SUBMIT becomes, sent from ``msisdn``; PhoneError when it is no SMS-SUBMIT.

    The user data goes as the TPDU holds it once unpacked: its header octets, then octets (8-bit, UCS2) or one
    septet per octet (GSM 7-bit), which is SMPP's own form of the default alphabet.
    """
    from simwallet.applet.errors import CodecError

    try:
        submit = parse_sms_submit(tpdu)
    except CodecError as exc:
        raise PhoneError(f"not an SMS-SUBMIT: {exc}", field="tpdu") from exc
    header = submit.ud.header
    short_message = (header.to_bytes() if header is not None else b"") + submit.ud.body
    return SubmitSm(
        source_addr_ton=TON_INTERNATIONAL,
        source_addr_npi=NPI_ISDN,
        source_addr=msisdn,
        destination_addr=submit.da.number,
        esm_class=ESM_CLASS_UDHI if header is not None else 0,
        protocol_id=submit.pid,
        data_coding=submit.dcs.value,
        short_message=short_message,
    )


def sms_deliver_for(message: ReceivedMessage, scts: datetime) -> bytes:
    """The SMS-DELIVER TPDU of a binary message the SMSC delivered (e.g. SMS-PP to the card's TAR)."""
    if message.text is not None:
        raise PhoneError("a text message is shown, not downloaded: only binary messages become SMS-DELIVER here", field="message")
    data = message.short_message
    if message.esm_class & ESM_CLASS_UDHI:
        from simwallet.applet.errors import CodecError

        try:
            header, end = parse_udh(data)
        except CodecError as exc:
            raise PhoneError(f"the user data header does not parse: {exc}", field="message") from exc
        ud = UserData(data[end:], header)
    else:
        ud = UserData(data)
    origin = Address(Ton.UNKNOWN, Npi.ISDN, message.source)
    return SmsDeliver(oa=origin, scts=scts, ud=ud, pid=message.protocol_id, dcs=DataCoding(message.data_coding)).to_bytes()
