"""The requirement levels RFC 8247 (IKEv2) and RFC 8221 (ESP) give the algorithms ikeflow warns about.

Sections used: RFC 8247 3.1 (Type 1, encryption), 3.2 (Type 2, PRF), 3.3 (Type 3, integrity), 3.4
(Type 4, Diffie-Hellman groups); RFC 8221 5 (ESP encryption), 6 (ESP authentication). Rows are keyed
by IKEv2 transform type and ID (IANA); IKEv1 values are translated by `decode.proposals.transform_ids`
(its phase-1 hash is its PRF, its groups share the numbers), and RFC 8247's levels apply to IKEv1
phase 1 as to an IKEv2 IKE SA. `weak` says whether ikeflow warns: MUST NOT and SHOULD NOT, 3DES which
RFC 8247 downgraded to MAY, and ESP's NULL encryption (a MUST to implement for authentication-only ESP,
but no confidentiality). HMAC-SHA-1 stays MUST- in both RFCs (downgraded from MUST, still required)
and is not warned about. Only rows checked against the RFC text are listed; ESP's DH groups (PFS) are
the IKE groups of RFC 8247 3.4, AH is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

ENCR, PRF, INTEG, DH = 1, 2, 3, 4


@dataclass(frozen=True)
class Level:
    rfc: str  # "RFC 8247"
    section: str  # "3.4"
    scope: str  # "IKE" (the IKE SA) or "ESP" (a child SA)
    ttype: int
    tid: int
    name: str  # as the RFC writes it
    level: str  # the RFC's requirement word
    weak: bool  # ikeflow warns
    note: str = ""

    def quote(self) -> str:
        """ "RFC 8247 3.4: SHOULD NOT" """
        return f"{self.rfc} {self.section}: {self.level}" + (f" ({self.note})" if self.note else "")


TABLE = [
    Level("RFC 8247", "3.1", "IKE", ENCR, 2, "ENCR_DES", "MUST NOT", True),
    Level("RFC 8247", "3.1", "IKE", ENCR, 3, "ENCR_3DES", "MAY", True, "downgraded from MUST- of RFC 4307"),
    Level("RFC 8247", "3.2", "IKE", PRF, 1, "PRF_HMAC_MD5", "MUST NOT", True),
    Level("RFC 8247", "3.2", "IKE", PRF, 2, "PRF_HMAC_SHA1", "MUST-", False),
    Level("RFC 8247", "3.3", "IKE", INTEG, 1, "AUTH_HMAC_MD5_96", "MUST NOT", True),
    Level("RFC 8247", "3.3", "IKE", INTEG, 2, "AUTH_HMAC_SHA1_96", "MUST-", False),
    Level("RFC 8247", "3.4", "IKE", DH, 1, "768-bit MODP Group", "MUST NOT", True),
    Level("RFC 8247", "3.4", "IKE", DH, 2, "1024-bit MODP Group", "SHOULD NOT", True),
    Level("RFC 8247", "3.4", "IKE", DH, 5, "1536-bit MODP Group", "SHOULD NOT", True),
    Level("RFC 8247", "3.4", "IKE", DH, 22, "1024-bit MODP Group with 160-bit Prime Order Subgroup", "SHOULD NOT", True),
    Level("RFC 8247", "3.4", "IKE", DH, 23, "2048-bit MODP Group with 224-bit Prime Order Subgroup", "SHOULD NOT", True),
    Level("RFC 8247", "3.4", "IKE", DH, 24, "2048-bit MODP Group with 256-bit Prime Order Subgroup", "SHOULD NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 1, "ENCR_DES_IV64", "MUST NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 2, "ENCR_DES", "MUST NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 3, "ENCR_3DES", "SHOULD NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 7, "ENCR_BLOWFISH", "MUST NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 8, "ENCR_3IDEA", "MUST NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 9, "ENCR_DES_IV32", "MUST NOT", True),
    Level("RFC 8221", "5", "ESP", ENCR, 11, "ENCR_NULL", "MUST", True, "for authentication-only ESP: no confidentiality"),
    Level("RFC 8221", "6", "ESP", INTEG, 1, "AUTH_HMAC_MD5_96", "MUST NOT", True),
    Level("RFC 8221", "6", "ESP", INTEG, 2, "AUTH_HMAC_SHA1_96", "MUST-", False),
    Level("RFC 8221", "6", "ESP", INTEG, 3, "AUTH_DES_MAC", "MUST NOT", True),
    Level("RFC 8221", "6", "ESP", INTEG, 4, "AUTH_KPDK_MD5", "MUST NOT", True),
]

_BY_KEY = {(row.scope, row.ttype, row.tid): row for row in TABLE}


def level(scope: str, ttype: int, tid: int) -> Level | None:
    """The row for an algorithm of an IKE SA ("IKE") or a child SA ("ESP"); a child SA's DH group is an IKE group."""
    return _BY_KEY.get(("IKE" if ttype == DH else scope, ttype, tid))


def weak(scope: str, ids: dict[int, list[int]]) -> list[tuple[int, int, Level]]:
    """(type, ID, row) of each algorithm in `ids` (decode.proposals.transform_ids) that ikeflow warns about."""
    out = []
    for ttype, tids in ids.items():
        for tid in tids:
            row = level(scope, ttype, tid)
            if row and row.weak:
                out.append((ttype, tid, row))
    return out
