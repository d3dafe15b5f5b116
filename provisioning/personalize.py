"""Personalize one card over PC/SC: files, PIN, ISD and OTA keys, the wallet applet, and the card's registration.

Spec: ETSI TS 102 221 §9.5, §11.1 (file and PIN commands), §13.2 (EF.ICCID);
3GPP TS 31.102 §4.2 (the USIM files the profile writes); GlobalPlatform Card
Specification v2.3 §11 with Amendment D (SCP03, PUT KEY, INSTALL, STORE
DATA); ETSI TS 102 225 §5.1 (KIc/KID key index: the OTA key set's KVN).

Theory of operation
-------------------
:class:`Personalizer` runs :attr:`Personalizer.STEPS` in order on one card:

``identify``
    SELECT EF.ICCID by path from the MF and READ BINARY it (unless the caller
    has just read it on this connection, as a batch does to find the job);
    a card whose ICCID is not the job's raises :class:`WrongCardError` before
    anything is written — on every run, resumed ones included.
``adm``
    ask ADM1's retry counter (VERIFY without data), refuse with
    :class:`TriesTooLowError` below 2, then VERIFY the ADM1 code derived
    from the key store's ``card-secrets`` master and the ICCID. A verified
    key lasts one power session, so ``adm`` runs again whenever ``files``
    has not been journaled yet.
``pin``
    UNBLOCK PIN with the card's PUK (derived, its counter checked first)
    sets PIN1 to the job's PIN — repeatable, unlike CHANGE PIN from a
    default — then ENABLE/DISABLE PIN as the profile says. It runs before
    ``files``: the card type protects EF.LI, EF.PL, EF.MSISDN and EF.SMSP
    with PIN1, which only the job's PIN (set here) can satisfy. A resumed
    run whose ``pin`` is done presents the job's PIN1 (counter checked)
    when ``files`` still needs it.
``files``
    the profile's files, written with the fewest APDUs
    (:mod:`simwallet.provisioning.personalize_files`).
``isd-keys``, ``ota-keys``, ``applet``, ``wallet``
    through one SCP03 session (:mod:`simwallet.provisioning.personalize_gp`)
    opened with the card's current ISD key set: rotate the ISD key set to
    the profile's ``scp03`` version (PUT KEY, KCVs checked, channel
    reopened); add the card's OTA key set (KIc, KID, DEK) as key set
    ``KVN = ota version`` — the TS 102 225 key index in KIc/KID b8-b5, so
    1..15; install the wallet instance (GET STATUS first); personalize it
    with INSTALL [for personalization] and STORE DATA (sensitive DGIs
    encrypted with the session's DEK), then SET STATUS to the
    application-specific state ``0F`` (PERSONALIZED), which GET STATUS shows.
``register``
    :meth:`~simwallet.gateway.cards.CardRegistry.register`, idempotent; a
    card registered before with the same values counts as done (the registry
    keeps its first ``personalized_at``), other values are an error naming the field.
    With ``defer_registration`` (a batch) the run stops before it and hands
    the registration back; the caller registers, journals and finishes.

Every step is safe to repeat. With a journal, ``("card", "begin")`` is
recorded first, each step ``done`` after it succeeded (once: a step run
again on a resumed card is not recorded twice), a failure
``failed`` with its (secret-free) message, and ``finished`` at the end;
steps already done are skipped, except ``identify`` (always) and ``adm``
(while ``files`` is not done). A card error becomes a
:class:`PersonalizationError` naming card, step, masked APDU and status
word; :class:`~simwallet.provisioning.reader.CardRemovedError` passes
through untouched (a batch waits for the card to come back).

No PIN, PUK, ADM code or key is logged, journaled or put in an error.
"""

from __future__ import annotations

import hmac
import logging
import secrets as _secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, Protocol

from simwallet.applet.card.spec import AccessRule, CardSpec
from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.gp import (
    Dgi,
    StatusScope,
    StatusType,
    install_for_install_command,
    install_for_make_selectable_command,
    install_for_personalization_command,
    is_selectable,
    set_status_command,
    store_data_commands,
)
from simwallet.applet.protocols.scp03 import StaticKeys
from simwallet.gateway.cards import CardRegistration, CardRegistry
from simwallet.gateway.diversify import CardSecretValues, card_ota_keys, card_scp03_keys, card_secrets, card_wallet_keys
from simwallet.gateway.errors import GatewayError, RequestError
from simwallet.gateway.keystore import KeyStore, MasterKey
from simwallet.provisioning.errors import ProvisioningError
from simwallet.provisioning.journal import CardProgress
from simwallet.provisioning.personalize_card import (
    KEY_ADM1,
    KEY_PIN1,
    KEY_PIN2,
    CardIo,
    PersonalizationError,
    TriesTooLowError,
    WrongCardError,
    pin_block,
    read_iccid_with,
    set_enabled,
    unblock,
    verify,
)
from simwallet.provisioning.personalize_files import Navigator, plan_files
from simwallet.provisioning.personalize_gp import OTA_KVN_MAX, OTA_KVN_MIN, IsdChannel, is_ota_kvn, open_issuer_channel
from simwallet.provisioning.personalize_wallet import WALLET_PERSONALIZED, WalletAids, wallet_aids, wallet_dgis
from simwallet.provisioning.profile import KeyVersion, Personalization, PinSetting, Profile
from simwallet.provisioning.profile_files import card_files
from simwallet.provisioning.reader import CardConnection, ReaderError, Trace
from simwallet.provisioning.values import CardValues, ValueKind

__all__ = [
    "OTA_KVN_MAX",
    "OTA_KVN_MIN",
    "CardJob",
    "CardOutcome",
    "PersonalizationError",
    "Personalizer",
    "PersonalizerConfigError",
    "StepJournal",
    "TriesTooLowError",
    "WrongCardError",
    "read_iccid",
]

log = logging.getLogger(__name__)

# The PIN references the profile may set (TS 102 221 §9.5.1).
PIN_REFERENCES: Final = {"pin1": KEY_PIN1, "pin2": KEY_PIN2}
# A value of the job that, if declared, is the wallet applet's own PIN (else PIN1's).
WALLET_PIN_VALUE: Final = "wallet_pin"
ACTIVE: Final = "active"


class PersonalizerConfigError(ProvisioningError, ValueError):
    """The profile, card type and key store cannot personalize any card (found before a card is touched)."""


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class CardJob:
    """One card to personalize: its checked values (secrets inside), the rendered personalization, who and where."""

    values: CardValues
    personalization: Personalization
    channel: str  # acceptance channel: service_hall | field | batch | agent
    clerk: str
    row: int | None = None


class StepJournal(Protocol):
    """What :meth:`Personalizer.personalize` needs of a journal (:class:`~simwallet.provisioning.journal.Journal` has it)."""

    def progress(self, iccid: str) -> CardProgress: ...

    def record(self, iccid: str, step: str, event: str = "done", *, error: str | None = None) -> None: ...

    def finish(self, *iccids: str) -> None: ...


@dataclass(frozen=True)
class CardOutcome:
    iccid: str
    steps_run: tuple[str, ...]
    steps_skipped: tuple[str, ...]
    exchanges: int  # APDU exchanges on the wire for this card
    registered_new: bool
    # With defer_registration: the registration still to be made (None: nothing left to register).
    registration: CardRegistration | None = None


def read_iccid(connection: CardConnection) -> str:
    """The ICCID of the card on ``connection`` (SELECT EF.ICCID from the MF, READ BINARY); PersonalizationError if unreadable."""
    return read_iccid_with(CardIo(connection, None))


@dataclass
class _Run:
    """The state of one card's run: what this power session has verified and the open secure channel."""

    io: CardIo
    job: CardJob
    iccid: str
    secrets: CardSecretValues = field(repr=False)
    identified: str | None = None  # the ICCID read on this connection just before (no second SELECT and READ)
    pin1_verified: bool = False
    isd: IsdChannel | None = None
    card_kvns: list[int] = field(default_factory=list)
    registered_new: bool = False
    # The wallet's DGIs, built before the first APDU (they hold the wallet PIN and keys: never shown).
    wallet_data: tuple[list[tuple[int, bytes]], frozenset[int]] = field(default_factory=lambda: ([], frozenset()), repr=False)


class Personalizer:
    """Personalizes cards of one profile with keys from one key store; registers them in ``registry`` (None: not at all)."""

    STEPS: ClassVar[tuple[str, ...]] = ("identify", "adm", "pin", "files", "isd-keys", "ota-keys", "applet", "wallet", "register")
    # Steps that need the SCP03 channel to the ISD.
    GP_STEPS: ClassVar[frozenset[str]] = frozenset({"isd-keys", "ota-keys", "applet", "wallet"})

    def __init__(
        self,
        profile: Profile,
        keystore: KeyStore,
        registry: CardRegistry | None,
        *,
        trace: Trace | None = None,
        clock: Callable[[], int] = _wall_clock_us,
        rng: Callable[[int], bytes] = _secrets.token_bytes,
    ) -> None:
        self.profile = profile
        self.keystore = keystore
        self.registry = registry
        self._trace = trace
        self._clock = clock
        self._rng = rng
        card_type = profile.card_type
        self.index = card_files(card_type["files"])
        self._spec = CardSpec.from_mapping(card_type)
        gp = card_type.get("gp")
        if not isinstance(gp, Mapping):
            raise PersonalizerConfigError(
                f"card type {profile.card_type_name!r} has no gp section: no issuer security domain to personalize"
            )
        self.isd_aid = bytes.fromhex(str(gp["isd_aid"]))
        self.wallet_aids: WalletAids = wallet_aids(card_type)
        # The key versions this profile personalizes with, resolved once (KeyVersionError before any card is touched).
        self._scp03 = self._master("scp03", profile.keys.scp03)
        self._ota = self._master("ota", profile.keys.ota)
        self._wallet = self._master("wallet", profile.keys.wallet)
        self._secrets_master = keystore.active("card-secrets").secrets_master()
        if OTA_KVN_MIN <= self._scp03.version <= OTA_KVN_MAX:
            raise PersonalizerConfigError(
                f"scp03 version {self._scp03.version} collides with the OTA key set KVNs {OTA_KVN_MIN}..{OTA_KVN_MAX}"
            )
        for family, master in (("ota", self._ota), ("wallet", self._wallet)):
            if not OTA_KVN_MIN <= master.version <= OTA_KVN_MAX:
                raise PersonalizerConfigError(
                    f"{family} version {master.version} is no TS 102 225 key index ({OTA_KVN_MIN}..{OTA_KVN_MAX}):"
                    " it cannot be a card's KVN"
                )
        # The paths a profile writes do not depend on the card's values.
        self._writes_need_pin1 = any(self._spec.file(path).access.update is AccessRule.PIN1 for path in profile.file_paths)
        self.reads_need_pin1 = any(self._spec.file(path).access.read is AccessRule.PIN1 for path in profile.file_paths)

    def __repr__(self) -> str:
        versions = f"scp03={self._scp03.version:#04x}, ota={self._ota.version}, wallet={self._wallet.version}"
        return f"Personalizer(profile={self.profile.name!r}, {versions})"

    def _master(self, family: str, choice: KeyVersion) -> MasterKey:
        return self.keystore.active(family) if choice == ACTIVE else self.keystore.version(family, int(choice))

    @property
    def key_versions(self) -> dict[str, int]:
        """The master key versions this personalizer gives cards (what registration records)."""
        return {"scp03": self._scp03.version, "ota": self._ota.version, "wallet": self._wallet.version}

    # -- the run ---------------------------------------------------------------------------------

    def personalize(
        self,
        connection: CardConnection,
        job: CardJob,
        journal: StepJournal | None = None,
        *,
        identified: str | None = None,
        defer_registration: bool = False,
    ) -> CardOutcome:
        """Run every step not yet done on the card in ``connection``; see the module docstring.

        ``identified``: the ICCID the caller has just read from this card on this ``connection`` (a batch reads
        it to find the job): ``identify`` compares it with the job's instead of reading EF.ICCID again.
        ``defer_registration``: stop after the card's own steps and return the registration still to be made
        (the card can leave the reader); the caller registers it, journals ``register`` and finishes the card.
        """
        iccid = job.values.iccid
        if iccid is None:
            raise PersonalizationError(None, "identify", "the job has no ICCID")
        self.registration(job, iccid, personalized_at=1)  # checks the registration fields before any APDU
        progress = journal.progress(iccid) if journal is not None else CardProgress(iccid)
        start = connection.exchanges
        run = _Run(CardIo(connection, iccid), job, iccid, card_secrets(self._secrets_master, iccid), identified=identified)
        if not progress.done("wallet"):
            run.wallet_data = self._wallet_data(job, iccid)
        if progress.finished:
            self._identify(run)
            return CardOutcome(iccid, ("identify",), self.STEPS[1:], connection.exchanges - start, False)
        if journal is not None:
            journal.record(iccid, "card", "begin")
        # "register" is the last step, the only one without the card.
        ran, skipped = self._run_steps(run, self.STEPS[:-1] if defer_registration else self.STEPS, progress, journal)
        exchanges = connection.exchanges - start
        if defer_registration:
            log.info("card %s: on-card steps done (%d exchanges)", iccid, exchanges)
            if not self._needed("register", progress):
                return CardOutcome(iccid, ran, (*skipped, "register"), exchanges, False)
            return CardOutcome(iccid, ran, skipped, exchanges, False, self.registration(job, iccid, personalized_at=self._clock()))
        if journal is not None:
            journal.finish(iccid)
        log.info("card %s: personalized (%d exchanges)", iccid, exchanges)
        return CardOutcome(iccid, ran, skipped, exchanges, run.registered_new)

    def _run_steps(
        self, run: _Run, steps: tuple[str, ...], progress: CardProgress, journal: StepJournal | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Run ``steps`` that are needed, journaling each; the steps run and those skipped."""
        ran: list[str] = []
        skipped: list[str] = []
        for step in steps:
            if not self._needed(step, progress):
                skipped.append(step)
                continue
            run.io.step = step
            log.info("card %s: step %s", run.iccid, step)
            try:
                self._run_step(step, run)
            except (PersonalizationError, ReaderError) as exc:
                # Recorded for the technician; the error itself goes on untouched (CardRemovedError included).
                if journal is not None:
                    journal.record(run.iccid, step, "failed", error=str(exc))
                raise
            # identify and adm run again on a resumed card (ICCID check, ADM for this power session);
            # their "done" is recorded once, so every step has at most one done record.
            if journal is not None and not progress.done(step):
                journal.record(run.iccid, step, "done")
            ran.append(step)
        return tuple(ran), tuple(skipped)

    def _needed(self, step: str, progress: CardProgress) -> bool:
        if step == "identify":
            return True
        if step == "register" and self.registry is None:
            return False
        if step == "adm":
            return not progress.done("files") or not progress.done("adm")
        return not progress.done(step)

    def _run_step(self, step: str, run: _Run) -> None:
        handler = _HANDLERS[step]
        try:
            if step in self.GP_STEPS:
                self._open_isd(run)
            handler(self, run)
        except (PersonalizationError, ReaderError):
            raise
        except GatewayError as exc:
            raise PersonalizationError.from_backend(run.iccid, step, exc) from exc
        except CodecError as exc:
            raise PersonalizationError(run.iccid, step, f"cannot encode or decode: {exc}") from exc

    # -- steps ----------------------------------------------------------------------------------

    def _identify(self, run: _Run) -> None:
        found = run.identified if run.identified is not None else read_iccid_with(run.io)
        if found != run.iccid:
            raise WrongCardError(run.iccid, found)

    def _adm(self, run: _Run) -> None:
        verify(run.io, KEY_ADM1, pin_block(run.secrets.adm1))

    def _pin(self, run: _Run) -> None:
        for setting in run.job.personalization.pins:
            reference = PIN_REFERENCES.get(setting.name)
            if reference is None:
                raise run.io.error(f"the profile sets {setting.name}, which this personalizer cannot (pin1 and pin2 only)")
            puk = run.secrets.puk1 if reference == KEY_PIN1 else run.secrets.puk2
            if setting.unblock is not None and not hmac.compare_digest(setting.unblock.reveal().encode(), puk.encode()):
                raise run.io.error(f"the job's unblock key of {setting.name} is not the card's (from the key store): nothing presented")
            new_block = pin_block(setting.initial.reveal())
            unblock(run.io, reference, pin_block(puk), new_block)
            if reference == KEY_PIN1:
                run.pin1_verified = True
            if setting.enabled is not None:
                set_enabled(run.io, reference, new_block, setting.enabled)

    def _files(self, run: _Run) -> None:
        writes = run.job.personalization.files
        if self._writes_need_pin1 and not run.pin1_verified:
            setting = _pin_setting(run.job.personalization.pins, "pin1")
            if setting is None:
                raise run.io.error("the profile writes files that PIN1 protects, and the job sets no PIN1 to present")
            verify(run.io, KEY_PIN1, pin_block(setting.initial.reveal()))
            run.pin1_verified = True
        for planned in plan_files(writes, self.index, navigator=Navigator(self.index)):
            what = {"select": "SELECT", "update_binary": "UPDATE BINARY", "update_record": "UPDATE RECORD"}[planned.kind]
            run.io.send(planned.capdu, what=f"{what} {planned.path}")

    def _open_isd(self, run: _Run) -> None:
        if run.isd is not None and run.isd.is_open:
            return
        run.isd, run.card_kvns = open_issuer_channel(
            run.io, self.isd_aid, self.keystore, run.iccid, preferred_kvn=self._scp03.version, rng=self._rng, trace=self._trace
        )

    def _isd_keys(self, run: _Run) -> None:
        isd = _open(run)
        current = isd.kvn
        target = self._scp03.version
        if current == target:
            return
        assert current is not None
        new = card_scp03_keys(self._scp03.scp03_keys(), run.iccid)
        isd.put_key(new, replace_kvn=current, what=f"PUT KEY ISD key set {current:#04x} -> {target:#04x}")
        run.card_kvns = [target if kvn == current else kvn for kvn in run.card_kvns]
        isd.open(new)

    def _ota_keys(self, run: _Run) -> None:
        isd = _open(run)
        kvn = self._ota.version
        if kvn in run.card_kvns:
            return
        older = [k for k in run.card_kvns if is_ota_kvn(k)]
        ota = card_ota_keys(self._ota.ota_keys(), run.iccid)
        keyset = StaticKeys(enc=ota.kic, mac=ota.kid, dek=ota.dek, kvn=kvn)
        replace = older[0] if older else 0
        isd.put_key(keyset, replace_kvn=replace, what=f"PUT KEY OTA key set {kvn:#04x}")
        run.card_kvns = [kvn if k == replace else k for k in run.card_kvns] if replace else [*run.card_kvns, kvn]

    def _applet(self, run: _Run) -> None:
        isd = _open(run)
        aids = self.wallet_aids
        entries = isd.registry(StatusScope.APPLICATIONS, aids.instance)
        entry = next((e for e in entries if e.aid == aids.instance), None)
        if entry is None:
            command = install_for_install_command(aids.load_file, aids.module, aids.instance, application_parameters=aids.parameters)
            isd.send(command, what="INSTALL [for install and make selectable] wallet", accept=_gp_ok)
        elif entry.life_cycle is None or not is_selectable(entry.life_cycle):
            isd.send(install_for_make_selectable_command(aids.instance), what="INSTALL [for make selectable] wallet", accept=_gp_ok)

    def _wallet_data(self, job: CardJob, iccid: str) -> tuple[list[tuple[int, bytes]], frozenset[int]]:
        """The wallet's DGIs for ``job`` (pure); checked before the first APDU, so a PIN the wallet cannot take fails early."""
        wallet_pin = job.values.secret(WALLET_PIN_VALUE)
        if wallet_pin is None:
            setting = _pin_setting(job.personalization.pins, "pin1")
            if setting is None:
                raise PersonalizationError(iccid, "wallet", "the wallet needs a PIN: the job has neither a wallet_pin nor a PIN1")
            wallet_pin = setting.initial
        keys = card_wallet_keys(self._wallet.wallet_keys(), iccid)
        try:
            return wallet_dgis(job.personalization.wallet, wallet_pin.reveal(), keys, self._wallet.version)
        except CodecError as exc:
            # The codec's messages name the field, never a PIN's digits or a key.
            raise PersonalizationError(iccid, "wallet", f"the wallet's personalization data cannot be built: {exc}") from exc

    def _wallet_step(self, run: _Run) -> None:
        isd = _open(run)
        dgis, sensitive = run.wallet_data
        isd.send(install_for_personalization_command(self.wallet_aids.instance), what="INSTALL [for personalization] wallet", accept=_gp_ok)
        for command in store_data_commands([Dgi(tag, value) for tag, value in dgis], dek=isd.dek, sensitive=sensitive.__contains__):
            isd.send(command, what="STORE DATA wallet", accept=_gp_ok)
        # GP CS v2.3 §11.10: the application-specific state PERSONALIZED, which GET STATUS then shows (read, verify).
        command = set_status_command(StatusType.APPLICATION, WALLET_PERSONALIZED, self.wallet_aids.instance)
        isd.send(command, what="SET STATUS wallet personalized", accept=_gp_ok)

    def _register(self, run: _Run) -> None:
        registry = self.registry
        assert registry is not None
        # Registered before (a resumed run)? The registry keeps the first personalized_at.
        result = registry.register(self.registration(run.job, run.iccid, personalized_at=self._clock()))
        run.registered_new = result.created

    def registration(self, job: CardJob, iccid: str, *, personalized_at: int) -> CardRegistration:
        """The registration of ``job``'s card (RequestError as PersonalizationError naming the field)."""
        values = job.values
        missing = [name for name in ("imsi", "msisdn", "customer") if values.get(name) is None]
        if missing:
            raise PersonalizationError(iccid, "register", f"the job lacks {', '.join(missing)}", field=missing[0])
        try:
            return CardRegistration(
                iccid=iccid,
                imsi=values["imsi"],
                msisdn=self._e164(values["msisdn"]),
                customer_ref=f"customer:{values['customer']}",
                profile=self.profile.name,
                channel=job.channel,  # type: ignore[arg-type]  # validated by CardRegistration
                clerk=job.clerk,
                scp03_kvn=self._scp03.version,
                ota_key_version=self._ota.version,
                wallet_key_version=self._wallet.version,
                personalized_at=personalized_at,
            )
        except RequestError as exc:
            raise PersonalizationError.from_backend(iccid, "register", exc) from exc

    def _e164(self, msisdn: str) -> str:
        for spec in self.profile.value_specs:
            if spec.kind is ValueKind.MSISDN and spec.country_code is not None:
                return spec.country_code + msisdn
        return msisdn


def _open(run: _Run) -> IsdChannel:
    if run.isd is None or not run.isd.is_open:
        raise run.io.error("no secure channel to the ISD is open")
    return run.isd


def _gp_ok(sw: int) -> bool:
    return sw == 0x9000


def _pin_setting(pins: tuple[PinSetting, ...], name: str) -> PinSetting | None:
    return next((p for p in pins if p.name == name), None)


_HANDLERS: Final[dict[str, Callable[[Personalizer, _Run], None]]] = {
    "identify": Personalizer._identify,
    "adm": Personalizer._adm,
    "pin": Personalizer._pin,
    "files": Personalizer._files,
    "isd-keys": Personalizer._isd_keys,
    "ota-keys": Personalizer._ota_keys,
    "applet": Personalizer._applet,
    "wallet": Personalizer._wallet_step,
    "register": Personalizer._register,
}
