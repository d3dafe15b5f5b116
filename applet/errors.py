"""The error root of :mod:`simwallet.applet`.

Spec: ISO/IEC 7816-4 §5.1.3 and ETSI TS 102 221 §10.2.1 (status words);
GlobalPlatform Card Specification v2.3 Amendment D (SCP03 status words).

Every error the card side raises derives from :class:`AppletError`. The
hierarchy, and who is at fault for each::

    AppletError
    ├── CodecError (ValueError)           remote: bytes that do not decode; local: a value with no wire encoding
    │   └── TruncatedError                remote: the bytes end early; more bytes could cure it
    ├── CardStatusError                   remote: a card answered an error status word (``sw``)
    ├── SecurityError                     remote: a MAC, cryptogram or counter did not verify
    │   └── SecureChannelError            remote: an SCP03 check failed (``sw``: what the card answers or sent)
    ├── SessionStateError (RuntimeError)  local misuse: an SCP03 session method called out of order
    ├── VpcdStateError (RuntimeError)     local misuse: the card side used a vpcd connection out of turn
    └── CardFault                         local: a card object broke the ``Card`` contract of the vpcd link

* :class:`CodecError` — bytes that do not decode (a remote protocol error: the
  reader, the card or the network sent them), or a value that cannot be put on
  the wire. It carries the ``offset`` of the offending byte where known.
  :class:`TruncatedError` is the kind that more bytes could cure.
* :class:`CardStatusError` — a card answered with an error status word
  (ISO/IEC 7816-4 §5.1.3, ETSI TS 102 221 §10.2.1); carries ``sw``.
* :class:`SecurityError` — a MAC, cryptogram or counter did not verify.
  :class:`SecureChannelError` is the SCP03 kind (GP Amendment D); it carries
  the status word that goes with the failure in ``sw``.
* :class:`SessionStateError`, :class:`VpcdStateError` — this process called a
  sans-I/O protocol object out of order; a bug of the caller, never of the
  peer. An SCP03 session is over after it.
* :class:`CardFault` — the card object served by
  :class:`~simwallet.applet.card.link.VpcdLink` raised or returned something
  the contract forbids; the link drops the connection.

The modules that raise them re-export them (:mod:`.protocols.scp03`,
:mod:`.protocols.vpcd`, :mod:`.card.link`), so both import paths work.
"""

from __future__ import annotations

from typing import Final

# ISO/IEC 7816-4 §5.1.3, SW 6982 "security status not satisfied": what a card answers
# a command whose secure messaging fails (GP Amendment D).
_SW_SECURITY_STATUS_NOT_SATISFIED: Final = 0x6982


class AppletError(Exception):
    """Root of every error raised by :mod:`simwallet.applet`."""


class CodecError(AppletError, ValueError):
    """Malformed bytes, or a field value that has no wire encoding.

    ``offset`` is the index of the offending byte in the buffer handed to the
    parser, when the parser knows it; ``None`` otherwise (for example when a
    dataclass refuses a field value before anything was encoded).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        if self.offset is None:
            return self.message
        return f"{self.message} (at offset {self.offset})"


class TruncatedError(CodecError):
    """The bytes end before the structure does: more bytes could complete it.

    A reader assembling a structure from chunks (READ BINARY in pieces, a
    stream of concatenated messages) may wait for more data on this error and
    give up on any other :class:`CodecError`.
    """


class CardStatusError(AppletError):
    """A card answered a command with an error or warning status word.

    ``sw`` is the 16-bit status word (SW1 in the high byte); ``meaning`` is its
    reading from :func:`simwallet.applet.protocols.apdu.describe_sw` unless the
    caller supplies a more specific one.
    """

    def __init__(self, sw: int, meaning: str | None = None) -> None:
        if meaning is None:
            # Imported here: the codec module imports this one.
            from simwallet.applet.protocols.apdu import describe_sw

            meaning = describe_sw(sw)
        super().__init__(f"{sw:04X}: {meaning}")
        self.sw = sw
        self.meaning = meaning

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF


class SecurityError(AppletError):
    """A MAC, cryptogram or counter failed to verify.

    Every ``verify_…()`` function of the card side raises this instead of
    returning a bool. The message never contains key material or the expected
    value, only what was being checked.
    """


class SecureChannelError(SecurityError):
    """A secure channel check failed; ``sw`` is the status word that goes with it.

    On the card side ``sw`` is what the card answers (``6982`` for a command
    whose C-MAC or encryption fails, ``6300`` for a rejected EXTERNAL
    AUTHENTICATE); on the host side it is the status word the card sent.
    """

    def __init__(self, message: str, sw: int = _SW_SECURITY_STATUS_NOT_SATISFIED) -> None:
        super().__init__(message)
        self.message = message
        self.sw = sw

    def __str__(self) -> str:
        return f"{self.sw:04X}: {self.message}"


class SessionStateError(AppletError, RuntimeError):
    """A session method was called out of order (local misuse); the session is now unusable."""


class VpcdStateError(AppletError, RuntimeError):
    """The card side used the connection out of turn (local fault).

    Answering when nothing was asked, asking for the next event while a
    response is still owed, or feeding data after the end of the stream.
    Junk from vpcd is a :class:`~simwallet.applet.errors.CodecError` instead.
    """


class CardFault(AppletError):
    """The card object broke the :class:`~simwallet.applet.card.link.Card` contract; the link drops the connection."""
