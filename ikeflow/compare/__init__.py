"""`ikeflow compare`: did the packets get from one capture point to the other?

Each capture runs through the same pipeline as `ikeflow read` (pipeline.Pipeline); a listener
keeps a compact record of every IKE message (points).  Two neighbouring capture points (a
*segment*) are then compared (comparison.compare_points):

- IKE messages are matched by IKE SA (version + initiator SPI), responder SPI,
  message ID, exchange type, flags and content (payload types, lengths and
  bodies: the same at both points, NAT or not, once IP fragments are
  reassembled); identical copies (retransmissions) are paired nearest in time
  once the clock offset is taken out (matching).
- The clock offset of the second point is the densest cluster of time
  differences per direction, refined to the median of the matches; with both
  directions matched it is the midpoint of the two (transit delay assumed
  symmetric).  ESP first/last times stand in when no IKE message matches (clock).
- Two captures that cannot be compared get one error and nothing else: the same
  capture twice (compare-same), or unrelated ones (compare-unrelated): not taken
  at the same time, or no IKE message or ESP packet in both, unless both clocks
  tell time and an IKE SA or ESP SPI is in both, or one holds traffic sent one
  way only towards an address the other saw while it captured (all lost on the
  way).  A peer pair seen at one point only, sent by both ends there, did not go
  through the other point and is not compared (findings.captures, rules).
- ESP is compared per SPI (the core counts ESP per flow without keeping
  packets): packets, duplicates and sequence ranges at both points (esp).
- Which point is nearer the initiator comes from the transit times (both
  directions matched), else from where packets go missing, else the order given.
- NAT mappings, incomplete IP fragments and one-sided ICMP errors (between).
- Each finding is a row of the path-loss rules (rules), named with causes from
  the shared vocabulary (diagnose.causes) and built in findings; segment holds
  the results, which render.compare_json and render.compare_terminal print.

Memory is bounded by peers, IKE SAs and ESP SPIs: each IKE SA keeps its first and
last KEEP message records per point; messages in the elided middle are not judged.
"""

from __future__ import annotations

from ikeflow.compare.comparison import Comparison

__all__ = ["Comparison"]
