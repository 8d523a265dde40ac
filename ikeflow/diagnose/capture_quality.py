"""Capture quality: what the capture itself did to the packets, and which conclusions that rules out.

The reader counts the facts per file (sources.capture.Quality, `FileInfo.quality`); these rules turn
them into findings.  `no_time(files)` tells the diagnosis that no timing conclusion may be drawn.
"""

from __future__ import annotations

from ikeflow.diagnose.finding import INFO, WARNING, Finding, times
from ikeflow.model.analysis import Analyzer
from ikeflow.sources.capture import COPY_GAP, HOLD, FileInfo, split_ref

JITTER = 0.01  # s: steps back in time no longer than this are timestamping jitter (several CPUs or NIC queues)


def no_time(files: list[FileInfo]) -> bool:
    """A capture without usable timestamps: no interval, wait or silence can be measured."""
    return any(f.quality.no_time(f.packets) for f in files)


def _name(f: FileInfo, files: list[FileInfo]) -> str:
    return f"{f.name}: " if len(files) > 1 else ""


def _frames(refs: list[int], total: int = 0) -> str:
    """"frames 3, 7, 9 and 12 more" for the listed refs of `total` frames."""
    listed = ", ".join(str(split_ref(r)[1]) for r in refs)
    rest = f" and {total - len(refs)} more" if total > len(refs) else ""
    return f"frame{'s' if len(refs) > 1 or rest else ''} {listed}{rest}"


def duplicates(an: Analyzer, files: list[FileInfo]):
    for f in files:
        q = f.quality
        if not q.copies:
            continue
        routed = (f"; {'all' if q.routed == q.copies else q.routed} with the TTL changed: the packet was captured "
                  "on its way into a router and again on its way out") if q.routed else ""
        yield Finding(WARNING, "capture-duplicates", "capture",
                      f"{_name(f, files)}{q.copies} of {f.packets} frames captured twice "
                      f"({_frames(q.copy_frames, q.copies)}: the same IP datagram as the frame before, within "
                      f"{COPY_GAP * 1000:.0f} ms){routed}; each "
                      "copy is counted once, as skipped, not as a retransmission or an ESP replay",
                      "Capture on one interface (tcpdump -i eth0, not -i any on a router, which sees a routed packet "
                      "on both of its interfaces), or mirror one direction of one switch port.",
                      q.copy_frames)


def cut(files: list[FileInfo], frames: list[int]) -> bool:
    """One of these frames (frame_refs) was cut by the snap length: what is missing is the capture's doing."""
    return any(ref in files[split_ref(ref)[0]].quality.cut_decoded for ref in frames)


def snaplen(an: Analyzer, files: list[FileInfo]):
    for f in files:
        q = f.quality
        if not q.cut:
            continue
        messages = [m for sa in an.sas.values() for m in sa.messages if m.ref in q.cut_decoded]
        datagrams = [d for d in an.reassembler.incomplete if any(ref in q.cut_decoded for ref in d["frames"])]
        hidden = []
        if messages:
            low, high = min(m.size for m in messages), max(m.size for m in messages)
            at = f"{low}" if low == high else f"{low}-{high}"
            hidden.append(f"{len(messages)} IKE message{'s' if len(messages) > 1 else ''} cut "
                          f"({_frames([m.ref for m in messages][:3], len(messages))}): only the first {at} bytes seen, "
                          "the payloads after them unseen (listed as malformed)")
        if datagrams:
            n, firsts = len(datagrams), [d["frames"][0] for d in datagrams[:3]]
            they, carry, were = ("they", "they carry", "they were") if n > 1 else ("it", "it carries", "it was")
            hidden.append(f"{n} fragmented IP datagram{'s' if n > 1 else ''} cut ({_frames(firsts, n)}): {they} cannot "
                          f"be put together, so what {carry} is unseen; {were} not lost on the path")
        hidden.append("ESP is counted in full (SPI, sequence number and length come first)")
        yield Finding(WARNING, "capture-snaplen", "capture",
                      f"{_name(f, files)}{q.cut} of {f.packets} frames captured shorter than they were on the wire "
                      f"(cut at {q.cut_at} bytes: {_frames(q.cut_frames[:3], q.cut)}): " + "; ".join(hidden),
                      "Capture whole packets: tcpdump -s 0 (the default since tcpdump 4.0), no 'limit each packet' in "
                      "Wireshark, no editcap -s.",
                      q.cut_frames)


def order(an: Analyzer, files: list[FileInfo]):
    for f in files:
        q = f.quality
        if not q.back:
            continue
        most = f"{q.back_most * 1000:.3f} ms" if q.back_most < 1 else f"{q.back_most:.3f} s"
        text = (f"{_name(f, files)}time goes back {times(q.back)} (at "
                f"{_frames(q.back_frames[:3], q.back)}; at most {most} back): IKE and the other decoded frames are "
                "analysed in time order (retransmission intervals, ladders), ESP by its sequence numbers")
        if q.late:
            text += (f"; {q.late} frame{'s' if q.late > 1 else ''} came too late to be put back in order (the "
                     f"reader sorts what it reads at a time, 1 to 8 MiB of the file, with the {HOLD} decoded frames "
                     "before): intervals around them may be wrong")
        yield Finding(INFO if q.back_most <= JITTER and not q.late else WARNING, "capture-order", "capture", text,
                      "The capture was merged from several interfaces or files, or written in batches: sort it on "
                      "time first (reordercap in.pcapng sorted.pcapng), or capture on one interface.",
                      q.back_frames)


def no_timestamps(an: Analyzer, files: list[FileInfo]):
    for f in files:
        q = f.quality
        if not q.no_time(f.packets):
            continue
        if q.same_time == f.packets - 1:
            what = f"all {f.packets} frames carry the same timestamp" + (" (0: 1970-01-01)" if not f.first_time else "")
        else:
            what = f"{q.zero_time} of {f.packets} frames are timestamped 0 (1970-01-01)"
        yield Finding(WARNING, "capture-no-time", "capture",
                      f"{_name(f, files)}{what}: what is judged by time is off (retransmission intervals, how long a "
                      "request waited for its answer, a peer's silence, DPD and liveness spacing, fragment reassembly "
                      "timeouts); the frames are taken in file order",
                      "Keep the timestamps: write the capture with tcpdump -w or dumpcap, not through a tool or an "
                      "export that drops them.")


RULES = [duplicates, snaplen, order, no_timestamps]
