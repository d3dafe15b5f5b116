"""The GlobalPlatform registry of the virtual UICC: the applications it can select and their life cycles.

Spec: GP Card Specification v2.3 §6 (the GlobalPlatform Registry: entries,
privileges §6.6, associated Security Domain), §5.1 and §5.3 (card and
application life cycles), §11.5 (INSTALL [for install], [for make
selectable], [for personalization]), §11.10 (SET STATUS), §11.2 (DELETE);
ISO/IEC 7816-4 §7.1.1 (selection by partial AID, first occurrence).

Theory of operation
-------------------
The card maker ships the card with its executable load files already in
ROM (``IsdSpec.load_files``), as SIM vendors ship ROM applets; each module
has an :class:`AppletFactory`. There is no LOAD: an instance is created by
INSTALL [for install] from a pre-loaded module, which calls the factory with
the instance AID, the application specific install parameters (the value of
``C9``), the card's :class:`~simwallet.applet.card.app.CardServices` and,
when the card restarts from its image, the state the instance exported.

:class:`GpRegistry` is the card's
:class:`~simwallet.applet.card.app.ApplicationRegistry`; its issuer security
domain (:class:`~simwallet.applet.card.isd.IssuerSecurityDomain`) parses
the GP commands and calls the operations here, which raise
:class:`~simwallet.applet.errors.CardStatusError` with the status word the
card answers when GP refuses the operation. Every change calls
``services.persist()``.

Nothing here is secret except the ISD's keys, which live in the ISD; this
module never logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from simwallet.applet.card.app import Application, AppState, CardServices
from simwallet.applet.card.isd import IssuerSecurityDomain
from simwallet.applet.card.isd_spec import IsdSpec, IsdSpecError, hex_field, int_field
from simwallet.applet.errors import AppletError, CardStatusError
from simwallet.applet.protocols.gp import (
    CARD_LIFE_CYCLE_TRANSITIONS,
    LOCKED_BIT,
    SET_STATUS_LOCK,
    SET_STATUS_UNLOCK,
    ApplicationLifeCycle,
    CardLifeCycle,
    DeleteCommand,
    InstallCommand,
    InstallFor,
    LoadFileLifeCycle,
    Privilege,
    RegistryData,
    StatusScope,
    check_application_life_cycle,
    encode_privileges,
    is_locked,
    is_selectable,
    parse_privileges,
)
from simwallet.applet.protocols.scp03 import ChallengeRng, StaticKeys

# Instances the registry holds besides the ISD: a SIM hosts a handful of applets.
INSTANCES_MAX: Final = 16
# The version of the state layout export_state() writes.
STATE_VERSION: Final = 1

# GP CS v2.3 §11 status words the registry answers.
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
SW_INCORRECT_DATA: Final = 0x6A80
SW_NOT_ENOUGH_MEMORY: Final = 0x6A84
SW_REFERENCED_DATA_NOT_FOUND: Final = 0x6A88

# GP CS v2.3 §6.6: what the issuer security domain may do (card lock, terminate, reset,
# CVM management, trusted path, authorized management, global delete, lock and registry).
ISD_PRIVILEGES: Final = (
    Privilege.SECURITY_DOMAIN
    | Privilege.CARD_LOCK
    | Privilege.CARD_TERMINATE
    | Privilege.CARD_RESET
    | Privilege.CVM_MANAGEMENT
    | Privilege.TRUSTED_PATH
    | Privilege.AUTHORIZED_MANAGEMENT
    | Privilege.GLOBAL_DELETE
    | Privilege.GLOBAL_LOCK
    | Privilege.GLOBAL_REGISTRY
)


class AppletFactory(Protocol):
    """Creates an instance of a pre-loaded executable module (the applet's ``install`` method)."""

    def __call__(self, instance_aid: bytes, install_params: bytes, services: CardServices, state: AppState | None) -> Application:
        """``install_params``: the value of ``C9``; ``state``: what the instance exported, on a restart."""
        ...


@runtime_checkable
class Personalizable(Protocol):
    """An application that accepts STORE DATA through its security domain (GP CS v2.3 §11.11, §7.5.2)."""

    def store_data(self, p1: int, block_number: int, data: bytes, decrypt: Callable[[bytes], bytes]) -> bytes:
        """One STORE DATA block (P1 as sent, P2 block number); returns response data (usually empty).

        ``decrypt`` undoes the encryption of sensitive data with the static
        DEK (:func:`simwallet.applet.protocols.gp.decrypt_sensitive`); P1
        b7-b6 = 11 says the block holds such data. Raise
        :class:`~simwallet.applet.errors.CardStatusError` to refuse a block.
        """
        ...


def _refuse(sw: int, meaning: str) -> CardStatusError:
    return CardStatusError(sw, meaning)


@dataclass(eq=False)
class Instance:
    """A registry entry of an application instance (GP CS v2.3 §6.1): mutable, owned by the registry."""

    aid: bytes
    load_file_aid: bytes
    module_aid: bytes
    privileges: Privilege
    life_cycle: int
    install_params: bytes
    app: Application | None = None
    saved_state: AppState | None = None

    def registry_data(self, sd_aid: bytes) -> RegistryData:
        return RegistryData(
            aid=self.aid,
            life_cycle=self.life_cycle,
            privileges=self.privileges,
            load_file_aid=self.load_file_aid,
            associated_sd=sd_aid,
        )


class GpRegistry:
    """The card's :class:`~simwallet.applet.card.app.ApplicationRegistry`: the ISD first, then the instances in install order.

    ``isd_keys`` is the key set the card maker loaded (its KVN must be the
    spec's ``key_version``); ``state`` is what :meth:`export_state` returned
    before a restart, and wins over ``isd_keys``. Call :meth:`attach` once,
    after the UICC exists, before any command reaches the ISD.
    """

    def __init__(
        self,
        spec: IsdSpec,
        isd_keys: StaticKeys,
        applet_factories: Mapping[bytes, AppletFactory],
        state: Mapping[str, Any] | None = None,
        *,
        challenge_rng: ChallengeRng | None = None,
    ) -> None:
        if isd_keys.kvn != spec.key_version:
            raise IsdSpecError("key_version", f"the initial key set has KVN {isd_keys.kvn:#04x}, the spec says {spec.key_version:#04x}")
        modules = {module for load_file in spec.load_files for module in load_file.modules}
        for module in applet_factories:
            if module not in modules:
                raise IsdSpecError("load_files", f"an applet factory is given for module {module.hex().upper()}, which no load file has")
        self.spec = spec
        self._factories = dict(applet_factories)
        self._services: CardServices | None = None
        self._instances: dict[bytes, Instance] = {}
        self._card_life_cycle = CardLifeCycle.SECURED
        isd_state: Mapping[str, Any] | None = None
        if state is not None:
            isd_state = self._load_state(state)
        self.isd = IssuerSecurityDomain(spec, self, isd_keys, isd_state, challenge_rng=challenge_rng)

    def __repr__(self) -> str:
        return f"GpRegistry(isd={self.spec.isd_aid.hex().upper()}, card={self._card_life_cycle.name}, instances={len(self._instances)})"

    # -- assembly and state --

    def attach(self, services: CardServices) -> None:
        """Give the registry the card's services; instantiates the saved instances. Called once."""
        if self._services is not None:
            raise RuntimeError("GpRegistry.attach() was already called")
        self._services = services
        self.isd.attach(services)
        for instance in self._instances.values():
            instance.app = self._create(instance.module_aid, instance.aid, instance.install_params, instance.saved_state)
            instance.saved_state = None

    @property
    def services(self) -> CardServices:
        if self._services is None:
            raise RuntimeError("GpRegistry.attach() has not been called")
        return self._services

    def persist(self) -> None:
        self.services.persist()

    def _create(self, module_aid: bytes, aid: bytes, install_params: bytes, state: AppState | None) -> Application:
        factory = self._factories.get(module_aid)
        if factory is None:
            raise _refuse(SW_REFERENCED_DATA_NOT_FOUND, f"no applet factory for module {module_aid.hex().upper()}")
        return factory(aid, install_params, self.services, state)

    def export_state(self) -> dict[str, Any]:
        """JSON-able: card life cycle, the ISD (its key sets included) and every instance with its own state."""
        instances = []
        for instance in self._instances.values():
            app_state = instance.app.export_state() if instance.app is not None else instance.saved_state
            instances.append(
                {
                    "aid": instance.aid.hex().upper(),
                    "load_file": instance.load_file_aid.hex().upper(),
                    "module": instance.module_aid.hex().upper(),
                    "privileges": encode_privileges(instance.privileges).hex().upper(),
                    "life_cycle": int(instance.life_cycle),
                    "install_params": instance.install_params.hex().upper(),
                    "state": None if app_state is None else dict(app_state),
                }
            )
        return {
            "version": STATE_VERSION,
            "card_life_cycle": int(self._card_life_cycle),
            "isd": self.isd.export_state(),
            "instances": instances,
        }

    def _load_state(self, state: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if int_field(state, "version", "state") != STATE_VERSION:
            raise IsdSpecError("state.version", f"unknown state layout (this code writes {STATE_VERSION})")
        try:
            self._card_life_cycle = CardLifeCycle(int_field(state, "card_life_cycle", "state"))
        except ValueError:
            raise IsdSpecError("state.card_life_cycle", "not a GP card life cycle state") from None
        entries = state.get("instances", [])
        if not isinstance(entries, list) or len(entries) > INSTANCES_MAX:
            raise IsdSpecError("state.instances", f"must be a list of at most {INSTANCES_MAX} instances")
        for index, entry in enumerate(entries):
            where = f"state.instances[{index}]"
            if not isinstance(entry, Mapping):
                raise IsdSpecError(where, "must be a mapping")
            aid = hex_field(entry, "aid", where)
            privileges = hex_field(entry, "privileges", where)
            life_cycle = int_field(entry, "life_cycle", where)
            saved = entry.get("state")
            if saved is not None and not isinstance(saved, Mapping):
                raise IsdSpecError(f"{where}.state", "must be a mapping or null")
            try:
                instance = Instance(
                    aid=aid,
                    load_file_aid=hex_field(entry, "load_file", where),
                    module_aid=hex_field(entry, "module", where),
                    privileges=parse_privileges(privileges),
                    life_cycle=check_application_life_cycle(life_cycle),
                    install_params=hex_field(entry, "install_params", where, allow_empty=True),
                    saved_state=saved,
                )
            except ValueError as exc:
                raise IsdSpecError(where, str(exc)) from None
            self._check_module(instance.load_file_aid, instance.module_aid, where)
            self._instances[aid] = instance
        isd = state.get("isd")
        if isd is not None and not isinstance(isd, Mapping):
            raise IsdSpecError("state.isd", "must be a mapping")
        return isd

    def _check_module(self, load_file_aid: bytes, module_aid: bytes, where: str) -> None:
        load_file = self.spec.load_file(load_file_aid)
        if load_file is None or module_aid not in load_file.modules or module_aid not in self._factories:
            raise IsdSpecError(where, f"module {module_aid.hex().upper()} of load file {load_file_aid.hex().upper()} is not pre-loaded")

    # -- ApplicationRegistry --

    def find(self, aid_prefix: bytes) -> Application | None:
        """The first selectable application whose AID starts with ``aid_prefix``; only the ISD while the card is locked."""
        if self.isd.aid.startswith(aid_prefix):
            return self.isd
        if self.card_locked():
            return None
        for instance in self._instances.values():
            if instance.aid.startswith(aid_prefix) and is_selectable(instance.life_cycle) and instance.app is not None:
                return instance.app
        return None

    def __iter__(self) -> Iterator[Application]:
        """The ISD and every instantiated application, selectable or not (for power-off and the like)."""
        yield self.isd
        for instance in self._instances.values():
            if instance.app is not None:
                yield instance.app

    def card_locked(self) -> bool:
        return self._card_life_cycle in (CardLifeCycle.CARD_LOCKED, CardLifeCycle.TERMINATED)

    @property
    def card_life_cycle(self) -> CardLifeCycle:
        return self._card_life_cycle

    def instance(self, aid: bytes) -> Instance | None:
        return self._instances.get(aid)

    # -- card content management (called by the ISD; CardStatusError carries the answer) --

    def _aid_in_use(self, aid: bytes) -> bool:
        if aid == self.isd.aid or aid in self._instances:
            return True
        return any(aid == load_file.aid or aid in load_file.modules for load_file in self.spec.load_files)

    def install(self, command: InstallCommand) -> Instance:
        """INSTALL [for install] / [for install and make selectable] of a pre-loaded module."""
        load_file = self.spec.load_file(command.load_file_aid)
        if load_file is None or command.module_aid not in load_file.modules or command.module_aid not in self._factories:
            raise _refuse(SW_REFERENCED_DATA_NOT_FOUND, "load file or module is not on the card")
        if self._aid_in_use(command.application_aid):
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "the application AID is already in the registry")
        if len(self._instances) >= INSTANCES_MAX:
            raise _refuse(SW_NOT_ENOUGH_MEMORY, f"the registry holds {INSTANCES_MAX} instances already")
        privileges = command.privileges or Privilege(0)
        if Privilege.SECURITY_DOMAIN in privileges:
            raise _refuse(SW_INCORRECT_DATA, "this card does not create Supplementary Security Domains")
        parameters = command.parameters.application if command.parameters is not None else b""
        try:
            app = self._create(command.module_aid, command.application_aid, parameters, None)
        except CardStatusError:
            raise
        except AppletError as exc:  # the applet's install method refused its parameters
            raise _refuse(SW_INCORRECT_DATA, "the applet refused its install parameters") from exc
        if app.aid != command.application_aid:
            raise RuntimeError(f"the factory of module {command.module_aid.hex().upper()} returned an application with another AID")
        selectable = command.kind is InstallFor.INSTALL_AND_MAKE_SELECTABLE
        instance = Instance(
            aid=command.application_aid,
            load_file_aid=command.load_file_aid,
            module_aid=command.module_aid,
            privileges=privileges,
            life_cycle=ApplicationLifeCycle.SELECTABLE if selectable else ApplicationLifeCycle.INSTALLED,
            install_params=parameters,
            app=app,
        )
        self._instances[instance.aid] = instance
        self.persist()
        return instance

    def make_selectable(self, command: InstallCommand) -> None:
        """INSTALL [for make selectable]: INSTALLED to SELECTABLE (GP CS v2.3 §5.3.1)."""
        instance = self._require(command.application_aid)
        if instance.life_cycle != ApplicationLifeCycle.INSTALLED:
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "only an INSTALLED application can be made selectable")
        if command.privileges is not None:
            if Privilege.SECURITY_DOMAIN in command.privileges:
                raise _refuse(SW_INCORRECT_DATA, "this card does not create Supplementary Security Domains")
            instance.privileges = command.privileges
        instance.life_cycle = ApplicationLifeCycle.SELECTABLE
        self.persist()

    def personalization_target(self, aid: bytes) -> Personalizable:
        """INSTALL [for personalization]: the application the following STORE DATA commands go to."""
        instance = self._require(aid)
        if is_locked(instance.life_cycle):
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "the application is locked")
        if not isinstance(instance.app, Personalizable):
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "the application does not accept STORE DATA")
        return instance.app

    def _require(self, aid: bytes) -> Instance:
        instance = self._instances.get(aid)
        if instance is None:
            raise _refuse(SW_REFERENCED_DATA_NOT_FOUND, "no such application")
        return instance

    def set_card_life_cycle(self, state: int) -> None:
        """SET STATUS of the ISD (GP CS v2.3 §5.1.1): forward moves, SECURED and CARD_LOCKED both ways."""
        try:
            target = CardLifeCycle(state)
        except ValueError:
            raise _refuse(SW_INCORRECT_DATA, f"{state:02X} is not a card life cycle state") from None
        if target not in CARD_LIFE_CYCLE_TRANSITIONS[self._card_life_cycle]:
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, f"{self._card_life_cycle.name} cannot become {target.name}")
        self._card_life_cycle = target
        self.persist()

    def set_application_status(self, aid: bytes, state: int) -> None:
        """SET STATUS of an application (GP CS v2.3 §5.3.2, §11.10): lock (80), unlock (00) or an application-specific state."""
        if aid == self.isd.aid:
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "the ISD's state is the card life cycle (P1 = 80)")
        instance = self._require(aid)
        current = instance.life_cycle
        if state == SET_STATUS_LOCK:
            new = current | LOCKED_BIT
        elif state == SET_STATUS_UNLOCK:
            if not is_locked(current):
                raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "the application is not locked")
            new = current & ~LOCKED_BIT
        elif state & LOCKED_BIT or state & 0x07 != 0x07:
            raise _refuse(SW_INCORRECT_DATA, f"{state:02X} is not an application state a security domain may set")
        elif is_locked(current) or current == ApplicationLifeCycle.INSTALLED:
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "a locked or merely INSTALLED application keeps its state")
        else:
            new = state
        instance.life_cycle = new
        self.persist()

    def set_security_domain_status(self, aid: bytes) -> None:
        """SET STATUS P1 = 60: this card has no Supplementary Security Domain to lock with its applications."""
        if aid == self.isd.aid:
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "lock the card (P1 = 80) rather than the ISD")
        self._require(aid)
        raise _refuse(SW_INCORRECT_DATA, "the application is not a security domain")

    def delete(self, command: DeleteCommand) -> Instance:
        """DELETE of an application instance; the ISD and the ROM load files stay."""
        if command.aid == self.isd.aid or any(
            command.aid == load_file.aid or command.aid in load_file.modules for load_file in self.spec.load_files
        ):
            raise _refuse(SW_CONDITIONS_NOT_SATISFIED, "the ISD and pre-loaded (ROM) load files cannot be deleted")
        instance = self._instances.pop(command.aid, None)
        if instance is None:
            raise _refuse(SW_REFERENCED_DATA_NOT_FOUND, "no such application")
        if instance.app is not None:
            instance.app.power_off()
        self.persist()
        return instance

    def registry_data(self, scope: StatusScope) -> list[RegistryData]:
        """The GET STATUS entries of ``scope`` (GP CS v2.3 §11.4.3.1), before any search criteria."""
        isd_aid = self.isd.aid
        if scope is StatusScope.ISSUER_SECURITY_DOMAIN:
            return [RegistryData(isd_aid, int(self._card_life_cycle), ISD_PRIVILEGES)]
        if scope is StatusScope.APPLICATIONS:
            return [instance.registry_data(isd_aid) for instance in self._instances.values()]
        with_modules = scope is StatusScope.LOAD_FILES_AND_MODULES
        return [
            RegistryData(
                load_file.aid,
                int(LoadFileLifeCycle.LOADED),
                module_aids=load_file.modules if with_modules else (),
                associated_sd=isd_aid,
            )
            for load_file in self.spec.load_files
        ]
