"""Caps on the state the core keeps, so memory grows with these, never with the capture.

Every table that a capture could grow without end (peer pairs, IKE SAs, ESP
SAs, IP fragment buffers, ICMP errors, listed examples) stops taking new
entries at its cap.  What it turns away is counted in `Stats.overflow` under
the cap's name and reported once as an `overflow` finding, so nothing is lost
silently.  The defaults fit a concentrator with 100,000 tunnels (about 14 KB
a tunnel: 1.4 GB at that size), while floods stay under 150 MiB: IKE SAs
their responder never answered and ESP SAs with a single packet (what a flood
of new SPIs makes) are capped apart, and past their caps the oldest are
forgotten, as a responder drops its oldest half-open SAs.  The commands'
`--max-*` options set them (`cli.analysis_options`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """The most entries of each kind the analysis keeps."""

    peer_pairs: int = 200_000  # addresses talking IKE/ESP (about 1 KB each with its verdict)
    ike_sas: int = 200_000  # IKE SAs (version + initiator SPI; 5-7 KB each with a first message and a finding)
    half_open_sas: int = 10_000  # IKE SAs their responder has not answered: past it the oldest are forgotten
    esp_flows: int = 400_000  # ESP SAs (destination + SPI; about 600 bytes each, twice when read on two cores)
    new_esp_flows: int = 20_000  # ESP SAs with a single packet so far: past it the oldest are forgotten (SPI scans)
    fragment_buffers: int = 256  # IP datagrams being reassembled at once (about 460 bytes each plus the data)
    fragments_per_datagram: int = 128  # a 64 KiB datagram in 1280-byte IPv6 fragments needs 52
    fragment_timeout: float = 30.0  # seconds a datagram may wait for its fragments (Linux ipfrag_time)
    incomplete_listed: int = 1000  # incomplete datagrams listed one by one, at most 1.4 KB each (the rest counted)
    icmp_per_pair: int = 100  # ICMP errors kept per peer pair, about 340 bytes each (the rest are counted)


DEFAULT = Limits()

# The caps the commands' options set: field -> (option, what it counts), for `--help` and the overflow finding.
OPTIONS = {
    "ike_sas": ("--max-sas", "IKE SAs"),
    "half_open_sas": ("--max-half-open", "IKE SAs their responder has not answered (the oldest are forgotten: "
                      "floods of IKE_SA_INIT or MM1)"),
    "peer_pairs": ("--max-pairs", "peer pairs"),
    "esp_flows": ("--max-esp-flows", "ESP SAs (destination + SPI)"),
    "new_esp_flows": ("--max-new-esp-flows", "ESP SAs that have sent a single packet so far (the oldest are "
                      "forgotten: SPI scans)"),
}
