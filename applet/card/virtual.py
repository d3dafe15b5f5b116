"""The whole virtual card: the UICC, its GlobalPlatform registry and issuer security domain, the toolkit and the applets.

Spec: ETSI TS 102 221 (the UICC), GlobalPlatform Card Specification 2.3 (the
registry and the ISD), ETSI TS 102 223 (the toolkit); the card type format of
:mod:`simwallet.applet.card.spec` and :mod:`simwallet.applet.card.isd_spec`.

Theory of operation
-------------------
A card type (the ``card:`` mapping of ``cards/card-types/*.yaml``) describes
what the card maker builds: the file system, the PINs, and the ``gp:`` section
(the ISD's AID, the pre-loaded applet modules). :func:`manufacture` makes one
card of that type — the UICC with its file system and PINs, a
:class:`~simwallet.applet.card.registry.GpRegistry` holding the ISD with the
card's initial (factory) key set, the toolkit engine, and the factories of the
pre-loaded applets — and wires them together. :func:`load` brings a card back
from its image in a :class:`~simwallet.applet.card.image.CardStore`: files,
PIN counters, the ISD's key sets and sequence counter, installed applet
instances with their own state.

The registry's state lives in the card image under :data:`REGISTRY_STATE_KEY`;
the key version the card was made with is kept there too, because the ISD
spec in the card type only names the default.

This module imports nothing from ``gateway`` or ``provisioning``: the keys and
secrets come in as values, from whoever plays the card maker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

from simwallet.applet.card.app import Toolkit
from simwallet.applet.card.image import CardStore
from simwallet.applet.card.isd_spec import IsdSpec
from simwallet.applet.card.pins import CardSecrets
from simwallet.applet.card.registry import AppletFactory, GpRegistry
from simwallet.applet.card.spec import CardSpec
from simwallet.applet.card.uicc import Uicc
from simwallet.applet.errors import AppletError
from simwallet.applet.protocols.scp03 import StaticKeys

# Where the card image keeps the GP registry's state (next to per-application states keyed by AID hex).
REGISTRY_STATE_KEY: Final = "gp"
_MANUFACTURE_KVN_KEY: Final = "manufacture_kvn"
_REGISTRY_KEY: Final = "registry"

# Builds the toolkit engine for a card once its services exist (None: a card without CAT).
ToolkitFactory = Callable[[Uicc, GpRegistry], Toolkit | None]


class VirtualCardError(AppletError, ValueError):
    """A card type or a saved card that cannot make a card."""


@dataclasses.dataclass(frozen=True)
class CardType:
    """A card type: the UICC spec and the ISD spec, from the ``card:`` mapping."""

    spec: CardSpec
    isd: IsdSpec

    @classmethod
    def from_mapping(cls, card: Mapping[str, Any]) -> CardType:
        if "gp" not in card:
            raise VirtualCardError(f"card type {card.get('name')!r} has no gp section: a wallet card needs an issuer security domain")
        return cls(CardSpec.from_mapping(card), IsdSpec.from_mapping(card["gp"]))

    @property
    def name(self) -> str:
        return self.spec.name


def standard_applets() -> dict[bytes, AppletFactory]:
    """The factories of the applet modules the card maker pre-loads (the STK wallet)."""
    from simwallet.applet.card.wallet import WALLET_MODULE_AID, wallet_factory

    return {WALLET_MODULE_AID: wallet_factory}


def standard_toolkit(uicc: Uicc, registry: GpRegistry) -> Toolkit | None:
    """The CAT engine (TS 102 223) of a standard card; toolkit applets register with it when instantiated."""
    from simwallet.applet.card.toolkit import ToolkitEngine

    return ToolkitEngine(uicc.services, registry)


def _assemble(
    uicc: Uicc,
    card_type: CardType,
    isd_keys: StaticKeys,
    state: Mapping[str, Any] | None,
    applets: Mapping[bytes, AppletFactory] | None,
    toolkit: ToolkitFactory | None,
) -> Uicc:
    factories = standard_applets() if applets is None else applets
    isd_spec = dataclasses.replace(card_type.isd, key_version=isd_keys.kvn)
    registry = GpRegistry(isd_spec, isd_keys, factories, state)
    engine = (standard_toolkit if toolkit is None else toolkit)(uicc, registry)
    # The toolkit exists before the registry instantiates saved applets, so they can register their menu items.
    uicc.attach(registry=registry, toolkit=engine)
    registry.attach(uicc.services)
    uicc.set_registry_state_source(lambda: {_MANUFACTURE_KVN_KEY: isd_keys.kvn, _REGISTRY_KEY: registry.export_state()})
    return uicc


def manufacture(
    card_type: CardType,
    iccid: str,
    secrets: CardSecrets,
    isd_keys: StaticKeys,
    store: CardStore | None,
    *,
    applets: Mapping[bytes, AppletFactory] | None = None,
    toolkit: ToolkitFactory | None = None,
) -> Uicc:
    """A new card: EF.ICCID, PINs from ``secrets``, the ISD with ``isd_keys`` (its KVN is the card's first key version)."""
    uicc = Uicc.manufacture(card_type.spec, iccid, secrets, store)
    try:
        _assemble(uicc, card_type, isd_keys, None, applets, toolkit)
        uicc.persist()
    except BaseException:
        # A card that could not be assembled leaves no image behind to be loaded later.
        if store is not None:
            store.discard(iccid)
        raise
    return uicc


def load(
    card_type: CardType,
    iccid: str,
    store: CardStore,
    *,
    applets: Mapping[bytes, AppletFactory] | None = None,
    toolkit: ToolkitFactory | None = None,
) -> Uicc:
    """The card ``iccid`` as its image in ``store`` left it."""
    uicc = Uicc.load(store, iccid, card_type.spec)
    saved = uicc.app_state(REGISTRY_STATE_KEY)
    if saved is None or _REGISTRY_KEY not in saved:
        raise VirtualCardError(f"card {iccid}: the image holds no GlobalPlatform registry")
    kvn = int(saved[_MANUFACTURE_KVN_KEY])
    # The saved state replaces the ISD's key sets; the initial set only has to carry the manufacturing KVN.
    placeholder = StaticKeys(bytes(16), bytes(16), bytes(16), kvn=kvn)
    return _assemble(uicc, card_type, placeholder, saved[_REGISTRY_KEY], applets, toolkit)
