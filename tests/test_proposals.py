"""Tests for ikeflow.decode.proposals: SA payloads built with scapy, decoded, then summarised."""

from functools import reduce
from pathlib import Path

import pytest
from scapy.contrib.ikev2 import IKEv2, IKEv2_Proposal, IKEv2_SA, IKEv2_Transform
from scapy.layers.isakmp import ISAKMP, ISAKMP_payload_Proposal, ISAKMP_payload_SA, ISAKMP_payload_Transform

from ikeflow.decode.ike import decode_isakmp
from ikeflow.decode.proposals import (
    attribute_problems,
    dh_keyword,
    ike_string_v1,
    is_aead,
    keyword,
    summarize_sa,
    summarize_v1,
    summarize_v2,
    swanctl_string,
    transform_ids,
)

PUBLIC = Path(__file__).resolve().parents[2] / "shared" / "pcaps" / "public"


def v1_sa(proto: int, *transforms, spi: bytes = b""):
    """Decoded IKEv1 SA payload with one proposal holding the given scapy transforms."""
    prop = ISAKMP_payload_Proposal(proposal=1, proto=proto, SPI=spi, trans_nb=len(transforms),
                                   trans=reduce(lambda a, b: a / b, transforms))
    msg = decode_isakmp(bytes(ISAKMP(init_cookie=b"\x01" * 8, next_payload=1, exch_type=2)
                              / ISAKMP_payload_SA(next_payload=0, prop=prop)))
    assert msg.malformed is None
    return msg.payload("SA")


def v1_transform(proto: int, tid: int, attrs, number: int = 1):
    (prop,) = v1_sa(proto, ISAKMP_payload_Transform(transform_count=number, transform_id=tid,
                                                    transforms=attrs)).info["proposals"]
    return prop.transforms[0]


def v2_proposal(proto: int, *transforms, spi: bytes = b""):
    """Decoded IKEv2 proposal; transforms are (type, id[, key length]) tuples."""
    built = [IKEv2_Transform(transform_type=t[0], transform_id=t[1], length=12, key_length=t[2])
             if len(t) == 3 else IKEv2_Transform(transform_type=t[0], transform_id=t[1]) for t in transforms]
    prop = IKEv2_Proposal(proposal=1, proto=proto, SPI=spi, trans_nb=len(built),
                          trans=reduce(lambda a, b: a / b, built))
    msg = decode_isakmp(bytes(IKEv2(init_SPI=b"\x02" * 8, next_payload=33, exch_type=34, flags="Initiator")
                              / IKEv2_SA(next_payload=0, prop=prop)))
    assert msg.malformed is None
    return msg.payload("SA").info["proposals"][0]


# --- IKEv1 -----------------------------------------------------------------


def test_v1_phase1_aes256_sha1_modp1024_psk():
    t = v1_transform(1, 1, [("Encryption", "AES-CBC"), ("KeyLength", 256), ("Hash", "SHA"),
                            ("GroupDesc", "1024MODPgr"), ("Authentication", "PSK"),
                            ("LifeType", "Seconds"), ("LifeDuration", 86400)])
    assert summarize_v1(t) == {
        "protocol": "ISAKMP", "transform": "KEY_IKE", "group": 2, "group_name": "modp1024",
        "lifetime": 86400, "lifetime_kb": None, "encryption": "AES-256", "hash": "SHA1", "auth": "PSK",
        "ike": "aes256-sha1;modp1024", "swanctl": "aes256-sha1-modp1024",
    }
    assert ike_string_v1(t) == "aes256-sha1;modp1024"
    assert swanctl_string(t) == "aes256-sha1-modp1024"


def test_v1_phase1_3des_md5_xauth():
    t = v1_transform(1, 1, [("Encryption", "3DES-CBC"), ("Hash", "MD5"), ("GroupDesc", "1536MODPgr"),
                            ("Authentication", "XAUTHInitPreShared"), ("LifeType", "Kilobytes"),
                            ("LifeDuration", 100000)])
    s = summarize_v1(t)
    assert (s["encryption"], s["hash"], s["auth"], s["group_name"]) == ("3DES", "MD5", "XAUTHInitPreShared", "modp1536")
    assert (s["lifetime"], s["lifetime_kb"]) == (None, 100000)
    assert s["ike"] == "3des-md5;modp1536"


def test_v1_phase1_sha2_ecp():
    t = v1_transform(1, 1, [("Encryption", "AES-CBC"), ("KeyLength", 128), ("Hash", "SHA2-256"),
                            ("GroupDesc", 19), ("Authentication", "RSA Sig")])
    s = summarize_v1(t)
    assert (s["hash"], s["auth"], s["ike"], s["swanctl"]) == ("SHA256", "RSA-SIG", "aes128-sha256;ecp256",
                                                             "aes128-sha256-ecp256")


def test_v1_esp_aes_sha1_pfs():
    t = v1_transform(3, 12, [("KeyLength", 128), ("AuthenticationAlgorithm", "HMAC-SHA"),
                             ("EncapsulationMode", "Tunnel"), ("GroupDesc", "1024MODPgr"),
                             ("LifeType", "seconds"), ("LifeDuration", 3600),
                             ("LifeType", "kilobytes"), ("LifeDuration", 4608000)])
    assert summarize_v1(t) == {
        "protocol": "ESP", "transform": "ESP_AES-CBC", "group": 2, "group_name": "modp1024",
        "lifetime": 3600, "lifetime_kb": 4608000, "mode": "Tunnel", "encryption": "AES-128",
        "integrity": "HMAC-SHA1", "esp": "aes128-sha1", "phase2alg": "aes128-sha1;modp1024",
        "swanctl": "aes128-sha1-modp1024",
    }


def test_v1_esp_gcm_no_pfs_and_3des_sha256():
    gcm = summarize_v1(v1_transform(3, 20, [("KeyLength", 256), ("EncapsulationMode", "Transport")]))
    assert (gcm["encryption"], gcm["integrity"], gcm["group"], gcm["mode"]) == ("AES-GCM16-256", None, None, "Transport")
    assert (gcm["esp"], gcm["phase2alg"], gcm["swanctl"]) == ("aes256gcm16", "aes256gcm16", "aes256gcm16")
    tdes = summarize_v1(v1_transform(3, 3, [("AuthenticationAlgorithm", "HMAC-SHA2-256")]))
    assert (tdes["encryption"], tdes["integrity"], tdes["esp"]) == ("3DES", "HMAC-SHA256", "3des-sha256")


def test_v1_ah_and_ipcomp():
    ah = summarize_v1(v1_transform(2, 3, []))
    assert (ah["protocol"], ah["transform"], ah["integrity"], ah["ah"]) == ("AH", "AH_SHA", "HMAC-SHA1", "sha1")
    ipcomp = summarize_v1(v1_transform(4, 2, []))
    assert (ipcomp["protocol"], ipcomp["compression"]) == ("IPCOMP", "DEFLATE")


def test_summarize_sa_v1_several_transforms():
    sa = v1_sa(1,
               ISAKMP_payload_Transform(transform_count=1, transform_id=1, transforms=[
                   ("Encryption", "AES-CBC"), ("KeyLength", 256), ("Hash", "SHA2-256"), ("GroupDesc", "2048MODPgr")]),
               ISAKMP_payload_Transform(transform_count=2, transform_id=1, transforms=[
                   ("Encryption", "3DES-CBC"), ("Hash", "SHA"), ("GroupDesc", "1024MODPgr")]))
    out = summarize_sa(sa)
    assert [(s["proposal"], s["ike"]) for s in out] == [(1, "aes256-sha256;modp2048"), (1, "3des-sha1;modp1024")]


# --- IKEv2 -----------------------------------------------------------------


def test_v2_ike_aes256_sha256_modp2048():
    p = v2_proposal(1, (1, 12, 256), (2, 5), (3, 12), (4, 14))
    assert summarize_v2(p) == {
        "protocol": "IKE", "number": 1, "spi": "", "encryption": ["AES_CBC_256"],
        "integrity": ["HMAC_SHA2_256_128"], "prf": ["HMAC_SHA2_256"], "groups": ["modp2048"],
        "group_ids": [14], "esn": [], "ike": "aes256-sha256-modp2048", "swanctl": "aes256-sha256-modp2048",
    }
    assert not is_aead(p)


def test_v2_aead_lists_prf():
    p = v2_proposal(1, (1, 20, 256), (2, 6), (4, 20))
    s = summarize_v2(p)
    assert (s["swanctl"], s["ike"], s["integrity"]) == ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-sha384-ecp384", [])
    assert is_aead(p)


def test_v2_several_algorithms_per_type():
    p = v2_proposal(1, (1, 12, 256), (1, 12, 128), (3, 12), (3, 2), (2, 5), (2, 2), (4, 14), (4, 31))
    s = summarize_v2(p)
    assert s["swanctl"] == "aes256-aes128-sha256-sha1-modp2048-x25519"
    assert s["ike"] == "aes256+aes128-sha256+sha1-modp2048+x25519"
    assert s["groups"] == ["modp2048", "curve25519"] and s["group_ids"] == [14, 31]


def test_v2_prf_not_implied_by_integrity():
    s = summarize_v2(v2_proposal(1, (1, 12, 128), (3, 12), (2, 4), (4, 15)))
    assert s["swanctl"] == "aes128-sha256-prfaesxcbc-modp3072"


def test_v2_esp_proposals():
    gcm = summarize_v2(v2_proposal(3, (1, 20, 128), (5, 1), (5, 0), spi=b"\xc0\xff\xee\x01"))
    assert (gcm["protocol"], gcm["spi"], gcm["esp"], gcm["swanctl"], gcm["esn"]) == \
        ("ESP", "c0ffee01", "aes128gcm16", "aes128gcm16-esn-noesn", ["ESN", "NO_ESN"])
    pfs = summarize_v2(v2_proposal(3, (1, 12, 128), (3, 2), (4, 14), (5, 0), spi=b"\x00\x00\x00\x01"))
    assert (pfs["esp"], pfs["swanctl"]) == ("aes128-sha1-modp2048", "aes128-sha1-modp2048")
    ah = summarize_v2(v2_proposal(2, (3, 12), (5, 0), spi=b"\x00\x00\x00\x02"))
    assert (ah["protocol"], ah["ah"], ah["swanctl"]) == ("AH", "sha256", "sha256")


@pytest.mark.parametrize("group, keyword", [(2, "modp1024"), (14, "modp2048"), (19, "ecp256"), (21, "ecp521"),
                                            (24, "modp2048s256"), (28, "ecp256bp"), (31, "x25519"), (32, "x448"),
                                            (99, "dh99")])
def test_dh_keywords(group, keyword):
    assert dh_keyword(group) == keyword


# --- IKEv2 transform IDs and repeated attributes ------------------------------


def test_transform_ids_translate_ikev1():
    # RFC 2409 appendix A: 3DES-CBC is 5, MD5 is 1, group 2; as IKEv2 IDs ENCR_3DES 3, PRF_HMAC_MD5 1
    p1 = v1_transform(1, 1, [("Encryption", "3DES-CBC"), ("Hash", "MD5"), ("GroupDesc", "1024MODPgr")])
    assert transform_ids(p1) == {1: [3], 2: [1], 3: [], 4: [2]}
    # RFC 2407: ESP_3DES is 3, HMAC-MD5 is Authentication-Algorithm 1 (IKEv2 AUTH_HMAC_MD5_96 1), PFS group 5
    esp = v1_transform(3, 3, [("AuthenticationAlgorithm", "HMAC-MD5"), ("GroupDesc", "1536MODPgr")])
    assert transform_ids(esp) == {1: [3], 2: [], 3: [1], 4: [5]}
    assert transform_ids(v1_transform(2, 3, [])) == {1: [], 2: [], 3: [2], 4: []}  # AH_SHA: HMAC-SHA1
    assert transform_ids(v1_transform(4, 2, [])) == {1: [], 2: [], 3: [], 4: []}  # IPCOMP: no algorithm


def test_transform_ids_ikev2_and_keywords():
    p = v2_proposal(1, (1, 3), (2, 1), (3, 0), (4, 0), (4, 22))
    assert transform_ids(p) == {1: [3], 2: [1], 3: [], 4: [22]}
    assert [keyword(1, 3), keyword(2, 1), keyword(3, 1), keyword(4, 22)] == ["3des", "prfmd5", "md5", "modp1024s160"]


def test_attribute_problems():
    dup = v1_transform(1, 1, [("Encryption", "AES-CBC"), ("LifeDuration", 86400), ("LifeType", "Seconds"),
                              ("LifeDuration", 65535), ("Hash", "SHA"), ("Hash", "SHA")])
    (prop,) = v1_sa(1, ISAKMP_payload_Transform(transform_count=1, transform_id=1, transforms=[
        ("Encryption", "AES-CBC"), ("LifeDuration", 86400), ("LifeType", "Seconds"), ("LifeDuration", 65535),
        ("Hash", "SHA"), ("Hash", "SHA")])).info["proposals"]
    assert dup.attributes["hash"] == 2
    assert attribute_problems(prop) == ["transform 1: life_duration (seconds) twice, conflicting: 86400, 65535",
                                        "transform 1: hash twice, duplicate: 2, 2"]
    (ok,) = v1_sa(1, ISAKMP_payload_Transform(transform_count=1, transform_id=1, transforms=[
        ("LifeType", "Seconds"), ("LifeDuration", 3600), ("LifeType", "Kilobytes"), ("LifeDuration", 1000)])
                  ).info["proposals"]
    assert attribute_problems(ok) == []
    assert attribute_problems(v2_proposal(1, (1, 12, 128), (1, 12, 128), (4, 14))) == ["ENCR AES_CBC_128 twice"]


# --- public captures (values confirmed with tshark 4.0.17) -------------------


def first_sa(rel: str, frame: int):
    path = PUBLIC / rel
    if not path.exists():
        pytest.skip(f"public capture corpus not available: {path}")
    from scapy.all import UDP, rdpcap

    pkt = rdpcap(str(path))[frame - 1]
    return decode_isakmp(bytes(pkt[UDP].payload)).payload("SA")


def test_pcap_fortigate_ikev1_proposal():
    # tshark: encryption 7 (AES-CBC), key length 256, hash 6 (SHA2-512), group 20, auth 1 (PSK), life 28800
    (s,) = summarize_sa(first_sa("arkime/tests/pcap/IKEv1.pcap", 1))
    assert (s["encryption"], s["hash"], s["group_name"], s["auth"], s["lifetime"]) == \
        ("AES-256", "SHA512", "ecp384", "PSK", 28800)
    assert (s["ike"], s["swanctl"]) == ("aes256-sha512;ecp384", "aes256-sha512-ecp384")


def test_pcap_ikev2_chosen_proposal():
    # tshark: ENCR 12 keylen 128, INTEG 12, PRF 4 (AES128_XCBC), DH 15
    (s,) = summarize_sa(first_sa("zeek-plugin-ikev2/tests/Traces/ikev2.pcap", 4))
    assert s["swanctl"] == "aes128-sha256-prfaesxcbc-modp3072"
    assert s["ike"] == "aes128-sha256-modp3072"
