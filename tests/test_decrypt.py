"""Ciphers against RFC test vectors, and decryption of real captures checked against tshark."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ikeflow.decode import decrypt as d
from ikeflow.keys import EspKey, IkeV2Keys, load_keys
from tests.conftest import need_public, need_tshark

H = bytes.fromhex


# ------------------------------------------------------------------ RFC test vectors

def test_aes_cbc_rfc3602_case1():
    ct = H("e353779c1079aeb82708942dbe77181a")
    plain, next_iv = d.v1_decrypt(ct, H("06a9214036b8a15b512e03d534120006"), H("3dafba429d9eb430b422da802c9fac41"),
                                  "aes-cbc")
    assert plain == b"Single block msg" and next_iv == ct


@pytest.mark.parametrize("key, nonce, iv, plain, ct", [
    ("ae6852f8121067cc4bf7a5765577f39e", "00000030", "0000000000000000", b"Single block msg".hex(),
     "e4095d4fb7a7b3792d6175a3261311b8"),
    ("7e24067817fae0d743d6ce1f32539163", "006cb6db", "c0543b59da48d90b", bytes(range(32)).hex(),
     "5104a106168a72d9790d41ee8edad388eb2e1efc46da57c8fce630df9141be28"),
])
def test_aes_ctr_rfc3686(key, nonce, iv, plain, ct):
    """RFC 3686 test vectors 1 and 2: the nonce sits after the key, as IKEv2 derives it (RFC 5930)."""
    assert d.decrypt_raw("aes-ctr", H(key + nonce), H(iv), H(ct)) == H(plain)


GCM_P = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
         "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
GCM_C = ("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
         "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091")
GCM_T = "5bc94fbc3221a5db94fae95ae7121a47"


@pytest.mark.parametrize("icv", [8, 12, 16])
def test_aes_gcm_truncated_tags(icv):
    """GCM spec test case 4 (McGrew/Viega) split as RFC 4106 does: 4-octet salt in the key, 8-octet IV;
    the 8/12-octet ICVs are the leading octets of the tag; a changed tag or AAD does not verify."""
    key, tag = H("feffe9928665731c6d6a8f9467308308" + "cafebabe"), H(GCM_T)
    aad = H("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    name = f"aes-gcm-{icv}"
    assert d.decrypt_raw(name, key, H("facedbaddecaf888"), H(GCM_C), aad, tag[:icv]) == H(GCM_P)
    assert d.decrypt_raw(name, key, H("facedbaddecaf888"), H(GCM_C), aad, bytes([tag[0] ^ 1]) + tag[1:icv]) is None
    assert d.decrypt_raw(name, key, H("facedbaddecaf888"), H(GCM_C), aad[1:], tag[:icv]) is None


# RFC 7634 appendix B: an IKEv2 INFORMATIONAL protected with ChaCha20-Poly1305 (SK_e = key | 4-octet salt).
CHACHA_KEY = H("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" + "a0a1a2a3")
RFC7634_IKE = H("c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d7" "2e202500000000090000004529000029" "1011121314151617"
                "610394701f8d017f7c12924889" "6b71bfe25236efd7cdc67066906315b2")


def _v2_keys(encr: str, sk_e: bytes, integ: str = "none", sk_a: bytes = b"") -> IkeV2Keys:
    return IkeV2Keys(H("c0c1c2c3c4c5c6c7"), H("d0d1d2d3d4d5d6d7"), sk_e, sk_e, encr, sk_a, sk_a, integ)


def test_chacha20_poly1305_ikev2_rfc7634_appendix_b():
    opened = d.open_sk(RFC7634_IKE, 28, _v2_keys("chacha20-poly1305", CHACHA_KEY), True)
    assert opened.ok and opened.plaintext == H("0000000c000040010000000a")     # one Notify, pad length 0
    tampered = RFC7634_IKE[:20] + b"\x0a" + RFC7634_IKE[21:]                   # the message ID is authenticated
    bad = d.open_sk(tampered, 28, _v2_keys("chacha20-poly1305", CHACHA_KEY), True)
    assert not bad.ok and "does not verify" in bad.reason and bad.plaintext == b""


def test_chacha20_poly1305_esp_rfc7634_appendix_a():
    packet = H("01020304000000051011121314151617"
               "24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6"
               "14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3"
               "cbec163fac469b502773f6fb94e664da9165b82829f641e0"
               "76aaa8266b7fb0f7b11b369907e1ad43")
    key = EspKey(0x01020304, "*", "*", "chacha20-poly1305", CHACHA_KEY, "none", b"")
    opened = d.open_esp(packet, key)
    assert opened.ok and opened.next_header == 4
    assert opened.inner == H("45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10"
                             "0007362708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
                             "2425262728292a2b2c2d2e2f3031323334353637")
    assert d.inner_summary(opened.next_header, opened.inner) == ("198.51.100.5", "192.0.2.5", 1, None, None)
    wrong = d.open_esp(packet, EspKey(0x01020304, "*", "*", "chacha20-poly1305", bytes(36), "none", b""))
    assert not wrong.ok and wrong.inner == b""


@pytest.mark.parametrize("integ, key, data, full", [
    # RFC 2202 test case 2 (MD5, SHA-1) and RFC 4231 test case 2 (SHA-2): key "Jefe"
    ("hmac-md5-96", b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
    ("hmac-sha1-96", b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    ("hmac-sha2-256-128", b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("hmac-sha2-384-192", b"Jefe", b"what do ya want for nothing?",
     "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"),
    ("hmac-sha2-512-256", b"Jefe", b"what do ya want for nothing?",
     "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fd"
     "caeab1a34d4a6b4b636e070a38bce737"),
])
def test_hmac_truncations_rfc2202_rfc4231(integ, key, data, full):
    icv = d.integrity_icv(integ, key, data)
    assert icv == H(full)[:d.INTEG[integ][1]]


def test_ikev1_iv_rules_rfc2409_appendix_b():
    """Phase-1 IV = hash(g^xi | g^xr), phase-2 IV = hash(last phase-1 block | M-ID), cut to the block."""
    from cryptography.hazmat.primitives import hashes
    h = hashes.Hash(hashes.SHA1())
    h.update(b"gxi" + b"gxr")
    assert d.v1_phase1_iv("sha1", b"gxi", b"gxr", 16) == h.finalize()[:16]
    h = hashes.Hash(hashes.MD5())
    h.update(b"B" * 8 + struct.pack("!I", 0xF2CFE203))
    assert d.v1_phase2_iv("md5", b"B" * 8, 0xF2CFE203, 8) == h.finalize()[:8]


def test_v1_plausible():
    notify = struct.pack("!BBH", 0, 0, 12) + bytes(8)
    hash_payload = struct.pack("!BBH", 11, 0, 24) + bytes(20)
    assert d.v1_plausible(hash_payload + notify + bytes(4), 8)
    assert not d.v1_plausible(hash_payload + notify[:6], 8)          # chain runs past the data
    assert not d.v1_plausible(b"\x0b\x07" + hash_payload[2:] + notify, 8)   # reserved octet set
    assert not d.v1_plausible(bytes(16), 99)


def test_bad_keys_give_reasons_not_exceptions():
    short = _v2_keys("aes-cbc", bytes(15), "hmac-sha1-96", bytes(20))
    assert d.open_sk(RFC7634_IKE, 28, short, True).reason == "the aes-cbc key is 15 octets, it must be 16, 24, 32"
    assert "not supported" in d.open_sk(RFC7634_IKE, 28, _v2_keys("", bytes(16)), True).reason
    assert "cut off" in d.open_sk(RFC7634_IKE[:30], 28, _v2_keys("chacha20-poly1305", CHACHA_KEY), True).reason
    wrong_mac = _v2_keys("aes-cbc", bytes(16), "hmac-sha2-256-128", bytes(32))
    sk_payload = struct.pack("!BBH", 41, 0, 4 + 16 + 32 + 16) + bytes(16 + 32 + 16)    # IV, 2 blocks, ICV
    message = RFC7634_IKE[:24] + struct.pack("!I", 28 + len(sk_payload)) + sk_payload
    assert "hmac-sha2-256-128 ICV does not verify with SK_ai" in d.open_sk(message, 28, wrong_mac, True).reason
    assert "does not verify" in d.open_esp(bytes(40), EspKey(1, "*", "*", "aes-cbc", bytes(16), "hmac-sha1-96",
                                                             bytes(20))).reason
    with pytest.raises(ValueError):
        d.v1_decrypt(bytes(12), bytes(24), bytes(8), "3des")


def test_transform_ids():
    assert d.encr_from_transform(20) == "aes-gcm-16" and d.encr_from_transform(28) == "chacha20-poly1305"
    assert d.integ_from_transform(12) == "hmac-sha2-256-128" and d.integ_from_transform(99) == ""


def test_inner_summary_transport_and_ipv6():
    udp = struct.pack("!HHHH", 4500, 53, 8, 0)
    assert d.inner_summary(17, udp) == ("", "", 17, 4500, 53)
    v6 = bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + H("20010db8" + "00" * 11 + "01") + H("20010db8" + "00" * 11 + "02")
    assert d.inner_summary(41, v6 + udp) == ("2001:db8::1", "2001:db8::2", 17, 4500, 53)
    assert d.inner_summary(4, b"\x45") == ("", "", 4, None, None)


# ------------------------------------------------------------------ real captures, checked against tshark

def _frames(path: Path):
    """(frame number, outer src, outer dst, 'ike'|'esp', bytes from the ISAKMP header / the SPI)."""
    from scapy.all import IP, UDP, IPv6, PcapReader
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    for number, pkt in enumerate(PcapReader(io.BytesIO(data)), 1):
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        if ip is None:
            continue
        if pkt.haslayer(UDP):
            udp, payload = pkt[UDP], bytes(pkt[UDP].payload)
            if 4500 in (udp.sport, udp.dport):
                if payload[:4] == bytes(4):
                    yield number, ip.src, ip.dst, "ike", payload[4:]
                elif len(payload) > 8:
                    yield number, ip.src, ip.dst, "esp", payload
            elif 500 in (udp.sport, udp.dport):
                yield number, ip.src, ip.dst, "ike", payload
        elif getattr(ip, "proto", getattr(ip, "nh", None)) == 50:
            yield number, ip.src, ip.dst, "esp", bytes(ip.payload)


def _chain(data: bytes, first: int, offset: int) -> list[tuple[int, int]]:
    """(type, offset) of each generic payload from `offset`."""
    out, kind = [], first
    while kind and offset + 4 <= len(data):
        out.append((kind, offset))
        kind, length = data[offset], struct.unpack_from("!H", data, offset + 2)[0]
        if length < 4:
            break
        offset += length
    return out


def _tshark(capture: Path, config: Path, fields: list[str], esp: bool = False) -> dict[int, list[list[str]]]:
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(config))
    cmd = [need_tshark(), "-r", str(capture), "-T", "fields", "-E", "occurrence=a", "-e", "frame.number"]
    cmd += [a for f in fields for a in ("-e", f)]
    if esp:
        cmd += ["-o", "esp.enable_encryption_decode:TRUE"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120).stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split("\t")
        rows[int(cols[0])] = [c.split(",") if c else [] for c in cols[1:]]
    return rows


def _config(tmp_path: Path, *tables: Path) -> Path:
    """A Wireshark configuration directory holding `tables` under their UAT names."""
    for table in tables:
        shutil.copy(table, tmp_path / table.name.removesuffix(".tmpl"))
    return tmp_path


WS = "wireshark/test"
WIKI_V2 = ("wireshark-wiki/uploads/dc5b30a117424e6ed21c726771a4006b/ipsec_ikev2+esp_aes-gcm_aes-ctr_aes-cbc.tgz/"
           "ipsec_ikev2+esp_aes-gcm,aes-ctr,aes-cbc")
WIKI_ESP = "wireshark-wiki/uploads/21afad41e961b83b9e74cf1fd500a9be/ipsec_esp.tgz"
V2_CAPTURES = ["ikev2-decrypt-3des-sha1_160.pcap", "ikev2-decrypt-aes128ccm12-2.pcap", "ikev2-decrypt-aes128ccm12.pcap",
               "ikev2-decrypt-aes192ctr.pcap", "ikev2-decrypt-aes256cbc.pcapng", "ikev2-decrypt-aes256ccm16.pcapng",
               "ikev2-decrypt-aes256gcm16.pcap", "ikev2-decrypt-aes256gcm8.pcap"]


def _open_ikev2(capture: Path, keys) -> dict[int, list[int]]:
    """Frame -> top-level inner payload types of every SK payload that opens."""
    out = {}
    for number, _, _, kind, msg in _frames(capture):
        if kind != "ike" or len(msg) < 28 or msg[17] >> 4 != 2 or struct.unpack_from("!I", msg, 24)[0] > len(msg):
            continue                                    # not IKEv2, or the first IP fragment of a message
        sa = keys.ikev2(msg[:8], msg[8:16])
        sk = [(t, o) for t, o in _chain(msg, msg[16], 28) if t in (46, 53)]
        if not sa or not sk:
            continue
        kind_, offset = sk[0]
        opened = d.open_sk(msg, offset, sa, bool(msg[19] & 0x08), kind_ == 53)
        assert opened.ok, f"frame {number}: {opened.reason}"
        out[number] = [t for t, _ in _chain(opened.plaintext, msg[offset], 0)]
    return out


def _tshark_inner(rows: dict[int, list[list[str]]], frame: int) -> list[int]:
    types = [int(t) for t in rows[frame][0]]
    return [t for t in types[types.index(46) + 1:] if t not in (2, 3)]


@pytest.mark.parametrize("name", V2_CAPTURES)
def test_ikev2_wireshark_captures_agree_with_tshark(name, tmp_path):
    """Every SK payload of Wireshark's IKEv2 decryption test captures opens with their key table (all ciphers
    Wireshark tests: 3DES, AES-CBC/CTR, AES-GCM-8/16, AES-CCM-12/16, CCM read as CTR without ICV check), and
    the inner payload types are tshark's, in wire order."""
    public = need_public() / WS
    table = public / "config/ikev2_decryption_table.tmpl"
    ours = _open_ikev2(public / "captures" / name, load_keys([str(table)]))
    rows = _tshark(public / "captures" / name, _config(tmp_path, table), ["isakmp.typepayload"])
    theirs = {f: _tshark_inner(rows, f) for f, r in rows.items() if "46" in r[0]}
    assert ours and ours == theirs


def test_wiki_ikev2_and_esp_agree_with_tshark(tmp_path):
    """The wiki's three IKEv2 connections (AES-GCM-16, AES-CTR, AES-CBC) over NAT-T with their ESP: all 24
    encrypted IKE messages and all 24 ESP packets open, with tshark's inner payloads and inner addresses."""
    folder = need_public() / WIKI_V2
    keys = load_keys([str(folder / "ikev2_decryption_table"), str(folder / "esp_sa")])
    capture = folder / "capture.pcapng"
    rows = _tshark(capture, _config(tmp_path, folder / "ikev2_decryption_table", folder / "esp_sa"),
                   ["isakmp.typepayload", "ip.src", "ip.dst", "ip.proto"], esp=True)
    ours = _open_ikev2(capture, keys)
    assert len(ours) == 24 and ours == {f: _tshark_inner(rows, f) for f, r in rows.items() if "46" in r[0]}
    esp = _open_esp(capture, keys)
    assert len(esp) == 24 and esp == _tshark_esp(rows)


def _open_esp(capture: Path, keys) -> dict[int, tuple[str, str, int]]:
    out = {}
    for number, src, dst, kind, payload in _frames(capture):
        if kind != "esp":
            continue
        key = keys.esp(struct.unpack_from("!I", payload)[0], src, dst)
        if key is None:
            continue
        opened = d.open_esp(payload, key)
        if opened.ok:
            inner = d.inner_summary(opened.next_header, opened.inner)
            out[number] = (inner[0], inner[1], inner[2]) if inner[0] else ("", "", opened.next_header)
    return out


def _tshark_esp(rows: dict[int, list[list[str]]]) -> dict[int, tuple[str, str, int]]:
    """Frames where tshark shows a second IP header (tunnel mode) or an upper layer after ESP (transport)."""
    out = {}
    for frame, (_, srcs, dsts, protos, *rest) in rows.items():
        if protos and protos[0] in ("50", "17") and len(srcs) > 1:
            out[frame] = (srcs[1], dsts[1], int(protos[1]))
    return out


@pytest.mark.parametrize("capture, table", [
    (f"{WS}/captures/esp-bug-12671.pcapng.gz", f"{WS}/config/esp_sa.tmpl"),
    (f"{WIKI_ESP}/ipsec_esp_capture_2/capture.pcap", f"{WIKI_ESP}/ipsec_esp_capture_2/esp_sa"),
])
def test_esp_tunnel_mode_agrees_with_tshark(capture, table, tmp_path):
    """Tunnel-mode ESP (AES-CBC with HMAC-SHA1-96; DES and AES-CBC with '*' SPIs): the same packets decrypt
    and the inner addresses and protocol are tshark's."""
    public = need_public()
    ours = _open_esp(public / capture, load_keys([str(public / table)]))
    rows = _tshark(public / capture, _config(tmp_path, public / table), ["ip.src", "ip.dst", "ip.proto"], esp=True)
    theirs = {f: v for f, v in _tshark_esp({f: [[], *r] for f, r in rows.items()}).items()}
    assert ours and ours == theirs


@pytest.mark.parametrize("folder, count", [("ipsec_esp_capture_1", 240), ("ipsec_esp_capture_5", 72)])
def test_esp_transport_mode_wiki(folder, count, tmp_path):
    """Transport-mode ESP over IPv4 and IPv6 (AES-CBC, 3DES, NULL, Blowfish; HMAC-SHA1/MD5/none): every packet
    opens; the upper-layer protocol per packet is tshark's."""
    base = need_public() / WIKI_ESP / folder
    ours = _open_esp(base / "capture.pcap", load_keys([str(base / "esp_sa")]))
    assert len(ours) == count
    rows = _tshark(base / "capture.pcap", _config(tmp_path, base / "esp_sa"), ["esp.protocol"], esp=True)
    assert {f: ("", "", int(rows[f][0][0], 0)) for f in ours} == ours


def _open_ikev1(capture: Path, keys) -> dict[int, list[int] | None]:
    """Frame -> inner payload types of each encrypted IKEv1 message (None when no key and IV gives a plausible
    payload chain), as the model does it: per ISAKMP SA (initiator cookie) and per key given for it, RFC 2409
    appendix B IVs (phase 1 from hash(g^xi | g^xr) chained through the phase-1 messages; a new message ID starts
    from one of `v1_new_exchange_ivs`, then chains); a retransmission reuses its original's result; messages cut
    by IP fragmentation are left out; IKEv1 fragments are joined. Cipher, hash and key length come from the
    responder's chosen SA."""
    from ikeflow.decode.ike import decode_isakmp
    frames, pieces = [], {}
    for n, _, _, kind, m in _frames(capture):
        if kind != "ike" or len(m) < 36 or m[17] >> 4 != 1 or struct.unpack_from("!I", m, 24)[0] > len(m):
            continue
        if m[16] == 132:            # IKEv1 fragment (strongSwan/Cisco): ID, number, flags, piece of the message
            length, frag_id, index, flags = struct.unpack_from("!xxHHBB", m, 28)
            got = pieces.setdefault((m[:16], frag_id), {})
            got[index] = (m[36:28 + length], flags & 1)
            if any(last for _, last in got.values()) and sorted(got) == list(range(1, len(got) + 1)):
                m = b"".join(got[i][0] for i in sorted(got))
            else:
                continue
        frames.append((n, m))
    out = {}
    for icookie in dict.fromkeys(m[:8] for _, m in frames):
        sa_frames = [(n, m) for n, m in frames if m[:8] == icookie]
        ke, chosen = [], {}
        for _, msg in sa_frames:
            for payload in decode_isakmp(msg).payloads if not msg[19] & 1 else []:
                if payload.type == 4 and payload.body not in ke:
                    ke.append(payload.body)
                if payload.type == 1 and any(msg[8:16]) and payload.info.get("proposals"):
                    chosen = payload.info["proposals"][0].transforms[0].attributes
        if len(ke) < 2 or not chosen or not keys.ikev1_all(icookie):
            continue
        cipher, hash_name = d.V1_ENCR[chosen["encryption"]], d.V1_HASH[chosen["hash"]]
        block = d.ENCR[cipher].block
        for candidate in keys.ikev1_all(icookie):
            key = candidate.enc_key[:chosen.get("key_length", 0) // 8 or None]
            phase1_iv = last_phase1 = d.v1_phase1_iv(hash_name, ke[0], ke[1], block)
            chains, seen = {}, {}
            for number, msg in sa_frames:
                if not msg[19] & 1 or out.get(number):
                    continue
                if msg in seen:
                    out[number] = seen[msg]
                    continue
                mid = struct.unpack_from("!I", msg, 20)[0]
                body = msg[28:struct.unpack_from("!I", msg, 24)[0]]
                if mid == 0:
                    ivs = [("phase 1", phase1_iv)]
                elif mid in chains:
                    ivs = [("chained", chains[mid])]
                else:
                    ivs = d.v1_new_exchange_ivs(hash_name, last_phase1, mid, block)
                for _, iv in ivs:
                    plain, next_iv = d.v1_decrypt(body, key, iv, cipher)
                    if d.v1_plausible(plain, msg[16]):
                        break
                else:
                    out.setdefault(number, None)
                    continue
                if mid == 0:
                    phase1_iv = last_phase1 = next_iv
                else:
                    chains[mid] = next_iv
                seen[msg] = out[number] = [t for t, _ in _chain(plain, msg[16], 0)]
    return out


@pytest.mark.parametrize("name, tshark_differs", [("ikev1-certs.pcap", {8: [8]}), ("ikev1-bug-12610.pcapng.gz", {}),
                                                  ("ikev1-bug-12620.pcapng.gz", {})])
def test_ikev1_wireshark_captures_agree_with_tshark(name, tshark_differs, tmp_path):
    """Main Mode (3DES/MD5 with certificates; AES-256/SHA2-256), Aggressive Mode with XAUTH/Mode-Config and
    Quick Mode: every encrypted message decrypts with Wireshark's IKEv1 table to a plausible payload chain, and
    the inner payload types are tshark's. Except ikev1-certs frame 8, a byte-identical retransmission of the
    Quick Mode message in frame 7: tshark decrypts it under the IV chained past frame 7 and finds only a HASH
    followed by garbage; ikeflow gives it frame 7's result."""
    public = need_public() / WS
    table = public / "config/ikev1_decryption_table.tmpl"
    ours = _open_ikev1(public / "captures" / name, load_keys([str(table)]))
    rows = _tshark(public / "captures" / name, _config(tmp_path, table), ["isakmp.typepayload"])
    assert ours and None not in ours.values()
    theirs = {f: [int(t) for t in rows[f][0] if t not in ("2", "3")] for f in ours}
    assert {f: t for f, t in theirs.items() if t != ours[f]} == tshark_differs


def test_garbage_never_raises():
    """Any bytes under any supported cipher give a result with a reason, never an exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    names = sorted(n for n in d.ENCR if n not in ("blowfish-cbc", "cast5-cbc"))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200), st.integers(0, 80), st.sampled_from(names), st.booleans(), st.booleans())
    def check(data, offset, encr, initiator, skf):
        size = 24 if encr == "3des" else 8 if encr == "des" else 0 if encr == "null" else \
            32 + d.ENCR[encr].salt if encr == "chacha20-poly1305" else 16 + d.ENCR[encr].salt
        keys = _v2_keys(encr, bytes(size), "hmac-sha1-96", bytes(20))
        opened = d.open_sk(data, offset, keys, initiator, skf)
        assert opened.ok or opened.reason
        esp = d.open_esp(data, EspKey(1, "*", "*", encr, bytes(size), "hmac-sha1-96", bytes(20)))
        assert esp.ok or esp.reason
        d.inner_summary(data[0] if data else 4, data)
        d.v1_plausible(data, offset)

    check()


def test_esp_gcm_without_icv_length(tmp_path):
    """Wireshark's deprecated "AES-GCM [RFC4106]" (the wiki's esp_sa.no_icv) opens all 24 packets; a
    12-octet ICV under that name is found too."""
    folder = need_public() / WIKI_V2
    keys = load_keys([str(folder / "esp_sa.no_icv")])
    opened = _open_esp(folder / "capture.pcapng", keys)
    assert len(opened) == 24
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    key, salt, iv, head = bytes(range(16)), b"salt", b"IVIVIVIV", struct.pack("!II", 7, 1)
    inner = H("45000054a6f200004001e778c6336405c0000205") + bytes(64)
    plain = inner + bytes([1, 2, 2, 4])                      # padding 1 2, pad length 2, next header 4
    enc = Cipher(algorithms.AES(key), modes.GCM(salt + iv)).encryptor()
    enc.authenticate_additional_data(head)
    ct = enc.update(plain) + enc.finalize()
    packet = head + iv + ct + enc.tag[:12]
    result = d.open_esp(packet, EspKey(7, "*", "*", "aes-gcm", key + salt, "unchecked-64", b""))
    assert result.ok and result.inner == inner
