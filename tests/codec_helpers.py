"""Shared helpers of the codec tests (STYLE.md point 11: every codec both ways with one helper)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def assert_both_ways(parse: Callable[[bytes], T], build: Callable[[T], bytes], data: bytes, obj: T) -> None:
    """The bytes parse to the object and the object builds the bytes."""
    assert parse(data) == obj
    assert build(obj) == data


def h(text: str) -> bytes:
    """Bytes from spaced hex, as vectors are written."""
    return bytes.fromhex(text)
