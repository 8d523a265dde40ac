"""What common IKE implementations propose and accept when the admin configured no proposals.

`DEFAULTS` is the table, one row per implementation, version range and IKE version, with its source.
Sets are IKEv2 transform IDs (IANA), as `decode.proposals.transform_ids` gives them for both IKE
versions; key lengths are not compared. strongSwan's `default` proposal holds what the loaded crypto
plugins support of its list, so the sets are the most it accepts. Cisco is not in the table: its
documented defaults vary with the platform and the release.

`refused_by_default(sa)` names the responder by its vendor IDs and says whether its defaults refuse
everything the initiator offered (the stall diagnosis can call it for a NO_PROPOSAL_CHOSEN or an
INVALID_KE_PAYLOAD); `initiator_advice(sa)` says how to make a client that offers only weak defaults
offer better ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikeflow.decode.proposals import keyword, transform_ids

if TYPE_CHECKING:
    from ikeflow.model.ikesa import IkeSa

ENCR, PRF, INTEG, DH = 1, 2, 3, 4

_SS_ENCR = frozenset({12, 13, 23, 24, 14, 15, 16, 18, 19, 20, 25, 26, 27, 28, 3})
_SS_INTEG = frozenset({12, 13, 14, 5, 8, 2})
_SS_PRF = frozenset({5, 6, 7, 4, 8, 2})
_SS_DH = frozenset({19, 20, 21, 28, 29, 30, 31, 32, 15, 16, 17, 18, 14})
_SS_SOURCE = ("src/libstrongswan/crypto/proposal/proposal.c, proposal_create_default(_aead) and "
              "(proposal_)add_supported_ike")
_SS_NOTE = ("strongSwan left MD5 and modp1024 out of its default IKE proposal in 5.6.1 (NEWS: \"in compliance "
            "with RFCs 8221 and 8247\"); DES, modp768, modp1536 and the RFC 5114 groups 22-24 were already out")
_LS_NOTE = ("libreswan is built without modp1024 (DH2) since 3.30 (mk/userland.mk: USE_DH2 ?= false; CHANGES: "
            "\"Disable support for DH2/modp1024 at compile time\"), without group 22 since 3.19 and 23-24 since "
            "3.26, so no ike= line brings them back; SHA-1 left its IKEv2 default proposal in 3.30")


_MS = tuple(f"Microsoft {w} (MS NT5 ISAKMPOAKLEY)" for w in ("Windows 7", "Windows Server 2008 R2",
                                                                  "Windows 8 or later"))


@dataclass(frozen=True)
class Defaults:
    implementation: str
    versions: str
    vids: tuple[str, ...]  # vendor names (decode.names.vendor_name) that identify it
    ike_versions: tuple[int, ...]
    role: str  # "responder": what it accepts unconfigured; "initiator": what it offers unconfigured
    accepts: dict[int, frozenset[int]]  # transform type -> IDs
    esp: str  # its default ESP proposal
    source: str
    note: str = ""


DEFAULTS = [
    Defaults("strongSwan", "5.9.0-5.9.14", ("strongSwan",), (1, 2), "responder",
             {ENCR: _SS_ENCR, PRF: _SS_PRF, INTEG: _SS_INTEG, DH: _SS_DH},
             "aes128gcm16-aes192gcm16-aes256gcm16 and aes128-aes192-aes256-sha256-sha384-sha512-sha1-aesxcbc, "
             "no PFS group", f"strongSwan 5.9.14 {_SS_SOURCE}", _SS_NOTE),
    Defaults("strongSwan", "6.0.0-6.0.6", ("strongSwan",), (1, 2), "responder",
             {ENCR: _SS_ENCR, PRF: _SS_PRF, INTEG: _SS_INTEG, DH: _SS_DH},
             "as 5.9; since 6.0.2 with every supported group and none (PFS optional)",
             f"strongSwan 6.0.6 {_SS_SOURCE}; NEWS 6.0.2", _SS_NOTE),
    Defaults("libreswan", "4.0-4.14", ("Libreswan",), (1,), "responder",
             {ENCR: frozenset({12, 3}), PRF: frozenset({5, 7, 2}), DH: frozenset({14, 5})},
             "aes, aes_gcm16_128, aes_gcm16_256, 3des with sha1, sha2_512, sha2_256",
             "libreswan v4.14 lib/libswan/ike_info.c default_v1_*, esp_info.c", _LS_NOTE),
    Defaults("libreswan", "4.15, 5.0-5.3", ("Libreswan",), (1,), "responder",
             {ENCR: frozenset({12, 3}), PRF: frozenset({5, 7, 2}), DH: frozenset({14, 5, 19, 31})},
             "aes, aes_gcm16_128, aes_gcm16_256, 3des with sha1, sha2_512, sha2_256",
             "libreswan v5.3 lib/libswan/ike_info.c default_ikev1_*, esp_info.c", _LS_NOTE),
    Defaults("libreswan", "4.0-5.3", ("Libreswan",), (2,), "responder",
             {ENCR: frozenset({20, 28, 12}), PRF: frozenset({7, 5}), INTEG: frozenset({14, 12}),
              DH: frozenset({19, 20, 21, 31, 14, 15, 16, 18})},
             "aes_gcm16_256, aes_gcm16_128, chacha20_poly1305 (5.x), aes256, aes128 with sha2_512, sha2_256",
             "libreswan v4.15 and v5.3 lib/libswan/ike_info.c default_v2_* / default_*_ikev2_*, esp_info.c",
             _LS_NOTE),
    Defaults("Windows", "Windows 7-11 built-in IKEv2 client", _MS, (2,), "initiator",
             {ENCR: frozenset({3, 12}), PRF: frozenset({2, 5, 6}), INTEG: frozenset({2, 12, 13}), DH: frozenset({2})},
             "",
             "https://docs.strongswan.org/docs/6.0/interop/windowsClients.html (\"Windows 7 up to Windows 11 "
             "propose only the weak modp1024\": ike = 3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024; the "
             "NegotiateDH2048_AES256 values 0/1/2); the IKE_SA_INIT of zeek-spicy-ipsec ipsec_client.pcap (vendor "
             "ID MS NT5 ISAKMPOAKLEY)",
             "set the registry value HKLM\\SYSTEM\\CurrentControlSet\\Services\\RasMan\\Parameters\\"
             "NegotiateDH2048_AES256 (DWORD) to 1 (also offer AES-256-CBC with modp2048) or 2 (offer only that), "
             "or choose the algorithms with Set-VpnConnectionIPsecConfiguration"),
]

_REPLACE = {ENCR: "aes256", PRF: "prfsha256", INTEG: "sha256", DH: "modp2048"}


def _rows(sa: IkeSa, role: str) -> list[Defaults]:
    """The table's rows for the implementation that the vendor IDs of the SA's `role` side name."""
    vendors = sa.vendors.get("R" if role == "responder" else "I", set())
    return [d for d in DEFAULTS if d.role == role and sa.version in d.ike_versions and vendors & set(d.vids)]


def _suites(sa: IkeSa) -> list[dict[int, list[int]]]:
    """The initiator's offered IKE suites: one per IKEv1 transform, one per IKEv2 proposal."""
    props = sa.offered.info.get("proposals", []) if sa.offered else []
    return [transform_ids(x) for p in props for x in (p.transforms if p.version == 1 else [p])]


def _refused(d: Defaults, suite: dict[int, list[int]]) -> list[tuple[int, int]]:
    """(type, ID) of what stops `d` from accepting the suite: every offered value of a type none of whose
    values it accepts."""
    return [(ttype, tid) for ttype, accepted in d.accepts.items()
            if suite.get(ttype) and not set(suite[ttype]) & accepted for tid in suite[ttype]]


def _v1(version: int, kw: str) -> str:
    """IKEv1 names its hash where IKEv2 names a PRF: "sha1", not "prfsha1"."""
    return kw.removeprefix("prf") if version == 1 else kw


def refused_by_default(sa: IkeSa) -> str | None:
    """Why the responder, named by its vendor IDs, refuses every IKE proposal the initiator offered when it runs
    with its default proposals (in every version of the table), and what to configure instead; None when no
    vendor ID names a responder of the table, or one offered proposal is acceptable to one of its versions."""
    found = default_refusal(sa)
    return found[0] if found else None


def default_refusal(sa: IkeSa) -> tuple[str, frozenset[int]] | None:
    """`refused_by_default`'s text and the transform types (ENCR, PRF, INTEG, DH) the defaults refuse."""
    rows, suites = _rows(sa, "responder"), _suites(sa)
    if not rows or not suites:
        return None
    reasons: dict[tuple[int, int], None] = {}
    for d in rows:
        for suite in suites:
            refused = _refused(d, suite)
            if not refused:
                return None
            reasons.update(dict.fromkeys(refused))
    types = {t for t, _ in reasons}
    first = suites[0]
    better = "-".join(_v1(sa.version, _REPLACE[t] if t in types else keyword(t, first[t][0]))
                      for t in (ENCR, INTEG if first.get(INTEG) else PRF, DH) if first.get(t))
    d = rows[0]
    what = ", ".join(dict.fromkeys(_v1(sa.version, keyword(t, i)) for t, i in reasons))
    return (f"the responder is {d.implementation} (vendor ID), which refuses {what} with its default proposals "
            f"({', '.join(r.versions for r in rows)}): {d.note}; configure `ike={better}` "
            f"(swanctl `proposals = {better}`) on both sides", frozenset(types))


def initiator_advice(sa: IkeSa) -> str | None:
    """How to make the initiator, named by its vendor IDs, offer more than the weak DH group it offers by default;
    None unless it offered only that."""
    suites = _suites(sa)
    for d in _rows(sa, "initiator"):
        if suites and all(set(s.get(DH, [])) <= d.accepts[DH] for s in suites):
            groups = ", ".join(keyword(DH, g) for g in sorted(d.accepts[DH]))
            return f"the initiator is the {d.versions} (vendor ID), which offers only {groups} by default: {d.note}"
    return None
