"""Shared data of the secured packet tests: the vectors of tests/vectors/ota.json as key sets, a key lookup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import h

from simwallet.applet.protocols.secured import (
    CcAlgorithm,
    CipherAlgorithm,
    KeyLookup,
    KeySet,
    Kic,
    Kid,
    Spi,
    Tar,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "ota.json").read_text(encoding="utf-8"))


def keyset_of(name: str) -> KeySet:
    entry = VECTORS["keysets"][name]
    return KeySet(
        kvn=entry["kvn"],
        kic_algorithm=CipherAlgorithm[entry["kic_algorithm"]],
        kic=h(entry["kic"]),
        kid_algorithm=CcAlgorithm[entry["kid_algorithm"]],
        kid=h(entry["kid"]),
    )


def only(keyset: KeySet, tar: Tar | None = None) -> KeyLookup:
    """A key lookup that knows one key set, for one TAR (or for any TAR)."""

    def lookup(packet_tar: Tar, kic: Kic, kid: Kid) -> KeySet | None:
        return keyset if tar is None or packet_tar == tar else None

    return lookup


COMMANDS = [pytest.param(vector, id=vector["id"]) for vector in VECTORS["commands"]]
RESPONSES = [pytest.param(vector, id=vector["id"]) for vector in VECTORS["responses"] if "error_status" not in vector]
BAD_RESPONSES = [pytest.param(vector, id=vector["id"]) for vector in VECTORS["responses"] if "error_status" in vector]
SJA5 = keyset_of("SJA5_SAMPLES")
AES128 = keyset_of("SJA5_AES128")
TAR = Tar(h("B00011"))
CIPHERED_CC = Spi.from_bytes(h("0619"))
