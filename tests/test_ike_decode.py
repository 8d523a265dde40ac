"""Tests for ikeflow.decode.ike: packets are built with scapy (an independent encoder),
real messages come from the public capture corpus (values confirmed with tshark 4.0)."""

import hashlib
import random
import struct
from functools import reduce
from pathlib import Path

import pytest
from scapy.contrib.ikev2 import (
    ConfigurationAttribute,
    IKEv2,
    IKEv2_AUTH,
    IKEv2_CERT,
    IKEv2_CERTREQ,
    IKEv2_CP,
    IKEv2_Delete,
    IKEv2_EAP,
    IKEv2_Encrypted,
    IKEv2_Encrypted_Fragment,
    IKEv2_GSPM,
    IKEv2_IDi,
    IKEv2_IDr,
    IKEv2_KE,
    IKEv2_Nonce,
    IKEv2_Notify,
    IKEv2_Proposal,
    IKEv2_SA,
    IKEv2_Transform,
    IKEv2_TSi,
    IKEv2_TSr,
    IKEv2_VendorID,
    IPv4TrafficSelector,
    IPv6TrafficSelector,
)
from scapy.packet import Raw
from scapy.layers.isakmp import (
    ISAKMP,
    ISAKMP_payload,
    ISAKMP_payload_Delete,
    ISAKMP_payload_Hash,
    ISAKMP_payload_ID,
    ISAKMP_payload_KE,
    ISAKMP_payload_Nonce,
    ISAKMP_payload_Notify,
    ISAKMP_payload_Proposal,
    ISAKMP_payload_SA,
    ISAKMP_payload_SIG,
    ISAKMP_payload_Transform,
    ISAKMP_payload_VendorID,
)

from ikeflow.decode import names
from ikeflow.decode.ike import IkeMessage, Payload, V1Transform, V2Transform, decode_isakmp, draft_natt
from ikeflow.model import sequences

PUBLIC = Path(__file__).resolve().parents[2] / "shared" / "pcaps" / "public"
ISPI = bytes.fromhex("0102030405060708")
RSPI = bytes.fromhex("a1a2a3a4a5a6a7a8")


def md5(s: bytes) -> bytes:
    return hashlib.md5(s).digest()


def chain(*layers):
    return bytes(reduce(lambda a, b: a / b, layers))


def raw_v1(nxt: int, body: bytes) -> ISAKMP_payload:
    return ISAKMP_payload(next_payload=nxt, load=body)


# --- IKEv1 -----------------------------------------------------------------


def v1_main_mode_1() -> bytes:
    t1 = ISAKMP_payload_Transform(transform_count=1, transform_id=1, transforms=[
        ("Encryption", "AES-CBC"), ("KeyLength", 256), ("Hash", "SHA"), ("GroupDesc", "2048MODPgr"),
        ("Authentication", "PSK"), ("LifeType", "Seconds"), ("LifeDuration", 86400)])
    t2 = ISAKMP_payload_Transform(transform_count=2, transform_id=1, transforms=[
        ("Encryption", "3DES-CBC"), ("Hash", "MD5"), ("GroupDesc", "1024MODPgr"),
        ("Authentication", "XAUTHInitPreShared"), ("LifeType", "Seconds"), ("LifeDuration", 28800),
        ("GroupPrime", 2 ** 200 + 7)])  # > 0xffff: scapy encodes it as a variable-length (TLV) attribute
    prop = ISAKMP_payload_Proposal(proposal=1, proto=1, trans_nb=2, trans=t1 / t2)
    return chain(
        ISAKMP(init_cookie=ISPI, resp_cookie=b"\0" * 8, next_payload=1, exch_type=2, flags=0, id=0),
        ISAKMP_payload_SA(next_payload=13, doi=1, situation=1, prop=prop),
        ISAKMP_payload_VendorID(next_payload=13, VendorID=md5(b"RFC 3947")),
        ISAKMP_payload_VendorID(next_payload=0, VendorID=bytes.fromhex("afcad71368a1f1c96b8696fc77570100")),
    )


def test_v1_header_and_sa_with_two_transforms():
    data = v1_main_mode_1()
    m = decode_isakmp(data)
    assert m.malformed is None
    assert (m.ispi, m.rspi, m.next_payload) == (ISPI, b"\0" * 8, 1)
    assert (m.version, m.minor_version, m.exchange_type, m.flags, m.message_id) == (1, 0, 2, 0, 0)
    assert m.length == len(data) == m.size
    assert m.exchange == "Main Mode"
    assert not (m.initiator or m.response or m.encrypted or m.commit)
    assert [p.name for p in m.payloads] == ["SA", "VID", "VID"]
    sa = m.payload("SA")
    assert sa.type == 1 and sa.info["doi"] == 1 and sa.info["situation"] == 1
    (prop,) = sa.info["proposals"]
    assert (prop.number, prop.protocol, prop.protocol_name, prop.spi) == (1, 1, "ISAKMP", b"")
    t1, t2 = prop.transforms
    assert isinstance(t1, V1Transform)
    assert (t1.number, t1.id, t1.name) == (1, 1, "KEY_IKE")
    assert t1.attributes == {"encryption": 7, "key_length": 256, "hash": 2, "group": 14, "auth": 1,
                             "life_type": 1, "life_duration": 86400}
    assert t1.attrs == [(1, 7), (14, 256), (2, 2), (4, 14), (3, 1), (11, 1), (12, 86400)]
    assert t2.attributes["auth"] == 65001 and t2.attributes["life_duration"] == 28800
    assert t2.attributes["group_prime"] == (2 ** 200 + 7).to_bytes(26, "big")


def test_v1_vendor_ids_recognized():
    m = decode_isakmp(v1_main_mode_1())
    vids = [p.info for p in m.payloads if p.name == "VID"]
    assert vids[0] == {"vendor": "RFC 3947 NAT-T", "hex": md5(b"RFC 3947").hex()}
    assert vids[1]["vendor"] == "DPD"


@pytest.mark.parametrize("vid, expected", [
    (md5(b"RFC 3947"), "RFC 3947 NAT-T"),
    (md5(b"draft-ietf-ipsec-nat-t-ike-02\n"), "draft-ietf-ipsec-nat-t-ike-02\\n"),
    (md5(b"draft-ietf-ipsec-nat-t-ike-03"), "draft-ietf-ipsec-nat-t-ike-03"),
    (md5(b"strongSwan"), "strongSwan"),
    (md5(b"CISCO-UNITY")[:14] + b"\x01\x00", "Cisco Unity 1.0"),
    (md5(b"draft-ietf-ipsra-isakmp-xauth-06.txt")[:8], "XAUTH"),
    (md5(b"draft-ietf-ipsra-isakmp-xauth-06.txt"), "XAUTH"),
    (md5(b"MS NT5 ISAKMPOAKLEY") + b"\x00\x00\x00\x09", "Microsoft Windows 8 or later (MS NT5 ISAKMPOAKLEY)"),
    (md5(b"FRAGMENTATION") + b"\x80\x00\x00\x00", "FRAGMENTATION"),
    (md5(b"FRAGMENTATION"), "FRAGMENTATION"),
    (b"OE-Libreswan-" + b"\x11" * 5, "Libreswan"),
    (b"OSW" + b"\x22" * 13, "Openswan"),
    (b"CISCO-DELETE-REASON", "Cisco Delete Reason"),
    (bytes(16), None),
])
def test_vendor_name(vid, expected):
    assert names.vendor_name(vid) == expected


def test_v1_encrypted_quick_mode():
    body = bytes(range(48))
    data = chain(ISAKMP(init_cookie=ISPI, resp_cookie=RSPI, next_payload=8, exch_type=32,
                        flags=["encryption", "commit"], id=0x635A2E6A), Raw(body))
    m = decode_isakmp(data)
    assert m.malformed is None
    assert (m.exchange, m.message_id, m.flags) == ("Quick Mode", 0x635A2E6A, 0x03)
    assert m.encrypted and m.commit and not m.initiator and not m.response
    (enc,) = m.payloads
    assert (enc.type, enc.name, enc.body) == (8, "ENC", body)
    assert enc.info == {"first_payload": "HASH", "first_payload_type": 8, "encrypted_length": 48}


def v1_all_payloads() -> tuple[bytes, dict]:
    """A (semantically odd) IKEv1 message carrying every non-SA payload type once."""
    spi = bytes.fromhex("cafebabe")
    natd = md5(b"nat-d")[:16] + b"\x01\x02\x03\x04"
    attr_body = struct.pack("!BxH", 1, 0x1234) + struct.pack("!HH", 0x8000 | 16520, 0) \
        + struct.pack("!HH", 16521, 4) + b"user" + struct.pack("!HH", 1, 0)
    parts = [
        ISAKMP_payload_KE(next_payload=5, ke=b"\x55" * 128),
        ISAKMP_payload_ID(next_payload=6, IDtype=1, ProtoID=17, Port=500, IdentData="192.0.2.1"),
        raw_v1(7, b"\x04" + b"CERTDATA"),                       # CERT, X.509 signature
        raw_v1(8, b"\x04" + b"CA-DN"),                          # CR
        ISAKMP_payload_Hash(next_payload=9, hash=b"\x11" * 20),
        ISAKMP_payload_SIG(next_payload=10, sig=b"\x22" * 40),
        ISAKMP_payload_Nonce(next_payload=11, nonce=b"\x33" * 24),
        ISAKMP_payload_Notify(next_payload=11, doi=1, proto=3, SPI=spi, notify_msg_type=24578),
        ISAKMP_payload_Notify(next_payload=12, doi=1, proto=1, SPI=ISPI + RSPI, notify_msg_type=36136,
                              notify_data=struct.pack("!I", 4242)),
        ISAKMP_payload_Delete(next_payload=13, doi=1, proto=3, SPIs=[spi, b"\x00\x00\x10\x01"]),
        ISAKMP_payload_VendorID(next_payload=14, VendorID=md5(b"strongSwan")),
        raw_v1(20, attr_body),                                   # ATTR (Mode-Config / XAUTH)
        raw_v1(21, natd),                                        # NAT-D
        raw_v1(130, b"\x01\x00\x00\x00" + bytes([198, 51, 100, 7])),  # NAT-OA
        raw_v1(131, natd),                                       # NAT-D (draft)
        raw_v1(132, b"\x01\x00\x00\x00" + bytes([10, 0, 0, 1])),  # NAT-OA (draft)
        raw_v1(18, struct.pack("!HBB", 0x0101, 3, 1) + b"fragdata"),  # FRAG, last
        raw_v1(15, struct.pack("!I", 77)),                       # SEQ
        raw_v1(16, b"sak"),                                      # SAK
        raw_v1(17, b"sat"),                                      # SAT
        raw_v1(19, b"kd"),                                       # KD
        raw_v1(22, b"pop"),                                      # POP
        raw_v1(0, b"gap"),                                       # GAP
    ]
    data = chain(ISAKMP(init_cookie=ISPI, resp_cookie=RSPI, next_payload=4, exch_type=5, id=7), *parts)
    return data, {"natd": natd, "spi": spi}


def test_v1_every_payload_type():
    data, ctx = v1_all_payloads()
    m = decode_isakmp(data)
    assert m.malformed is None
    assert [p.name for p in m.payloads] == [
        "KE", "ID", "CERT", "CR", "HASH", "SIG", "NONCE", "N", "N", "D", "VID", "ATTR", "NAT-D", "NAT-OA",
        "NAT-D", "NAT-OA", "FRAG", "SEQ", "SAK", "SAT", "KD", "POP", "GAP"]
    assert [p.type for p in m.payloads][12:17] == [20, 21, 130, 131, 132]
    info = {p.name: p.info for p in reversed(m.payloads)}  # first occurrence wins
    assert info["KE"] == {"key_length": 128}
    assert info["ID"] == {"id_type": 1, "id_type_name": "IPV4_ADDR", "value": "192.0.2.1", "protocol": 17, "port": 500}
    assert info["CERT"] == {"encoding": 4, "encoding_name": "X.509 Signature", "data": b"CERTDATA"}
    assert info["CR"]["encoding"] == 4 and info["CR"]["data"] == b"CA-DN"
    assert info["HASH"] == {"length": 20} and info["SIG"] == {"length": 40} and info["NONCE"] == {"length": 24}
    assert info["N"] == {"notify_type": 24578, "notify_name": "INITIAL-CONTACT", "protocol": 3,
                         "spi": ctx["spi"], "data": b"", "doi": 1}
    dpd = m.payloads[8].info
    assert (dpd["notify_name"], dpd["spi"], dpd["sequence"]) == ("R-U-THERE", ISPI + RSPI, 4242)
    assert m.notifies == [(24578, "INITIAL-CONTACT"), (36136, "R-U-THERE")]
    assert info["D"] == {"doi": 1, "protocol": 3, "protocol_name": "ESP", "spis": [ctx["spi"], b"\x00\x00\x10\x01"]}
    assert info["VID"]["vendor"] == "strongSwan"
    assert info["ATTR"] == {"cfg_type": 1, "cfg_type_name": "ISAKMP_CFG_REQUEST", "identifier": 0x1234,
                            "attributes": [(16520, "XAUTH_TYPE", b"\0\0"), (16521, "XAUTH_USER_NAME", b"user"),
                                           (1, "INTERNAL_IP4_ADDRESS", b"")]}
    assert info["NAT-D"] == {"hash": ctx["natd"]} and m.payloads[14].info == {"hash": ctx["natd"]}
    assert info["NAT-OA"] == {"id_type": 1, "address": "198.51.100.7"}
    assert m.payloads[15].info["address"] == "10.0.0.1"
    assert info["FRAG"] == {"fragment_id": 0x0101, "number": 3, "last": True, "data_length": 8, "data": b"fragdata"}
    assert info["SEQ"] == {"sequence": 77}
    assert m.payload("GAP").body == b"gap" and m.payload("nope") is None
    # 15/16 stay GDOI's SAK/SAT (RFC 6407) in the decoder; read as the NAT-T drafts 04..08 numbered them, they are
    # NAT-D and NAT-OA of the same layouts as 20/21 (ipsec-tools NATD_BADDRAFT / NATOA_BADDRAFT)
    assert (info["SAK"], info["SAT"]) == ({}, {})
    sak, sat = m.payload("SAK"), m.payload("SAT")
    natd, nat_oa = draft_natt(sak), draft_natt(sat)
    assert (natd.name, natd.type, natd.info) == ("NAT-D", 15, {"hash": b"sak"})
    assert (sak.name, sak.info) == ("SAK", {})  # the decoded message is left as it was
    assert (nat_oa.name, nat_oa.type, nat_oa.info) == ("NAT-OA", 16, {})  # 3 bytes: too short for a NAT-OA
    oa = draft_natt(Payload(type=16, name="SAT", length=12, body=b"\x01\x00\x00\x00" + bytes([203, 0, 113, 9])))
    assert oa.info == {"id_type": 1, "address": "203.0.113.9"}


@pytest.mark.parametrize("id_type, raw, expected", [
    (2, b"vpn.example.net", "vpn.example.net"),
    (3, b"alice@example.net", "alice@example.net"),
    (4, bytes([10, 1, 0, 0, 255, 255, 0, 0]), "10.1.0.0/16"),
    (5, bytes.fromhex("20010db8" + "00" * 11 + "01"), "2001:db8::1"),
    (6, bytes.fromhex("20010db8" + "00" * 12) + bytes.fromhex("ff" * 8 + "00" * 8), "2001:db8::/64"),
    (7, bytes([10, 0, 0, 1, 10, 0, 0, 9]), "10.0.0.1-10.0.0.9"),
    (9, b"\x30\x0b\x31\x09", "300b3109"),
    (11, b"group-key", "group-key"),
])
def test_v1_id_values(id_type, raw, expected):
    data = chain(ISAKMP(init_cookie=ISPI, next_payload=5, exch_type=4),
                 ISAKMP_payload_ID(next_payload=0, IDtype=id_type, IdentData=raw))
    m = decode_isakmp(data)
    assert m.malformed is None
    assert m.payloads[0].info["value"] == expected
    assert m.payloads[0].info["id_type_name"] == names.ID_TYPES_V1[id_type]


def test_v1_ipsec_sa_attributes_use_ipsec_doi_namespace():
    t = ISAKMP_payload_Transform(transform_count=1, transform_id=12, transforms=[
        ("KeyLength", 128), ("AuthenticationAlgorithm", "HMAC-SHA"), ("EncapsulationMode", "Tunnel"),
        ("GroupDesc", "1024MODPgr"), ("LifeType", "seconds"), ("LifeDuration", 3600),
        ("LifeType", "kilobytes"), ("LifeDuration", 4608000)])
    prop = ISAKMP_payload_Proposal(proposal=1, proto=3, SPI=b"\x12\x34\x56\x78", trans_nb=1, trans=t)
    data = chain(ISAKMP(init_cookie=ISPI, resp_cookie=RSPI, next_payload=1, exch_type=32, id=1),
                 ISAKMP_payload_SA(next_payload=0, prop=prop))
    m = decode_isakmp(data)
    (prop,) = m.payload("SA").info["proposals"]
    assert (prop.protocol_name, prop.spi) == ("ESP", b"\x12\x34\x56\x78")
    (t,) = prop.transforms
    assert (t.id, t.name, t.protocol) == (12, "ESP_AES-CBC", 3)
    assert t.attributes == {"key_length": 128, "auth_alg": 2, "encap_mode": 1, "group": 2,
                            "life_type": 1, "life_duration": 3600}
    assert t.attrs[-2:] == [(1, 2), (2, 4608000)]


# --- IKEv2 -----------------------------------------------------------------


def v2_sa_init() -> bytes:
    ike = IKEv2_Proposal(proposal=1, proto=1, trans_nb=4, trans=(
        IKEv2_Transform(transform_type=1, transform_id=12, length=12, key_length=256)
        / IKEv2_Transform(transform_type=2, transform_id=5)
        / IKEv2_Transform(transform_type=3, transform_id=12)
        / IKEv2_Transform(transform_type=4, transform_id=14)))
    esp = IKEv2_Proposal(proposal=2, proto=3, SPI=b"\xc0\xff\xee\x01", trans_nb=2, trans=(
        IKEv2_Transform(transform_type=1, transform_id=20, length=12, key_length=128)
        / IKEv2_Transform(transform_type=5, transform_id=1)))
    return chain(
        IKEv2(init_SPI=ISPI, resp_SPI=b"\0" * 8, next_payload=33, exch_type=34, flags="Initiator", id=0),
        IKEv2_SA(next_payload=34, prop=ike / esp),
        IKEv2_KE(next_payload=40, group=14, ke=b"\x42" * 256),
        IKEv2_Nonce(next_payload=41, nonce=b"\x24" * 32),
        IKEv2_Notify(next_payload=41, proto=0, type=16388, notify=b"\xaa" * 20),
        IKEv2_Notify(next_payload=43, proto=3, SPI=b"\x01\x02\x03\x04", type=16393),
        IKEv2_VendorID(next_payload=0, vendorID=md5(b"strongSwan")),
    )


def test_v2_header_flags():
    data = v2_sa_init()
    m = decode_isakmp(data)
    assert m.malformed is None
    assert (m.ispi, m.rspi, m.next_payload, m.version, m.minor_version) == (ISPI, b"\0" * 8, 33, 2, 0)
    assert (m.exchange_type, m.exchange, m.flags, m.message_id, m.length) == (34, "IKE_SA_INIT", 0x08, 0, len(data))
    assert m.initiator and not m.response and not m.encrypted and not m.commit
    resp = decode_isakmp(bytes(IKEv2(init_SPI=ISPI, resp_SPI=RSPI, exch_type=37, flags="Response", id=9)))
    assert (resp.initiator, resp.response, resp.exchange, resp.message_id, resp.payloads) == \
        (False, True, "INFORMATIONAL", 9, [])


def test_v2_sa_ke_nonce_notify_vendor():
    m = decode_isakmp(v2_sa_init())
    assert [p.name for p in m.payloads] == ["SA", "KE", "NONCE", "N", "N", "V"]
    ike, esp = m.payload("SA").info["proposals"]
    assert (ike.number, ike.protocol, ike.protocol_name, ike.spi) == (1, 1, "IKE", b"")
    assert all(isinstance(t, V2Transform) for t in ike.transforms)
    assert [(t.type, t.type_name, t.id, t.name, t.key_length) for t in ike.transforms] == [
        (1, "ENCR", 12, "AES_CBC", 256), (2, "PRF", 5, "HMAC_SHA2_256", None),
        (3, "INTEG", 12, "HMAC_SHA2_256_128", None), (4, "DH", 14, "MODP_2048", None)]
    assert (esp.protocol_name, esp.spi) == ("ESP", b"\xc0\xff\xee\x01")
    assert [(t.name, t.key_length) for t in esp.transforms] == [("AES_GCM_16", 128), ("ESN", None)]
    assert m.payload("KE").info == {"group": 14, "group_name": "modp2048", "key_length": 256}
    assert m.payload("NONCE").info == {"length": 32}
    nat, rekey = (p.info for p in m.payloads if p.name == "N")
    assert nat == {"notify_type": 16388, "notify_name": "NAT_DETECTION_SOURCE_IP", "protocol": 0,
                   "spi": b"", "data": b"\xaa" * 20}
    assert (rekey["notify_name"], rekey["protocol"], rekey["spi"], rekey["data"]) == \
        ("REKEY_SA", 3, b"\x01\x02\x03\x04", b"")
    assert m.notifies == [(16388, "NAT_DETECTION_SOURCE_IP"), (16393, "REKEY_SA")]
    assert m.payload("V").info == {"vendor": "strongSwan", "hex": md5(b"strongSwan").hex()}


def test_v2_auth_payloads_unencrypted():
    data = chain(
        IKEv2(init_SPI=ISPI, resp_SPI=RSPI, next_payload=35, exch_type=35, flags="Initiator", id=1),
        IKEv2_IDi(next_payload=36, IDtype=1, ID="192.0.2.10"),
        IKEv2_IDr(next_payload=37, IDtype=2, ID=b"gw.example.net"),
        IKEv2_CERT(next_payload=38, cert_encoding=12, cert_data=b"http://x/c.der"),
        IKEv2_CERTREQ(next_payload=39, cert_encoding=4, cert_authority=b"\x01" * 20),
        IKEv2_AUTH(next_payload=44, auth_type=2, load=b"\x99" * 32),
        IKEv2_TSi(next_payload=45, number_of_TSs=1, traffic_selector=[IPv4TrafficSelector(
            IP_protocol_ID=6, start_port=1, end_port=1024,
            starting_address_v4="10.0.0.0", ending_address_v4="10.0.0.255")]),
        IKEv2_TSr(next_payload=47, number_of_TSs=1, traffic_selector=[IPv6TrafficSelector(length=40, 
            IP_protocol_ID=0, starting_address_v6="2001:db8::", ending_address_v6="2001:db8::ffff")]),
        IKEv2_CP(next_payload=48, CFGType=1, attributes=[ConfigurationAttribute(type=1), ConfigurationAttribute(type=3)]),
        IKEv2_EAP(next_payload=42, load=b"\x02\x05\x00\x09\x01user"),
        IKEv2_Delete(next_payload=49, proto=3, SPIsize=4, SPI=[b"\xde\xad\xbe\xef", b"\x00\x00\x00\x01"], SPInum=2),
        IKEv2_GSPM(next_payload=0, load=b"gspm"),
    )
    m = decode_isakmp(data)
    assert m.malformed is None
    assert [p.name for p in m.payloads] == ["IDi", "IDr", "CERT", "CERTREQ", "AUTH", "TSi", "TSr", "CP", "EAP", "D", "GSPM"]
    assert m.payload("IDi").info == {"id_type": 1, "id_type_name": "ID_IPV4_ADDR", "value": "192.0.2.10"}
    assert m.payload("IDr").info == {"id_type": 2, "id_type_name": "ID_FQDN", "value": "gw.example.net"}
    assert m.payload("CERT").info["encoding"] == 12 and m.payload("CERT").info["data"] == b"http://x/c.der"
    assert m.payload("CERTREQ").info["encoding"] == 4
    assert m.payload("AUTH").info == {"method": 2, "method_name": "PSK", "length": 32, "data": b"\x99" * 32}
    assert m.payload("TSi").info == {"selectors": [{"type": 7, "protocol": 6, "start_port": 1, "end_port": 1024,
                                                    "start": "10.0.0.0", "end": "10.0.0.255"}]}
    assert m.payload("TSr").info["selectors"] == [{"type": 8, "protocol": 0, "start_port": 0, "end_port": 65535,
                                                   "start": "2001:db8::", "end": "2001:db8::ffff"}]
    cp = m.payload("CP").info
    assert (cp["cfg_type"], cp["cfg_type_name"]) == (1, "CFG_REQUEST")
    assert [(t, n) for t, n, _ in cp["attributes"]] == [(1, "INTERNAL_IP4_ADDRESS"), (3, "INTERNAL_IP4_DNS")]
    assert m.payload("EAP").info == {"code": 2, "code_name": "Response", "identifier": 5, "eap_type": 1}
    assert m.payload("D").info == {"protocol": 3, "protocol_name": "ESP",
                                   "spis": [b"\xde\xad\xbe\xef", b"\x00\x00\x00\x01"]}
    assert m.payload("GSPM").type == 49


def test_v2_sk_hides_inner_notifies():
    data = chain(
        IKEv2(init_SPI=ISPI, resp_SPI=RSPI, next_payload=41, exch_type=37, flags="Response", id=5),
        IKEv2_Notify(next_payload=46, proto=0, type=16390, notify=b"cookie"),
        IKEv2_Encrypted(next_payload=41, load=b"\x00" * 64),
    )
    m = decode_isakmp(data)
    assert m.malformed is None and m.encrypted
    assert m.notifies == [(16390, "COOKIE")]
    sk = m.payload("SK")
    assert (sk.type, sk.info) == (46, {"first_payload": "N", "first_payload_type": 41, "encrypted_length": 64})


def test_v2_skf():
    data = chain(
        IKEv2(init_SPI=ISPI, resp_SPI=RSPI, next_payload=53, exch_type=35, flags="Initiator", id=1),
        IKEv2_Encrypted_Fragment(next_payload=35, frag_number=1, frag_total=3, load=b"\x01" * 100),
    )
    m = decode_isakmp(data)
    assert m.malformed is None and m.encrypted
    assert m.payload("SKF").info == {"fragment": 1, "total": 3, "first_payload": "IDi",
                                     "first_payload_type": 35, "encrypted_length": 100}


def test_v2_unknown_payload_types():
    base = IKEv2(init_SPI=ISPI, resp_SPI=RSPI, next_payload=99, exch_type=99)
    m = decode_isakmp(chain(base, Raw(struct.pack("!BBH", 0, 0, 6) + b"xy")))
    assert m.malformed is None and m.exchange == "type 99"
    assert (m.payloads[0].name, m.payloads[0].body) == ("type 99", b"xy")
    crit = decode_isakmp(chain(base, Raw(struct.pack("!BBH", 0, 0x80, 4))))
    assert crit.malformed == "payload 1 (type 99): unknown critical payload type 99"


def test_names():
    assert names.exchange_name(1, 4) == "Aggressive Mode" and names.exchange_name(1, 6) == "Transaction"
    assert names.exchange_name(1, 33) == "New Group Mode" and names.exchange_name(2, 43) == "IKE_INTERMEDIATE"
    assert names.exchange_name(2, 44) == "IKE_FOLLOWUP_KE" and names.exchange_name(2, 38) == "IKE_SESSION_RESUME"
    assert names.exchange_name(1, 250) == "type 250"
    assert names.payload_name(1, 14) == "ATTR" and names.payload_name(2, 53) == "SKF"
    assert names.payload_name(2, 200) == "type 200"
    assert names.notify_name(1, 14) == "NO-PROPOSAL-CHOSEN" and names.notify_name(2, 14) == "NO_PROPOSAL_CHOSEN"
    assert names.notify_name(1, 36137) == "R-U-THERE-ACK" and names.notify_name(2, 16430) == "IKEV2_FRAGMENTATION_SUPPORTED"
    assert names.notify_name(2, 16438) == "INTERMEDIATE_EXCHANGE_SUPPORTED"
    assert names.notify_name(2, 16418) == "CHILDLESS_IKEV2_SUPPORTED" and names.notify_name(2, 16407) == "REDIRECT"
    assert names.notify_name(2, 60000) == "type 60000"
    assert all(names.NOTIFY_V1.get(n) for n in range(1, 31))
    assert sequences.is_error_notify(2, 17) and not sequences.is_error_notify(2, 16390)
    assert sequences.is_error_notify(1, 14) and not sequences.is_error_notify(1, 8192)
    assert [names.group_name(g) for g in (1, 2, 5, 14, 19, 24, 31, 32)] == [
        "modp768", "modp1024", "modp1536", "modp2048", "ecp256", "modp2048s256", "curve25519", "curve448"]


# --- malformed input -------------------------------------------------------


def test_truncated_header():
    m = decode_isakmp(ISPI + RSPI[:2])
    assert isinstance(m, IkeMessage) and m.malformed == "truncated header: 10 bytes < 28"
    assert (m.ispi, m.size, m.payloads) == (ISPI, 10, [])
    assert decode_isakmp(b"").malformed == "truncated header: 0 bytes < 28"


def test_length_field_larger_than_data_keeps_earlier_payloads():
    data = v1_main_mode_1()
    cut = data[:-10]
    m = decode_isakmp(cut)
    assert m.malformed == f"truncated: header says {len(data)} bytes, {len(cut)} present"
    assert [p.name for p in m.payloads] == ["SA", "VID"]


def test_header_length_below_28():
    data = bytearray(v1_main_mode_1())
    data[24:28] = struct.pack("!I", 0)
    m = decode_isakmp(bytes(data))
    assert m.malformed == "header length 0 < 28"
    assert [p.name for p in m.payloads] == ["SA", "VID", "VID"]


def _payload_offsets(data: bytes) -> list[int]:
    offs, off = [], 28
    while off < len(data):
        offs.append(off)
        off += struct.unpack_from("!H", data, off + 2)[0]
    return offs


@pytest.mark.parametrize("plen", [0, 2, 3])
def test_payload_length_below_4(plen):
    data = bytearray(v1_main_mode_1())
    off = _payload_offsets(bytes(data))[2]
    data[off + 2:off + 4] = struct.pack("!H", plen)
    m = decode_isakmp(bytes(data))
    assert m.malformed == f"payload 3 (VID) length {plen} < 4"
    assert [p.name for p in m.payloads] == ["SA", "VID"]


def test_payload_length_past_end():
    data = bytearray(v2_sa_init())
    off = _payload_offsets(bytes(data))[5]
    data[off + 2:off + 4] = struct.pack("!H", 500)
    m = decode_isakmp(bytes(data))
    assert m.malformed == "payload 6 (V) length 500 runs past end (20 bytes left)"
    assert len(m.payloads) == 5


def test_next_payload_points_past_end():
    data = bytearray(v1_main_mode_1())
    data[_payload_offsets(bytes(data))[2]] = 13  # last VID says another VID follows
    m = decode_isakmp(bytes(data))
    assert m.malformed == f"payload 4 (VID) missing: message ends at offset {len(data)}"
    assert len(m.payloads) == 3


def test_next_payload_chain_into_garbage():
    data = bytearray(v1_main_mode_1())
    data[_payload_offsets(bytes(data))[2]] = 99
    garbage = bytes([0, 0, 0, 8]) + b"junk"
    data += garbage
    data[24:28] = struct.pack("!I", len(data))
    m = decode_isakmp(bytes(data))
    assert m.malformed == "payload 4 (type 99): unknown payload type 99"
    assert [p.name for p in m.payloads] == ["SA", "VID", "VID", "type 99"]


def test_extra_bytes_after_last_payload():
    data = bytearray(v1_main_mode_1() + b"\0\0")
    data[24:28] = struct.pack("!I", len(data))
    assert decode_isakmp(bytes(data)).malformed == "2 bytes after last payload"
    # bytes past the header length (UDP padding) are ignored
    assert decode_isakmp(v1_main_mode_1() + b"\0" * 16).malformed is None


def test_bad_body_keeps_chain():
    data = v2_sa_init()
    off = _payload_offsets(data)[1]  # KE
    bad = data[:off] + bytes([40, 0, 0, 6, 0, 14]) + data[off + 4 + 4 + 256:]
    bad = bad[:24] + struct.pack("!I", len(bad)) + bad[28:]
    m = decode_isakmp(bad)
    assert m.malformed == "payload 2 (KE) KE header needs 4 bytes at offset 0, 2 left"
    assert [p.name for p in m.payloads] == ["SA", "KE", "NONCE", "N", "N", "V"]


def test_unknown_version():
    data = bytearray(v2_sa_init())
    data[17] = 0x30
    m = decode_isakmp(bytes(data))
    assert (m.version, m.malformed, m.payloads) == (3, "unknown IKE version 3.0", [])


def test_fuzz_never_raises():
    rng = random.Random(20240601)
    seeds = [v1_main_mode_1(), v1_all_payloads()[0], v2_sa_init(), bytes(IKEv2(exch_type=34))]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op, pos = rng.random(), rng.randrange(len(data) + 1)
            if op < 0.5 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op < 0.7:
                del data[pos:pos + rng.randint(1, 40)]
            elif op < 0.85:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
            else:
                data[24:28] = struct.pack("!I", rng.randrange(1 << 32))
        m = decode_isakmp(bytes(data))
        assert isinstance(m, IkeMessage)
        assert m.malformed is None or isinstance(m.malformed, str)
        for p in m.payloads:
            assert isinstance(p.info, dict)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randint(0, 120)))
        assert isinstance(decode_isakmp(blob), IkeMessage)


# --- public captures (values confirmed with tshark 4.0.17) -------------------


def udp_payloads(rel: str) -> list[bytes | None]:
    """IKE message bytes per frame (index = frame number - 1), non-ESP marker stripped."""
    path = PUBLIC / rel
    if not path.exists():
        pytest.skip(f"public capture corpus not available: {path}")
    from scapy.all import UDP, rdpcap

    out = []
    for pkt in rdpcap(str(path)):
        data = None
        if UDP in pkt:
            data = bytes(pkt[UDP].payload)
            if 4500 in (pkt[UDP].sport, pkt[UDP].dport):
                data = data[4:] if data[:4] == b"\0\0\0\0" else None
        out.append(data)
    return out


def test_pcap_ikev1_main_mode():
    frames = udp_payloads("zeek-spicy-ipsec/tests/traces/ipsec-ikev1-isakmp-main-mode.pcap")
    m1 = decode_isakmp(frames[0])
    assert m1.malformed is None
    assert (m1.ispi.hex(), m1.rspi.hex(), m1.exchange_type, m1.flags, m1.length) == \
        ("e47a591fd057587f", "0000000000000000", 2, 0, 168)
    (t,) = m1.payload("SA").info["proposals"][0].transforms
    a = t.attributes
    assert (a["encryption"], a["key_length"], a["hash"], a["group"], a["auth"], a["life_duration"]) == \
        (7, 128, 2, 2, 1, 86400)
    assert [p.info["hex"] for p in m1.payloads if p.name == "VID"] == [
        "4a131c81070358455c5728f20e95452f", "439b59f8ba676c4c7737ae22eab8f582",
        "7d9419a65310ca6f2c179d9215529d56", "90cb80913ebb696e086381b5ec427b1f"]
    assert [p.info["vendor"] for p in m1.payloads if p.name == "VID"] == [
        "RFC 3947 NAT-T", "draft-ietf-ipsec-nat-t-ike-07", "draft-ietf-ipsec-nat-t-ike-03",
        "draft-ietf-ipsec-nat-t-ike-02\\n"]
    m3 = decode_isakmp(frames[2])
    assert [p.info["hash"].hex() for p in m3.payloads if p.name == "NAT-D"] == [
        "1574d64c0165bad16a023f038d45a07498d8d051", "febf462f1cd75805a7baa28747e769d674f85600"]
    m4 = decode_isakmp(frames[3])
    assert m4.rspi.hex() == "a00b8ef0902bb8ec" and m4.length == 304
    assert "Cisco Unity 1.0" in [p.info["vendor"] for p in m4.payloads if p.name == "VID"]
    m7 = decode_isakmp(frames[6])
    assert (m7.exchange, m7.message_id, m7.encrypted, m7.length) == ("Quick Mode", 0x635A2E6A, True, 220)
    assert m7.payloads[0].info["first_payload"] == "HASH"


def test_pcap_ikev2_invalid_ke_and_fragments():
    frames = udp_payloads("zeek-plugin-ikev2/tests/Traces/ikev2.pcap")
    m1 = decode_isakmp(frames[0])
    assert (m1.ispi.hex(), m1.length, m1.payload("KE").info["group"]) == ("46fd10006d11e258", 894, 19)
    assert [n for n, _ in m1.notifies] == [16388, 16389, 16430, 16431, 16406]
    m2 = decode_isakmp(frames[1])
    assert m2.response and m2.notifies == [(17, "INVALID_KE_PAYLOAD")]
    assert m2.payload("N").info["accepted_group"] == 15
    m4 = decode_isakmp(frames[3])
    assert (m4.rspi.hex(), m4.length, m4.payload("KE").info["group"]) == ("14633b5928660a90", 600, 15)
    assert [n for n, _ in m4.notifies] == [16388, 16389, 16430, 16431, 16418, 16404]
    f5, f6 = decode_isakmp(frames[4]), decode_isakmp(frames[5])
    assert (f5.exchange, f5.message_id, f5.length) == ("IKE_AUTH", 1, 1236)
    assert (f5.payload("SKF").info["fragment"], f5.payload("SKF").info["total"]) == (1, 2)
    assert f5.payload("SKF").info["first_payload"] == "IDi"
    assert (f6.payload("SKF").info["fragment"], f6.payload("SKF").info["first_payload"]) == (2, "NONE")
    m7 = decode_isakmp(frames[6])
    assert m7.response and m7.length == 80 and m7.payload("SK").info["first_payload"] == "N"
    assert m7.notifies == []


def test_pcap_ikev1_cisco_fragments():
    frames = udp_payloads("wireshark-wiki/uploads/__moin_import__/attachments/SampleCaptures/test1.pcap")
    m19 = decode_isakmp(frames[18])
    assert (m19.ispi.hex(), m19.length, m19.malformed) == ("683381fefa4dd808", 1144, None)
    assert [p.info["vendor"] for p in m19.payloads if p.name == "VID"] == [
        "XAUTH", "DPD", "FRAGMENTATION", "draft-ietf-ipsec-nat-t-ike-02\\n", "Cisco Unity 1.0"]
    m22 = decode_isakmp(frames[21])
    assert m22.length == 119 and m22.malformed is None
    assert m22.payload("FRAG").info["fragment_id"] == 1
    assert (m22.payload("FRAG").info["number"], m22.payload("FRAG").info["last"]) == (2, True)
    m23 = decode_isakmp(frames[22])
    assert (m23.payload("FRAG").info["number"], m23.payload("FRAG").info["last"]) == (1, False)
