"""pluto key source (being written)."""

from __future__ import annotations

from ikeflow.keys.ring import KeyRing


def parse(name: str, text: str, where: str) -> KeyRing | None:
    """The keys in this file, or None if it is not this kind of source."""
    return None
