"""GlobalPlatform card content management commands: INSTALL, SET STATUS, DELETE.

Spec: GP Card Specification v2.3 §11.5 (INSTALL: P1 §11.5.2.1 Table 11-41,
data fields §11.5.2.3 Tables 11-43 to 11-47, install parameters §11.5.2.3.7
Table 11-49), §11.10 (SET STATUS, Tables 11-78/11-79), §11.2 (DELETE,
Tables 11-20/11-21).

Each command is a frozen dataclass whose ``to_bytes()`` is the plain C-APDU
(class ``80``) and whose ``from_bytes()`` parses any GP class, so the card
parses what the secure channel unwrapped. Lengths of AIDs and privileges are
one byte; lengths of install parameters and tokens are BER (``81 xx`` from
128 bytes on), as GP CS v2.3 §11.5.2.3 writes them.

INSTALL [for load], [for extradition] and [for registry update] are not
modelled: simwallet's applets are pre-loaded executable modules, so the card
answers those with ``6A81``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.gp_common import (
    FieldReader,
    GpIns,
    Privilege,
    build_gp_command,
    check_aid,
    check_byte,
    encode_ber_length,
    encode_privileges,
    parse_gp_command,
    parse_privileges,
)
from simwallet.applet.protocols.tlv import Tlv, encode_tlvs, parse_tlvs

# GP CS v2.3 §11.5.2.3.7 Table 11-49: install parameter tags.
TAG_APPLICATION_PARAMETERS: Final = 0xC9  # application specific parameters (mandatory)
TAG_SYSTEM_PARAMETERS: Final = 0xEF  # system specific parameters (constructed)
# GP CS v2.3 Table 11-49 inside EF, and ETSI TS 102 226 §8.2.1.3.2 (pySim's gen_install_parameters writes them).
TAG_VOLATILE_MEMORY_QUOTA: Final = 0xC7
TAG_NON_VOLATILE_MEMORY_QUOTA: Final = 0xC8
TAG_TS102226_PARAMETERS: Final = 0xCA
# The whole install parameters field must fit one short command next to three AIDs.
INSTALL_PARAMETERS_MAX: Final = 200
# GP CS v2.3 Annex C.4: a token is a signature; 128 bytes covers RSA-1024 and any CMAC.
TOKEN_MAX: Final = 128

# GP CS v2.3 §11.5.2.1 Table 11-41, b8: more INSTALL commands follow for this operation.
INSTALL_MORE_BIT: Final = 0x80


class InstallFor(enum.IntEnum):
    """INSTALL P1 b7..b1 (GP CS v2.3 §11.5.2.1 Table 11-41): the combinations this codec models."""

    INSTALL = 0x04
    MAKE_SELECTABLE = 0x08
    INSTALL_AND_MAKE_SELECTABLE = 0x0C
    PERSONALIZATION = 0x20


# GP CS v2.3 Table 11-41: b2 = for load, b5 = for extradition, b7 = for registry update.
INSTALL_FOR_LOAD_BIT: Final = 0x02
INSTALL_UNSUPPORTED_BITS: Final = INSTALL_FOR_LOAD_BIT | 0x10 | 0x40
# An application installed without privileges (GP CS v2.3 §6.6: the common case for applets).
NO_PRIVILEGES: Final = Privilege(0)


@dataclass(frozen=True)
class InstallParameters:
    """The install parameters field (GP CS v2.3 Table 11-49).

    ``application`` is the value of C9 (handed to the applet's install
    method); ``system`` the objects inside EF, or None when EF is absent;
    ``extra`` any other top-level objects (EA, B6 …), kept in order.
    """

    application: bytes = b""
    system: tuple[Tlv, ...] | None = None
    extra: tuple[Tlv, ...] = ()

    def __post_init__(self) -> None:
        if any(t.tag in (TAG_APPLICATION_PARAMETERS, TAG_SYSTEM_PARAMETERS) for t in self.extra):
            raise CodecError("C9 and EF belong in application and system, not extra")
        if len(self.to_bytes()) > INSTALL_PARAMETERS_MAX:
            raise CodecError(f"install parameters exceed {INSTALL_PARAMETERS_MAX} bytes")

    def to_bytes(self) -> bytes:
        objects = [Tlv(TAG_APPLICATION_PARAMETERS, self.application)]
        if self.system is not None:
            objects.append(Tlv.nest(TAG_SYSTEM_PARAMETERS, self.system))
        return encode_tlvs([*objects, *self.extra])

    @classmethod
    def from_bytes(cls, data: bytes) -> InstallParameters:
        objects = parse_tlvs(data)
        application = [t for t in objects if t.tag == TAG_APPLICATION_PARAMETERS]
        system = [t for t in objects if t.tag == TAG_SYSTEM_PARAMETERS]
        if len(application) != 1:
            raise CodecError(f"install parameters need exactly one C9 object, found {len(application)}")
        if len(system) > 1:
            raise CodecError("install parameters hold more than one EF object")
        extra = tuple(t for t in objects if t.tag not in (TAG_APPLICATION_PARAMETERS, TAG_SYSTEM_PARAMETERS))
        return cls(application[0].value, tuple(system[0].children()) if system else None, extra)


# GP CS v2.3 §11.5.2.3, Tables 11-43 (for install), 11-46 (for make selectable) and
# 11-47 (for personalization) share one layout of six length-prefixed fields:
#   Load File AID | Module AID | Application AID | Privileges | Parameters (BER length) | Token (BER length)
# with empty fields (length 00) where a variant has none.
@dataclass(frozen=True)
class InstallCommand:
    """An INSTALL command of one of the :class:`InstallFor` variants."""

    kind: InstallFor
    application_aid: bytes
    load_file_aid: bytes = b""
    module_aid: bytes = b""
    privileges: Privilege | None = None
    parameters: InstallParameters | None = None
    token: bytes = b""
    more: bool = False

    def __post_init__(self) -> None:
        check_aid(self.application_aid, "application AID")
        installs = self.kind in (InstallFor.INSTALL, InstallFor.INSTALL_AND_MAKE_SELECTABLE)
        if installs:
            check_aid(self.load_file_aid, "load file AID")
            check_aid(self.module_aid, "module AID")
            if self.privileges is None or self.parameters is None:
                raise CodecError("INSTALL [for install] needs privileges and install parameters (C9)")
        elif self.load_file_aid or self.module_aid or self.parameters is not None:
            raise CodecError(f"INSTALL [for {self.kind.name.lower()}] has no load file, module or parameters")
        if self.kind is InstallFor.MAKE_SELECTABLE and self.privileges is None:
            raise CodecError("INSTALL [for make selectable] needs privileges")
        if self.kind is InstallFor.PERSONALIZATION and (self.privileges is not None or self.token):
            raise CodecError("INSTALL [for personalization] has no privileges or token")
        if len(self.token) > TOKEN_MAX:
            raise CodecError(f"install token exceeds {TOKEN_MAX} bytes")

    @property
    def p1(self) -> int:
        return int(self.kind) | (INSTALL_MORE_BIT if self.more else 0)

    def data(self) -> bytes:
        privileges = b"" if self.privileges is None else encode_privileges(self.privileges)
        parameters = b"" if self.parameters is None else self.parameters.to_bytes()
        out = bytearray()
        for field in (self.load_file_aid, self.module_aid, self.application_aid, privileges):
            out += bytes([len(field)]) + field
        for field in (parameters, self.token):
            out += encode_ber_length(len(field)) + field
        return bytes(out)

    def to_bytes(self) -> bytes:
        # GP CS v2.3 §11.5.2: P2 = 00; the response data is one byte 00 (no receipt), hence Le.
        return build_gp_command(GpIns.INSTALL, self.p1, 0x00, self.data())

    @classmethod
    def from_bytes(cls, capdu: bytes) -> InstallCommand:
        command = parse_gp_command(capdu, GpIns.INSTALL)
        return cls.from_fields(command.p1, command.p2, command.data)

    @classmethod
    def from_fields(cls, p1: int, p2: int, data: bytes) -> InstallCommand:
        """Card side: P1, P2 and the data field of an unwrapped INSTALL."""
        try:
            kind = InstallFor(p1 & ~INSTALL_MORE_BIT)
        except ValueError:
            raise CodecError(f"INSTALL P1 {p1:02X} is not a variant this codec models", 2) from None
        if p2 != 0:
            raise CodecError(f"INSTALL P2 must be 00, not {p2:02X}", 3)
        reader = FieldReader(data)
        load_file = reader.short_field("load file AID")
        module = reader.short_field("module AID")
        application = reader.short_field("application AID")
        privileges = reader.short_field("privileges")
        parameters = reader.ber_field("install parameters")
        token = reader.ber_field("install token")
        reader.end("INSTALL data field")
        return cls(
            kind=kind,
            application_aid=application,
            load_file_aid=load_file,
            module_aid=module,
            privileges=parse_privileges(privileges) if privileges else None,
            parameters=InstallParameters.from_bytes(parameters) if parameters else None,
            token=token,
            more=bool(p1 & INSTALL_MORE_BIT),
        )


def install_for_install_command(
    load_file_aid: bytes,
    module_aid: bytes,
    application_aid: bytes,
    *,
    privileges: Privilege = NO_PRIVILEGES,
    application_parameters: bytes = b"",
    system_parameters: tuple[Tlv, ...] | None = None,
    make_selectable: bool = True,
    token: bytes = b"",
) -> bytes:
    """The plain INSTALL [for install (and make selectable)] C-APDU of a pre-loaded module."""
    kind = InstallFor.INSTALL_AND_MAKE_SELECTABLE if make_selectable else InstallFor.INSTALL
    parameters = InstallParameters(application_parameters, system_parameters)
    return InstallCommand(kind, application_aid, load_file_aid, module_aid, privileges, parameters, token).to_bytes()


def install_for_make_selectable_command(application_aid: bytes, privileges: Privilege = NO_PRIVILEGES) -> bytes:
    """The plain INSTALL [for make selectable] C-APDU."""
    return InstallCommand(InstallFor.MAKE_SELECTABLE, application_aid, privileges=privileges).to_bytes()


def install_for_personalization_command(application_aid: bytes) -> bytes:
    """The plain INSTALL [for personalization] C-APDU; STORE DATA commands for the application follow."""
    return InstallCommand(InstallFor.PERSONALIZATION, application_aid).to_bytes()


# --- SET STATUS -------------------------------------------------------------------------------


class StatusType(enum.IntEnum):
    """SET STATUS P1 (GP CS v2.3 §11.10.2.1 Table 11-78)."""

    ISSUER_SECURITY_DOMAIN = 0x80  # P2 is the new card life cycle state
    APPLICATION = 0x40  # an application or Supplementary Security Domain
    SECURITY_DOMAIN_AND_APPLICATIONS = 0x60  # a Security Domain and its associated applications


# GP CS v2.3 §11.10.2.2 Table 11-79: for an application, P2 = 80 locks, 00 unlocks.
SET_STATUS_LOCK: Final = 0x80
SET_STATUS_UNLOCK: Final = 0x00


# GP CS v2.3 §11.10: CLA 80, INS F0, P1 status type, P2 state control, data = AID of the
# target (optional for the ISD), no response data.
@dataclass(frozen=True)
class SetStatusCommand:
    """A SET STATUS command; ``aid`` may be empty only for :attr:`StatusType.ISSUER_SECURITY_DOMAIN`."""

    status_type: StatusType
    state: int
    aid: bytes = b""

    def __post_init__(self) -> None:
        check_byte(self.state, "state control")
        if self.aid or self.status_type is not StatusType.ISSUER_SECURITY_DOMAIN:
            check_aid(self.aid, "target AID")

    def to_bytes(self) -> bytes:
        return build_gp_command(GpIns.SET_STATUS, self.status_type, self.state, self.aid, le=False)

    @classmethod
    def from_bytes(cls, capdu: bytes) -> SetStatusCommand:
        command = parse_gp_command(capdu, GpIns.SET_STATUS)
        return cls.from_fields(command.p1, command.p2, command.data)

    @classmethod
    def from_fields(cls, p1: int, p2: int, data: bytes) -> SetStatusCommand:
        try:
            status_type = StatusType(p1)
        except ValueError:
            raise CodecError(f"SET STATUS P1 {p1:02X} is not 80, 40 or 60", 2) from None
        return cls(status_type, p2, data)


def set_status_command(status_type: StatusType, state: int, aid: bytes = b"") -> bytes:
    """The plain SET STATUS C-APDU (lock an application: ``APPLICATION, 0x80, aid``; lock the card: ``ISSUER_SECURITY_DOMAIN, 0x7F``)."""
    return SetStatusCommand(status_type, state, aid).to_bytes()


# --- DELETE -----------------------------------------------------------------------------------

# GP CS v2.3 §11.2.2: P1 b8 = 0 last (or only) command; P2 b8 = 1 delete the object and related objects.
DELETE_RELATED_BIT: Final = 0x80
# GP CS v2.3 §11.2.2.3 Table 11-22: the AID of the object to delete.
TAG_AID: Final = 0x4F


@dataclass(frozen=True)
class DeleteCommand:
    """DELETE [card content] of one object by AID (no delete token, no key deletion)."""

    aid: bytes
    related: bool = False

    def __post_init__(self) -> None:
        check_aid(self.aid, "AID to delete")

    def to_bytes(self) -> bytes:
        p2 = DELETE_RELATED_BIT if self.related else 0x00
        return build_gp_command(GpIns.DELETE, 0x00, p2, Tlv(TAG_AID, self.aid).to_bytes())

    @classmethod
    def from_bytes(cls, capdu: bytes) -> DeleteCommand:
        command = parse_gp_command(capdu, GpIns.DELETE)
        return cls.from_fields(command.p1, command.p2, command.data)

    @classmethod
    def from_fields(cls, p1: int, p2: int, data: bytes) -> DeleteCommand:
        if p1 != 0 or p2 not in (0x00, DELETE_RELATED_BIT):
            raise CodecError(f"DELETE P1 P2 {p1:02X}{p2:02X} is not 0000 or 0080", 2)
        aid = Tlv.from_bytes(data)
        if aid.tag != TAG_AID:
            raise CodecError(f"DELETE data is tag {aid.tag:02X}, not 4F (AID)")
        return cls(aid.value, bool(p2 & DELETE_RELATED_BIT))


def delete_command(aid: bytes, *, related: bool = False) -> bytes:
    """The plain DELETE C-APDU for the object ``aid``."""
    return DeleteCommand(aid, related).to_bytes()
