"""APDU traces that are safe to show: the data of commands that carry secrets is masked.

Spec: ETSI TS 102 221 §11.1.9–§11.1.13 (VERIFY, CHANGE, DISABLE, ENABLE and
UNBLOCK PIN carry PIN and PUK values), §11.1.16 (AUTHENTICATE answers with
keys' output); GlobalPlatform Card Specification 2.3 §11.8 (PUT KEY carries
keys, wrapped or not) and §11.11 (STORE DATA carries personalization data,
the wallet applet's keys and PIN among it).

A trace line is hex, as a technician reads it, with the secret part replaced
by ``<n bytes masked>``: the length stays visible because a wrong length is
often the diagnosis. Masking happens here, before any trace reaches a log, a
terminal or a ``--json`` document; :mod:`simwallet.provisioning.reader` calls
it on every exchange it traces.
"""

from __future__ import annotations

from typing import Final

# ISO/IEC 7816-4 / TS 102 221 INS bytes whose command data is a PIN, PUK or ADM value.
_PIN_INS: Final = frozenset({0x20, 0x24, 0x26, 0x28, 0x2C})
# GlobalPlatform: PUT KEY (D8), STORE DATA (E2); both may carry key material.
_KEY_INS: Final = frozenset({0xD8, 0xE2})
# TS 102 221 §11.1.16 AUTHENTICATE: the response holds RES, CK, IK (or Kc).
_SECRET_RESPONSE_INS: Final = frozenset({0x88})
_HEADER_LENGTH: Final = 4


def _masked(length: int) -> str:
    return f"<{length} bytes masked>"


def command_is_secret(capdu: bytes) -> bool:
    """Whether the command data of ``capdu`` must never be shown."""
    return len(capdu) > _HEADER_LENGTH and (capdu[1] in _PIN_INS or capdu[1] in _KEY_INS)


def mask_command(capdu: bytes) -> str:
    """The C-APDU in hex, its data replaced by a length when it is secret."""
    if not command_is_secret(capdu):
        return capdu.hex().upper()
    body = capdu[_HEADER_LENGTH:]
    header = capdu[:_HEADER_LENGTH].hex().upper()
    if len(body) == 1:  # case 2: Le only, nothing to hide
        return capdu.hex().upper()
    if body[0] == 0 and len(body) >= 3:  # extended Lc
        lc = int.from_bytes(body[1:3], "big")
        rest = body[3 + lc :]
        return f"{header} {body[:3].hex().upper()} {_masked(lc)}{(' ' + rest.hex().upper()) if rest else ''}"
    lc = body[0]
    rest = body[1 + lc :]
    return f"{header} {body[:1].hex().upper()} {_masked(lc)}{(' ' + rest.hex().upper()) if rest else ''}"


def mask_response(capdu: bytes, rapdu: bytes) -> str:
    """The R-APDU in hex, its data replaced by a length when the command's answer is secret."""
    if len(capdu) >= 2 and capdu[1] in _SECRET_RESPONSE_INS and len(rapdu) > 2:
        return f"{_masked(len(rapdu) - 2)} {rapdu[-2:].hex().upper()}"
    return rapdu.hex().upper()
