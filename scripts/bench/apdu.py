#!/usr/bin/env python3
"""APDU round trips through the real PC/SC stack, tuned socket beside plain socket, in one run.

pyscard → a private pcscd (:class:`simwallet.provisioning.pcscd.PrivatePcscd`,
vpcd on Debian's ports 35963/35964 unless ``--base-port``) → vpcd →
:class:`simwallet.applet.card.link.VpcdLink` → a card that answers
SELECT MF (``00 A4 00 04 02 3F 00``) with 9000.

1. The link as shipped (``TCP_NODELAY``, ``TCP_QUICKACK`` re-armed after every
   recv): ``--tuned N`` SELECT MF (default 2000).
2. The same link with ``tune_socket=False``: ``--plain N`` SELECT MF
   (default 50; a plain socket can be slow enough that more only costs time).

Each run connects once (SCardConnect, T=0), sends a few warm-up APDUs, then
times N back-to-back SCardTransmit calls. Prints APDUs/s and the mean round
trip of each, and ``ratio: X.XX`` (tuned / plain APDU rate).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from simwallet.applet.card.link import VpcdLink
from simwallet.applet.protocols.vpcd import VPCD_PORT
from simwallet.provisioning.pcscd import PrivatePcscd

SELECT_MF = [0x00, 0xA4, 0x00, 0x04, 0x02, 0x3F, 0x00]
SW_OK = b"\x90\x00"
ATR = bytes.fromhex("3B9F96801FC78031E073FE211B633A204F8300900092")
WARM_UP = 5
PRESENCE_WAIT_S = 10.0


class SelectCard:
    """Answers SELECT MF with 9000 and anything else with 6D00 (INS not supported)."""

    def atr(self) -> bytes:
        return ATR

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def apdu(self, capdu: bytes) -> bytes:
        return SW_OK if capdu == bytes(SELECT_MF) else b"\x6d\x00"


@dataclass
class Run:
    label: str
    apdus: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.apdus / self.seconds

    @property
    def mean_ms(self) -> float:
        return self.seconds / self.apdus * 1000


def wait_for_card(context: int, reader: str, present: bool) -> None:
    from smartcard.scard import SCARD_STATE_PRESENT, SCARD_STATE_UNAWARE, SCardGetStatusChange  # type: ignore[import-untyped]

    deadline = time.monotonic() + PRESENCE_WAIT_S
    while time.monotonic() < deadline:
        _, states = SCardGetStatusChange(context, 1, [(reader, SCARD_STATE_UNAWARE)])
        if states and bool(states[0][1] & SCARD_STATE_PRESENT) == present:
            return
        time.sleep(0.02)
    raise SystemExit(f"bench: {reader} did not report {'a card' if present else 'no card'} within {PRESENCE_WAIT_S} s")


def measure(label: str, pcscd: PrivatePcscd, context: int, apdus: int, *, tune_socket: bool) -> Run:
    from smartcard.scard import (
        SCARD_LEAVE_CARD,
        SCARD_PCI_T0,
        SCARD_PROTOCOL_T0,
        SCARD_S_SUCCESS,
        SCARD_SHARE_SHARED,
        SCardConnect,
        SCardDisconnect,
        SCardGetErrorMessage,
        SCardTransmit,
    )

    reader = pcscd.reader_names[0]
    with VpcdLink(SelectCard(), port=pcscd.ports[0], tune_socket=tune_socket):
        wait_for_card(context, reader, present=True)
        hresult, handle, _protocol = SCardConnect(context, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0)
        if hresult != SCARD_S_SUCCESS:
            raise SystemExit(f"bench: SCardConnect: {SCardGetErrorMessage(hresult)}")
        try:
            for _ in range(WARM_UP):
                SCardTransmit(handle, SCARD_PCI_T0, SELECT_MF)
            started = time.perf_counter()
            for _ in range(apdus):
                hresult, response = SCardTransmit(handle, SCARD_PCI_T0, SELECT_MF)
                if hresult != SCARD_S_SUCCESS or bytes(response) != SW_OK:
                    raise SystemExit(f"bench: SELECT MF failed: {SCardGetErrorMessage(hresult)} {bytes(response).hex()}")
            seconds = time.perf_counter() - started
        finally:
            SCardDisconnect(handle, SCARD_LEAVE_CARD)
    wait_for_card(context, reader, present=False)
    return Run(label, apdus, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tuned", type=int, default=2000, help="SELECT MF with the tuned socket (default 2000)")
    parser.add_argument("--plain", type=int, default=50, help="SELECT MF with a plain socket (default 50)")
    parser.add_argument("--base-port", type=int, default=VPCD_PORT, help=f"vpcd's first port (default {VPCD_PORT})")
    args = parser.parse_args()

    with PrivatePcscd(base_port=args.base_port) as pcscd:
        pcscd.activate()  # before this process's first PC/SC call
        from smartcard.scard import SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCardEstablishContext, SCardReleaseContext

        hresult, context = SCardEstablishContext(SCARD_SCOPE_USER)
        if hresult != SCARD_S_SUCCESS:
            raise SystemExit("bench: cannot reach the private pcscd")
        try:
            tuned = measure("tuned (TCP_NODELAY + TCP_QUICKACK)", pcscd, context, args.tuned, tune_socket=True)
            plain = measure("plain socket", pcscd, context, args.plain, tune_socket=False)
        finally:
            SCardReleaseContext(context)

    print(f"pyscard -> pcscd -> vpcd (ports {pcscd.ports[0]}/{pcscd.ports[1]}) -> VpcdLink, SELECT MF")
    for run in (tuned, plain):
        print(f"{run.label}: {run.apdus} APDUs in {run.seconds:.3f} s = {run.rate:,.0f} APDU/s (mean round trip {run.mean_ms:.3f} ms)")
    print(f"ratio: {tuned.rate / plain.rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
