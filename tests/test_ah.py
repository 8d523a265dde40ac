"""AH (IP protocol 51) is a data plane too: counted per SPI and direction like ESP, checked
against tshark on the public captures that carry it (AH alone, and AH around ESP)."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.ipsec import AH, ESP
from scapy.layers.inet6 import IPv6

from conftest import need_public, need_tshark
from ikeflow.decode import packet as pk
from ikeflow.pipeline import read_captures

AH_CAPTURES = [
    "nDPI/tests/cfgs/default/pcap/ah.pcapng",  # IKEv2 negotiating AH, then AH only
    "zeek-spicy-ipsec/tests/traces/IPsec_ESP-AH_tunnel_mode.cap",  # AH around ESP
    "pcapplusplus/Tests/Packet++Test/PacketExamples/ipsec.pcapng",  # AH+ESP, AH alone, ESP over IPv6
]


def _tshark_ah(path) -> Counter:
    """(src, dst, spi) -> packets, from tshark's AH dissector."""
    out = subprocess.run([need_tshark(), "-r", str(path), "-Y", "ah", "-T", "fields", "-E", "occurrence=f",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "ah.spi"],
                         capture_output=True, text=True, check=True).stdout
    rows = Counter()
    for line in out.splitlines():
        src4, src6, dst4, dst6, spi = line.split("\t")
        rows[(src4 or src6, dst4 or dst6, int(spi, 16))] += 1
    return rows


@pytest.mark.parametrize("rel", AH_CAPTURES)
def test_ah_flows_agree_with_tshark(rel):
    path = need_public() / rel
    r = read_captures([str(path)])
    ours = Counter({(f.src_ip, f.dst_ip, f.spi): f.packets for f in r.model.ah.flows.values()})
    assert ours == _tshark_ah(path)
    s = r.model.stats
    assert s.packets == s.ike + s.esp + s.ah + s.keepalives + s.icmp + s.fragments + s.malformed + s.skipped


def test_ah_only_tunnel_is_up():
    """IKEv2 negotiated AH (nDPI ah.pcapng): the tunnel is up with AH both ways, not "no ESP seen"."""
    r = read_captures([str(need_public() / AH_CAPTURES[0])])
    (verdict,) = r.verdicts.values()
    assert verdict == "tunnel up: IKE SA up, AH both ways"
    assert r.model.stats.ah == 2 and r.model.stats.skipped == 0


def test_ah_around_esp_counts_both():
    """AH in front of ESP: the frame is ESP (counted once), the AH SPI is an AH flow as well."""
    r = read_captures([str(need_public() / AH_CAPTURES[1])])
    assert r.model.stats.esp == 10 and r.model.stats.ah == 0
    assert sum(f.packets for f in r.model.ah.flows.values()) == 10
    (verdict,) = r.verdicts.values()
    assert verdict == "ESP only, no IKE in the capture (ESP both ways, AH both ways)"


@pytest.mark.parametrize("ip", [IP(src="192.0.2.1", dst="198.51.100.2"), IPv6(src="2001:db8::1", dst="2001:db8::2")])
def test_decode_ah(ip):
    alone = pk.decode_ip(bytes(ip / AH(spi=0x1234, seq=7, icv=b"\0" * 12) / ICMP()))
    assert alone.kind == pk.AH and alone.ah[:4] == bytes.fromhex("00001234") and alone.ah[4:] == bytes([0, 0, 0, 7])
    ah = AH(spi=0x1234, seq=7, icv=b"\0" * 12, nh=50, payloadlen=4)  # (4 + 2) * 4 = 24 bytes with the ICV
    wrapped = pk.decode_ip(bytes(ip / ah / ESP(spi=0x99, seq=3, data=b"x" * 16)))
    assert wrapped.kind == pk.ESP and wrapped.payload[:4] == bytes.fromhex("00000099") and wrapped.ah
