"""GlobalPlatform GET STATUS: the command and the GlobalPlatform Registry data it answers.

Spec: GP Card Specification v2.3 §11.4 (GET STATUS: P1 §11.4.2.1
Table 11-31, P2 §11.4.2.2 Table 11-32, search criteria §11.4.2.3
Table 11-33, response §11.4.3.1 Table 11-36 "GlobalPlatform Registry
Data (TLV)", status word 6310 "more data available" §11.4.4).

Only the TLV response format (P2 b2 = 1) is modelled; the deprecated
fixed-length format of GP 2.1.1 is not. The search criteria are the AID
qualifier ``4F`` (a prefix; empty matches everything) and optionally the
tag list ``5C`` naming the objects each ``E3`` template should carry
(``4F`` is always included). Inside ``E3`` the objects this codec does not
model (``CF`` implicit selection parameters, proprietary tags) are skipped
when parsing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.gp_common import (
    AID_LENGTH_MAX,
    GpIns,
    Privilege,
    build_gp_command,
    check_aid,
    check_byte,
    encode_privileges,
    parse_gp_command,
    parse_privileges,
)
from simwallet.applet.protocols.tlv import Tlv, encode_tlvs, parse_tlvs

# GP CS v2.3 §11.4.4: SW 6310, more data available (send GET STATUS [next]).
SW_MORE_DATA: Final = 0x6310
# GP CS v2.3 §11.4.2.2 Table 11-32: b2 = 1 response in TLV format; b1 = 1 next occurrence(s).
P2_TLV_FORMAT: Final = 0x02
P2_NEXT_OCCURRENCE: Final = 0x01
# GP CS v2.3 §11.4.2.3 Table 11-33: search qualifier and tag list.
TAG_AID: Final = 0x4F
TAG_TAG_LIST: Final = 0x5C
# GP CS v2.3 §11.4.3.1 Table 11-36.
TAG_REGISTRY_DATA: Final = 0xE3
TAG_LIFE_CYCLE: Final = 0x9F70
TAG_PRIVILEGES: Final = 0xC5
TAG_LOAD_FILE_AID: Final = 0xC4
TAG_LOAD_FILE_VERSION: Final = 0xCE
TAG_MODULE_AID: Final = 0x84
TAG_ASSOCIATED_SD: Final = 0xCC
REGISTRY_TAGS: Final = (
    TAG_AID,
    TAG_LIFE_CYCLE,
    TAG_PRIVILEGES,
    TAG_LOAD_FILE_AID,
    TAG_LOAD_FILE_VERSION,
    TAG_MODULE_AID,
    TAG_ASSOCIATED_SD,
)
# A load file with more modules than this would not fit one short response with its other objects.
MODULES_PER_LOAD_FILE_MAX: Final = 8
# GP CS v2.3 Table 11-36: the ELF version is a few bytes (Java Card: major, minor).
LOAD_FILE_VERSION_MAX: Final = 8
# The tag list names at most the objects Table 11-36 defines.
TAG_LIST_MAX: Final = 16


class StatusScope(enum.IntEnum):
    """GET STATUS P1 (GP CS v2.3 §11.4.2.1 Table 11-31)."""

    ISSUER_SECURITY_DOMAIN = 0x80
    APPLICATIONS = 0x40  # applications and Supplementary Security Domains
    LOAD_FILES = 0x20  # Executable Load Files
    LOAD_FILES_AND_MODULES = 0x10  # Executable Load Files and their Executable Modules


def _encode_tag_list(tags: Iterable[int]) -> bytes:
    return b"".join(Tlv(tag).tag_bytes for tag in tags)


def _parse_tag_list(data: bytes) -> tuple[int, ...]:
    # ISO/IEC 7816-4 §5.2.2.1 tag fields, back to back: a first byte with b5..b1 all
    # set continues, and so does every next byte with b8 set (three bytes at most).
    tags: list[int] = []
    pos = 0
    while pos < len(data):
        start, tag = pos, data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            while True:
                if pos >= len(data):
                    raise TruncatedError("tag list ends inside a tag", len(data))
                tag = tag << 8 | data[pos]
                pos += 1
                if not data[pos - 1] & 0x80:
                    break
                if pos - start >= 3:
                    raise CodecError("tag of more than 3 bytes in the tag list", start)
        try:
            Tlv(tag)
        except CodecError as exc:
            raise CodecError(f"tag list: {exc.message}", start) from None
        tags.append(tag)
    if len(tags) > TAG_LIST_MAX:
        raise CodecError(f"tag list names more than {TAG_LIST_MAX} tags")
    return tuple(tags)


# GP CS v2.3 §11.4: CLA 80, INS F2, P1 scope, P2 format/occurrence, data = 4F [5C], Le 00.
@dataclass(frozen=True)
class GetStatusCommand:
    scope: StatusScope
    aid_prefix: bytes = b""
    tag_list: tuple[int, ...] | None = None
    next_occurrence: bool = False

    def __post_init__(self) -> None:
        if len(self.aid_prefix) > AID_LENGTH_MAX:
            raise CodecError(f"AID search qualifier exceeds {AID_LENGTH_MAX} bytes")
        if self.tag_list is not None:
            _parse_tag_list(_encode_tag_list(self.tag_list))

    @property
    def p2(self) -> int:
        return P2_TLV_FORMAT | (P2_NEXT_OCCURRENCE if self.next_occurrence else 0)

    def data(self) -> bytes:
        objects = [Tlv(TAG_AID, self.aid_prefix)]
        if self.tag_list is not None:
            objects.append(Tlv(TAG_TAG_LIST, _encode_tag_list(self.tag_list)))
        return encode_tlvs(objects)

    def to_bytes(self) -> bytes:
        return build_gp_command(GpIns.GET_STATUS, self.scope, self.p2, self.data())

    @classmethod
    def from_bytes(cls, capdu: bytes) -> GetStatusCommand:
        command = parse_gp_command(capdu, GpIns.GET_STATUS)
        return cls.from_fields(command.p1, command.p2, command.data)

    @classmethod
    def from_fields(cls, p1: int, p2: int, data: bytes) -> GetStatusCommand:
        try:
            scope = StatusScope(p1)
        except ValueError:
            raise CodecError(f"GET STATUS P1 {p1:02X} is not 80, 40, 20 or 10", 2) from None
        if p2 & ~(P2_TLV_FORMAT | P2_NEXT_OCCURRENCE) or not p2 & P2_TLV_FORMAT:
            raise CodecError(f"GET STATUS P2 {p2:02X}: only the TLV format (02, 03) is supported", 3)
        objects = parse_tlvs(data)
        aids = [t for t in objects if t.tag == TAG_AID]
        lists = [t for t in objects if t.tag == TAG_TAG_LIST]
        if len(aids) != 1 or len(lists) > 1 or len(objects) != len(aids) + len(lists):
            raise CodecError("GET STATUS search criteria must be one 4F and at most one 5C")
        tag_list = _parse_tag_list(lists[0].value) if lists else None
        return cls(scope, aids[0].value, tag_list, bool(p2 & P2_NEXT_OCCURRENCE))


def get_status_command(
    scope: StatusScope, aid_prefix: bytes = b"", *, tag_list: tuple[int, ...] | None = None, next_occurrence: bool = False
) -> bytes:
    """The plain GET STATUS C-APDU (TLV format); send it again with ``next_occurrence`` while the card answers 6310."""
    return GetStatusCommand(scope, aid_prefix, tag_list, next_occurrence).to_bytes()


@dataclass(frozen=True)
class RegistryData:
    """One ``E3`` template of the GET STATUS response (GP CS v2.3 Table 11-36)."""

    aid: bytes
    life_cycle: int | None = None
    privileges: Privilege | None = None
    load_file_aid: bytes | None = None
    load_file_version: bytes | None = None
    module_aids: tuple[bytes, ...] = ()
    associated_sd: bytes | None = None

    def __post_init__(self) -> None:
        check_aid(self.aid, "registry entry AID")
        if self.life_cycle is not None:
            check_byte(self.life_cycle, "life cycle state")
        for what, aid in (("load file AID", self.load_file_aid), ("associated SD AID", self.associated_sd)):
            if aid is not None:
                check_aid(aid, what)
        for module in self.module_aids:
            check_aid(module, "module AID")
        if len(self.module_aids) > MODULES_PER_LOAD_FILE_MAX:
            raise CodecError(f"more than {MODULES_PER_LOAD_FILE_MAX} modules in one load file")
        if self.load_file_version is not None and len(self.load_file_version) > LOAD_FILE_VERSION_MAX:
            raise CodecError(f"load file version exceeds {LOAD_FILE_VERSION_MAX} bytes")

    def to_tlv(self) -> Tlv:
        # Table 11-36 order: 4F, 9F70, C5, C4, CE, 84 (repeated), CC.
        objects = [Tlv(TAG_AID, self.aid)]
        if self.life_cycle is not None:
            objects.append(Tlv(TAG_LIFE_CYCLE, bytes([self.life_cycle])))
        if self.privileges is not None:
            objects.append(Tlv(TAG_PRIVILEGES, encode_privileges(self.privileges)))
        if self.load_file_aid is not None:
            objects.append(Tlv(TAG_LOAD_FILE_AID, self.load_file_aid))
        if self.load_file_version is not None:
            objects.append(Tlv(TAG_LOAD_FILE_VERSION, self.load_file_version))
        objects.extend(Tlv(TAG_MODULE_AID, module) for module in self.module_aids)
        if self.associated_sd is not None:
            objects.append(Tlv(TAG_ASSOCIATED_SD, self.associated_sd))
        return Tlv.nest(TAG_REGISTRY_DATA, objects)

    def to_bytes(self) -> bytes:
        return self.to_tlv().to_bytes()

    @classmethod
    def from_tlv(cls, tlv: Tlv) -> RegistryData:
        if tlv.tag != TAG_REGISTRY_DATA:
            raise CodecError(f"GET STATUS entry is tag {tlv.tag:02X}, not E3")
        fields: dict[int, list[bytes]] = {}
        for child in tlv.children():
            fields.setdefault(child.tag, []).append(child.value)
        for tag, values in fields.items():
            if tag != TAG_MODULE_AID and len(values) > 1:
                raise CodecError(f"tag {tag:02X} appears {len(values)} times in one E3 template")

        def one(tag: int) -> bytes | None:
            return fields[tag][0] if tag in fields else None

        aid = one(TAG_AID)
        if aid is None:
            raise CodecError("E3 template without 4F (AID)")
        life_cycle = one(TAG_LIFE_CYCLE)
        if life_cycle is not None and len(life_cycle) != 1:
            raise CodecError(f"life cycle state (9F70) is 1 byte, not {len(life_cycle)}")
        privileges = one(TAG_PRIVILEGES)
        return cls(
            aid=aid,
            life_cycle=None if life_cycle is None else life_cycle[0],
            privileges=None if privileges is None else parse_privileges(privileges),
            load_file_aid=one(TAG_LOAD_FILE_AID),
            load_file_version=one(TAG_LOAD_FILE_VERSION),
            module_aids=tuple(fields.get(TAG_MODULE_AID, [])),
            associated_sd=one(TAG_ASSOCIATED_SD),
        )

    def restricted(self, tag_list: Iterable[int] | None) -> RegistryData:
        """Only the objects a GET STATUS tag list asks for (4F always stays)."""
        if tag_list is None:
            return self
        wanted = set(tag_list)
        return replace(
            self,
            life_cycle=self.life_cycle if TAG_LIFE_CYCLE in wanted else None,
            privileges=self.privileges if TAG_PRIVILEGES in wanted else None,
            load_file_aid=self.load_file_aid if TAG_LOAD_FILE_AID in wanted else None,
            load_file_version=self.load_file_version if TAG_LOAD_FILE_VERSION in wanted else None,
            module_aids=self.module_aids if TAG_MODULE_AID in wanted else (),
            associated_sd=self.associated_sd if TAG_ASSOCIATED_SD in wanted else None,
        )


def parse_get_status(data: bytes) -> list[RegistryData]:
    """The ``E3`` templates of one GET STATUS response data field (status word removed)."""
    return [RegistryData.from_tlv(tlv) for tlv in parse_tlvs(data)]


def build_get_status(entries: Iterable[RegistryData]) -> bytes:
    return b"".join(entry.to_bytes() for entry in entries)
