"""The card type's ``gp:`` section: what the card maker puts in the issuer security domain.

Spec: GP Card Specification v2.3 §7.1 (the Issuer Security Domain), §6
(the Executable Load Files and Modules of the GlobalPlatform Registry),
§11.1.4 (AIDs), Appendix H / GP 2.1.1 §9.3 (CPLC); Amendment D §5.1
(SCP03 parameter ``i``).

``IsdSpec.from_mapping`` validates the mapping the YAML loader hands over::

    gp:
      isd_aid: "A000000151000000"
      key_version: 0x30
      scp_i: 0x70                      # optional (pseudo-random challenges, R-MAC, R-ENC)
      load_files:                      # pre-loaded in ROM; no LOAD command exists
        - aid: "A0000005591010"
          modules: ["A000000559101001"]
      cplc: {ic_fabricator: "4790"}    # optional: CPLC fields by name, hex of their exact width
      iin: "42..."                     # optional; STORE DATA can set IIN and CIN later
      cin: "45..."                     # optional; the ICCID when absent

Errors are :class:`IsdSpecError` with ``field`` the dotted path of the
offending entry (``load_files[0].modules[1]``); the YAML loader adds the
line number. :class:`IsdState` is the ISD's part of the card image (its
key sets, keys included, and its sequence counter), read back with the same
errors (``state.isd.…``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from simwallet.applet.errors import AppletError, CodecError
from simwallet.applet.protocols.gp import AID_LENGTH_MAX, AID_LENGTH_MIN, CPLC_FIELDS, Cplc
from simwallet.applet.protocols.scp03 import SEQUENCE_COUNTER_MAX, ScpOption, StaticKeys

# Executable load files in ROM, and modules per load file (each load file fits one GET STATUS entry).
LOAD_FILES_MAX: Final = 8
MODULES_PER_LOAD_FILE_MAX: Final = 8
# GP CS v2.3 §11.8.2.1: an issuer key set's KVN is 01..7F (FF: the initial key set).
KVN_REPLACEABLE_MAX: Final = 0x7F
KVN_INITIAL: Final = 0xFF
# Key sets one ISD holds: the initial one and a few rotations.
KEY_SETS_MAX: Final = 8
# IIN and CIN (GP CS v2.3 §11.3.3.1): identifiers, not documents.
IDENTIFIER_MAX: Final = 16
# Amendment D §5.1 Table 5-1: the SCP03 i of a card that announces every option the card implements.
SCP_I_DEFAULT: Final = 0x70


class IsdSpecError(AppletError, ValueError):
    """A ``gp:`` section (or a saved state) that does not describe a card; ``field`` names the offending entry."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def hex_field(m: Mapping[str, Any], key: str, where: str = "", *, allow_empty: bool = False) -> bytes:
    """``m[key]`` as bytes from a hex string; :class:`IsdSpecError` naming the field otherwise (never its value)."""
    value = m.get(key)
    if isinstance(value, bytes):
        out = value
    elif isinstance(value, str):
        try:
            out = bytes.fromhex(value)
        except ValueError:
            raise IsdSpecError(_at(where, key), "is not hex") from None
    else:
        raise IsdSpecError(_at(where, key), f"must be a hex string, not {type(value).__name__}")
    if not out and not allow_empty:
        raise IsdSpecError(_at(where, key), "is empty")
    return out


def int_field(m: Mapping[str, Any], key: str, where: str = "") -> int:
    value = m.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise IsdSpecError(_at(where, key), f"must be an integer, not {type(value).__name__}")
    return value


def aid_field(m: Mapping[str, Any], key: str, where: str = "") -> bytes:
    aid = hex_field(m, key, where)
    if not AID_LENGTH_MIN <= len(aid) <= AID_LENGTH_MAX:
        raise IsdSpecError(_at(where, key), f"an AID is {AID_LENGTH_MIN}..{AID_LENGTH_MAX} bytes, not {len(aid)}")
    return aid


def _check_keys(m: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in m:
        if key not in allowed:
            raise IsdSpecError(_at(where, str(key)), f"unknown field (known: {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class LoadFileSpec:
    """An executable load file the card maker put in ROM, with its executable modules."""

    aid: bytes
    modules: tuple[bytes, ...]


_SPEC_FIELDS: Final = frozenset({"isd_aid", "key_version", "scp_i", "load_files", "cplc", "iin", "cin"})


@dataclass(frozen=True)
class IsdSpec:
    """The ISD's AID, initial KVN, SCP03 ``i``, ROM load files, CPLC, IIN and CIN."""

    isd_aid: bytes
    key_version: int
    scp_i: int = SCP_I_DEFAULT
    load_files: tuple[LoadFileSpec, ...] = ()
    cplc: Cplc = field(default_factory=Cplc)
    iin: bytes | None = None
    cin: bytes | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> IsdSpec:
        """Validate a ``gp:`` mapping; :class:`IsdSpecError` names the first field that is wrong."""
        if not isinstance(m, Mapping):
            raise IsdSpecError("gp", "must be a mapping")
        _check_keys(m, _SPEC_FIELDS, "")
        isd_aid = aid_field(m, "isd_aid")
        key_version = int_field(m, "key_version")
        if not (0x01 <= key_version <= KVN_REPLACEABLE_MAX or key_version == KVN_INITIAL):
            raise IsdSpecError("key_version", f"a KVN is 01..7F or FF, not {key_version:#x}")
        scp_i = int_field(m, "scp_i") if "scp_i" in m else SCP_I_DEFAULT
        known = ScpOption.PSEUDO_RANDOM_CHALLENGE | ScpOption.R_MAC | ScpOption.R_ENCRYPTION
        if not 0 <= scp_i <= 0xFF or scp_i & ~known or (scp_i & ScpOption.R_ENCRYPTION and not scp_i & ScpOption.R_MAC):
            raise IsdSpecError("scp_i", f"{scp_i:#x} is not an SCP03 i this card implements (bits 10, 20, 40; 40 needs 20)")
        load_files = _load_files(m.get("load_files", []))
        aids = [isd_aid] + [lf.aid for lf in load_files] + [module for lf in load_files for module in lf.modules]
        if len(set(aids)) != len(aids):
            raise IsdSpecError("load_files", "the ISD, load file and module AIDs must all differ")
        identifiers: dict[str, bytes] = {}
        for key in ("iin", "cin"):
            if m.get(key) is not None:
                identifiers[key] = hex_field(m, key)
                if len(identifiers[key]) > IDENTIFIER_MAX:
                    raise IsdSpecError(key, f"exceeds {IDENTIFIER_MAX} bytes")
        return cls(isd_aid, key_version, scp_i, load_files, _cplc(m.get("cplc", {})), identifiers.get("iin"), identifiers.get("cin"))

    def load_file(self, aid: bytes) -> LoadFileSpec | None:
        return next((lf for lf in self.load_files if lf.aid == aid), None)


def _load_files(entries: Any) -> tuple[LoadFileSpec, ...]:
    if not isinstance(entries, list) or len(entries) > LOAD_FILES_MAX:
        raise IsdSpecError("load_files", f"must be a list of at most {LOAD_FILES_MAX} load files")
    out = []
    for index, entry in enumerate(entries):
        where = f"load_files[{index}]"
        if not isinstance(entry, Mapping):
            raise IsdSpecError(where, "must be a mapping with aid and modules")
        _check_keys(entry, frozenset({"aid", "modules"}), where)
        modules = entry.get("modules")
        if not isinstance(modules, list) or not 1 <= len(modules) <= MODULES_PER_LOAD_FILE_MAX:
            raise IsdSpecError(f"{where}.modules", f"must be a list of 1..{MODULES_PER_LOAD_FILE_MAX} module AIDs")
        module_aids = tuple(aid_field({f"modules[{i}]": module}, f"modules[{i}]", where) for i, module in enumerate(modules))
        out.append(LoadFileSpec(aid_field(entry, "aid", where), module_aids))
    return tuple(out)


def _cplc(overrides: Any) -> Cplc:
    if not isinstance(overrides, Mapping):
        raise IsdSpecError("cplc", "must be a mapping of CPLC field names to hex")
    _check_keys(overrides, frozenset(CPLC_FIELDS), "cplc")
    values: dict[str, bytes] = {}
    for name, width in CPLC_FIELDS.items():
        if name not in overrides:
            continue
        raw = overrides[name]
        if isinstance(raw, int) and not isinstance(raw, bool):
            if not 0 <= raw < 1 << (8 * width):
                raise IsdSpecError(f"cplc.{name}", f"does not fit {width} bytes")
            values[name] = raw.to_bytes(width, "big")
            continue
        values[name] = hex_field(overrides, name, "cplc")
        if len(values[name]) != width:
            raise IsdSpecError(f"cplc.{name}", f"is {width} bytes, not {len(values[name])}")
    return Cplc(**values)


@dataclass(frozen=True, repr=False)
class IsdState:
    """The ISD's part of the card image: key sets in order (the default first), sequence counter, IIN, CIN."""

    key_sets: tuple[StaticKeys, ...]
    sequence_counter: int
    iin: bytes | None = None
    cin: bytes | None = None

    def __repr__(self) -> str:  # StaticKeys shows KVN and KCVs only
        return f"IsdState(key_sets={self.key_sets!r}, sequence_counter={self.sequence_counter})"

    def to_mapping(self) -> dict[str, Any]:
        return {
            "key_sets": [
                {"kvn": keys.kvn, "enc": keys.enc.hex().upper(), "mac": keys.mac.hex().upper(), "dek": keys.dek.hex().upper()}
                for keys in self.key_sets
            ],
            "sequence_counter": self.sequence_counter,
            "iin": None if self.iin is None else self.iin.hex().upper(),
            "cin": None if self.cin is None else self.cin.hex().upper(),
        }

    @classmethod
    def from_mapping(cls, state: Mapping[str, Any]) -> IsdState:
        entries = state.get("key_sets")
        if not isinstance(entries, list) or not 1 <= len(entries) <= KEY_SETS_MAX:
            raise IsdSpecError("state.isd.key_sets", f"must be a list of 1..{KEY_SETS_MAX} key sets")
        key_sets: dict[int, StaticKeys] = {}
        for index, entry in enumerate(entries):
            where = f"state.isd.key_sets[{index}]"
            if not isinstance(entry, Mapping):
                raise IsdSpecError(where, "must be a mapping")
            try:
                keys = StaticKeys(
                    enc=hex_field(entry, "enc", where),
                    mac=hex_field(entry, "mac", where),
                    dek=hex_field(entry, "dek", where),
                    kvn=int_field(entry, "kvn", where),
                )
            except CodecError as exc:  # its message names the key, never its bytes
                raise IsdSpecError(where, exc.message) from None
            if keys.kvn in key_sets:
                raise IsdSpecError(where, f"KVN {keys.kvn:#04x} appears twice")
            key_sets[keys.kvn] = keys
        counter = int_field(state, "sequence_counter", "state.isd")
        if not 0 <= counter <= SEQUENCE_COUNTER_MAX + 1:
            raise IsdSpecError("state.isd.sequence_counter", "out of range")
        identifiers: dict[str, bytes] = {}
        for key in ("iin", "cin"):
            if state.get(key) is not None:
                identifiers[key] = hex_field(state, key, "state.isd")
                if len(identifiers[key]) > IDENTIFIER_MAX:
                    raise IsdSpecError(f"state.isd.{key}", f"exceeds {IDENTIFIER_MAX} bytes")
        return cls(tuple(key_sets.values()), counter, identifiers.get("iin"), identifiers.get("cin"))
