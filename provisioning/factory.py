"""The card maker's side: blank virtual cards whose secrets and issuer keys come from the operator's key store.

Spec: GlobalPlatform Card Specification 2.3 §7 (the issuer security domain's
initial key set), ETSI TS 102 221 §9 (PIN, PUK and ADM values); the
diversification recipes of :mod:`simwallet.gateway.diversify`.

A real card maker receives the operator's transport keys and writes each
card's diversified ISD keys, ADM1 code and PUKs at manufacture; the operator
derives the same values from the same master keys and the card's ICCID when
it personalizes the card. :func:`manufacture_card` plays the card maker for
virtual cards (``simwallet card emulate``, tests, benchmarks): the ISD key set
comes from the key store's ``scp03`` family (the active version unless told
otherwise — an older one makes a card that personalization must rotate), the
ADM1 code, PUK1, PIN2 and PUK2 from its ``card-secrets`` family. PIN1 starts
at the value printed on the card carrier (``1234`` unless given).

Nothing here logs or returns secrets; the card keeps only PIN digests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from simwallet.applet.card import virtual
from simwallet.applet.card.image import CardStore
from simwallet.applet.card.pins import CardSecrets
from simwallet.applet.card.uicc import Uicc
from simwallet.gateway.diversify import card_scp03_keys, card_secrets
from simwallet.gateway.keystore import KeyStore
from simwallet.provisioning.profile import load_card_type

# Where card types live, relative to the repository (the CLI's default --card-types).
CARD_TYPES_DIR: Final = Path(__file__).resolve().parent.parent / "cards" / "card-types"
# The PIN1 printed on a new card's carrier.
PIN1_INITIAL_DEFAULT: Final = b"1234"


def card_type_mapping(path_or_name: str | Path, *, directory: Path = CARD_TYPES_DIR) -> Mapping[str, Any]:
    """The validated ``card:`` mapping of a card type, by file path or by name in ``directory``."""
    path = Path(path_or_name)
    if not path.suffix:
        path = directory / f"{path_or_name}.yaml"
    return load_card_type(path)


def card_type(path_or_name: str | Path | Mapping[str, Any]) -> virtual.CardType:
    card = path_or_name if isinstance(path_or_name, Mapping) else card_type_mapping(path_or_name)
    return virtual.CardType.from_mapping(card)


def manufacture_card(
    card_type_or_mapping: virtual.CardType | Mapping[str, Any],
    iccid: str,
    keystore: KeyStore,
    store: CardStore | None,
    *,
    scp03_version: int | None = None,
    pin1: bytes = PIN1_INITIAL_DEFAULT,
) -> Uicc:
    """A blank card ``iccid`` of the given type, its secrets and ISD keys derived from ``keystore``."""
    kind = card_type_or_mapping if isinstance(card_type_or_mapping, virtual.CardType) else card_type(card_type_or_mapping)
    master = keystore.active("scp03") if scp03_version is None else keystore.version("scp03", scp03_version)
    isd_keys = card_scp03_keys(master.scp03_keys(), iccid)
    values = card_secrets(keystore.active("card-secrets").secrets_master(), iccid)
    secrets = CardSecrets(
        pin1=pin1,
        puk1=values.puk1.encode(),
        adm1=values.adm1.encode(),
        pin2=values.pin2.encode(),
        puk2=values.puk2.encode(),
    )
    return virtual.manufacture(kind, iccid, secrets, isd_keys, store)


def load_card(card_type_or_mapping: virtual.CardType | Mapping[str, Any], iccid: str, store: CardStore) -> Uicc:
    """The card ``iccid`` from its image in ``store`` (a restart of the card process)."""
    kind = card_type_or_mapping if isinstance(card_type_or_mapping, virtual.CardType) else card_type(card_type_or_mapping)
    return virtual.load(kind, iccid, store)
