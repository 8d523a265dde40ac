"""`ikeflow explain [NAME]`: what a finding code or a cause means, how it shows on
the wire, what tells it apart from its look-alikes and what to check.

Causes come from diagnose/causes.py (`MEANS`, `WIRE`, `TELL`, `CHECK`,
`EXAMPLES`); finding codes from `CODES` below.  README "Diagnosis" holds the
cause table as `cause_table()` writes it (tests/test_explain.py compares them,
and that every code the diagnosis emits is in `CODES`).
"""

from __future__ import annotations

import difflib
import shutil
import textwrap
from dataclasses import dataclass

import click

from ikeflow import EXIT_USAGE, __version__
from ikeflow.diagnose import causes


@dataclass(frozen=True)
class Code:
    """A finding code: its severity, the commands that report it, meaning, signature, look-alikes, check."""

    severity: str
    commands: str
    means: str
    wire: str
    check: str
    alike: str = ""


CODES = {
    # -- read / live: negotiations
    "stall": Code(
        "error (warning when the wire explains it or the capture cannot show a cause)", "read, live",
        "a negotiation stopped: the last message sent and never properly answered or followed, with its causes "
        "ranked",
        "re-sent requests without an answer, error notifies, encrypted answers too small for what they must hold, "
        "ICMP errors, IP fragments, the NAT-T float, what came afterwards (see the causes it names)",
        "the first cause named: ikeflow explain CAUSE; the hint says which log line or capture tells the first two "
        "apart",
        "waiting (live, while it unfolds); capture-ends-early (the capture stopped too soon to tell)"),
    "esp-blocked": Code(
        "error", "read, live",
        "the IKE SA is up but ESP flows one way only",
        "ESP packets of the SA's peers in one direction, none back, after a completed negotiation",
        causes.CHECK["esp-blocked"],
        "esp-one-way (ESP one way without an IKE SA to judge it by); a Quick Mode / CREATE_CHILD_SA that stalled "
        "(its one-way ESP is that stall's consequence)"),
    "waiting": Code(
        "warning, error once the requester re-sends", "live",
        "an answer is overdue right now: 'waiting for MM6 for 12 s (3 retransmissions)'",
        "a request (or a step of an exchange) older than 2 s with no answer or next step yet",
        "wait for the stall finding, or look at the peer now: ikeflow explain stall",
        "stall (what read concludes once the requester has given up)"),
    "error-notify": Code(
        "warning", "read, live",
        "an error notify that no stall explains (the SA may have come up afterwards)",
        "a Notify payload of an error type (RFC 7296 3.10.1, RFC 2408 3.14.1), not answered by a retry "
        "(COOKIE / INVALID_KE_PAYLOAD are part of a normal negotiation)",
        "the peer refused something: its log says why; the causes list what the notify usually means",
        "stall (a stall's finding already names its notify)"),
    "retransmissions": Code(
        "info", "read, live",
        "IKE messages sent again (the same bytes) that were answered in the end",
        "a message identical to one the same side sent before, the re-sends of the daemon's retransmission timer",
        "answered re-sends mean loss or a slow peer; many of them: the path's loss, the peer's load",
        "capture-duplicates (the same packet captured twice within 2 ms, not a re-send)"),
    "nat-t": Code(
        "info", "read, live",
        "who is behind a NAT by NAT-D, and where the peers moved to UDP 4500 (or started there)",
        "NAT_DETECTION_SOURCE/DESTINATION_IP (IKEv2) or NAT-D payloads (IKEv1, RFC 3947) that do not match the "
        "addresses and ports as captured; the first message on UDP 4500 after some on 500 (the float)",
        "a side 'behind NAT' with no NAT may force UDP encapsulation (forceencaps / encapsulation=yes); NAT-D that "
        "disagrees while nobody floats means rewritten or anonymised addresses",
        "udp4500-blocked (the float and then silence)"),
    "ike-churn": Code(
        "warning", "read",
        "3 or more IKE SAs between the same peers came up and ended within 60 s without carrying ESP: a reconnect "
        "loop",
        "IKE SAs set up and deleted or replaced right after, no ESP attributed to any of them",
        "both daemons' logs: why each SA was deleted or replaced right after it came up (uniqueids / unique=replace, "
        "a refused CHILD_SA, initiation on demand that repeats)"),
    # -- read / live: policy
    "weak-crypto": Code(
        "warning", "read, live",
        "an offered or chosen algorithm that RFC 8247 / RFC 8221 rank MUST NOT or SHOULD NOT (or 3DES, ESP NULL)",
        "the transforms of the SA payloads of MM1/MM2, AM1/AM2, IKE_SA_INIT, Quick Mode and CREATE_CHILD_SA",
        "remove the algorithm from ike= / esp= (swanctl proposals= / esp_proposals=); the hint names what the "
        "peer's defaults refuse when its vendor ID tells"),
    "aggressive-psk": Code(
        "warning", "read, live",
        "IKEv1 Aggressive Mode with a pre-shared key: the identity goes in clear and the hash can be cracked offline",
        "AM1/AM2 with the pre-shared key authentication method",
        "use Main Mode (aggressive=no) or IKEv2, or certificates"),
    "proposal-malformed": Code(
        "warning", "read, live",
        "a proposal that repeats an attribute or transform (e.g. two Life-Durations)",
        "the same attribute or transform type twice within one proposal of an SA payload",
        "the sender's proposal configuration or its IKE implementation; peers may refuse it"),
    # -- read / live: ESP, IP, the capture
    "esp-loss": Code(
        "warning", "read, live",
        "ESP sequence numbers missing within one SPI",
        "gaps between the lowest and highest ESP sequence number seen of an SPI",
        "loss before the capture point, or the capture dropped packets (kernel drops, a busy SPAN port)",
        "lost-between-points (compare: where it was lost)"),
    "esp-duplicates": Code(
        "warning", "read, live",
        "ESP sequence numbers seen twice within one SPI",
        "the same SPI and sequence number again",
        "a capture on two interfaces, a looping path or a replay",
        "capture-duplicates (the whole frame twice within 2 ms)"),
    "esp-one-way": Code(
        "warning", "read, live",
        "ESP in one direction only, where the diagnosis has nothing more to say",
        "ESP from one address to the other, none back, no IKE SA that explains it",
        "that ESP (protocol 50, or UDP 4500) is allowed back, the peer's SA and routes; a capture holding one "
        "direction only (asymmetric routing, a 'src' filter)",
        "esp-blocked (an IKE SA is up); capture-one-way"),
    "icmp-error": Code(
        "warning", "read, live",
        "ICMP errors about IKE or ESP packets",
        "ICMP / ICMPv6 destination unreachable, time exceeded or packet too big quoting a UDP 500/4500 or ESP "
        "packet",
        "an ICMP error about IKE means the packet did not reach the IKE daemon: port unreachable from the peer = no "
        "daemon, administratively prohibited = a firewall, fragmentation needed = the path MTU",
        "peer-down, path-blocked, fragments-dropped, nat-mapping-expired (the stall's causes read these)"),
    "fragments-incomplete": Code(
        "error (warning when the capture's filter cut them)", "read, live, compare",
        "IP datagrams whose fragments never all arrived",
        "IP fragments (MF set or offset > 0) of one datagram ID that never completed within the reassembly time",
        "lower the MTU or turn on IKE fragmentation (fragmentation=yes), or let IP fragments through",
        "capture-filtered (only first fragments, and the datagram was answered: the capture cut them)"),
    "fragments-overlap": Code(
        "warning", "read, live",
        "IP fragments of one datagram that overlap",
        "fragments whose byte ranges overlap or disagree about the datagram's end (RFC 5722)",
        "an evasion attempt or a broken stack: Linux drops such datagrams (keeps the first copy of a repeated "
        "fragment)"),
    "malformed": Code(
        "warning", "read, live",
        "packets on the IKE ports that do not decode as IKE",
        "a header or payload length that does not fit, an unknown critical payload, a truncated message",
        "look at the frames in Wireshark; snap-length cuts are capture-snaplen instead"),
    "overflow": Code(
        "warning", "read, live",
        "the analysis reached one of its caps on kept state and turned entries away",
        "more IKE SAs, ESP flows, fragments or messages than the caps (ikeflow/limits.py) allow",
        "raise the cap with the --max-* option named in the hint (more memory)"),
    "capture-truncated": Code(
        "warning", "read, live",
        "the capture file ends in the middle of a packet (copied while still being written, or cut)",
        "a record header or packet data shorter than it says",
        "copy the file after tcpdump has stopped; the packets before the cut are analysed"),
    "capture-error": Code(
        "warning", "read",
        "the capture file could not be read to its end",
        "a damaged record or block in the pcap/pcapng/gzip file",
        "take a new copy of the capture; the packets before the damage are analysed"),
    "capture-duplicates": Code(
        "warning", "read, live",
        "the same packet captured twice (tcpdump -i any on a router, a SPAN port mirroring twice)",
        "a frame carrying the same IP datagram as the frame right before it, within 2 ms, TTL / hop limit aside",
        "capture on one interface, not -i any on a router; mirror one direction of one port",
        "retransmissions (daemons re-send 0.5 s or more later)"),
    "capture-snaplen": Code(
        "warning", "read, live",
        "frames captured shorter than they were on the wire",
        "captured length < wire length",
        "tcpdump -s 0 (the default since tcpdump 4.0), no 'limit each packet' in Wireshark, no editcap -s"),
    "capture-order": Code(
        "warning (info for steps back of 10 ms or less)", "read",
        "frames timestamped before the frame in front of them",
        "a timestamp lower than the previous frame's (interfaces merged, pcapng written in batches, files joined)",
        "sort the file first (reordercap in.pcapng sorted.pcapng), or capture on one interface"),
    "capture-no-time": Code(
        "warning", "read",
        "the capture's timestamps are unusable, so nothing judged by time is",
        "every frame with the same timestamp, or most of them at 0 (1970-01-01)",
        "write the capture with tcpdump -w or dumpcap, not through an export that drops timestamps"),
    "capture-one-way": Code(
        "warning", "read, live",
        "the capture holds one direction of an IKE SA only: its silence proves nothing",
        "all of an SA's messages from one side although two of them prove the other side answered in between",
        "capture both directions (the right interface, no 'src' filter, a SPAN of both directions)",
        "path-blocked / peer-ignores (a side that only repeats itself is diagnosed as usual)"),
    "capture-mid-session": Code(
        "warning", "read, live",
        "the capture starts inside an IKE SA: what only its opening shows is unknown",
        "no MM1 / AM1 / IKE_SA_INIT request of the SA in the capture",
        "start the capture before the negotiation (ipsec down / swanctl --terminate, then up)"),
    "capture-ends-early": Code(
        "warning", "read",
        "the capture stops before a request had time to be answered",
        "a request sent once with less than one retransmission interval (4 s) of capture after it",
        "capture for longer: until the daemon gives up or the tunnel is up",
        "stall (a request re-sent proves itself unanswered)"),
    "capture-filtered": Code(
        "warning", "read",
        "the capture's own filter dropped what the diagnosis needs (non-first IP fragments)",
        "fragmented datagrams with their first fragment only, answered by the receiver afterwards",
        "capture with 'udp port 500 or udp port 4500 or esp or (ip[6:2] & 0x1fff != 0)' (fragments included)",
        "fragments-incomplete (first fragments never answered: the path drops the others)"),
    # -- compare
    "lost-between-points": Code(
        "error (warning when later messages got through or another copy arrived)", "compare",
        "IKE messages or ESP packets seen at one capture point never arrived at the next",
        "a message or ESP sequence number in the upstream capture and not in the downstream one",
        "the hop between the two points: firewall rules for UDP 500/4500 and ESP, MTU, the return path",
        "arrived-unanswered (it arrived; the peer did not answer)"),
    "arrived-unanswered": Code(
        "error", "compare",
        "re-sent requests reached the point nearest the peer and were never answered there",
        "every copy of a request in both captures, no answer in either",
        "the peer: its log for these messages, a connection for this address, a hung daemon",
        "lost-between-points"),
    "nat-mapping-changed": Code(
        "warning", "compare",
        "a NAT between the capture points changed an end's outside port or address mid-SA",
        "the same IKE SA or ESP SPI translated to another address:port later",
        "NAT-T keepalives more often than the NAT's UDP timeout (keep_alive / nat_keepalive)"),
    "icmp-one-side": Code(
        "error when it names nat-mapping-expired, else warning", "compare",
        "an ICMP error that only one capture point saw",
        "ICMP about IKE/ESP in one capture and not in the other",
        "a hop between the points sent it (router, firewall, NAT) or it was lost; port unreachable from a NAT's "
        "outside address: ikeflow explain nat-mapping-expired"),
    "capture-empty": Code(
        "warning", "compare",
        "a capture point captured nothing",
        "no packet at all in one of the files",
        "the capture point: the right interface, the same filter, started before the negotiation"),
    "compare-same": Code(
        "error", "compare",
        "the two captures are the same (a file compared with itself or a copy)",
        "the same frames at the same times in both",
        "give the captures of the two points"),
    "compare-unrelated": Code(
        "error", "compare",
        "the captures are not of the same traffic at two points of one path",
        "time ranges that do not overlap, or not one IKE message or ESP packet in both",
        "capture the same tunnel at the same time at two points of its path; the capture hosts' clocks (NTP)"),
}


def cause_table() -> str:
    """README "Diagnosis": one row per cause (on the wire, what to check, example captures)."""
    rows = ["| cause | on the wire | what to check | example capture |", "|---|---|---|---|"]
    rows += [f"| `{c}` | {causes.WIRE[c]} | {causes.CHECK[c]} | {causes.EXAMPLES[c]} |" for c in causes.CAUSES]
    return "\n".join(rows) + "\n"


def describe(name: str) -> list[tuple[str, str]]:
    """The (label, text) lines for a finding code and/or a cause of that name (esp-blocked is both)."""
    lines = []
    if name in CODES:
        c = CODES[name]
        lines += [("finding code", f"{c.severity}; reported by {c.commands}"), ("means", c.means),
                  ("on the wire", c.wire)]
        lines += [("look-alikes", c.alike)] if c.alike else []
        lines.append(("check", c.check))
    if name in causes.CHECK:
        tell = [f"{next(iter(pair - {name}))}: {text}" for pair, text in causes.TELL.items() if name in pair]
        notifies = sorted({n for n, cs in causes.NOTIFY_CAUSES.items() if name in cs})
        lines += [("cause", "a likely cause that stall and compare findings name"), ("means", causes.MEANS[name]),
                  ("on the wire", causes.WIRE[name].replace("`", ""))]
        lines += [("look-alike", t) for t in tell]
        lines += [("notifies", ", ".join(notifies))] if notifies else []
        lines += [("check", causes.CHECK[name]), ("examples", causes.EXAMPLES[name].replace("`", ""))]
    return lines


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _wrap(label: str, text: str, width: int, indent: int) -> str:
    return textwrap.fill(text, width, initial_indent=f"  {label:<{indent}}", subsequent_indent=" " * (indent + 2),
                         break_long_words=False, break_on_hyphens=False)


@click.command(short_help="What a finding code or a cause means and what to check.", help="What a finding code or a cause means, how it shows on the wire, what tells it apart from "
                    "its look-alikes and what to check.  Without NAME: every code and cause.")
@click.argument("name", required=False)
@click.version_option(__version__, prog_name="ikeflow")
def explain(name: str | None) -> None:
    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 120))
    if name is None:
        for title, table in (("Finding codes", {k: v.means for k, v in CODES.items()}),
                             ("Causes", causes.MEANS)):
            click.echo(f"{title} (ikeflow explain NAME):")
            size = max(map(len, table)) + 2
            for key, means in table.items():
                click.echo(_wrap(key, means, width, size))
            click.echo()
        return
    key = _normal(name)
    lines = describe(key)
    if not lines:
        close = difflib.get_close_matches(key, [*CODES, *causes.CAUSES], n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; ikeflow explain lists them all"
        click.echo(f"ikeflow: no finding code or cause is named '{name}'{hint}", err=True)
        raise SystemExit(EXIT_USAGE)
    click.echo(key)
    for label, text in lines:
        click.echo(_wrap(label, text, width, 13))
