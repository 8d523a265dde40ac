"""NAT-T: recompute NAT-D hashes and say which side is behind a NAT.

IKEv1 (RFC 3947): HASH(CKY-I | CKY-R | IP | port) with the negotiated hash;
the first NAT-D payload is about the receiver, the others about the sender.
IKEv2 (RFC 7296 2.23): SHA-1(SPIi | SPIr | IP | port) in the notifies
NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP.

Before RFC 3947, IKEv1 NAT-T went by the drafts' vendor IDs, and each draft
numbered NAT-D / NAT-OA its own way (ipsec-tools racoon `natt_fill_options`,
Openswan's NAT_TRAVERSAL_OSX): see `METHODS`.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

# IKEv1 hash attribute values (RFC 2409 / IANA) and the digest length that gives them away.
V1_HASHES = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}
BY_LENGTH = {16: "md5", 20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}

_DRAFT = "draft-ietf-ipsec-nat-t-ike"


class Method(NamedTuple):
    """What a NAT-T vendor ID implies: the IKEv1 payload types of NAT-D and NAT-OA (None: not sent), and
    whether the peers move to UDP 4500 once NAT-D finds a NAT."""

    natd: int
    nat_oa: int | None
    floats: bool


# NAT-T vendor IDs (as decode.names names them), the most preferred first: when both peers sent several,
# the first one both sent is the one in use.  Drafts 00/01 stay on UDP 500 (ESP in UDP 500 behind a non-IKE
# marker); 02/03 use the private-use numbers 130/131; 04..08 used 15/16 before GDOI (RFC 3547/6407) took
# them as SAK/SAT, as did Apple's racoon with the unnumbered draft VID (NAT-D only).
METHODS = {
    "RFC 3947 NAT-T": Method(20, 21, True),
    **{f"{_DRAFT}-{n:02d}": Method(15, 16, True) for n in range(8, 3, -1)},
    _DRAFT: Method(15, None, True),
    f"{_DRAFT}-03": Method(130, 131, True),
    f"{_DRAFT}-02\\n": Method(130, 131, True),
    f"{_DRAFT}-02": Method(130, 131, True),
    f"{_DRAFT}-01": Method(130, 131, False),
    f"{_DRAFT}-00": Method(130, 131, False),
}


def chosen(initiator_vids, responder_vids) -> str | None:
    """The NAT-T vendor ID in use: the most preferred one both peers sent, or None."""
    return next((vid for vid in METHODS if vid in initiator_vids and vid in responder_vids), None)


def natd_hash(algorithm: str, ispi: bytes, rspi: bytes, ip: bytes, port: int) -> bytes:
    return hashlib.new(algorithm, ispi + rspi + ip + port.to_bytes(2, "big")).digest()


def check(version: int, ispi: bytes, rspi: bytes, src: bytes, sport: int, dst: bytes, dport: int,
          about_dst: list[bytes], about_src: list[bytes], v1_hash: int | None = None) -> dict | None:
    """Compare a message's NAT-D claims with the addresses it was captured with.

    Returns {"sender_translated": bool|None, "receiver_translated": bool|None,
    "algorithm": str}; a translated side sits behind a NAT (or fakes NAT-D to
    force UDP encapsulation) as seen from this capture point.  None when the
    message carries no NAT-D.
    """
    if not about_dst and not about_src:
        return None
    if version == 2:
        algorithm = "sha1"
    else:
        sample = (about_dst or about_src)[0]
        algorithm = V1_HASHES.get(v1_hash or 0) or BY_LENGTH.get(len(sample))
        if algorithm is None:
            return {"sender_translated": None, "receiver_translated": None,
                    "algorithm": f"unknown ({len(sample)}-byte hash)"}
    result = {"algorithm": algorithm, "sender_translated": None, "receiver_translated": None}
    if about_src:
        result["sender_translated"] = natd_hash(algorithm, ispi, rspi, src, sport) not in about_src
    if about_dst:
        result["receiver_translated"] = natd_hash(algorithm, ispi, rspi, dst, dport) not in about_dst
    return result
