"""What the virtual UICC and the applications it hosts expect of each other.

Spec: ETSI TS 102 221 §8.5 (application selection by AID), §10.1 (commands);
GlobalPlatform Card Specification 2.3 §6 (the registry and the life cycle of
applications); ETSI TS 102 223 §6 (the proactive UICC), §7 (envelopes).

Theory of operation
-------------------
The UICC (:mod:`simwallet.applet.card.uicc`) owns the ISO 7816 file system,
the PINs and the command loop. Everything that is selected by AID and is not
an ADF of the file system is an :class:`Application`: the GlobalPlatform
issuer security domain and the applets it installs. The UICC finds them
through an :class:`ApplicationRegistry` (the issuer security domain's GP
registry) and hands each one a :class:`CardServices` so that it can persist
its state and ask what the cardholder has verified.

The Card Application Toolkit commands (TERMINAL PROFILE, FETCH, TERMINAL
RESPONSE, ENVELOPE) go to one :class:`Toolkit` engine; after every command the
UICC turns a 9000 into 91XX when the engine has a proactive command pending
(TS 102 221 §7.4.2.2, TS 102 223 §6.2).

The card object runs on one thread (the vpcd link's); nothing here locks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from simwallet.applet.protocols.apdu import CommandApdu, ResponseApdu

# JSON-able state an application hands the card to keep across power cycles and restarts.
AppState = Mapping[str, Any]


class CardServices(Protocol):
    """What the card offers the applications it hosts."""

    @property
    def iccid(self) -> bytes:
        """The card's ICCID as stored in EF.ICCID (10 bytes, swapped BCD)."""
        ...

    def persist(self) -> None:
        """Write the card image now; an application calls it after every change of its state."""
        ...

    def pin_verified(self, key_reference: int) -> bool:
        """Whether the PIN or ADM key ``key_reference`` (TS 102 221 §9.5.1) is verified in this session."""
        ...

    def read_file(self, path: str) -> bytes:
        """The content of the card's EF at ``path`` (``ADF.USIM/EF.LI``), for the card's own applications."""
        ...


class Application(Protocol):
    """An application selected by AID (an applet or a security domain)."""

    @property
    def aid(self) -> bytes: ...

    def select(self, command: CommandApdu) -> ResponseApdu:
        """SELECT by AID reached this application; answer with its FCI (or an error status word)."""
        ...

    def deselect(self) -> None:
        """Another application or file was selected on the channel: drop session state."""
        ...

    def process(self, command: CommandApdu) -> ResponseApdu:
        """Any command while this application is selected; error status words are answered, not raised."""
        ...

    def power_off(self) -> None:
        """The card lost power: secure channels and verified states end."""
        ...

    def export_state(self) -> dict[str, Any]:
        """JSON-able state for the card image (keys included: the card image is the card's own memory)."""
        ...


class ApplicationRegistry(Protocol):
    """The applications the card can select by AID: the GlobalPlatform registry."""

    def find(self, aid_prefix: bytes) -> Application | None:
        """The selectable application whose AID starts with ``aid_prefix`` (ISO/IEC 7816-4 §7.1.1, first occurrence)."""
        ...

    def __iter__(self) -> Iterator[Application]: ...

    def card_locked(self) -> bool:
        """GP card life cycle CARD_LOCKED or TERMINATED: only the issuer security domain may be selected."""
        ...


class Toolkit(Protocol):
    """The Card Application Toolkit engine (TS 102 223)."""

    def terminal_profile(self, profile: bytes) -> None:
        """TERMINAL PROFILE (TS 102 221 §11.2.1): the ME's capabilities; starts the toolkit session."""
        ...

    def pending_length(self) -> int:
        """Length of the proactive command waiting for FETCH, 0 if none (the XX of 91XX)."""
        ...

    def fetch(self) -> bytes:
        """FETCH (TS 102 221 §11.2.2): the pending proactive command, BER-TLV tag D0."""
        ...

    def terminal_response(self, data: bytes) -> None:
        """TERMINAL RESPONSE (TS 102 221 §11.2.3) to the last fetched command."""
        ...

    def envelope(self, data: bytes) -> bytes:
        """ENVELOPE (TS 102 221 §11.2.4): menu selection, SMS-PP download …; returns response data."""
        ...

    def power_off(self) -> None:
        """The card lost power: pending proactive commands are dropped."""
        ...
