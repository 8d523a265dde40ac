"""Policy findings: weak-crypto, aggressive-psk, proposal-malformed, and the daemon-defaults table.

Expected values come from tshark's decode of each capture's SA payloads and from the RFC 8247 / RFC 8221
levels written out below, never from ikeflow's own output."""

from __future__ import annotations

import functools
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from scapy.contrib.ikev2 import IKEv2, IKEv2_Proposal, IKEv2_SA, IKEv2_Transform
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_Proposal, ISAKMP_payload_SA, ISAKMP_payload_Transform

from ikeflow.decode.ike import decode_isakmp
from ikeflow.diagnose import algorithms, defaults, policy
from ikeflow.model.ikesa import IkeSa
from ikeflow.pipeline import read_captures

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT.parent / "shared" / "pcaps" / "public"
LAB = ROOT / "pcaps" / "lab"

# RFC 8247 3.1-3.4 (IKE SA): what ikeflow warns about, as IKEv2 transform IDs by type
RFC8247_WEAK = {1: {2, 3}, 2: {1}, 3: {1}, 4: {1, 2, 5, 22, 23, 24}}
# IKEv1 phase-1 values (RFC 2409 appendix A) as IKEv2 IDs: Encryption-Algorithm, Hash-Algorithm (its PRF)
V1_ENCR = {1: 2, 2: 5, 3: 7, 4: 4, 5: 3, 6: 6, 7: 12, 8: 23}
V1_HASH = {1: 1, 2: 2, 4: 5, 5: 6, 6: 7}
PSK = {1, 65001, 65002}


def _captures() -> list[Path]:
    if not PUBLIC.exists():
        pytest.skip(f"public capture corpus not available: {PUBLIC}")
    return sorted(p for p in PUBLIC.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap", ".gz")
                  and ".out" not in p.name)


def _fields(node) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in node.iter("field"):
        out.setdefault(f.get("name"), []).append(f.get("show"))
    return out


@functools.cache
def tshark_sas(path: Path) -> list[dict]:
    """Every SA payload in clear of a phase-1 / IKE_SA_INIT exchange in a message tshark does not call malformed,
    as tshark decodes it: ispi, exchange, frame, source,
    the IKEv2-numbered IDs of each suite, the IKEv1 authentication methods and repeated transform attributes."""
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    phase1 = "isakmp.exchangetype == 2 or isakmp.exchangetype == 4 or isakmp.exchangetype == 34"
    xml = subprocess.run(["tshark", "-r", str(path), "-T", "pdml", "-J", "frame ip ipv6 isakmp _ws.malformed", "-Y", phase1],
                         capture_output=True, text=True, timeout=300).stdout
    out = []
    for pkt in ET.fromstring(xml).iter("packet") if xml.strip() else []:
        if any(p.get("name") == "_ws.malformed" for p in pkt.iter("proto")):
            continue  # a malformed message teaches ikeflow nothing (it is listed as malformed)
        frame = int(next(f.get("show") for f in pkt.iter("field") if f.get("name") == "frame.number"))
        src = next((f.get("show") for f in pkt.iter("field") if f.get("name") in ("ip.src", "ipv6.src")), None)
        for proto in (p for p in pkt.iter("proto") if p.get("name") == "isakmp"):
            top = {f.get("name"): f.get("show") for f in proto}
            for sa in (f for f in proto if f.get("name") == "isakmp.typepayload" and f.get("show") in ("1", "33")):
                suites, auth, repeated = [], [], []
                for prop in (f for f in sa if f.get("name") == "isakmp.typepayload"):
                    transforms = [f for f in prop if f.get("name") == "isakmp.typepayload"]
                    if top["isakmp.exchangetype"] == "34":
                        ids = {t: set() for t in (1, 2, 3, 4)}
                        for tf in transforms:
                            g = _fields(tf)
                            for t, name in ((1, "encr"), (2, "prf"), (3, "integ"), (4, "dh")):
                                ids[t].update(int(x) for x in g.get(f"isakmp.tf.id.{name}", []))
                        suites.append(ids)
                        continue
                    for tf in transforms:
                        g = _fields(tf)
                        one = lambda k: int(g[k][0]) if k in g else None  # noqa: E731
                        suites.append({1: {V1_ENCR.get(one("isakmp.ike.attr.encryption_algorithm"))},
                                       2: {V1_HASH.get(one("isakmp.ike.attr.hash_algorithm"))},
                                       4: {one("isakmp.ike.attr.group_description")}})
                        auth.append(one("isakmp.ike.attr.authentication_method"))
                        keys, life = [], 1
                        for a in (f for f in tf if f.get("name") == "isakmp.ike.attr"):
                            at = _fields(a)
                            t = int(at["isakmp.ike.attr.type"][0])
                            if t == 11:
                                life = int(at["isakmp.ike.attr.life_type"][0])
                            keys.append((t, life) if t in (11, 12) else (t,))
                        repeated += [k for k in set(keys) if keys.count(k) > 1]
                out.append({"frame": frame, "src": src, "ispi": top["isakmp.ispi"].replace(":", ""),
                            "exchange": int(top["isakmp.exchangetype"]), "flags": int(top["isakmp.flags"], 16),
                            "suites": suites, "auth": auth, "repeated": repeated})
    return out


@functools.cache
def _findings(path: Path) -> list:
    return read_captures([str(path)]).findings


def _codes(path: Path, code: str) -> dict[str, list]:
    """The findings of `code` by IKE SA; weak-crypto per SA, before alike ones are merged per peer pair."""
    out: dict[str, list] = {}
    r = read_captures([str(path)])
    for f in (policy.weak_per_sa(r.model) if code == "weak-crypto" else r.findings):
        if f.code == code:
            out.setdefault(f.sa.ispi.hex(), []).append(f)
    return out


def _weak(suite: dict) -> bool:
    return any(suite.get(t, set()) & ids for t, ids in RFC8247_WEAK.items())


def test_weak_crypto_agrees_with_tshark_on_public_captures():
    """An IKE SA gets weak-crypto exactly when tshark shows an RFC 8247 MUST NOT / SHOULD NOT (or 3DES) algorithm
    in one of its clear phase-1 / IKE_SA_INIT SA payloads."""
    fired = []
    for path in _captures():
        sas = tshark_sas(path)
        if not sas:
            assert not _codes(path, "weak-crypto"), path
            continue
        expected = {s["ispi"] for s in sas if any(_weak(x) for x in s["suites"])}
        got = set(_codes(path, "weak-crypto"))
        assert got == expected, path
        if got:
            fired.append(str(path.relative_to(PUBLIC)))
    assert "zeek-spicy-ipsec/tests/traces/ipsec.cap" in fired and "arkime/tests/pcap/IKEv1.pcap" not in fired


def test_weak_crypto_chosen_versus_offered():
    _captures()
    # tshark: MM2 frame 2 chooses 3DES-CBC, SHA, Alternate 1024-bit MODP group, PSK
    (f,) = _codes(PUBLIC / "zeek-spicy-ipsec/tests/traces/ipsec.cap", "weak-crypto")["c6d1459285150c7e"]
    assert f.severity == "warning" and f.at == "MM2"
    assert "chosen" in f.summary and "3des" in f.summary and "RFC 8247 3.1: MAY" in f.summary
    assert "modp1024" in f.summary and "RFC 8247 3.4: SHOULD NOT" in f.summary and "sha1 (" not in f.summary
    # tshark: IKE_SA_INIT offers ENCR_3DES in proposal 1 of 2, the response chooses AES-CBC-128 / SHA2-256 / group 15
    (g,) = _codes(PUBLIC / "zeek-plugin-ikev2/tests/Traces/ikev2.pcap", "weak-crypto")["46fd10006d11e258"]
    assert g.summary.startswith("IKE SA offered (1 of 2 proposals): 3des") and "chosen" not in g.summary


def test_windows_client_advice():
    # tshark: vendor ID "MS NT5 ISAKMPOAKLEY"; every one of the 12 proposals carries group 2 only
    _captures()
    path = PUBLIC / "zeek-spicy-ipsec/tests/traces/ipsec_client.pcap"
    assert all(x[4] == {2} for s in tshark_sas(path) for x in s["suites"])
    (f,) = _codes(path, "weak-crypto")["238671c80375a0fb"]
    assert "NegotiateDH2048_AES256" in f.hint and "offers only modp1024" in f.hint


def test_aggressive_psk_agrees_with_tshark():
    """aggressive-psk fires for the Aggressive Mode SAs whose AM2 chose a PSK method, or whose AM1 offered one and
    no AM2 answered; never for Main Mode."""
    paths = _captures() + sorted(LAB.glob("ikev1-*.pcap"))
    fired = []
    for path in paths:
        am = [s for s in tshark_sas(path) if s["exchange"] == 4]
        expected = set()
        for ispi in {s["ispi"] for s in am}:
            mine = [s for s in am if s["ispi"] == ispi]
            chosen = [s for s in mine if s["src"] != mine[0]["src"]]  # AM2, from the responder
            auth = (chosen[-1] if chosen else mine[0])["auth"]
            if auth and set(auth) & PSK:
                expected.add(ispi)
        assert set(_codes(path, "aggressive-psk")) == expected, path
        fired += [path.name] * bool(expected)
    assert {"ipsec-ikev1-isakmp-aggressive-mode.pcap", "ikev1-bug-12620.pcapng.gz",
            "ikev1-aggr-psk-mismatch.inside.pcap", "ikev1-aggr-refused.outside.pcap"} <= set(fired)


def test_proposal_malformed_agrees_with_tshark():
    # suricata-verify ikev1-duplicate-proposals: tshark shows Life-Duration 86400 and 65535 in one transform
    for path in _captures():
        expected = {s["ispi"] for s in tshark_sas(path) if s["repeated"]}
        got = _codes(path, "proposal-malformed")
        assert set(got) == expected, path
    (f,) = _codes(PUBLIC / "suricata-verify/tests/ikev1-duplicate-proposals/generated.pcap",
                  "proposal-malformed")["e47a591fd057587f"]
    assert "life_duration (seconds) twice, conflicting: 86400, 65535" in f.summary and f.at == "MM1"


def test_lab_captures_have_no_weak_crypto():
    # the lab's strongSwan peers negotiate aes128-sha256-modp2048 (pcaps/lab/README.md); tshark agrees per capture
    for path in sorted(LAB.glob("*.pcap")):
        assert not any(_weak(x) for s in tshark_sas(path) for x in s["suites"]), path
        assert not _codes(path, "weak-crypto"), path


# --- the tables --------------------------------------------------------------


def test_rfc_table_rows():
    keys = [(r.scope, r.ttype, r.tid) for r in algorithms.TABLE]
    assert len(keys) == len(set(keys))
    assert all(r.rfc in ("RFC 8247", "RFC 8221") and r.section for r in algorithms.TABLE)
    assert algorithms.level("IKE", 4, 2).quote() == "RFC 8247 3.4: SHOULD NOT"
    assert algorithms.level("ESP", 1, 3).quote() == "RFC 8221 5: SHOULD NOT"
    assert algorithms.level("ESP", 4, 1).rfc == "RFC 8247"  # a child SA's PFS group is an IKE group
    assert not algorithms.level("IKE", 2, 2).weak and algorithms.level("IKE", 2, 2).level == "MUST-"
    assert {(t, i) for t, i, _ in algorithms.weak("IKE", {1: [3, 12], 2: [2], 3: [2], 4: [14, 5]})} == {(1, 3), (4, 5)}


def v2_offer(*proposals):
    props = [IKEv2_Proposal(proposal=n + 1, proto=1, trans_nb=len(p),
                            trans=b"".join(bytes(IKEv2_Transform(transform_type=t, transform_id=i, next_payload=3
                                                                 if k < len(p) - 1 else 0)) for k, (t, i) in enumerate(p)),
                            next_payload=2 if n < len(proposals) - 1 else 0)
             for n, p in enumerate(proposals)]
    msg = decode_isakmp(bytes(IKEv2(init_SPI=b"\x01" * 8, next_payload=33, exch_type=34, flags="Initiator")
                              / IKEv2_SA(next_payload=0, prop=b"".join(bytes(x) for x in props))))
    assert msg.malformed is None
    return msg.payload("SA")


def v1_offer(*suites):
    trans = [ISAKMP_payload_Transform(transform_count=n + 1, transform_id=1, next_payload=3 if n < len(suites) - 1
                                      else 0, transforms=s) for n, s in enumerate(suites)]
    prop = ISAKMP_payload_Proposal(proposal=1, proto=1, trans_nb=len(trans), trans=b"".join(bytes(t) for t in trans))
    msg = decode_isakmp(bytes(ISAKMP(init_cookie=b"\x02" * 8, next_payload=1, exch_type=2)
                              / ISAKMP_payload_SA(next_payload=0, prop=prop)))
    assert msg.malformed is None
    return msg.payload("SA")


def sa_with(version: int, offered, responder: set[str]) -> IkeSa:
    sa = IkeSa(version, b"\x01" * 8)
    sa.offered = offered
    sa.vendors = {"R": responder}
    return sa


def test_refused_by_default_strongswan_modp1024():
    sa = sa_with(2, v2_offer([(1, 12), (2, 2), (3, 2), (4, 2)]), {"strongSwan"})
    text = defaults.refused_by_default(sa)
    assert "strongSwan" in text and "refuses modp1024" in text and "5.6.1" in text
    assert "`ike=aes-sha1-modp2048`" in text
    acceptable = sa_with(2, v2_offer([(1, 12), (2, 2), (3, 2), (4, 2)], [(1, 12), (2, 5), (3, 12), (4, 14)]),
                         {"strongSwan"})
    assert defaults.refused_by_default(acceptable) is None
    assert defaults.refused_by_default(sa_with(2, sa.offered, set())) is None  # no vendor ID: unknown responder


def test_refused_by_default_libreswan_ikev1():
    sa = sa_with(1, v1_offer([("Encryption", "3DES-CBC"), ("Hash", "MD5"), ("GroupDesc", "1024MODPgr"),
                              ("Authentication", "PSK")]), {"Libreswan"})
    text = defaults.refused_by_default(sa)
    assert "refuses md5, modp1024" in text and "3.30" in text and "`ike=3des-sha256-modp2048`" in text
    old = sa_with(1, sa.offered, {"Libreswan 3.0-3.5"})  # before 3.30: not in the table
    assert defaults.refused_by_default(old) is None


def test_defaults_rows_cite_source_and_version():
    for d in defaults.DEFAULTS:
        assert d.source and d.versions and d.role in ("responder", "initiator")
        assert d.accepts[defaults.DH].isdisjoint({1, 22, 23, 24})
    ss = [d for d in defaults.DEFAULTS if d.implementation == "strongSwan"]
    assert all(2 not in d.accepts[defaults.DH] and 14 in d.accepts[defaults.DH] for d in ss)


def test_alike_weak_crypto_of_one_peer_pair_is_one_finding():
    """nDPI ipsec_isakmp_esp: the probing client offers the same weak proposals to each gateway in dozens of IKE
    SAs (tshark: IKE_SA_INIT frames carry modp1024/1536 and 3DES); one finding per peer pair and wording."""
    if not (PUBLIC / "MANIFEST.json").is_file():
        pytest.skip(f"public capture corpus not found at {PUBLIC}")
    r = read_captures([str(PUBLIC / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap")])
    per_sa = list(policy.weak_per_sa(r.model))
    merged = [f for f in r.findings if f.code == "weak-crypto"]
    assert len(merged) < len(per_sa)
    keys = [(frozenset((f.sa.initiator[0], f.sa.responder[0])), f.summary.split(" (and ")[0]) for f in merged]
    assert len(keys) == len(set(keys))
    assert sum(1 + int(f.summary.rsplit("(and ", 1)[1].split()[0]) if "(and " in f.summary else 1
               for f in merged) == len(per_sa)
