"""What the model tells its listeners (live views, compare, the JSON message spool), as it happens.

`Analyzer.listeners` are callables taking one event; each event is one of
these frozen classes, so that a listener matches on the type, not on a string.
`pair_key` names the peer pair an event (and every per-pair table) belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ikeflow.model.ikesa import IkeSa, Seen


@dataclass(frozen=True, slots=True)
class MessageSeen:
    """An IKE message, labelled (MM3, IKE_AUTH, ...) within its IKE SA."""

    sa: IkeSa
    seen: Seen


@dataclass(frozen=True, slots=True)
class EspSeen:
    """An ESP packet counted by the general decoder (the reader's ESP fast path does not tell)."""

    spi: int
    seq: int
    time: float
    ref: int
    size: int = 0  # bytes of the IP datagram


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP error about IKE or ESP; also kept per peer pair (`PeerPair.icmp`)."""

    ref: int
    time: float
    src: bytes  # who sent the ICMP error
    text: str
    about: tuple  # quoted (src, sport, dst, dport)
    sa: tuple | None  # (version, ispi) when the quote reaches the IKE header


Event = MessageSeen | EspSeen | IcmpError


def pair_key(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    """The key of the peer pair of two addresses, whichever sent."""
    return (a, b) if a <= b else (b, a)
