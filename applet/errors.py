"""The error root of :mod:`simwallet.applet`.

Every error the card side raises derives from :class:`AppletError`. The split
follows who is at fault:

* :class:`CodecError` — bytes that do not decode (a remote protocol error: the
  reader, the card or the network sent them), or a value that cannot be put on
  the wire. It carries the ``offset`` of the offending byte where known.
  :class:`TruncatedError` is the kind that more bytes could cure.
* :class:`CardStatusError` — a card answered with an error status word
  (ISO/IEC 7816-4 §5.1.3, ETSI TS 102 221 §10.2.1); carries ``sw``.
* :class:`SecurityError` — a MAC, cryptogram or counter did not verify.
"""

from __future__ import annotations


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
