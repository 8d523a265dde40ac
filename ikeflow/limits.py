"""Caps on the state the core keeps, so memory grows with these, never with the capture.

Every table that a capture could grow without end (peer pairs, IKE SAs, ESP
SAs, IP fragment buffers, ICMP errors, listed examples) stops taking new
entries at its cap.  What it turns away is counted in `Stats.overflow` under
the cap's name and reported once as an `overflow` finding, so nothing is lost
silently.  The defaults keep a flood of any one kind under 150 MiB; a
concentrator with 100,000 tunnels needs `--max-sas 100000 --max-pairs 100000
--max-esp-flows 400000` and about 1 GB.  The commands' `--max-*` options set
them (`cli.limit_options`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """The most entries of each kind the analysis keeps."""

    peer_pairs: int = 50_000  # addresses talking IKE/ESP (about 1 KB each with its verdict)
    ike_sas: int = 10_000  # IKE SAs (version + initiator SPI; 5-7 KB each with a first message and a finding)
    esp_flows: int = 50_000  # ESP SAs (destination + SPI; about 600 bytes each, twice when read on two cores)
    fragment_buffers: int = 256  # IP datagrams being reassembled at once (a kernel keeps a few MB of them)
    fragments_per_datagram: int = 128  # a 64 KiB datagram in 1280-byte IPv6 fragments needs 52
    fragment_timeout: float = 30.0  # seconds a datagram may wait for its fragments (Linux ipfrag_time)
    incomplete_listed: int = 1000  # incomplete datagrams listed one by one (the rest are counted)
    icmp_per_pair: int = 100  # ICMP errors kept per peer pair (the rest are counted)


DEFAULT = Limits()
