"""Read a card back: what its files hold, its retry counters, its security domain; and verify it against a job.

Spec: ETSI TS 102 221 §11.1.1 (SELECT returning the FCP, §11.1.1.3), §11.1.3
READ BINARY, §11.1.5 READ RECORD, §11.1.9 VERIFY and §11.1.13 UNBLOCK PIN
without data (retry counters: asked, never presented), §13.2 EF.ICCID; 3GPP
TS 31.102 §4.2 (EF.IMSI, EF.MSISDN, EF.SPN, EF.SMSP, EF.LI, EF.AD, decoded by
:mod:`simwallet.applet.protocols.efs`); GlobalPlatform Card Specification
v2.3 §11.3 (GET DATA CPLC ``9F7F`` and key information ``E0``, no
authentication needed) and §11.4 (GET STATUS, inside SCP03).

Theory of operation
-------------------
:func:`read_card` is for a person at a counter: it reads what can be read
with what it is given. Without anything it shows the ICCID, the files that
are readable always (EF.SPN, EF.LI, EF.AD), the counters, the CPLC and the
ISD's key sets (versions, types, lengths — never values). With a key store
it also verifies ADM1 (after the counter check) and opens SCP03 to read the
wallet's registry entry (GET STATUS needs the secure channel). Files whose
read rule is PIN1 (EF.IMSI, EF.MSISDN, EF.SMSP on this card type) need PIN1:
with ``pin1`` it is presented (after the counter check); otherwise they are
reported ``protected`` with the card's 6982.

:func:`verify_card` is for the end of personalization: it reads back every
file the job's profile writes with the same navigation the ``files`` step
used, compares the bytes, checks the wallet is installed, selectable and
personalized, the ISD and OTA key set versions are the profile's, and the
registration matches. It returns the mismatches; an empty list is a pass.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets as _secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.efs import (
    AdministrativeData,
    DiallingNumber,
    Imsi,
    LanguageList,
    ServiceProviderName,
    SmsParameters,
)
from simwallet.applet.protocols.fcp import Fcp, FileStructure
from simwallet.applet.protocols.gp import DataTag, StatusScope, get_data_command, is_selectable, parse_cplc
from simwallet.gateway.diversify import card_secrets
from simwallet.gateway.keystore import KeyStore
from simwallet.provisioning.personalize import CardJob, Personalizer
from simwallet.provisioning.personalize_card import (
    KEY_ADM1,
    KEY_NAMES,
    KEY_PIN1,
    KEY_PIN2,
    SW_BLOCKED,
    SW_OK,
    SW_TRIES,
    SW_TRIES_MASK,
    CardIo,
    PersonalizationError,
    pin_block,
    read_iccid_with,
    verify,
)
from simwallet.provisioning.personalize_files import Navigator, order_writes, read_commands
from simwallet.provisioning.personalize_gp import IsdChannel, is_ota_kvn, open_issuer_channel
from simwallet.provisioning.personalize_wallet import WALLET_INSTANCE_AID, WALLET_PERSONALIZED
from simwallet.provisioning.reader import CardConnection, Trace
from simwallet.provisioning.values import Secret

# GP CS v2.3 §7.1 / Amendment: the ISD AID GlobalPlatform assigns (used when no card type says otherwise).
GP_ISD_AID: Final = bytes.fromhex("A000000151000000")
# 3GPP TS 31.102 Annex A: the USIM application's AID starts with RID A000000087 and 1002.
USIM_AID_PREFIX: Final = bytes.fromhex("A0000000871002")
# ISO/IEC 7816-4 §5.1: a short READ asks for at most 256 bytes; files here are far smaller.
READ_CHUNK_MAX: Final = 256
# A file the report reads has at most this many records (EF.MSISDN, EF.SMSP are a few).
RECORDS_READ_MAX: Final = 32
SW_SECURITY: Final = 0x6982
SW_NOT_FOUND: Final = 0x6A82


def _decode_records(decode: Callable[[bytes], Any]) -> Callable[[Sequence[bytes]], Any]:
    def run(records: Sequence[bytes]) -> Any:
        return [decode(record) for record in records if any(byte != 0xFF for byte in record)]

    return run


# The files the report reads under the USIM ADF (TS 31.102 §4.2): FID, name, decoder of the body (or of the records).
REPORT_FILES: Final[tuple[tuple[bytes, str, Callable[[Any], Any]], ...]] = (
    (bytes.fromhex("6F07"), "ADF.USIM/EF.IMSI", Imsi.from_bytes),
    (bytes.fromhex("6F40"), "ADF.USIM/EF.MSISDN", _decode_records(DiallingNumber.from_bytes)),
    (bytes.fromhex("6F46"), "ADF.USIM/EF.SPN", ServiceProviderName.from_bytes),
    (bytes.fromhex("6F42"), "ADF.USIM/EF.SMSP", _decode_records(SmsParameters.from_bytes)),
    (bytes.fromhex("6F05"), "ADF.USIM/EF.LI", LanguageList.from_bytes),
    (bytes.fromhex("6FAD"), "ADF.USIM/EF.AD", AdministrativeData.from_bytes),
)


def plain(value: Any) -> Any:
    """A JSON-able form of a decoded value: dataclasses as mappings, enums by name, bytes as hex."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: Any = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    elif isinstance(value, enum.Enum):
        out = value.name.lower() if value.name else value.value
    elif isinstance(value, bytes):
        out = value.hex().upper()
    elif isinstance(value, frozenset | set):
        out = sorted(plain(v) for v in value)
    elif isinstance(value, list | tuple):
        out = [plain(v) for v in value]
    elif isinstance(value, Mapping):
        out = {str(k): plain(v) for k, v in value.items()}
    else:
        out = value
    return out


@dataclass(frozen=True)
class KeyCounter:
    """A PIN or ADM key's retry counter as the card answered the query; ``tries_left`` None: verified or disabled."""

    name: str
    reference: int
    tries_left: int | None
    unblock_tries_left: int | None = None
    present: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": f"{self.reference:02X}",
            "present": self.present,
            "tries_left": self.tries_left,
            "verified_or_disabled": self.present and self.tries_left is None,
            "unblock_tries_left": self.unblock_tries_left,
        }


@dataclass(frozen=True)
class FileReport:
    """One file as read: ``status`` ok, protected (needs a PIN the reader was not given), missing or error."""

    path: str
    status: str
    sw: int | None = None
    data: bytes | None = None
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "sw": None if self.sw is None else f"{self.sw:04X}",
            "hex": None if self.data is None else self.data.hex().upper(),
            "value": plain(self.value),
        }


@dataclass(frozen=True)
class AppletReport:
    aid: bytes
    installed: bool
    life_cycle: int | None = None

    @property
    def selectable(self) -> bool:
        return self.life_cycle is not None and is_selectable(self.life_cycle)

    @property
    def personalized(self) -> bool:
        return self.life_cycle == WALLET_PERSONALIZED

    def to_json(self) -> dict[str, Any]:
        return {
            "aid": self.aid.hex().upper(),
            "installed": self.installed,
            "selectable": self.selectable,
            "personalized": self.personalized,
            "life_cycle": None if self.life_cycle is None else f"{self.life_cycle:02X}",
        }


@dataclass(frozen=True)
class CardReport:
    """What :func:`read_card` found; no key value and no PIN appear in it."""

    iccid: str
    counters: tuple[KeyCounter, ...]
    files: tuple[FileReport, ...]
    pin1_enabled: bool | None = None
    cplc: Mapping[str, str] | None = None
    key_sets: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...] = ()
    applet: AppletReport | None = None
    notes: tuple[str, ...] = ()

    def file(self, path: str) -> FileReport:
        return next(f for f in self.files if f.path == path or f.path.endswith("/" + path))

    def value(self, path: str) -> Any:
        return self.file(path).value

    def to_json(self) -> dict[str, Any]:
        return {
            "iccid": self.iccid,
            "counters": [c.to_json() for c in self.counters],
            "pin1_enabled": self.pin1_enabled,
            "files": [f.to_json() for f in self.files],
            "cplc": dict(self.cplc) if self.cplc is not None else None,
            "key_sets": [
                {
                    "kvn": kvn,
                    "role": "ota" if is_ota_kvn(kvn) else "issuer",
                    "keys": [{"id": key_id, "type": f"{key_type:02X}", "length": length} for key_id, key_type, length in keys],
                }
                for kvn, keys in self.key_sets
            ],
            "applet": None if self.applet is None else self.applet.to_json(),
            "notes": list(self.notes),
        }


# --- reading -------------------------------------------------------------------------------------


def _query(io: CardIo, ins: int, reference: int) -> int | None:
    """A counter query's answer: tries left, None (verified / disabled), or -1 when the card has no such key."""
    sw = io.connection.transmit(bytes([0x00, ins, 0x00, reference])).sw
    if sw == SW_OK:
        return None
    if sw & SW_TRIES_MASK == SW_TRIES:
        return sw & 0x0F
    if sw == SW_BLOCKED:
        return 0
    return -1


def read_counters(io: CardIo) -> tuple[KeyCounter, ...]:
    """PIN1, PIN2 (with their PUKs' counters) and ADM1, by queries only (VERIFY / UNBLOCK PIN without data)."""
    out = []
    for reference in (KEY_PIN1, KEY_PIN2, KEY_ADM1):
        tries = _query(io, 0x20, reference)
        if tries == -1:
            out.append(KeyCounter(KEY_NAMES[reference], reference, None, present=False))
            continue
        unblock = None if reference == KEY_ADM1 else _query(io, 0x2C, reference)
        out.append(KeyCounter(KEY_NAMES[reference], reference, tries, None if unblock in (None, -1) else unblock))
    return tuple(out)


def _select_fcp(io: CardIo, capdu: bytes) -> tuple[int, Fcp | None]:
    response = io.connection.transmit(capdu)
    if not response.is_success():
        return response.sw, None
    try:
        return response.sw, Fcp.from_bytes(response.data)
    except CodecError:
        return response.sw, None


def _read_file(io: CardIo, fid: bytes, path: str, decode: Callable[[Any], Any]) -> FileReport:
    sw, fcp = _select_fcp(io, bytes([0x00, 0xA4, 0x00, 0x04, 2]) + fid + b"\x00")
    if fcp is None:
        return FileReport(path, "missing" if sw == SW_NOT_FOUND else "error", sw)
    body = b""
    records: list[bytes] = []
    if fcp.structure is FileStructure.TRANSPARENT:
        size = fcp.file_size or 0
        for offset in range(0, size, READ_CHUNK_MAX):
            length = min(READ_CHUNK_MAX, size - offset)
            response = io.connection.transmit(bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF]))
            if not response.is_success():
                return FileReport(path, "protected" if response.sw == SW_SECURITY else "error", response.sw)
            body += response.data
    else:
        length = fcp.descriptor.record_length or 0
        for number in range(1, min(fcp.descriptor.record_count or 0, RECORDS_READ_MAX) + 1):
            response = io.connection.transmit(bytes([0x00, 0xB2, number, 0x04, length & 0xFF]))
            if not response.is_success():
                return FileReport(path, "protected" if response.sw == SW_SECURITY else "error", response.sw)
            records.append(response.data)
        body = b"".join(records)
    try:
        value = decode(records if records else body)
    except CodecError as exc:
        return FileReport(path, "undecodable", SW_OK, body, str(exc))
    return FileReport(path, "ok", SW_OK, body, value)


def read_card(
    connection: CardConnection,
    *,
    keystore: KeyStore | None = None,
    pin1: Secret | None = None,
    card_type: Mapping[str, Any] | None = None,
    rng: Callable[[int], bytes] = _secrets.token_bytes,
    trace: Trace | None = None,
) -> CardReport:
    """Read the card on ``connection`` (see the module docstring); ReaderError and PersonalizationError rise."""
    io = CardIo(connection, None, step="read")
    iccid = read_iccid_with(io)
    io.iccid = iccid
    counters = read_counters(io)
    notes: list[str] = []
    if keystore is not None:
        adm = card_secrets(keystore.active("card-secrets").secrets_master(), iccid).adm1
        verify(io, KEY_ADM1, pin_block(adm))
        notes.append("ADM1 verified (key store)")
    if pin1 is not None:
        verify(io, KEY_PIN1, pin_block(pin1.reveal()))
        notes.append("PIN1 verified")
    gp = card_type.get("gp") if card_type is not None else None
    usim = _usim_aid(card_type)
    sw, adf = _select_fcp(io, bytes([0x00, 0xA4, 0x04, 0x04, len(usim)]) + usim + b"\x00")
    files: list[FileReport] = []
    pin1_enabled = None
    if adf is None:
        notes.append(f"no USIM application (SELECT by AID answered {sw:04X})")
    else:
        if adf.pin_status is not None:
            pin1_enabled = next((p.enabled for p in adf.pin_status.pins if p.key_reference == KEY_PIN1), None)
        files = [_read_file(io, fid, path, decode) for fid, path, decode in REPORT_FILES]
        if any(f.status == "protected" for f in files):
            notes.append("files marked protected need PIN1: give it to read them")
    isd_aid = bytes.fromhex(str(gp["isd_aid"])) if isinstance(gp, Mapping) else GP_ISD_AID
    isd = IsdChannel(io, isd_aid, rng=rng, trace=trace)
    cplc, key_sets, applet = read_gp_info(io, isd, notes)
    if keystore is not None and key_sets:
        applet = _read_applet(io, isd_aid, keystore, iccid, rng=rng, trace=trace, notes=notes)
    elif keystore is None:
        notes.append("applet state needs the secure channel: give a key store to read it")
    return CardReport(iccid, counters, tuple(files), pin1_enabled, cplc, key_sets, applet, tuple(notes))


def _usim_aid(card_type: Mapping[str, Any] | None) -> bytes:
    if card_type is not None:
        for child in card_type.get("files", {}).get("children", ()):
            if child.get("type") == "adf" and child.get("name") == "ADF.USIM":
                return bytes.fromhex(str(child["aid"]))
    return USIM_AID_PREFIX


def read_gp_info(io: CardIo, isd: IsdChannel, notes: list[str]) -> tuple[Mapping[str, str] | None, Any, AppletReport | None]:
    """SELECT the ISD, GET DATA CPLC and key information (no authentication): CPLC fields, key sets by KVN."""
    try:
        isd.select()
    except PersonalizationError as exc:
        notes.append(f"no issuer security domain: SELECT answered {exc.sw:04X}" if exc.sw is not None else str(exc))
        return None, (), None
    cplc: Mapping[str, str] | None = None
    response = io.connection.transmit(get_data_command(DataTag.CPLC))
    if response.is_success():
        try:
            cplc = plain(parse_cplc(response.data))
        except CodecError as exc:
            notes.append(f"CPLC does not decode: {exc}")
    else:
        notes.append(f"GET DATA CPLC answered {response.sw:04X}")
    sets: dict[int, list[tuple[int, int, int]]] = {}
    for info in isd.key_information():
        sets.setdefault(info.kvn, []).extend((info.key_id, key_type, length) for key_type, length in info.components)
    return cplc, tuple((kvn, tuple(keys)) for kvn, keys in sets.items()), None


def _read_applet(
    io: CardIo, isd_aid: bytes, keystore: KeyStore, iccid: str, *, rng: Callable[[int], bytes], trace: Trace | None, notes: list[str]
) -> AppletReport:
    active = keystore.active("scp03").version
    isd, _ = open_issuer_channel(io, isd_aid, keystore, iccid, preferred_kvn=active, rng=rng, trace=trace)
    entries = isd.registry(StatusScope.APPLICATIONS, WALLET_INSTANCE_AID)
    entry = next((e for e in entries if e.aid == WALLET_INSTANCE_AID), None)
    notes.append(f"secure channel opened with ISD key set {isd.kvn:#04x}")
    return AppletReport(WALLET_INSTANCE_AID, entry is not None, None if entry is None else entry.life_cycle)


# --- verifying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One thing on the card (or in the backend) that is not what the job says; no secret in either text."""

    item: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.item}: expected {self.expected}, found {self.found}"

    def to_json(self) -> dict[str, str]:
        return {"item": self.item, "expected": self.expected, "found": self.found}


def verify_card(
    connection: CardConnection,
    job: CardJob,
    personalizer: Personalizer,
    *,
    rng: Callable[[int], bytes] = _secrets.token_bytes,
    check_handover: bool = False,
) -> list[Mismatch]:
    """Every difference between the card (and its registration) and ``job``; empty when the card passes.

    Who handed the card over and where (the registration's clerk and channel) are facts of that event, not of
    the card: they are compared only with ``check_handover``.
    """
    iccid = job.values.iccid
    assert iccid is not None
    io = CardIo(connection, iccid, step="verify")
    found = read_iccid_with(io)
    if found != iccid:
        return [Mismatch("ICCID", iccid, found)]
    out: list[Mismatch] = []
    pin1 = next((p for p in job.personalization.pins if p.name == "pin1"), None)
    if personalizer.reads_need_pin1 and pin1 is not None:
        try:
            verify(io, KEY_PIN1, pin_block(pin1.initial.reveal()))
        except PersonalizationError as exc:
            out.append(Mismatch("PIN1", "the job's PIN1 accepted", f"SW {exc.sw:04X}" if exc.sw is not None else exc.detail))
    out += _verify_files(io, job, personalizer)
    out += _verify_gp(io, personalizer, iccid, rng)
    out += _verify_registration(job, personalizer, iccid, check_handover=check_handover)
    return out


def _verify_files(io: CardIo, job: CardJob, personalizer: Personalizer) -> list[Mismatch]:
    out: list[Mismatch] = []
    nav = Navigator(personalizer.index)
    for write in order_writes(job.personalization.files):
        selects, by_sfi = nav.go_to(write)
        for planned in selects:
            io.send(planned.capdu, what=f"SELECT {planned.path}")
        read: list[bytes] = []
        for planned in read_commands(write, by_sfi=by_sfi):
            response = io.connection.transmit(planned.capdu)
            if not response.is_success():
                out.append(Mismatch(write.path, "readable", f"SW {response.sw:04X} ({response.meaning})"))
                break
            read.append(response.data)
        else:
            expected = write.records if write.records else (write.data,)
            got = tuple(read) if write.records else (b"".join(read),)
            for number, (want, have) in enumerate(zip(expected, got, strict=True), start=1):
                if want != have:
                    where = f"{write.path} record {number}" if write.records else write.path
                    out.append(Mismatch(where, want.hex().upper(), have.hex().upper()))
    return out


def _verify_gp(io: CardIo, personalizer: Personalizer, iccid: str, rng: Callable[[int], bytes]) -> list[Mismatch]:
    out: list[Mismatch] = []
    versions = personalizer.key_versions
    isd, card_kvns = open_issuer_channel(io, personalizer.isd_aid, personalizer.keystore, iccid, preferred_kvn=versions["scp03"], rng=rng)
    if isd.kvn != versions["scp03"]:
        out.append(Mismatch("ISD key set", f"KVN {versions['scp03']:#04x}", f"KVN {isd.kvn:#04x}"))
    if versions["ota"] not in card_kvns:
        shown = ", ".join(f"{k:#04x}" for k in card_kvns if is_ota_kvn(k)) or "none"
        out.append(Mismatch("OTA key set", f"KVN {versions['ota']:#04x}", shown))
    aid = personalizer.wallet_aids.instance
    entry = next((e for e in isd.registry(StatusScope.APPLICATIONS, aid) if e.aid == aid), None)
    applet = AppletReport(aid, entry is not None, None if entry is None else entry.life_cycle)
    if not applet.installed:
        out.append(Mismatch("wallet applet", "installed", "not installed"))
    elif not applet.personalized:
        state = "none" if applet.life_cycle is None else f"{applet.life_cycle:02X}"
        out.append(Mismatch("wallet applet life cycle", f"{WALLET_PERSONALIZED:02X} (personalized)", state))
    return out


def _verify_registration(job: CardJob, personalizer: Personalizer, iccid: str, *, check_handover: bool) -> list[Mismatch]:
    registry = personalizer.registry
    if registry is None:
        return []
    card = registry.get(iccid)
    if card is None:
        return [Mismatch("registration", "registered", "no registration")]
    expected = personalizer.registration(job, iccid, personalized_at=card.personalized_at)
    out = []
    handover = ("channel", "clerk") if check_handover else ()
    for name in ("imsi", "msisdn", "customer_ref", "profile", *handover, "scp03_kvn", "ota_key_version", "wallet_key_version"):
        want, have = getattr(expected, name), getattr(card, name)
        if want != have:
            out.append(Mismatch(f"registration {name}", str(want), str(have)))
    return out
