"""The virtual UICC: the command loop that a vpcd reader (or a test) talks to.

Spec: ETSI TS 102 221 §7.2-7.4 (T=0 transport: case 4 commands answer 61XX and
leave the data to GET RESPONSE; 91XX when a proactive command is pending),
§8.5 (application selection), §10.1 (CLA and INS coding), §10.2 (status
words), §11.1.1 SELECT, §11.1.9-13 (PIN commands, in :mod:`.pins`), §11.2
(CAT commands, passed to a :class:`~simwallet.applet.card.app.Toolkit`);
ISO/IEC 7816-4 §5.1 (APDU cases), §7.1.1 (SELECT by DF name, occurrences).

Theory of operation
-------------------
:meth:`Uicc.apdu` parses the C-APDU, routes it, and turns the result into
T=0-style bytes:

* routing: a CLA naming a logical channel other than 0 answers 6881, secure
  messaging on a file command 6882, an unknown class 6E00. CAT commands (CLA
  80, INS 10/12/14/C2) go to the toolkit; GET RESPONSE serves pending data;
  SELECT is always the card's; while an :class:`Application` is selected
  every other command goes to its ``process()``; the rest are file, STATUS
  and PIN commands (:mod:`.fileops`, :mod:`.pins`).
* T=0: response data to a command without Le is kept for GET RESPONSE and
  announced with 61XX; data longer than Ne is cut at Ne with 61XX for the
  rest; GET RESPONSE with a Le above what is left answers 6CXX. A 9000 becomes
  91XX while the toolkit has a proactive command waiting.
* persistence: when a command changed file content, a life cycle or a PIN
  counter, the change is written (:class:`~.image.CardStore`) before the
  status word is returned: the card hands the store the entries it touched
  (:meth:`~.image.CardStore.save_changes`), not its whole image to compare.
  Applications call ``services.persist()`` the same way.
* faults: an exception inside a command answers 6F00 and is logged with the
  INS and the exception type, never the APDU's data.

With a GlobalPlatform registry whose ``card_locked()`` is true, only the
issuer security domain (the first application the registry lists, GP 2.3
§6.3) can be selected; the file system's ADFs stay selectable.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from secrets import token_bytes
from typing import Any, Final

from simwallet.applet.card.aid import aid_candidates, occurrence
from simwallet.applet.card.app import Application, ApplicationRegistry, CardServices, Toolkit
from simwallet.applet.card.fileops import SW_BAD_P1P2, SW_NOT_FOUND, SW_WRONG_LENGTH, Channel, FileOps, fail
from simwallet.applet.card.filesystem import File, FileSystem
from simwallet.applet.card.image import CardImage, CardStore, ImageError, check_iccid
from simwallet.applet.card.pins import SALT_LENGTH, CardSecrets, Pins, pin_command
from simwallet.applet.card.spec import FID_ICCID, CardSpec
from simwallet.applet.errors import CardStatusError, CodecError
from simwallet.applet.protocols.apdu import CommandApdu, Ins, ResponseApdu
from simwallet.applet.protocols.efs import Iccid

logger = logging.getLogger(__name__)

# The card image's key for the registry's own state, beside the applications' states keyed by AID hex.
REGISTRY_STATE_KEY: Final = "gp"
SW_OK: Final = 0x9000
SW_CHANNEL: Final = 0x6881
SW_SECURE_MESSAGING: Final = 0x6882
SW_CONDITIONS: Final = 0x6985
SW_INS: Final = 0x6D00
SW_CLASS: Final = 0x6E00
SW_FAULT: Final = 0x6F00
# ISO/IEC 7816-4 §5.1: a short response carries at most 256 bytes; 61XX and 6CXX count in that unit.
SHORT_NE_MAX: Final = 256
# TS 102 221 §10.1.1: CLA b2-b1 the logical channel (0-3), b4-b3 secure messaging, for the 0X and 8X classes.
_CHANNEL_BITS = 0x03
_SM_BITS = 0x0C
# TS 102 221 §11.2: the CAT commands, CLA 80.
_TOOLKIT_INS = frozenset({Ins.TERMINAL_PROFILE, Ins.FETCH, Ins.TERMINAL_RESPONSE, Ins.ENVELOPE})
_CLA_PROPRIETARY = 0x80
# SELECT P2 (TS 102 221 Table 11.2): b4-b3 00 FCI, 01 FCP, 11 no data; b6-b5 session control; b2-b1 occurrence.
_P2_RESPONSE_MASK = 0x0C
_P2_NO_DATA = 0x0C
_P2_FMD = 0x08
_P2_TERMINATE = 0x40
# ISO/IEC 7816-4 §5.3.1.3: a DF name is at most 16 bytes.
_DF_NAME_LENGTH_MAX = 16


def iccid_to_bcd(iccid: str) -> bytes:
    """EF.ICCID content (TS 102 221 §13.2): digits in swapped nibbles, padded with F to 10 bytes."""
    return Iccid(check_iccid(iccid)).to_bytes()


class UiccServices:
    """What the card offers the applications it hosts (:class:`~simwallet.applet.card.app.CardServices`)."""

    def __init__(self, uicc: Uicc) -> None:
        self._uicc = uicc

    @property
    def iccid(self) -> bytes:
        return bytes(self._uicc.fs.file("MF/EF.ICCID").data)

    def persist(self) -> None:
        self._uicc.persist()

    def pin_verified(self, key_reference: int) -> bool:
        return self._uicc.pins.is_verified(key_reference)

    def read_file(self, path: str) -> bytes:
        """A transparent EF's bytes (or a record EF's records joined), by path, regardless of access conditions.

        For the card's own applications (the wallet reads EF.LI); nothing outside the card reaches this.
        """
        return self._uicc.file_content(path)


class Uicc:
    """A UICC with a file system, PINs, optional applications and toolkit; implements the vpcd link's ``Card``.

    Build one with :meth:`manufacture` (a new card) or :meth:`load` (a card from its image).
    """

    def __init__(
        self,
        spec: CardSpec,
        fs: FileSystem,
        pins: Pins,
        iccid: str,
        *,
        store: CardStore | None = None,
        registry: ApplicationRegistry | None = None,
        toolkit: Toolkit | None = None,
        app_states: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.fs = fs
        self.pins = pins
        self.iccid = iccid
        self._store = store
        self._registry = registry
        self._toolkit = toolkit
        self._app_states: dict[str, Any] = dict(app_states or {})
        self._registry_state_source: Callable[[], Mapping[str, Any]] | None = None
        self.services: CardServices = UiccServices(self)
        self._channel = Channel(fs.mf)
        self._ops = FileOps(fs, pins, self._channel)
        self._pending = b""

    def __repr__(self) -> str:
        return f"Uicc({self.spec.name!r}, iccid={self.iccid!r})"

    # -- making, loading, keeping ---------------------------------------------------------------------

    @classmethod
    def manufacture(
        cls,
        spec: CardSpec,
        iccid: str,
        secrets: CardSecrets,
        store: CardStore | None,
        registry: ApplicationRegistry | None = None,
        toolkit: Toolkit | None = None,
        *,
        rng: Callable[[int], bytes] = token_bytes,
    ) -> Uicc:
        """A new card of type ``spec``: EF.ICCID written, PINs set from ``secrets``, image created in ``store``.

        ``rng`` draws the salt of the PIN digests; ``store`` None makes a card that forgets everything when dropped.
        """
        fs = FileSystem(spec.files)
        iccid_file = fs.mf.child_by_fid(FID_ICCID)
        assert iccid_file is not None, "CardSpec guarantees EF.ICCID"
        iccid_file.data = bytearray(iccid_to_bcd(iccid))
        pins = Pins.manufacture(spec.pins, secrets, rng(SALT_LENGTH))
        card = cls(spec, fs, pins, iccid, store=store, registry=registry, toolkit=toolkit)
        if store is not None:
            store.create(card.image())
        return card

    @classmethod
    def load(
        cls,
        store: CardStore,
        iccid: str,
        spec: CardSpec,
        registry: ApplicationRegistry | None = None,
        toolkit: Toolkit | None = None,
    ) -> Uicc:
        """The card ``iccid`` as its image in ``store`` left it; ImageError if the image does not fit ``spec``."""
        image = store.load(iccid)
        if image.card_type != spec.name:
            raise ImageError(f"card {iccid} is of type {image.card_type}, not {spec.name}")
        fs = FileSystem(spec.files)
        try:
            fs.restore(image.files)
            pins = Pins.restore(spec.pins, image.salt, image.pins)
        except ImageError:
            raise
        except CodecError as exc:
            raise ImageError(f"card {iccid}: {exc.message}") from exc
        return cls(spec, fs, pins, iccid, store=store, registry=registry, toolkit=toolkit, app_states=dict(image.apps))

    def attach(self, *, registry: ApplicationRegistry | None = None, toolkit: Toolkit | None = None) -> None:
        """Wire the applications and the toolkit after the card exists (they need its ``services``)."""
        if registry is not None:
            self._registry = registry
        if toolkit is not None:
            self._toolkit = toolkit

    def set_registry_state_source(self, source: Callable[[], Mapping[str, Any]] | None) -> None:
        """Have every save also keep ``source()`` (the registry's own state: GP life cycles, instances) under ``gp``."""
        self._registry_state_source = source

    def app_state(self, aid: bytes | str) -> dict[str, Any] | None:
        """The state an application (by AID) last persisted, or the registry's (key ``gp``), to rebuild them after :meth:`load`."""
        state = self._app_states.get(aid.hex().upper() if isinstance(aid, bytes) else aid)
        return dict(state) if isinstance(state, Mapping) else None

    def registry_state(self) -> dict[str, Any] | None:
        """What the registry state source returned at the last save, if there was one."""
        return self.app_state(REGISTRY_STATE_KEY)

    def image(self, *, apps: bool = True) -> CardImage:
        """The card image as it stands: files, PIN digests and counters, and the applications' exported states.

        ``apps=False`` reuses the applications' states as last exported: the card's own commands (a file
        written, a PIN counter) change none of them, and applications persist their own changes.
        """
        if apps:
            self._export_app_states()
        elif self._registry_state_source is not None and REGISTRY_STATE_KEY not in self._app_states:
            self._app_states[REGISTRY_STATE_KEY] = dict(self._registry_state_source())
        return CardImage(self.spec.name, self.iccid, self.pins.salt, self.pins.export(), self.fs.export(), dict(self._app_states))

    def _export_app_states(self) -> None:
        registry = self._registry
        if registry is not None:
            states: dict[str, Any] = {app.aid.hex().upper(): app.export_state() for app in registry}
            states[REGISTRY_STATE_KEY] = self._app_states.get(REGISTRY_STATE_KEY)
            self._app_states = {k: v for k, v in states.items() if v is not None}
        if self._registry_state_source is not None:
            self._app_states[REGISTRY_STATE_KEY] = dict(self._registry_state_source())

    def persist(self, *, apps: bool = True) -> None:
        """Write the card's changes now (no-op without a store); ``apps=False``: see :meth:`image`.

        The store gets the entries that may have changed (every application's state, the files written since
        the last save, the PINs) and logs those that did; it asks for the whole image when a snapshot is due,
        or an application is gone.
        """
        store = self._store
        if store is None:
            return
        saved_apps = set(self._app_states)
        if apps:
            self._export_app_states()
        files = self.fs.export_changes()
        changes = {"files": files or {}, "pins": self.pins.export(), "apps": self._app_states if apps else {}}
        if files is None or not saved_apps <= set(self._app_states) or not store.save_changes(self.iccid, changes):
            store.save(self.image(apps=False))

    def _persist_changes(self) -> None:
        """Write what a card command changed (files, PINs): one log line, or the whole image when the store asks for it."""
        files = self.fs.export_changes() if self._ops.changed else {}
        pins = self.pins.export() if self.pins.changed else {}
        self._ops.changed = self.pins.changed = False
        store = self._store
        if store is not None and (files is None or not store.save_changes(self.iccid, {"files": files, "pins": pins})):
            store.save(self.image(apps=False))

    # -- inspection (tests, tools) ------------------------------------------------------------------

    def file_content(self, path: str) -> bytes:
        """A transparent EF's bytes, or a record EF's records joined, by path (``ADF.USIM/EF.IMSI``)."""
        return self.fs.file(path).content()

    def file_records(self, path: str) -> list[bytes]:
        """A record EF's records, record 1 first."""
        return list(self.fs.file(path).records)

    def pin_tries(self, key_reference: int) -> int | None:
        state = self.pins.state(key_reference)
        return None if state is None else state.tries_left

    # -- the Card protocol ------------------------------------------------------------------------------

    def atr(self) -> bytes:
        return self.spec.atr

    def power_on(self) -> None:
        self._end_session()

    def reset(self) -> None:
        self._end_session()

    def power_off(self) -> None:
        self._end_session()

    def _end_session(self) -> None:
        self.pins.clear_session()
        self._channel.current_df, self._channel.current_ef, self._channel.current_adf = self.fs.mf, None, None
        self._channel.record, self._channel.app = 0, None
        self._pending = b""
        # A faulty application must not keep the card from powering down: log it and go on.
        parts: list[Application | Toolkit] = list(self._registry) if self._registry is not None else []
        if self._toolkit is not None:
            parts.append(self._toolkit)
        for part in parts:
            try:
                part.power_off()
            except Exception as exc:
                logger.error("UICC %s: power_off() of %s raised %s", self.iccid, type(part).__name__, type(exc).__name__)

    def apdu(self, capdu: bytes) -> bytes:
        ins = capdu[1] if len(capdu) > 1 else 0
        try:
            return self._process(capdu).to_bytes()
        except Exception as exc:
            # No payload in the log: PIN blocks and keys travel in APDU data.
            logger.error("UICC %s: INS %02X raised %s; answering 6F00", self.iccid, ins, type(exc).__name__)
            # The frames only: the exception's message may quote the data it choked on.
            logger.debug("UICC %s: where:\n%s", self.iccid, "".join(traceback.format_tb(exc.__traceback__)))
            self._pending = b""
            return SW_FAULT.to_bytes(2, "big")

    # -- the command loop ------------------------------------------------------------------------------------

    def _process(self, capdu: bytes) -> ResponseApdu:
        try:
            command = CommandApdu.from_bytes(capdu)
        except CodecError:
            self._pending = b""
            return ResponseApdu.status(SW_WRONG_LENGTH)
        pending, self._pending = self._pending, b""
        self._ops.changed = self.pins.changed = False
        try:
            response = self._route(command, pending)
        except CardStatusError as exc:
            response = ResponseApdu.status(exc.sw)
        finally:
            if self._ops.changed or self.pins.changed:
                self._persist_changes()
        return self._finish(command, response)

    def _finish(self, command: CommandApdu, response: ResponseApdu) -> ResponseApdu:
        data, sw = response.data, response.sw
        ne = command.le
        if data and (ne is None or len(data) > ne):
            keep = 0 if ne is None else ne
            data, self._pending = data[:keep], data[keep:]
            if sw == SW_OK:
                sw = 0x6100 | (min(len(self._pending), SHORT_NE_MAX) & 0xFF)
        # A secure-messaging response's status word is covered by its R-MAC (GP Amendment D §6.2.5), so
        # 9000 stays; the pending proactive command is signalled on the next plain command.
        if sw == SW_OK and self._toolkit is not None and not command.cla & _SM_BITS:
            waiting = self._toolkit.pending_length()
            if waiting > 0:
                sw = 0x9100 | (waiting & 0xFF)
        return ResponseApdu(data, sw)

    def _route(self, command: CommandApdu, pending: bytes) -> ResponseApdu:
        cla, ins = command.cla, command.ins
        sw = _class_error(cla, ins)
        if sw:
            return ResponseApdu.status(sw)
        app, iso = self._channel.app, cla & 0xF0 == 0x00
        if cla == _CLA_PROPRIETARY and ins in _TOOLKIT_INS and (self._toolkit is not None or app is None):
            return self._toolkit_command(command)
        if iso and ins == Ins.GET_RESPONSE and (pending or app is None):
            return self._get_response(command, pending)
        if iso and ins == Ins.SELECT:
            return self._select(command)
        if app is not None:
            return app.process(command)
        return self._card_command(command)

    def _card_command(self, command: CommandApdu) -> ResponseApdu:
        """A file, STATUS or PIN command while no application is selected."""
        cla, ins = command.cla, command.ins
        if cla & _SM_BITS:
            fail(SW_SECURE_MESSAGING)
        handler = (_ISO_COMMANDS if cla & 0xF0 == 0x00 else _PROPRIETARY_COMMANDS).get(ins)
        if handler is None:
            known = ins in _ISO_COMMANDS or ins in _PROPRIETARY_COMMANDS or ins in _TOOLKIT_INS or ins in (Ins.SELECT, Ins.GET_RESPONSE)
            fail(SW_CLASS if known else SW_INS)
        return handler(self, command)

    def _get_response(self, command: CommandApdu, pending: bytes) -> ResponseApdu:
        if not pending:
            return ResponseApdu.status(SW_CONDITIONS)
        self._pending = pending
        if command.p1 or command.p2:
            fail(SW_BAD_P1P2)
        ne = command.le
        if ne is None or (ne > len(pending) and ne != SHORT_NE_MAX):
            fail(0x6C00 | (min(len(pending), SHORT_NE_MAX) & 0xFF))
        self._pending = b""
        return ResponseApdu(pending, SW_OK)

    def _toolkit_command(self, command: CommandApdu) -> ResponseApdu:
        toolkit = self._toolkit
        if toolkit is None:
            return ResponseApdu.status(SW_INS)
        if command.p1 or command.p2:
            fail(SW_BAD_P1P2)
        if command.ins == Ins.TERMINAL_PROFILE:
            toolkit.terminal_profile(command.data)
            return ResponseApdu.status(SW_OK)
        if command.ins == Ins.TERMINAL_RESPONSE:
            toolkit.terminal_response(command.data)
            return ResponseApdu.status(SW_OK)
        if command.ins == Ins.ENVELOPE:
            if not command.data:
                fail(SW_WRONG_LENGTH)
            return ResponseApdu(toolkit.envelope(command.data), SW_OK)
        waiting = toolkit.pending_length()
        if waiting == 0:
            fail(SW_CONDITIONS)
        if command.le is not None and command.le not in (waiting, SHORT_NE_MAX):
            fail(0x6C00 | (waiting & 0xFF))
        return ResponseApdu(toolkit.fetch(), SW_OK)

    # -- SELECT ---------------------------------------------------------------------------------------------

    def _select(self, command: CommandApdu) -> ResponseApdu:
        if command.cla & _SM_BITS:
            fail(SW_SECURE_MESSAGING)
        if command.p1 == 0x04:
            return self._select_by_name(command)
        if command.p2 & ~_P2_RESPONSE_MASK & 0xFF or command.p2 & _P2_RESPONSE_MASK == _P2_FMD:
            fail(SW_BAD_P1P2)
        return self._enter(self._ops.select_target(command), command.p2)

    def _enter(self, file: File, p2: int) -> ResponseApdu:
        self._drop_app()
        self._channel.enter(file)
        sw = SW_OK if file.usable() else 0x6283
        if p2 & _P2_RESPONSE_MASK == _P2_NO_DATA:
            return ResponseApdu.status(sw)
        return ResponseApdu(self.fs.fcp(file, self.pins).to_bytes(), sw)

    def _drop_app(self) -> None:
        app, self._channel.app = self._channel.app, None
        if app is not None:
            app.deselect()

    def _select_by_name(self, command: CommandApdu) -> ResponseApdu:
        p2, prefix = command.p2, command.data
        if not 1 <= len(prefix) <= _DF_NAME_LENGTH_MAX:
            fail(SW_WRONG_LENGTH)
        if p2 & 0xB0 or p2 & _P2_RESPONSE_MASK == _P2_FMD:
            fail(SW_BAD_P1P2)
        candidates = aid_candidates(self.fs, self._registry, prefix)
        current: File | Application | None = self._channel.app or self._channel.current_adf
        if p2 & _P2_TERMINATE:
            # TS 102 221 §11.1.1.2: ending the session of the current application.
            if current is None or not any(c is current for c in candidates):
                fail(SW_NOT_FOUND)
            self._drop_app()
            self._channel.current_adf = None
            self._channel.enter(self.fs.mf)
            return ResponseApdu.status(SW_OK)
        target = occurrence(candidates, current, p2 & 0x03)
        if isinstance(target, File):
            return self._enter(target, p2)
        self._drop_app()
        response = target.select(command)
        if response.is_success():
            self._channel.app = target
        return response

    # -- PIN and file commands ------------------------------------------------------------------------------

    def _pin(self, command: CommandApdu) -> ResponseApdu:
        return pin_command(self.pins, command)

    def _read_binary(self, command: CommandApdu) -> ResponseApdu:
        return self._ops.read_binary(command)

    def _update_binary(self, command: CommandApdu) -> ResponseApdu:
        return self._ops.update_binary(command)

    def _read_record(self, command: CommandApdu) -> ResponseApdu:
        return self._ops.read_record(command)

    def _update_record(self, command: CommandApdu) -> ResponseApdu:
        return self._ops.update_record(command)

    def _search_record(self, command: CommandApdu) -> ResponseApdu:
        return self._ops.search_record(command)

    def _activate(self, command: CommandApdu) -> ResponseApdu:
        self._drop_app()
        return self._ops.set_active(command, active=True)

    def _deactivate(self, command: CommandApdu) -> ResponseApdu:
        self._drop_app()
        return self._ops.set_active(command, active=False)

    def _status(self, command: CommandApdu) -> ResponseApdu:
        return self._ops.status(command)


def _class_error(cla: int, ins: int) -> int:
    """The status word a CLA earns before any routing (TS 102 221 §10.1.1), 0 if none."""
    kind = cla & 0xF0
    if kind in (0x40, 0x50, 0x60, 0x70, 0xC0, 0xD0, 0xE0) or (kind == 0xF0 and cla != 0xFF):
        return SW_CHANNEL  # further logical channels 4-19
    if kind not in (0x00, 0x80):
        return SW_CLASS
    if cla & _CHANNEL_BITS or ins == Ins.MANAGE_CHANNEL:
        return SW_CHANNEL
    return 0


_Handler = Callable[[Uicc, CommandApdu], ResponseApdu]
# TS 102 221 Table 10.5: commands with CLA 0X.
_ISO_COMMANDS: dict[int, _Handler] = {
    Ins.READ_BINARY: Uicc._read_binary,
    Ins.UPDATE_BINARY: Uicc._update_binary,
    Ins.READ_RECORD: Uicc._read_record,
    Ins.UPDATE_RECORD: Uicc._update_record,
    Ins.SEARCH_RECORD: Uicc._search_record,
    Ins.VERIFY: Uicc._pin,
    Ins.CHANGE: Uicc._pin,
    Ins.DISABLE: Uicc._pin,
    Ins.ENABLE: Uicc._pin,
    Ins.UNBLOCK: Uicc._pin,
    Ins.DEACTIVATE_FILE: Uicc._deactivate,
    Ins.ACTIVATE_FILE: Uicc._activate,
}
# TS 102 221 Table 10.5: commands with CLA 8X (the CAT ones are routed before these).
_PROPRIETARY_COMMANDS: dict[int, _Handler] = {
    Ins.STATUS: Uicc._status,
}
