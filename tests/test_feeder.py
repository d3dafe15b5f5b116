"""The card feeder: the next card comes when the host unpowers a used one, never on a lost link or a mere look."""

from __future__ import annotations

from simwallet.applet.card.feeder import SW_NO_CARD, Feeder


class Tiny:
    def __init__(self, name: str) -> None:
        self.name = name
        self.powered = False

    def atr(self) -> bytes:
        return b"\x3b\x00"

    def power_on(self) -> None:
        self.powered = True

    def power_off(self) -> None:
        self.powered = False

    def reset(self) -> None:
        self.powered = True

    def apdu(self, capdu: bytes) -> bytes:
        return self.name.encode() + b"\x90\x00"


def test_turns_follow_unpowering_used_cards() -> None:
    a, b = Tiny("a"), Tiny("b")
    changes: list[str | None] = []
    emptied: list[bool] = []
    feeder = Feeder([a, b], on_change=lambda card: changes.append(getattr(card, "name", None)), on_empty=lambda: emptied.append(True))
    feeder.power_on()
    feeder.power_off()  # looked at only: a stays
    assert feeder.current is a and feeder.fed == 1
    feeder.power_on()
    assert feeder.apdu(b"\x00\xa4\x00\x00") == b"a\x90\x00"
    feeder.removed()  # the link to vpcd dropped: a loses power but stays
    assert feeder.current is a and not a.powered
    feeder.power_on()
    feeder.apdu(b"\x00\xa4\x00\x00")
    feeder.reset()  # a warm reset is not a turn either
    feeder.apdu(b"\x00\xa4\x00\x00")
    feeder.power_off()
    assert feeder.current is b and changes == ["b"] and feeder.remaining == 0
    feeder.power_on()
    assert feeder.apdu(b"\x00") == b"b\x90\x00"
    feeder.power_off()
    assert feeder.empty and changes == ["b", None] and emptied == [True]
    assert feeder.apdu(b"\x00") == SW_NO_CARD
