"""Helpers for the single-card personalization tests: key stores, virtual cards in vpcd readers, jobs.

Used by ``test_personalize.py``, ``test_card_cli.py`` and ``test_card_secrets.py``.
Cards are the project's virtual UICC made by :func:`simwallet.provisioning.factory.manufacture_card`
and put in a reader of the module's private pcscd (the ``pcscd`` fixture) through a
:class:`~simwallet.applet.card.link.VpcdLink`; the host side is pyscard through
:class:`~simwallet.provisioning.reader.Pcsc`, exactly as with a physical reader.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from simwallet.applet.card.image import CardStore
from simwallet.applet.card.link import VpcdLink, port_for_reader
from simwallet.applet.card.uicc import Uicc
from simwallet.applet.protocols.efs_bcd import luhn_valid
from simwallet.gateway.cards import CardRegistry
from simwallet.gateway.diversify import card_secrets
from simwallet.gateway.keystore import KeyFamily, KeyStore
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.store.engine import open_engine
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.personalize import CardJob
from simwallet.provisioning.profile import Profile, load_profile
from simwallet.provisioning.reader import CardConnection, Pcsc, Trace

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "card test passphrase"
KDF_N = 2**10
PROFILE = "wallet-cmcc-zh"
PIN1 = "594817"
IMSI = "460001234567890"
MSISDN = "13800138000"
CUSTOMER = "C42"
# The wallet's load file and module, as the card maker pre-loads them (GP CS v2.3 §6; the wallet applet's AIDs).
WALLET_LOAD_FILE = {"aid": "F073696D77616C6C6574", "modules": ["F073696D77616C6C657401"]}
# Bounded wait for pcscd to notice a card (it polls about every 0.4 s); not a timing assertion.
CARD_WAIT_S = 10.0


def iccid(body: str) -> str:
    """``body`` (18 or 19 digits) completed with its Luhn check digit."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def make_keystore(path: Path, *, scp03_versions: int = 1) -> KeyStore:
    """A key store with one version of each family; ``scp03_versions`` > 1 rotates scp03 (0x30, 0x31 … the last active)."""
    store = KeyStore.create(path, PASSPHRASE, kdf_n=KDF_N)
    for family in KeyFamily:
        store.generate(family)
    for _ in range(scp03_versions - 1):
        store.generate(KeyFamily.SCP03)
    return store


def cards_dir(tmp_path: Path) -> Path:
    """The ``cards/`` folder to load profiles from: the repository's when its card type lists the wallet's
    pre-loaded load file (the card maker's ROM content), else a copy with it added (the card type without it
    cannot make a card that hosts the wallet)."""
    card_type = yaml.safe_load((ROOT / "cards" / "card-types" / "usim-wallet.yaml").read_text(encoding="utf-8"))
    load_files = card_type["card"].get("gp", {}).get("load_files", [])
    if any(entry.get("aid", "").upper() == WALLET_LOAD_FILE["aid"] for entry in load_files):
        return ROOT / "cards"
    target = tmp_path / "cards"
    if not target.exists():
        shutil.copytree(ROOT / "cards", target)
        path = target / "card-types" / "usim-wallet.yaml"
        text = path.read_text(encoding="utf-8")
        text = text.replace(
            "    scp_i: 0x70\n",
            '    scp_i: 0x70\n    load_files:\n      - aid: "F073696D77616C6C6574"\n        modules: ["F073696D77616C6C657401"]\n',
            1,
        )
        path.write_text(text, encoding="utf-8")
    return target


def profile_path(tmp_path: Path, name: str = PROFILE) -> Path:
    return cards_dir(tmp_path) / "profiles" / f"{name}.yaml"


def load(tmp_path: Path, name: str = PROFILE) -> Profile:
    return load_profile(profile_path(tmp_path, name))


def puk1(keystore: KeyStore, card_iccid: str) -> str:
    return card_secrets(keystore.active("card-secrets").secrets_master(), card_iccid).puk1


def adm1(keystore: KeyStore, card_iccid: str) -> str:
    return card_secrets(keystore.active("card-secrets").secrets_master(), card_iccid).adm1


def job(
    profile: Profile, keystore: KeyStore, card_iccid: str, *, channel: str = "service_hall", clerk: str = "zhang", **values: str
) -> CardJob:
    given = {
        "iccid": card_iccid,
        "imsi": IMSI,
        "msisdn": MSISDN,
        "customer": CUSTOMER,
        "pin1": PIN1,
        "puk1": puk1(keystore, card_iccid),
        **values,
    }
    personalization = profile.render(given)
    return CardJob(personalization.values, personalization, channel, clerk)


def registry(url: str) -> CardRegistry:
    engine = open_engine(url)
    return CardRegistry(engine, Ledger(engine))


class Slot:
    """Reader ``index`` of the private pcscd; a card goes in with :meth:`insert` and leaves with :meth:`pull`."""

    def __init__(self, pcscd: PrivatePcscd, index: int = 0) -> None:
        self.port = port_for_reader(index, base_port=pcscd.base_port)
        self.name = pcscd.reader_names[index]
        self.link: VpcdLink | None = None

    def insert(self, card: Uicc) -> None:
        self.link = VpcdLink(card, port=self.port)
        self.link.start()
        with Pcsc() as pcsc:
            pcsc.wait_for_card(self.name, CARD_WAIT_S)

    def pull(self) -> None:
        """Take the card out (from any thread, a trace callback included)."""
        link, self.link = self.link, None
        if link is not None:
            link.stop()

    def wait_gone(self) -> None:
        with Pcsc() as pcsc:
            pcsc.wait_for_card(self.name, CARD_WAIT_S, present=False)

    @contextmanager
    def connection(self, trace: Trace | None = None) -> Iterator[CardConnection]:
        with Pcsc() as pcsc:
            connection = pcsc.connect(self.name, trace=trace)
            try:
                yield connection
            finally:
                connection.close()


@contextmanager
def inserted(pcscd: PrivatePcscd, card: Uicc, index: int = 0) -> Iterator[Slot]:
    slot = Slot(pcscd, index)
    slot.insert(card)
    try:
        yield slot
    finally:
        slot.pull()
        slot.wait_gone()


def store(tmp_path: Path) -> CardStore:
    return CardStore(tmp_path / "card-images")


def card_type(profile: Profile) -> Mapping[str, Any]:
    return profile.card_type
