"""Per-card values (ICCID, IMSI, MSISDN, customer, PINs …): what a profile declares and how each is checked.

Spec: ITU-T E.118 §4 and ISO/IEC 7812-1 Annex B (ICCID: issuer identification
starting with the telecommunication industry identifier 89, Luhn check
digit); 3GPP TS 23.003 §2.2 (IMSI = MCC ‖ MNC ‖ MSIN, at most 15 digits);
ITU-T E.164 §6 (international numbers of at most 15 digits: country code ‖
national significant number); ETSI TS 102 221 §9.5.1 (PINs of 4 to 8
digits, unblock keys of 8).

Theory of operation. A profile declares each value it needs as a
:class:`ValueSpec` (its kind, whether it is required, a default, and the
checks its kind allows). :func:`check_card_values` applies the specs to the
values of one card (from the command line or one CSV row) and returns a
:class:`CardValues`; every value that fails is named in one
:class:`CardValueError`, with the CSV row when given. PINs and unblock keys
become :class:`Secret` objects, which never show their digits in ``repr``,
``str`` or an error message. The MSISDN is kept as the national significant
number (``13800138000``): the profile writes ``+86{{ msisdn }}`` or uses
the derived ``msisdn_e164``.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from simwallet.applet.protocols.efs_bcd import luhn_valid
from simwallet.provisioning.errors import ProvisioningError

# ITU-T E.118 §4.4: at most 19 digits plus the check digit; issuers use 19 or 20.
ICCID_DIGITS = (19, 20)
# ITU-T E.118 §4.2: the major industry identifier of telecommunications.
ICCID_INDUSTRY = "89"
# 3GPP TS 23.003 §2.2: 15 digits (the brief's cards all carry full-length IMSIs).
IMSI_DIGITS = 15
MCC_DIGITS = 3
# ITU-T E.164 §6.1: at most 15 digits including the country code.
E164_DIGITS_MAX = 15
# A national significant number shorter than 4 digits is no subscriber number.
NSN_DIGITS_MIN = 4
# ETSI TS 102 221 §9.5.1: PIN 4..8 digits, unblock key (PUK) 8 digits.
PIN_DIGITS_MIN = 4
PIN_DIGITS_MAX = 8
PUK_DIGITS = 8
# The customer reference is a key in the backend and in file names of journals.
CUSTOMER_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
# A free text value is a short token in templates (language, channel, branch …).
TEXT_CHARS_MAX = 64
# A profile declares few values; 32 bounds a CSV header.
VALUES_MAX = 32

_DIGITS = re.compile(r"[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# National forms of the countries the shipped profiles serve: the mobile NSN pattern and the trunk prefix
# dialled before it nationally. Others fall back to E.164 length checks only.
_NATIONAL_MOBILE: Mapping[str, tuple[re.Pattern[str], str]] = MappingProxyType(
    {
        # China (MIIT numbering plan): 11-digit mobile numbers 13x..19x, no trunk prefix.
        "86": (re.compile(r"1[3-9][0-9]{9}"), ""),
        # United Kingdom (Ofcom numbering plan): mobile 7xxx xxxxxx, dialled nationally as 07….
        "44": (re.compile(r"7[0-9]{9}"), "0"),
        # Hong Kong (OFCA numbering plan): 8-digit mobile numbers starting 4..9.
        "852": (re.compile(r"[4-9][0-9]{7}"), ""),
    }
)


class ValueKind(enum.Enum):
    """What a declared value is, which decides its checks."""

    ICCID = "iccid"
    IMSI = "imsi"
    MSISDN = "msisdn"
    CUSTOMER = "customer"
    PIN = "pin"
    PUK = "puk"
    TEXT = "text"

    @property
    def secret(self) -> bool:
        return self in (ValueKind.PIN, ValueKind.PUK)

    @classmethod
    def for_name(cls, name: str) -> ValueKind:
        """The kind a value has when its spec names none: by its name (``pin1`` is a PIN, ``puk2`` a PUK)."""
        if name in ("iccid", "imsi", "msisdn", "customer"):
            return cls(name)
        if re.fullmatch(r"pin[0-9]?", name):
            return cls.PIN
        if re.fullmatch(r"puk[0-9]?", name):
            return cls.PUK
        return cls.TEXT


class CardValueError(ProvisioningError, ValueError):
    """One or more values of a card failed their checks.

    ``problems`` pairs each value's name with what is wrong with it; ``name``
    is the first such value and ``row`` the CSV row (1-based, header
    excluded), when the values came from a batch. A secret's digits are
    never part of the message.
    """

    def __init__(self, problems: tuple[tuple[str, str], ...], row: int | None = None) -> None:
        self.problems = problems
        self.row = row
        self.name = problems[0][0] if problems else None
        where = f"row {row}: " if row is not None else ""
        super().__init__(where + "; ".join(f"{name}: {message}" for name, message in problems))


class Secret:
    """A PIN or unblock key: ``reveal()`` gives the digits; ``repr``, ``str`` and formatting show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


@dataclass(frozen=True)
class ValueSpec:
    """One value a profile declares (``values:`` in the profile).

    ``prefix`` (ICCID: the issuer's leading digits), ``plmns`` (IMSI: allowed
    MCC‖MNC), ``country_code`` (MSISDN), ``choices`` and ``pattern`` (text)
    apply only to their kind. A secret (PIN, PUK) has no default: secrets come
    with the card's values, never from the profile file.
    """

    name: str
    kind: ValueKind
    required: bool = False
    default: str | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    prefix: str | None = None
    plmns: tuple[str, ...] = ()
    country_code: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind.secret and self.default is not None:
            raise ValueError(f"{self.name}: a {self.kind.value} has no default (secrets never come from the profile file)")
        if self.kind is ValueKind.TEXT and not self.choices and self.pattern is None:
            raise ValueError(f"{self.name}: a text value needs choices or a pattern")
        if self.kind is ValueKind.MSISDN and self.country_code is None:
            raise ValueError(f"{self.name}: an MSISDN needs the country_code of its national form")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"{self.name}: pattern does not compile: {exc}") from exc


@dataclass(frozen=True)
class CardValues:
    """The checked values of one card: plain ``values`` and ``secrets`` (PINs, PUKs) that never print."""

    values: Mapping[str, str]
    secrets: Mapping[str, Secret] = field(default_factory=lambda: MappingProxyType({}))
    row: int | None = None

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    @property
    def iccid(self) -> str | None:
        return self.values.get("iccid")

    @property
    def imsi(self) -> str | None:
        return self.values.get("imsi")

    @property
    def msisdn(self) -> str | None:
        """The national significant number (no country code, no trunk prefix)."""
        return self.values.get("msisdn")

    @property
    def customer(self) -> str | None:
        return self.values.get("customer")


class _Problem(Exception):
    pass


def check_iccid(text: str, *, prefix: str | None = None) -> str:
    """An ICCID of 19 or 20 digits, industry 89, a correct Luhn check digit and the issuer ``prefix``; else ValueError."""
    try:
        return _iccid(text, prefix)
    except _Problem as exc:
        raise ValueError(str(exc)) from None


def _iccid(text: str, prefix: str | None) -> str:
    if not _DIGITS.fullmatch(text) or len(text) not in ICCID_DIGITS:
        raise _Problem(f"an ICCID is 19 or 20 decimal digits, not {text!r}")
    if not text.startswith(ICCID_INDUSTRY):
        raise _Problem(f"{text} does not start with the telecommunication industry identifier {ICCID_INDUSTRY}")
    if prefix is not None and not text.startswith(prefix):
        raise _Problem(f"{text} is not in the issuer's range {prefix}…")
    if not luhn_valid(text):
        raise _Problem(f"{text} fails the Luhn check (last digit)")
    return text


def check_imsi(text: str, *, mnc_length: int = 2, plmns: tuple[str, ...] = ()) -> str:
    """An IMSI of 15 digits whose MCC is not 000 and, when ``plmns`` is given, whose MCC‖MNC is one of them; else ValueError."""
    try:
        return _imsi(text, mnc_length, plmns)
    except _Problem as exc:
        raise ValueError(str(exc)) from None


def _imsi(text: str, mnc_length: int, plmns: tuple[str, ...]) -> str:
    if not _DIGITS.fullmatch(text) or len(text) != IMSI_DIGITS:
        raise _Problem(f"an IMSI is {IMSI_DIGITS} decimal digits, not {text!r}")
    if text[:MCC_DIGITS] == "000":
        raise _Problem(f"{text}: MCC 000 is not a country")
    if mnc_length not in (2, 3):
        raise _Problem(f"MNC length {mnc_length} is not 2 or 3")
    plmn = text[: MCC_DIGITS + mnc_length]
    if plmns and plmn not in plmns:
        raise _Problem(
            f"{text}: MCC {plmn[:MCC_DIGITS]} MNC {plmn[MCC_DIGITS:]} is not one of this profile's networks ({', '.join(plmns)})"
        )
    return text


def check_msisdn(text: str, *, country_code: str) -> str:
    """The national significant number of ``text`` (``+CC…``, ``00CC…`` or the national form); else ValueError."""
    try:
        return _msisdn(text, country_code)
    except _Problem as exc:
        raise ValueError(str(exc)) from None


def _msisdn(text: str, country_code: str) -> str:
    rule = _NATIONAL_MOBILE.get(country_code)
    if text.startswith("+"):
        digits = text[1:]
        if not _DIGITS.fullmatch(digits) or not digits.startswith(country_code):
            raise _Problem(f"{text} is not a +{country_code} number")
        nsn = digits[len(country_code) :]
    elif text.startswith("00" + country_code) and _DIGITS.fullmatch(text):
        nsn = text[2 + len(country_code) :]
    elif _DIGITS.fullmatch(text):
        nsn = text
        if rule is not None and rule[1] and nsn.startswith(rule[1]):
            nsn = nsn[len(rule[1]) :]
        elif rule is not None and not rule[0].fullmatch(nsn) and nsn.startswith(country_code):
            nsn = nsn[len(country_code) :]
    else:
        raise _Problem(f"an MSISDN is digits with an optional leading +, not {text!r}")
    if len(country_code) + len(nsn) > E164_DIGITS_MAX or len(nsn) < NSN_DIGITS_MIN:
        raise _Problem(f"{text}: +{country_code} {nsn} is not an E.164 number ({NSN_DIGITS_MIN} to {E164_DIGITS_MAX} digits)")
    if rule is not None and not rule[0].fullmatch(nsn):
        raise _Problem(f"{text} is not a +{country_code} mobile number (national form {rule[1]}{rule[0].pattern})")
    return nsn


def check_customer(text: str) -> str:
    """A customer reference: 1 to 32 of ``A-Z a-z 0-9 _ -``; else ValueError."""
    if not CUSTOMER_PATTERN.fullmatch(text):
        raise ValueError(f"a customer reference is 1 to 32 of A-Z a-z 0-9 _ -, not {text!r}")
    return text


def check_pin(secret: str, *, kind: ValueKind = ValueKind.PIN) -> Secret:
    """A PIN (4..8 digits) or PUK (8 digits) as a :class:`Secret`; the ValueError never contains the digits."""
    if kind is ValueKind.PUK:
        if not (_DIGITS.fullmatch(secret) and len(secret) == PUK_DIGITS):
            raise ValueError(f"an unblock key is {PUK_DIGITS} decimal digits")
    elif not (_DIGITS.fullmatch(secret) and PIN_DIGITS_MIN <= len(secret) <= PIN_DIGITS_MAX):
        raise ValueError(f"a PIN is {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} decimal digits")
    return Secret(secret)


def _text(spec: ValueSpec, text: str) -> str:
    if len(text) > TEXT_CHARS_MAX or _CONTROL.search(text):
        raise _Problem(f"at most {TEXT_CHARS_MAX} characters and no control characters")
    if spec.choices and text not in spec.choices:
        raise _Problem(f"{text!r} is not one of {', '.join(spec.choices)}")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
        raise _Problem(f"{text!r} does not match {spec.pattern}")
    return text


def check_value(spec: ValueSpec, text: str, *, mnc_length: int = 2) -> str | Secret:
    """One value by its spec; ValueError (never with a secret's digits) when it fails."""
    try:
        match spec.kind:
            case ValueKind.ICCID:
                return _iccid(text, spec.prefix)
            case ValueKind.IMSI:
                return _imsi(text, mnc_length, spec.plmns)
            case ValueKind.MSISDN:
                assert spec.country_code is not None  # ValueSpec requires it
                return _msisdn(text, spec.country_code)
            case ValueKind.CUSTOMER:
                return check_customer(text)
            case ValueKind.PIN | ValueKind.PUK:
                return check_pin(text, kind=spec.kind)
            case ValueKind.TEXT:
                return _text(spec, text)
    except _Problem as exc:
        raise ValueError(str(exc)) from None
    raise AssertionError(spec.kind)  # pragma: no cover - the match is exhaustive


def check_card_values(
    specs: tuple[ValueSpec, ...],
    given: Mapping[str, str],
    *,
    mnc_length: int = 2,
    row: int | None = None,
    allow_extra: bool = False,
) -> CardValues:
    """Check the values of one card against a profile's specs; defaults fill what is not given.

    Raises :class:`CardValueError` naming every value that is missing,
    unknown (unless ``allow_extra``) or fails its check.
    """
    problems: list[tuple[str, str]] = []
    declared = {spec.name for spec in specs}
    if not allow_extra:
        problems += [(name, "not a value this profile declares") for name in sorted(set(given) - declared)]
    plain: dict[str, str] = {}
    secrets: dict[str, Secret] = {}
    for spec in specs:
        text = given.get(spec.name)
        if text is None or text == "":
            if spec.default is not None:
                text = spec.default
            elif spec.required:
                problems.append((spec.name, "required, and not given"))
                continue
            else:
                continue
        if not isinstance(text, str):
            problems.append((spec.name, f"must be text, not {type(text).__name__}"))
            continue
        try:
            checked = check_value(spec, text, mnc_length=mnc_length)
        except ValueError as exc:
            problems.append((spec.name, str(exc)))
            continue
        if isinstance(checked, Secret):
            secrets[spec.name] = checked
        else:
            plain[spec.name] = checked
    if problems:
        raise CardValueError(tuple(problems), row)
    return CardValues(MappingProxyType(plain), MappingProxyType(secrets), row)
