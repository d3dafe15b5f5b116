"""PC/SC helpers for end-to-end tests: bounded waits and thin wrappers over pyscard's scard API.

The fixtures that start a private pcscd (``pcsc_run_dir``, ``pcscd``,
``context``) live in conftest.py. libpcsclite binds a process to one socket
path on its first PC/SC call (see :mod:`simwallet.provisioning.pcscd`), so
every pcscd a test session starts for in-process clients reuses one session
``run_dir``; each module gets its own pcscd on a free pair of vpcd ports.

No timing is asserted here: waits are bounded, throughput lives in ``scripts/bench/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from smartcard.scard import (  # type: ignore[import-untyped]
    SCARD_E_TIMEOUT,
    SCARD_PCI_T0,
    SCARD_PROTOCOL_T0,
    SCARD_PROTOCOL_T1,
    SCARD_S_SUCCESS,
    SCARD_SHARE_SHARED,
    SCARD_STATE_PRESENT,
    SCARD_STATE_UNAWARE,
    SCardConnect,
    SCardGetErrorMessage,
    SCardGetStatusChange,
    SCardTransmit,
)

# Bounded waits (not assertions about speed): pcscd polls card presence about every 0.4 s.
PRESENCE_WAIT_S = 5.0
POLL_S = 0.02


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = PRESENCE_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def check(hresult: int, what: str) -> None:
    if hresult != SCARD_S_SUCCESS:
        pytest.fail(f"{what}: {SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})")



def reader_state(context: int, reader: str) -> tuple[int, bytes]:
    hresult, states = SCardGetStatusChange(context, 0, [(reader, SCARD_STATE_UNAWARE)])
    if hresult == SCARD_E_TIMEOUT:  # pcsc-lite answers a zero timeout with "timeout" when nothing changed
        hresult, states = SCardGetStatusChange(context, 1, [(reader, SCARD_STATE_UNAWARE)])
    check(hresult, f"SCardGetStatusChange({reader})")
    _, state, atr = states[0]
    return state, bytes(atr)


def wait_for_card(context: int, reader: str, present: bool = True) -> bytes:
    """Wait until ``reader`` reports a card (or none); return the ATR pcscd holds."""
    found: list[bytes] = []

    def settled() -> bool:
        state, atr = reader_state(context, reader)
        found[:] = [atr]
        return bool(state & SCARD_STATE_PRESENT) == present

    wait_until(settled, f"{reader} to report {'a card' if present else 'no card'}")
    return found[0]


def connect(context: int, reader: str) -> tuple[int, int]:
    hresult, handle, protocol = SCardConnect(context, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
    check(hresult, f"SCardConnect({reader})")
    return handle, protocol


def transmit(handle: int, capdu: bytes) -> bytes:
    hresult, response = SCardTransmit(handle, SCARD_PCI_T0, list(capdu))
    check(hresult, "SCardTransmit")
    return bytes(response)


