"""The issuer security domain and GP registry (simwallet.applet.card.isd, .registry), driven by an SCP03 host.

The off-card entity is :class:`Scp03Host`; the card side is the ISD object itself (no UICC, no PC/SC: the
end-to-end path is tested once the lead wires the ISD into the UICC). The CardServices double records
persist() calls; the applet is a tiny in-test Application + Personalizable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from codec_helpers import h

from simwallet.applet.card.app import Application, CardServices
from simwallet.applet.card.isd import IssuerSecurityDomain
from simwallet.applet.card.isd_spec import IsdSpec, IsdSpecError, LoadFileSpec
from simwallet.applet.card.registry import GpRegistry, Personalizable
from simwallet.applet.errors import CardStatusError, SecureChannelError, SecurityError
from simwallet.applet.protocols import gp
from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu
from simwallet.applet.protocols.scp03 import (
    Scp03Host,
    StaticKeys,
    kcv,
    put_key_command,
    verify_put_key_response,
)

ICCID = h("98 10 21 43 65 87 09 21 43 65")  # EF.ICCID bytes: the KDD
ISD_AID = h("A0 00 00 01 51 00 00 00")
ELF = h("A0 00 00 05 59 10 10")
MODULE = h("A0 00 00 05 59 10 10 01")
WALLET = h("A0 00 00 05 59 10 10 01 01")
KEYS = StaticKeys(enc=bytes(range(16)), mac=bytes(range(16, 32)), dek=bytes(range(32, 48)), kvn=0x30)
NEW_KEYS = StaticKeys(enc=bytes([0x41]) * 16, mac=bytes([0x42]) * 16, dek=bytes([0x43]) * 16, kvn=0x31)
LEVELS = (0x01, 0x03, 0x11, 0x13, 0x33)
SPEC_MAPPING: dict[str, Any] = {
    "isd_aid": "A000000151000000",
    "key_version": 0x30,
    "scp_i": 0x70,
    "load_files": [{"aid": "A0000005591010", "modules": ["A000000559101001"]}],
    "cplc": {"ic_fabricator": "4790", "ic_serial_number": 0x01020304},
}
SPEC = IsdSpec.from_mapping(SPEC_MAPPING)


class Services:
    """CardServices double: an ICCID and a count of persist() calls."""

    def __init__(self, iccid: bytes = ICCID) -> None:
        self._iccid = iccid
        self.persisted = 0

    @property
    def iccid(self) -> bytes:
        return self._iccid

    def persist(self) -> None:
        self.persisted += 1

    def pin_verified(self, key_reference: int) -> bool:
        return False


class WalletApplet:
    """A tiny applet: answers SELECT, keeps what STORE DATA brought, decrypting DGIs 8000..8FFF."""

    def __init__(self, aid: bytes, install_params: bytes, state: Mapping[str, Any] | None) -> None:
        self._aid = aid
        self.install_params = install_params
        self.dgis: dict[int, bytes] = {} if state is None else {int(k): bytes.fromhex(v) for k, v in state["dgis"].items()}
        self.blocks: list[tuple[int, int]] = []

    @property
    def aid(self) -> bytes:
        return self._aid

    def select(self, command: CommandApdu) -> ResponseApdu:
        return ResponseApdu.status(0x9000)

    def deselect(self) -> None:
        pass

    def process(self, command: CommandApdu) -> ResponseApdu:
        return ResponseApdu.status(0x6D00)

    def power_off(self) -> None:
        pass

    def export_state(self) -> dict[str, Any]:
        return {"dgis": {str(tag): value.hex() for tag, value in self.dgis.items()}}

    def store_data(self, p1: int, block_number: int, data: bytes, decrypt: Callable[[bytes], bytes]) -> bytes:
        self.blocks.append((p1, block_number))
        for dgi in gp.parse_dgis(data):
            self.dgis[dgi.tag] = decrypt(dgi.value) if gp.is_sensitive_dgi(dgi.tag) else dgi.value
        return b""


def wallet_factory(instance_aid: bytes, install_params: bytes, services: CardServices, state: Mapping[str, Any] | None) -> Application:
    return WalletApplet(instance_aid, install_params, state)


FACTORIES = {MODULE: wallet_factory}


def new_card(state: Mapping[str, Any] | None = None, services: Services | None = None) -> tuple[GpRegistry, Services]:
    registry = GpRegistry(SPEC, KEYS, FACTORIES, state)
    services = services or Services()
    registry.attach(services)
    return registry, services


class Host:
    """The off-card entity: an SCP03 host session talking to the ISD object."""

    def __init__(self, isd: IssuerSecurityDomain) -> None:
        self.isd = isd
        self.challenges = 0
        self.scp: Scp03Host | None = None

    def transmit(self, capdu: bytes) -> ResponseApdu:
        return self.isd.process(CommandApdu.from_bytes(capdu))

    def initialize_update(self, keys: StaticKeys, kvn: int = 0) -> tuple[Scp03Host, ResponseApdu]:
        self.challenges += 1
        host = Scp03Host(keys)
        response = self.transmit(host.initialize_update(self.challenges.to_bytes(8, "big"), kvn))
        return host, response

    def open(self, level: int = 0x01, keys: StaticKeys = KEYS, kvn: int = 0) -> Scp03Host:
        host, response = self.initialize_update(keys, kvn)
        host.receive_initialize_update(response.to_bytes())
        host.receive_external_authenticate(self.transmit(host.external_authenticate(level)).to_bytes())
        self.scp = host
        return host

    def send(self, plain: bytes) -> ResponseApdu:
        assert self.scp is not None
        return ResponseApdu.from_bytes(self.scp.unwrap(self.transmit(self.scp.wrap(plain)).to_bytes()))

    def ok(self, plain: bytes) -> bytes:
        response = self.send(plain)
        assert response.sw == 0x9000, f"{response.sw:04X}"
        return response.data


@pytest.fixture
def card() -> tuple[GpRegistry, Services, Host]:
    registry, services = new_card()
    return registry, services, Host(registry.isd)


def install_wallet(host: Host, aid: bytes = WALLET) -> None:
    assert host.ok(gp.install_for_install_command(ELF, MODULE, aid, application_parameters=b"\x01")) == b"\x00"


# --- selection and SCP03 ----------------------------------------------------------------------------


def test_select_answers_the_security_domain_fci(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, _ = card
    assert registry.find(ISD_AID[:5]) is registry.isd
    response = registry.isd.select(CommandApdu(0x00, 0xA4, 0x04, 0x00, ISD_AID, 256))
    assert response.sw == 0x9000
    assert gp.SecurityDomainFci.from_bytes(response.data) == gp.SecurityDomainFci(ISD_AID, gp.CardRecognitionData(scp=3, scp_i=0x70))


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: f"SL{level:02X}")
def test_authentication_at_every_level(card: tuple[GpRegistry, Services, Host], level: int) -> None:
    _, _, host = card
    scp = host.open(level)
    assert scp.card_info is not None and scp.card_info.key_diversification_data == ICCID
    entries = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN)))
    assert [(e.aid, e.life_cycle) for e in entries] == [(ISD_AID, gp.CardLifeCycle.SECURED)]
    assert entries[0].privileges is not None and gp.Privilege.CARD_LOCK in entries[0].privileges
    # A command with data, so C-DECRYPTION has something to decrypt at levels 03, 13, 33.
    install_wallet(host)
    assert gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.APPLICATIONS, WALLET[:6])))[0].aid == WALLET


def test_wrong_keys_then_tampered_cryptogram_then_retry(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    wrong = StaticKeys(enc=bytes(16), mac=bytes(16), dek=bytes(16), kvn=0x30)
    scp, response = host.initialize_update(wrong)
    with pytest.raises(SecurityError):  # the host finds out from the card cryptogram
        scp.receive_initialize_update(response.to_bytes())
    # A host cryptogram the card does not expect: 6300 and the session is closed.
    scp, response = host.initialize_update(KEYS)
    scp.receive_initialize_update(response.to_bytes())
    external = bytearray(scp.external_authenticate(0x01))
    external[5] ^= 0x01
    assert host.transmit(bytes(external)).sw == 0x6300
    assert host.transmit(h("84 F2 80 02 0A 4F 00") + bytes(8) + h("00")).sw == 0x6982
    # A fresh INITIALIZE UPDATE with the right keys opens the channel.
    host.open(0x33)
    assert host.ok(gp.get_data_command(gp.DataTag.KEY_DIVERSIFICATION_DATA)) == h("CF 0A") + ICCID
    assert registry.isd.sequence_counter == 3


def test_a_tampered_c_mac_closes_the_session(card: tuple[GpRegistry, Services, Host]) -> None:
    _, _, host = card
    scp = host.open(0x11)
    wrapped = bytearray(scp.wrap(gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN)))
    wrapped[-2] ^= 0x80  # last byte of the C-MAC (the byte after it is Le)
    assert host.transmit(bytes(wrapped)).sw == 0x6982
    plain = gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN)
    assert host.transmit(plain).sw == 0x6982  # no session any more


@pytest.mark.parametrize(
    "command",
    [
        put_key_command(NEW_KEYS, KEYS.dek),
        gp.install_for_install_command(ELF, MODULE, WALLET),
        gp.install_for_personalization_command(WALLET),
        gp.StoreDataCommand(gp.StoreDataP1(last=True), 0, h("42 01 99")).to_bytes(),
        gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN),
        gp.set_status_command(gp.StatusType.ISSUER_SECURITY_DOMAIN, gp.CardLifeCycle.CARD_LOCKED),
        gp.delete_command(WALLET),
    ],
    ids=["put-key", "install", "install-perso", "store-data", "get-status", "set-status", "delete"],
)
def test_management_needs_a_secure_channel(card: tuple[GpRegistry, Services, Host], command: bytes) -> None:
    registry, services, host = card
    assert host.transmit(command).sw == 0x6982
    # INITIALIZE UPDATE without EXTERNAL AUTHENTICATE does not authenticate either.
    host.initialize_update(KEYS)
    assert host.transmit(command).sw == 0x6982
    assert registry.isd.key_versions == (0x30,)
    assert not registry.card_locked()
    assert services.persisted == 1  # the INITIALIZE UPDATE's sequence counter only


def test_load_is_refused_with_6a81(card: tuple[GpRegistry, Services, Host]) -> None:
    _, _, host = card
    assert host.transmit(h("80 E8 80 00 04 C4 02 01 02 00")).sw == 0x6A81
    host.open()
    assert host.send(h("80 E6 02 00 0C 07") + ELF + h("00 00 00 00 00")).sw == 0x6A81  # INSTALL [for load]
    assert host.send(h("80 E8 80 00 04 C4 02 01 02 00")).sw == 0x6A81
    assert host.send(h("80 AA 00 00 00")).sw == 0x6D00


# --- GET DATA ----------------------------------------------------------------------------------------


def test_get_data_outside_a_secure_channel(card: tuple[GpRegistry, Services, Host]) -> None:
    _, _, host = card

    def get(tag: gp.DataTag, cla: int = 0x80) -> bytes:
        response = host.transmit(gp.get_data_command(tag, cla=cla))
        assert response.sw == 0x9000
        return response.data

    cplc = gp.parse_cplc(get(gp.DataTag.CPLC))
    assert cplc.ic_fabricator == h("47 90") and cplc.ic_serial_number == h("01 02 03 04") and cplc.ic_type == h("00 00")
    assert gp.parse_key_information(get(gp.DataTag.KEY_INFORMATION, cla=0x00)) == tuple(
        gp.KeyInformation(key_id, 0x30, ((0x88, 16),)) for key_id in (1, 2, 3)
    )
    assert gp.CardRecognitionData.from_bytes(get(gp.DataTag.CARD_DATA)) == gp.CardRecognitionData(scp=3, scp_i=0x70)
    assert gp.parse_data_object(gp.DataTag.KEY_DIVERSIFICATION_DATA, get(gp.DataTag.KEY_DIVERSIFICATION_DATA)) == ICCID
    assert gp.parse_data_object(gp.DataTag.CIN, get(gp.DataTag.CIN)) == ICCID
    assert gp.parse_data_object(gp.DataTag.SEQUENCE_COUNTER, get(gp.DataTag.SEQUENCE_COUNTER)) == h("00 00 00")
    assert host.transmit(gp.get_data_command(gp.DataTag.IIN)).sw == 0x6A88
    assert host.transmit(gp.get_data_command(0x2F00)).sw == 0x6A88
    host.open()
    assert gp.parse_data_object(gp.DataTag.SEQUENCE_COUNTER, host.ok(gp.get_data_command(gp.DataTag.SEQUENCE_COUNTER))) == h("00 00 01")


def test_store_data_to_the_isd_sets_iin_and_cin(card: tuple[GpRegistry, Services, Host]) -> None:
    _, _, host = card
    host.open(0x13)
    (command,) = gp.store_data_blocks([h("42 03 89 01 23 45 05 11 22 33 44 55")], structure=gp.StoreDataStructure.BER_TLV)
    host.ok(command)
    assert host.ok(gp.get_data_command(gp.DataTag.IIN)) == h("42 03 89 01 23")
    assert host.ok(gp.get_data_command(gp.DataTag.CIN)) == h("45 05 11 22 33 44 55")
    (bad,) = gp.store_data_blocks([h("4F 05 A0 00 00 00 01")], structure=gp.StoreDataStructure.BER_TLV)
    assert host.send(bad).sw == 0x6A80


# --- PUT KEY -----------------------------------------------------------------------------------------


def test_put_key_adds_a_key_set(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, services, host = card
    host.open(0x03)
    persisted = services.persisted
    verify_put_key_response(host.ok(put_key_command(NEW_KEYS, KEYS.dek)), NEW_KEYS)
    assert services.persisted == persisted + 1
    assert registry.isd.key_versions == (0x30, 0x31)
    keys = gp.parse_key_information(host.ok(gp.get_data_command(gp.DataTag.KEY_INFORMATION)))
    assert {(k.key_id, k.kvn) for k in keys} == {(i, kvn) for i in (1, 2, 3) for kvn in (0x30, 0x31)}
    # Both key sets open a channel; KVN 00 still picks the first.
    assert host.open(keys=NEW_KEYS, kvn=0x31).card_info is not None
    assert host.open(keys=KEYS).card_info is not None
    # Adding the same KVN again is refused.
    assert host.send(put_key_command(NEW_KEYS, KEYS.dek)).sw == 0x6A80


def test_put_key_replaces_a_key_set(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open(0x33)
    replacement = StaticKeys(enc=NEW_KEYS.enc, mac=NEW_KEYS.mac, dek=NEW_KEYS.dek, kvn=0x32)
    verify_put_key_response(host.ok(put_key_command(replacement, KEYS.dek, replace_kvn=0x30)), replacement)
    assert registry.isd.key_versions == (0x32,)
    scp, response = host.initialize_update(KEYS, kvn=0x30)
    assert response.sw == 0x6A88
    with pytest.raises(CardStatusError):
        scp.receive_initialize_update(response.to_bytes())
    assert host.open(keys=replacement).card_info is not None  # KVN 00: the default is the replacement
    assert host.open(keys=replacement, kvn=0x32).card_info is not None
    assert host.send(put_key_command(NEW_KEYS, replacement.dek, replace_kvn=0x30)).sw == 0x6A88


def test_put_key_check_values(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open(0x01)
    # A key check value that does not match the key it follows: the card answers 9485.
    command = bytearray(put_key_command(NEW_KEYS, KEYS.dek))
    command[-2] ^= 0x01  # the last byte of the DEK's KCV (Le follows)
    assert host.send(bytes(command)).sw == 0x9485
    assert registry.isd.key_versions == (0x30,)
    # Keys encrypted under another DEK decrypt to keys whose KCVs do not match either.
    assert host.send(put_key_command(NEW_KEYS, bytes(16))).sw == 0x9485
    # The host side detects a response that does not confirm the key set it sent.
    response = host.ok(put_key_command(NEW_KEYS, KEYS.dek))
    assert response[1:4] == kcv(NEW_KEYS.enc)
    tampered = response[:-1] + bytes([response[-1] ^ 0x01])
    with pytest.raises(SecureChannelError):
        verify_put_key_response(tampered, NEW_KEYS)


# --- INSTALL, STORE DATA -------------------------------------------------------------------------------


def test_install_and_personalize(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, services, host = card
    host.open(0x33)
    install_wallet(host)
    applet = registry.find(WALLET[:7])
    assert isinstance(applet, WalletApplet) and isinstance(applet, Personalizable)
    assert applet.aid == WALLET and applet.install_params == b"\x01"
    entry = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.APPLICATIONS)))
    assert entry == [gp.RegistryData(WALLET, 0x07, gp.Privilege(0), ELF, associated_sd=ISD_AID)]
    # Personalization: a plain DGI and a sensitive one, spread over three blocks.
    dgis = [gp.Dgi(0x0101, bytes(80)), gp.Dgi(0x8001, b"wallet key 0123456789abcdef"), gp.Dgi(0x0102, b"\x07" * 100)]
    commands = gp.store_data_commands(dgis, dek=KEYS.dek, block_max=110)
    assert len(commands) == 3
    host.ok(gp.install_for_personalization_command(WALLET))
    before = services.persisted
    # Block numbering is enforced: block 1 first is refused, and the sequence stays at 0.
    assert host.send(commands[1]).sw == 0x6A86
    host.ok(commands[0])
    assert host.send(commands[2]).sw == 0x6A86
    host.ok(commands[1])
    host.ok(commands[2])
    assert applet.dgis == {0x0101: bytes(80), 0x8001: b"wallet key 0123456789abcdef", 0x0102: b"\x07" * 100}
    p1s = [gp.StoreDataP1.from_byte(p1) for p1, _ in applet.blocks]
    assert [p.encryption for p in p1s] == [gp.StoreDataEncryption.NONE, gp.StoreDataEncryption.ENCRYPTED, gp.StoreDataEncryption.NONE]
    assert [p.last for p in p1s] == [False, False, True] and [n for _, n in applet.blocks] == [0, 1, 2]
    assert services.persisted == before + 3
    # After the last block, STORE DATA goes to the ISD again, from block 0.
    assert host.send(commands[0]).sw == 0x6A80


def test_install_refusals(card: tuple[GpRegistry, Services, Host]) -> None:
    _, _, host = card
    host.open()
    assert host.send(gp.install_for_install_command(ELF, MODULE + b"\x09", WALLET)).sw == 0x6A88
    assert host.send(gp.install_for_install_command(ELF, MODULE, ISD_AID)).sw == 0x6985
    assert host.send(gp.install_for_install_command(ELF, MODULE, WALLET, privileges=gp.Privilege.SECURITY_DOMAIN)).sw == 0x6A80
    install_wallet(host)
    assert host.send(gp.install_for_install_command(ELF, MODULE, WALLET)).sw == 0x6985
    assert host.send(gp.install_for_personalization_command(WALLET + b"\x02")).sw == 0x6A88
    assert host.send(h("80 E6 0C 00 03 01 02 03 00")).sw == 0x6A80


def test_install_then_make_selectable(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open()
    host.ok(gp.install_for_install_command(ELF, MODULE, WALLET, make_selectable=False))
    assert registry.find(WALLET) is None
    host.ok(gp.install_for_make_selectable_command(WALLET, gp.Privilege.CARD_LOCK))
    assert isinstance(registry.find(WALLET), WalletApplet)
    (entry,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.APPLICATIONS)))
    assert entry.life_cycle == gp.ApplicationLifeCycle.SELECTABLE and entry.privileges == gp.Privilege.CARD_LOCK
    assert host.send(gp.install_for_make_selectable_command(WALLET)).sw == 0x6985


# --- GET STATUS --------------------------------------------------------------------------------------


def test_get_status_lists_the_isd_load_files_and_instances(card: tuple[GpRegistry, Services, Host]) -> None:
    _, _, host = card
    host.open(0x13)
    install_wallet(host)
    (isd,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN)))
    assert isd.aid == ISD_AID and isd.life_cycle == 0x0F
    (elf,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.LOAD_FILES_AND_MODULES)))
    assert elf == gp.RegistryData(ELF, 0x01, module_aids=(MODULE,), associated_sd=ISD_AID)
    (elf_only,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.LOAD_FILES)))
    assert elf_only.module_aids == ()
    (app,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.APPLICATIONS, tag_list=(0x4F, 0x9F70))))
    assert app == gp.RegistryData(WALLET, 0x07)
    assert host.send(gp.get_status_command(gp.StatusScope.APPLICATIONS, h("A0 00 00 00 99"))).sw == 0x6A88
    assert host.send(h("80 F2 80 00 02 4F 00 00")).sw == 0x6A86  # the deprecated format


@pytest.mark.parametrize("level", [0x01, 0x33])
def test_get_status_pages_with_6310(card: tuple[GpRegistry, Services, Host], level: int) -> None:
    _, _, host = card
    host.open(level)
    aids = [WALLET[:-1] + bytes([n]) for n in range(1, 10)]
    for aid in aids:
        install_wallet(host, aid)
    first = host.send(gp.get_status_command(gp.StatusScope.APPLICATIONS))
    assert first.sw == 0x6310
    listed = gp.parse_get_status(first.data)
    while True:
        following = host.send(gp.get_status_command(gp.StatusScope.APPLICATIONS, next_occurrence=True))
        listed += gp.parse_get_status(following.data)
        if following.sw == 0x9000:
            break
        assert following.sw == 0x6310
    assert [entry.aid for entry in listed] == aids
    assert host.send(gp.get_status_command(gp.StatusScope.APPLICATIONS, next_occurrence=True)).sw == 0x6A88


# --- SET STATUS, DELETE ------------------------------------------------------------------------------


def test_lock_and_unlock_an_application(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open()
    install_wallet(host)
    host.ok(gp.set_status_command(gp.StatusType.APPLICATION, gp.SET_STATUS_LOCK, WALLET))
    assert registry.find(WALLET) is None
    (entry,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.APPLICATIONS)))
    assert entry.life_cycle == 0x87
    assert host.send(gp.install_for_personalization_command(WALLET)).sw == 0x6985
    host.ok(gp.set_status_command(gp.StatusType.APPLICATION, gp.SET_STATUS_UNLOCK, WALLET))
    assert isinstance(registry.find(WALLET), WalletApplet)
    assert host.send(gp.set_status_command(gp.StatusType.APPLICATION, gp.SET_STATUS_UNLOCK, WALLET)).sw == 0x6985
    # An application-specific state (0xxxx111) the security domain may set.
    host.ok(gp.set_status_command(gp.StatusType.APPLICATION, 0x0F, WALLET))
    assert host.send(gp.set_status_command(gp.StatusType.APPLICATION, 0x05, WALLET)).sw == 0x6A80
    assert host.send(gp.set_status_command(gp.StatusType.APPLICATION, 0x80, ISD_AID)).sw == 0x6985
    assert host.send(gp.set_status_command(gp.StatusType.SECURITY_DOMAIN_AND_APPLICATIONS, 0x80, WALLET)).sw == 0x6A80


def test_lock_the_card(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, services, host = card
    host.open(0x11)
    install_wallet(host)
    before = services.persisted
    host.ok(gp.set_status_command(gp.StatusType.ISSUER_SECURITY_DOMAIN, gp.CardLifeCycle.CARD_LOCKED))
    assert services.persisted == before + 1
    assert registry.card_locked()
    assert registry.find(WALLET) is None and registry.find(ISD_AID) is registry.isd
    assert host.send(gp.install_for_install_command(ELF, MODULE, WALLET[:-1] + b"\x07")).sw == 0x6A81
    assert gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN)))[0].life_cycle == 0x7F
    # GP §5.1.1: back to SECURED, never back to INITIALIZED.
    host.ok(gp.set_status_command(gp.StatusType.ISSUER_SECURITY_DOMAIN, gp.CardLifeCycle.SECURED))
    assert not registry.card_locked() and isinstance(registry.find(WALLET), WalletApplet)
    assert host.send(gp.set_status_command(gp.StatusType.ISSUER_SECURITY_DOMAIN, gp.CardLifeCycle.INITIALIZED)).sw == 0x6985
    # TERMINATED is final: only GET DATA is answered.
    host.ok(gp.set_status_command(gp.StatusType.ISSUER_SECURITY_DOMAIN, gp.CardLifeCycle.TERMINATED))
    assert registry.card_locked()
    assert host.send(gp.get_status_command(gp.StatusScope.ISSUER_SECURITY_DOMAIN)).sw == 0x6A81
    assert host.transmit(gp.get_data_command(gp.DataTag.CPLC)).sw == 0x6982  # plain inside the session
    assert host.initialize_update(KEYS)[1].sw == 0x6A81
    assert host.transmit(gp.get_data_command(gp.DataTag.CPLC)).sw == 0x9000


def test_delete_an_instance(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open()
    install_wallet(host)
    assert host.ok(gp.delete_command(WALLET)) == b"\x00"
    assert registry.find(WALLET) is None and registry.instance(WALLET) is None
    assert host.send(gp.delete_command(WALLET)).sw == 0x6A88
    assert host.send(gp.delete_command(ISD_AID)).sw == 0x6985
    assert host.send(gp.delete_command(ELF, related=True)).sw == 0x6985
    install_wallet(host)  # the AID is free again


# --- state --------------------------------------------------------------------------------------------


def test_state_round_trip_restores_keys_counter_and_applets(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open(0x33)
    verify_put_key_response(host.ok(put_key_command(NEW_KEYS, KEYS.dek, replace_kvn=0x30)), NEW_KEYS)
    install_wallet(host)
    host.ok(gp.install_for_personalization_command(WALLET))
    for command in gp.store_data_commands([gp.Dgi(0x8001, b"secret")], dek=KEYS.dek):
        host.ok(command)
    host.ok(gp.set_status_command(gp.StatusType.APPLICATION, 0x0F, WALLET))
    counter = registry.isd.sequence_counter
    image = json.loads(json.dumps(registry.export_state()))  # the card image is JSON

    restarted, services = new_card(image)
    assert restarted.isd.key_versions == (0x31,) and restarted.isd.sequence_counter == counter
    applet = restarted.find(WALLET)
    assert isinstance(applet, WalletApplet) and applet.dgis == {0x8001: b"secret"}
    host = Host(restarted.isd)
    scp, response = host.initialize_update(KEYS)
    with pytest.raises(SecurityError):
        scp.receive_initialize_update(response.to_bytes())
    scp = host.open(0x13, keys=NEW_KEYS)
    assert scp.card_info is not None and scp.card_info.sequence_counter == counter + 1
    (entry,) = gp.parse_get_status(host.ok(gp.get_status_command(gp.StatusScope.APPLICATIONS)))
    assert entry.life_cycle == 0x0F
    assert services.persisted == 2  # each INITIALIZE UPDATE moved the sequence counter


def test_keys_never_in_repr(card: tuple[GpRegistry, Services, Host]) -> None:
    registry, _, host = card
    host.open()
    host.ok(put_key_command(NEW_KEYS, KEYS.dek))
    text = repr(registry) + repr(registry.isd) + str(registry.isd)
    for keys in (KEYS, NEW_KEYS):
        for key in (keys.enc, keys.mac, keys.dek):
            assert key.hex() not in text.lower()
    # The image does hold them: it is the card's memory.
    assert KEYS.enc.hex().upper() in json.dumps(registry.export_state())


def test_commands_before_attach_are_a_local_error() -> None:
    registry = GpRegistry(SPEC, KEYS, FACTORIES)
    with pytest.raises(RuntimeError):
        registry.isd.process(CommandApdu.from_bytes(gp.get_data_command(gp.DataTag.CPLC)))
    registry.attach(Services())
    with pytest.raises(RuntimeError):
        registry.attach(Services())


# --- the spec ----------------------------------------------------------------------------------------


def test_spec_from_mapping() -> None:
    assert SPEC.isd_aid == ISD_AID and SPEC.key_version == 0x30 and SPEC.scp_i == 0x70
    assert SPEC.load_files == (LoadFileSpec(ELF, (MODULE,)),)
    assert SPEC.cplc.ic_fabricator == h("47 90") and SPEC.cplc.ic_serial_number == h("01 02 03 04")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"isd_aid": "A000"}, "isd_aid"),
        ({"isd_aid": "not hex"}, "isd_aid"),
        ({"key_version": 0}, "key_version"),
        ({"key_version": "30"}, "key_version"),
        ({"scp_i": 0x40}, "scp_i"),
        ({"scp_i": 0x08}, "scp_i"),
        ({"load_files": [{"aid": "A0000005591010", "modules": []}]}, "load_files[0].modules"),
        ({"load_files": [{"aid": "A0000005591010", "modules": ["A000000559101001", "A0"]}]}, "load_files[0].modules[1]"),
        ({"load_files": [{"aid": "A0000005591010", "modules": ["A000000559101001"], "size": 3}]}, "load_files[0].size"),
        ({"load_files": [{"aid": "A000000151000000", "modules": ["A000000559101001"]}]}, "load_files"),
        ({"cplc": {"ic_type": "123456"}}, "cplc.ic_type"),
        ({"cplc": {"ic_colour": "00"}}, "cplc.ic_colour"),
        ({"cplc": {"ic_type": 0x10000}}, "cplc.ic_type"),
        ({"iin": "00" * 17}, "iin"),
        ({"pin": "1234"}, "pin"),
    ],
)
def test_spec_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(IsdSpecError) as caught:
        IsdSpec.from_mapping({**SPEC_MAPPING, **change})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_registry_refuses_inconsistent_assembly() -> None:
    with pytest.raises(IsdSpecError):  # the key set's KVN is not the spec's
        GpRegistry(SPEC, NEW_KEYS, FACTORIES)
    with pytest.raises(IsdSpecError):  # a factory for a module no load file has
        GpRegistry(SPEC, KEYS, {h("A0 00 00 00 01 02"): wallet_factory})
    registry = GpRegistry(SPEC, KEYS, FACTORIES)
    with pytest.raises(IsdSpecError):  # the ICCID is the 10-byte KDD
        registry.attach(Services(iccid=bytes(9)))
    image = registry.export_state()
    image["isd"]["key_sets"][0]["enc"] = "00" * 15
    with pytest.raises(IsdSpecError) as caught:
        GpRegistry(SPEC, KEYS, FACTORIES, image)
    assert caught.value.field == "state.isd.key_sets[0]" and "00" * 15 not in str(caught.value)
