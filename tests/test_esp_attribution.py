"""Which IKE SA each ESP/AH flow belongs to (model.attribution), as the verdicts, JSON and terminal say it,
and the churn counts of a peer pair (model.lifecycle.churn).

The expected owners come from an independent reading: tshark (`-T fields -e frame.number -e
frame.time_relative -e isakmp.ispi -e isakmp.exchangetype -e isakmp.flags -e isakmp.messageid -e
isakmp.nextpayload -e esp.spi`: which child negotiation precedes each SPI's first packet) and, for the
lab captures, the strongSwan logs next to them, which name each CHILD_SA's SPIs and its IKE_SA.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from conftest import need_public
from ikeflow.model.attribution import Owners
from ikeflow.pipeline import read_captures
from ikeflow.render import read_json, read_terminal

LAB = Path(__file__).resolve().parents[1] / "pcaps" / "lab"


def _owners(path) -> tuple[dict[str, str | None], object]:
    """SPI -> the first 8 hex digits of its IKE SA's ispi (or None), and the pipeline result."""
    r = read_captures([str(path)])
    owners = r.model.owners
    return {f"{f.spi:08x}": (sa.ispi.hex()[:8] if sa else None) for f, sa in owners.sa.items()}, r


def _json(r) -> dict:
    out = io.StringIO()
    doc = read_json.build(r.model, r.infos, r.findings, r.verdicts)
    read_json.write(out, doc, read_json.MessageSpool(1))
    return json.loads(out.getvalue())


def test_collision_each_sa_keeps_its_own_esp():
    """arkime IKEv2.pcap (FortiGate, IPv6): 8e777946 answers IKE_AUTH in frame 5 (32.06 s), ESP 3d713155/f918698d
    starts in frames 6/7; its CREATE_CHILD_SA answer (frame 11, 34.06 s) precedes 3d713156/83d48d4c (frames 12/13).
    e5bc6755 answers IKE_AUTH in frame 41 (40.08 s), deletes that child (frames 42/43: Delete first), builds one by
    CREATE_CHILD_SA (frame 45, 40.14 s) before 3d713158/92c780d4 (frames 46/47) and one more (frame 53, 40.29 s)
    before 3d713159/cf0014be (frames 54/55).  The CREATE_CHILD_SA requests start with SA (33), not a Notify:
    more child SAs, not rekeys."""
    owners, r = _owners(need_public() / "arkime/tests/pcap/IKEv2.pcap")
    first, second = "8e777946", "e5bc6755"
    assert owners == {"3d713155": first, "f918698d": first, "3d713156": first, "83d48d4c": first,
                      "3d713158": second, "92c780d4": second, "3d713159": second, "cf0014be": second}
    doc = _json(r)
    assert doc["peers"][0]["churn"] == {"rekeys": 0, "collisions": 1, "short_lived": 0}
    carried = {sa["ispi"][:8]: sum(f["packets"] for f in sa["esp"]) for sa in doc["ike_sas"]}
    assert carried == {first: 8 + 8 + 6 + 6, second: 34 + 34 + 33 + 33}  # tshark: packets per SPI
    assert {f["spi"]: f["ike_sa"][:8] for f in doc["esp_flows"]} == owners
    assert r.verdicts[next(iter(r.model.pairs))] == "tunnel up: IKE SA up, 2 CREATE_CHILD_SA, ESP both ways"


def test_terminal_rows_show_each_sa_its_own_esp():
    """The SA table of arkime IKEv2.pcap: each IKE SA row counts its own ESP, a 'pair total' row all of it."""
    _, r = _owners(need_public() / "arkime/tests/pcap/IKEv2.pcap")
    out = io.StringIO()
    read_terminal.render(Console(file=out, width=250), r.model, r.infos, r.findings, r.verdicts)
    rows = {line.split()[0]: line for line in out.getvalue().splitlines() if "→ " in line and line.startswith("   ")}
    assert "2003:51:6012::2→ 14, ← 14" in rows["8e7779464044673e"]
    assert "2003:51:6012::2→ 67, ← 67" in rows["e5bc67550fd4d3ea"]
    assert "2003:51:6012::2→ 81, ← 81" in next(line for line in out.getvalue().splitlines() if "pair total" in line)
    assert "churn: 1 collision" in out.getvalue()


def test_ikev2_rekeys_keep_the_esp_on_the_sa_that_negotiated_it():
    """strongSwan lab (ikev2-rekey-delete.init.log): CHILD_SA net{1} (231de33c_i d799e1ee_o) from IKE_AUTH and
    net{2} (e8c75914_i 8cf3eb1c_o) from the CHILD rekey (CREATE_CHILD_SA, request N(REKEY_SA) first: frames 9/10)
    are both IKE_SA lab[1] (9a2cbc0f); its IKE rekey (frames 17/18, SA first) made 78acf139, which negotiates no
    child.  Two rekeys: 'vici rekey CHILD_SA' and 'vici rekey IKE_SA'."""
    for side in ("inside", "outside"):
        owners, r = _owners(LAB / f"ikev2-rekey-delete.{side}.pcap")
        assert owners == dict.fromkeys(("231de33c", "d799e1ee", "e8c75914", "8cf3eb1c"), "9a2cbc0f")
        (pair,) = r.model.pairs.values()
        assert r.model.owners.churn(pair) == {"rekeys": 2, "collisions": 0, "short_lived": 0}
        (verdict,) = r.verdicts.values()
        assert verdict == "IKE SA up, 2 CREATE_CHILD_SA, then deleted at frame 25, ESP both ways"


def test_ikev1_phase1_rekey_esp_is_on_the_older_sa():
    """strongSwan lab (ikev1-rekey-delete.init.log): CHILD_SA net{1} (d54b6102_i 65f826ee_o) and, after the Quick
    Mode rekey, net{2} (e74584c4_i 12b815ef_o) are established on <lab|1> (2ab685f0, Quick Modes in frames 7-9 and
    14-16); IKE_SA lab[2] (7fb7ff5b, Main Mode in frames 21-26) negotiates no Quick Mode.  The verdict is about
    7fb7ff5b, alive at the end, and must not present the ESP as its own."""
    for side in ("inside", "outside"):
        owners, r = _owners(LAB / f"ikev1-rekey-delete.{side}.pcap")
        assert owners == dict.fromkeys(("d54b6102", "65f826ee", "e74584c4", "12b815ef"), "2ab685f0")
        (pair,) = r.model.pairs.values()
        assert r.model.owners.churn(pair) == {"rekeys": 2, "collisions": 0, "short_lived": 0}
        (verdict,) = r.verdicts.values()
        assert verdict == ("tunnel up: phase 1 up, no phase 2, ESP both ways "
                           "(on the child SAs of IKE SA 2ab685f0e736c87a)")


def test_parallel_quick_modes_are_children_not_rekeys():
    """arkime IKEv1.pcap (FortiGate): two Quick Modes of 63c26801 run side by side (message IDs 00e9298a and
    ce371e55, frames 8-13, 27.13-27.21 s) before any ESP (frame 14): two phase-2 selectors, no rekey."""
    owners, r = _owners(need_public() / "arkime/tests/pcap/IKEv1.pcap")
    assert owners == dict.fromkeys(("3d71315a", "e8f1f49c", "8905e940"), "63c26801")
    (pair,) = r.model.pairs.values()
    assert r.model.owners.churn(pair)["rekeys"] == 0


def test_ownership_is_computed_once(monkeypatch):
    """Analyzer.finish() attributes the ESP once; the verdicts, the churn rule and both renderers read it."""
    built = []
    real = Owners.__init__
    monkeypatch.setattr(Owners, "__init__", lambda self, an: built.append(an) or real(self, an))
    r = read_captures([str(need_public() / "arkime/tests/pcap/IKEv2.pcap")])
    _json(r)
    read_terminal.render(Console(file=io.StringIO(), width=250), r.model, r.infos, r.findings, r.verdicts)
    assert built == [r.model] and isinstance(r.model.owners, Owners)


def test_esp_before_any_child_negotiation_is_pair_total():
    """arkime ike-cert_synthetic.pcap: ESP deadbeef (frame 5) and cafebabe (frame 8) between 10.55.0.1 and
    10.55.0.2, whose only IKE is an MM1/MM2 (frames 6/7): no child negotiation, the ESP is nobody's."""
    owners, r = _owners(need_public() / "arkime/tests/pcap/ike-cert_synthetic.pcap")
    assert owners == {"deadbeef": None, "cafebabe": None}
    assert [f["ike_sa"] for f in _json(r)["esp_flows"]] == [None, None]
    out = io.StringIO()
    read_terminal.render(Console(file=out, width=250), r.model, r.infos, r.findings, r.verdicts)
    assert "2 ESP SAs not attributed (mid-session)" in out.getvalue()


def test_esp_without_ike_is_nobodys():
    """tcpdump espudp1.pcap: ESP 12345678 only, no IKE at all."""
    owners, r = _owners(need_public() / "tcpdump/tests/espudp1.pcap")
    assert owners == {"12345678": None}
    assert list(r.verdicts.values()) == ["ESP only, no IKE in the capture (ESP one way only)"]


def test_many_sessions_each_own_their_esp():
    """nDPI ipsec_isakmp_esp.pcap: the client's ESP 02b0073e (frame 297) follows the last IKE_AUTH answer of
    a8f687d0 (frame 296, message ID 3 of an EAP exchange, 458 bytes); every one of the 74 SPIs follows an
    IKE_AUTH answer of the same gateway."""
    owners, _ = _owners(need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap")
    assert owners["02b0073e"] == owners["cfdf8e63"] == "a8f687d0"
    assert len(owners) == 74 and None not in owners.values()


def test_ah_is_attributed_like_esp():
    """nDPI ah.pcapng: IKEv2 negotiated AH; its AH follows the IKE_AUTH answer."""
    _, r = _owners(need_public() / "nDPI/tests/cfgs/default/pcap/ah.pcapng")
    doc = _json(r)
    assert all(f["ike_sa"] for f in doc["ah_flows"])
    assert [len(sa["ah"]) for sa in doc["ike_sas"] if sa["up"]] == [2]


def test_reconnect_loop_is_short_lived_churn():
    """The wiki's ipsec.cap: tshark counts 45 IKE_AUTH answers from 192.168.8.18 to 192.168.0.226 and 15 to
    192.168.0.252 (distinct SPIs) in 38 s, and no ESP at all: 44 and 15 IKE SAs set up and dropped again
    (the last one to .226 is still up at the end)."""
    _, r = _owners(need_public() / "wireshark-wiki/uploads/__moin_import__/attachments/SampleCaptures/ipsec.cap")
    churn = sorted(p["churn"]["short_lived"] for p in _json(r)["peers"])
    assert churn == [15, 44]
    found = [f for f in r.findings if f.code == "ike-churn"]
    assert len(found) == 2 and all(f.severity == "warning" and "no ESP between these peers" in f.summary for f in found)
