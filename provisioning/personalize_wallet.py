"""The wallet applet as personalization sees it: its AIDs on the card, and its DGIs from a profile's ``wallet:`` section.

Spec: GlobalPlatform Card Specification v2.3 §11.1.4 (AIDs: load file,
module, instance), §11.5 (INSTALL [for install] of a pre-loaded module),
§11.11 (STORE DATA in DGI format); the wallet's DGIs are those of
:mod:`simwallet.applet.protocols.wallet_perso`; ETSI TS 102 225 §5.1.2-5.1.3
(the wallet's key set: KVN = the TS 102 225 key index, AES-CBC ciphering,
AES-CMAC checksum).

The AIDs come from the card type's ``gp.load_files`` when it lists the
wallet's load file (``F073696D77616C6C6574``, "simwallet" after the
proprietary RID prefix F0); the module is the load file's first module
(``…01``) and the instance the module AID followed by ``01`` (``…0101``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from simwallet.applet.protocols.secured import CcAlgorithm, CipherAlgorithm
from simwallet.applet.protocols.wallet_messages import (
    WalletKeySet,
    WalletMenuItem,
    WalletPersonalization,
    operation_for_action,
    wallet_personalization_dgis,
)
from simwallet.gateway.diversify import WalletKeys
from simwallet.provisioning.profile import WalletParams

# GP CS v2.3 §11.1.4: the wallet's executable load file, its module, and the instance personalization creates.
WALLET_LOAD_FILE_AID: Final = bytes.fromhex("F073696D77616C6C6574")
WALLET_MODULE_AID: Final = WALLET_LOAD_FILE_AID + b"\x01"
WALLET_INSTANCE_AID: Final = WALLET_MODULE_AID + b"\x01"
# GP CS v2.3 §5.3.1 / Table 11-6: an application-specific state (b3-b1 = 111); 0F marks the wallet personalized,
# set with SET STATUS after the last STORE DATA, read back with GET STATUS.
WALLET_PERSONALIZED: Final = 0x0F


@dataclass(frozen=True)
class WalletAids:
    """Where the wallet is: the load file and module the card maker put in ROM, the instance to create, its C9 value."""

    load_file: bytes
    module: bytes
    instance: bytes
    parameters: bytes = b""


def wallet_aids(card_type: Mapping[str, Any]) -> WalletAids:
    """The wallet's AIDs on cards of ``card_type`` (the ``card:`` mapping)."""
    gp = card_type.get("gp")
    load_files = gp.get("load_files", []) if isinstance(gp, Mapping) else []
    for entry in load_files:
        aid = bytes.fromhex(str(entry["aid"]))
        if aid == WALLET_LOAD_FILE_AID and entry.get("modules"):
            module = bytes.fromhex(str(entry["modules"][0]))
            return WalletAids(aid, module, module + b"\x01")
    return WalletAids(WALLET_LOAD_FILE_AID, WALLET_MODULE_AID, WALLET_INSTANCE_AID)


def wallet_dgis(params: WalletParams, pin: str, keys: WalletKeys, kvn: int) -> tuple[list[tuple[int, bytes]], frozenset[int]]:
    """The wallet's DGIs ``(tag, value)`` in sending order, and the tags whose values go encrypted with the DEK."""
    languages = (params.language, *(lang for lang in params.languages if lang != params.language))
    personalization = WalletPersonalization(
        service_number=params.service_number,
        tar=params.tar,
        languages=languages,
        menu_titles=tuple((lang, params.menu_title[lang]) for lang in languages),
        menu=tuple(
            WalletMenuItem(item.item_id, operation_for_action(item.action), tuple((lang, item.titles[lang]) for lang in languages))
            for item in params.menu
        ),
        pin=pin,
        keys=WalletKeySet(kvn, CipherAlgorithm.AES_CBC, keys.kic, CcAlgorithm.AES_CMAC, keys.kid),
        pin_try_limit=params.pin_tries,
    )
    out: list[tuple[int, bytes]] = []
    sensitive: set[int] = set()
    for tag, value, secret in wallet_personalization_dgis(personalization):
        out.append((tag, value))
        if secret:
            sensitive.add(tag)
    return out, frozenset(sensitive)
