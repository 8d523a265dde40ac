"""One capture point: a capture file run through the pipeline, with compact records of its
IKE messages (from the model's `MessageSeen` events) and of its ESP sequence numbers (`EspSeen`)."""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikeflow.limits import DEFAULT, Limits
from ikeflow.model.events import EspSeen, MessageSeen
from ikeflow.pipeline import Options, Pipeline
from ikeflow.sources.capture import FileInfo, frame_ref, read_files, split_ref

if TYPE_CHECKING:
    from ikeflow.keys import KeyRing

KEEP = 2048  # message records kept per IKE SA and point, at each end
ESP_KEEP = 1 << 20  # ESP sequence numbers kept per SPI and point; past that, flows are compared by counts


@dataclass(slots=True)
class Msg:
    """One IKE message as seen at one capture point."""

    point: int
    ref: int  # frame_ref in this point's own capture
    time: float
    sa: tuple  # (version, ispi)
    key: int  # content digest
    rspi: bytes
    message_id: int
    exchange_type: int
    sender: str  # "I"/"R" of the IKE SA
    request: bool
    response: bool  # IKEv2 R flag
    label: str
    size: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    natt: bool
    fragments: int  # IP fragments it was reassembled from (0: not fragmented)
    copies: int = 1  # identical copies seen at this point so far, this one included


def by_key(msgs: list[Msg]) -> dict[int, list[Msg]]:
    """Records grouped by content: the copies of each message, in capture order."""
    out: dict[int, list[Msg]] = {}
    for m in msgs:
        out.setdefault(m.key, []).append(m)
    return out


class Point:
    """One capture file run through the core, with compact IKE message records."""

    def __init__(self, index: int, path: str, ike_port: int, natt_port: int, limits: Limits = DEFAULT,
                 keys: KeyRing | None = None):
        self.index, self.path = index, path
        self.name = "-" if path == "-" else os.path.basename(path)
        self.pipeline = Pipeline(Options(ike_port, natt_port, limits, keys=keys), [self._listen])
        self.an = self.pipeline.model
        self.infos: list[FileInfo] = self.pipeline.infos
        self.msgs: dict[tuple, list[Msg]] = {}  # IKE SA -> records in capture order
        self.gaps: dict[tuple, tuple[float, float]] = {}  # IKE SA -> (from, to): records elided
        self._copies: dict[tuple, int] = {}
        self.esp_seqs: dict[int, dict[int, list]] = {}  # SPI -> sequence number -> [(time, ref, size), ...]

    def read(self) -> None:
        """Every frame through the general decoder (no ESP fast path), so that each ESP packet's
        sequence number is seen and kept, up to ESP_KEEP per SPI."""
        self.pipeline.read([self.path], esp_fast=False)
        self.pipeline.finish()

    def _listen(self, event) -> None:
        if isinstance(event, EspSeen):
            seqs = self.esp_seqs.setdefault(event.spi, {})
            if event.seq in seqs or len(seqs) < ESP_KEEP:
                seqs.setdefault(event.seq, []).append((event.time, event.ref, event.size))
            return
        if not isinstance(event, MessageSeen):
            return
        seen = event.seen
        msg = seen.msg
        key = hash((msg.version, msg.ispi, msg.rspi, msg.message_id, msg.exchange_type, msg.flags, seen.size,
                    tuple((p.type, p.length, p.body) for p in msg.payloads)))
        sa_key = (msg.version, msg.ispi)
        ck = (sa_key, key)
        n = self._copies[ck] = self._copies.get(ck, 0) + 1
        if len(self._copies) > 64 * KEEP:
            del self._copies[next(iter(self._copies))]
        rec = Msg(self.index, seen.ref, seen.time, sa_key, key, msg.rspi, msg.message_id, msg.exchange_type,
                  seen.sender, seen.request, msg.response, seen.label, seen.size, seen.src, seen.dst, seen.sport,
                  seen.dport, seen.natt, len(seen.fragments), n)
        lst = self.msgs.setdefault(sa_key, [])
        lst.append(rec)
        if len(lst) > 2 * KEEP:
            del lst[KEEP]
            gap = self.gaps.get(sa_key)
            self.gaps[sa_key] = (gap[0] if gap else lst[KEEP - 1].time, lst[KEEP].time)

    @property
    def packets(self) -> int:
        return self.an.stats.packets

    @property
    def first_time(self) -> float | None:
        return self.infos[0].first_time if self.infos else None

    @property
    def last_time(self) -> float | None:
        return self.infos[0].last_time if self.infos else None

    def empty(self) -> bool:
        return self.first_time is None

    def times(self) -> tuple[float, float, str] | None:
        """(earliest, latest, no_clock) over every timestamp kept (first and last frame, IKE messages, ESP
        flows' first and last packet); `no_clock` says why they do not tell time ("all 0", "whole seconds
        only", "all the same"), or is empty."""
        ts = [t for t in (self.first_time, self.last_time) if t is not None]
        ts += [m.time for lst in self.msgs.values() for m in lst]
        ts += [t for f in self.an.esp.flows.values() for t in (f.first_time, f.last_time)]
        if not ts:
            return None
        t0, t1 = min(ts), max(ts)
        if not any(ts):
            return t0, t1, "all 0"
        if not any(t % 1 for t in ts):
            return t0, t1, "whole seconds only"
        return t0, t1, "all the same" if t0 == t1 and self.packets > 1 else ""

    def digest(self) -> bytes | None:
        """A digest of every frame (time and bytes), read again: the same for two copies of one capture, pcap or
        pcapng, gzipped or not.  None for standard input, which cannot be read twice."""
        if self.path == "-":
            return None
        h = hashlib.blake2b()
        for batch in read_files([self.path], None, []):
            for rec in batch:
                h.update(struct.pack("<dI", rec.time, len(rec.data)))
                h.update(rec.data)
        return h.digest()

    def pair_key(self, sa_key) -> tuple | None:
        sa = self.an.sas.get(sa_key)
        if sa is None or sa.initiator is None or sa.responder is None:
            return None
        a, b = sa.initiator[0], sa.responder[0]
        return (a, b) if a <= b else (b, a)

    def ref(self, frame: int) -> int:
        """A frame of this point as a frame_ref naming the point (file index = point index)."""
        return frame_ref(self.index, split_ref(frame)[1])
