"""Wireshark's key tables (UAT files), read and written: `ikev1_decryption_table`, `ikev2_decryption_table`,
`esp_sa`. strongSwan's save-keys plugin writes the same three files.

Formats from Wireshark's epan/dissectors/packet-isakmp.c (the IKE tables: hex fields unquoted, algorithm
names quoted) and packet-ipsec.c (esp_sa: every field quoted; keys "0x..." hex, otherwise the ASCII text
is the key; SPI "*", "0x..." hex or decimal; addresses with "*" wildcards), the UAT file syntax from
epan/uat_load.l (`#` comments, quoted fields with \\xHH escapes), and strongSwan's
src/libcharon/plugins/save_keys/save_keys_listener.c.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ikeflow.decode.decrypt import key_problem
from ikeflow.keys.ring import EspKey, IkeV1Key, IkeV2Keys, KeyRing, KeySourceError

V1_TABLE, V2_TABLE, ESP_TABLE = "ikev1_decryption_table", "ikev2_decryption_table", "esp_sa"

# Wireshark's IKEv2 table names (packet-isakmp.c vs_ikev2_encr_algs / vs_ikev2_auth_algs) -> ours.
V2_ENCR = {"3DES [RFC2451]": "3des", "NULL [RFC2410]": "null",
           **{f"AES-CBC-{b} [RFC3602]": "aes-cbc" for b in (128, 192, 256)},
           **{f"AES-CTR-{b} [RFC5930]": "aes-ctr" for b in (128, 192, 256)},
           **{f"AES-{m}-{b} with {n} octet ICV [RFC5282]": f"aes-{m.lower()}-{n}"
              for m in ("GCM", "CCM") for b in (128, 192, 256) for n in (8, 12, 16)}}
V2_INTEG = {"HMAC_MD5_96 [RFC2403]": "hmac-md5-96", "HMAC_SHA1_96 [RFC2404]": "hmac-sha1-96",
            "HMAC_MD5_128 [RFC4595]": "hmac-md5-128", "HMAC_SHA1_160 [RFC4595]": "hmac-sha1-160",
            "HMAC_SHA2_256_96 [draft-ietf-ipsec-ciph-sha-256-00]": "hmac-sha2-256-96",
            "HMAC_SHA2_256_128 [RFC4868]": "hmac-sha2-256-128", "HMAC_SHA2_384_192 [RFC4868]": "hmac-sha2-384-192",
            "HMAC_SHA2_512_256 [RFC4868]": "hmac-sha2-512-256", "NONE [RFC4306]": "none",
            **{f"ANY {n}-bits of Authentication [No Checking]": f"unchecked-{n}" for n in (64, 96, 128, 160, 192, 256)}}
# esp_sa names (packet-ipsec.c esp_encryption_type_vals / esp_authentication_type_vals) -> ours.
# "AES-GCM [RFC4106]" names no ICV length ("aes-gcm": decryption tries 16, 12, 8); its authentication field
# is kept as written (strongSwan's save-keys puts "ANY 64 bit" there for both the 8- and the 12-octet ICV).
# strongSwan 5.9's save-keys plugin writes "TripleDes-CBC [RFC2451]" (which tshark 4.0 refuses): read it too;
# export writes Wireshark's spelling (the first name of a cipher).
ESP_ENCR = {"NULL": "null", "TripleDES-CBC [RFC2451]": "3des", "TripleDes-CBC [RFC2451]": "3des",
            "AES-CBC [RFC3602]": "aes-cbc",
            "AES-CTR [RFC3686]": "aes-ctr", "DES-CBC [RFC2405]": "des", "CAST5-CBC [RFC2144]": "cast5-cbc",
            "BLOWFISH-CBC [RFC2451]": "blowfish-cbc", "TWOFISH-CBC": "twofish-cbc", "AES-GCM [RFC4106]": "aes-gcm",
            **{f"AES-GCM with {n} octet ICV [RFC4106]": f"aes-gcm-{n}" for n in (8, 12, 16)}}
ESP_INTEG = {"NULL": "none", "HMAC-SHA-1-96 [RFC2404]": "hmac-sha1-96",
             "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]": "hmac-sha2-256-96",
             "HMAC-SHA-256-128 [RFC4868]": "hmac-sha2-256-128", "HMAC-SHA-384-192 [RFC4868]": "hmac-sha2-384-192",
             "HMAC-SHA-512-256 [RFC4868]": "hmac-sha2-512-256", "HMAC-MD5-96 [RFC2403]": "hmac-md5-96",
             "MAC-RIPEMD-160-96 [RFC2857]": "hmac-ripemd160-96",
             **{f"ANY {n} bit authentication [no checking]": f"unchecked-{n}" for n in (64, 96, 128, 192, 256)}}
_SALT = {"aes-ctr": 4, "aes-gcm": 4, "aes-ccm": 3}


def _fields(line: str) -> list[str] | None:
    """The fields of one UAT line: quoted strings (with \\xHH and \\ escapes) or bare text; None if malformed."""
    out, i = [], 0
    while True:
        while i < len(line) and line[i] in " \t":
            i += 1
        if i < len(line) and line[i] == '"':
            i, buf = i + 1, []
            while i < len(line) and line[i] != '"':
                if line[i] == "\\" and i + 1 < len(line):
                    if line[i + 1] == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", line[i + 2:i + 4]):
                        buf.append(chr(int(line[i + 2:i + 4], 16)))
                        i += 4
                        continue
                    i += 1
                buf.append(line[i])
                i += 1
            if i >= len(line):
                return None
            out.append("".join(buf))
            i += 1
        else:
            j = line.find(",", i)
            j = len(line) if j < 0 else j
            out.append(line[i:j].strip())
            i = j
        while i < len(line) and line[i] in " \t":
            i += 1
        if i >= len(line):
            return out
        if line[i] != ",":
            return None
        i += 1


def _records(text: str, where: str, width: int):
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = _fields(line)
        if fields is None or len(fields) != width:
            raise KeySourceError(f"{where}:{number}: expected {width} comma-separated fields")
        yield f"{where}:{number}", fields


def _hex(text: str, what: str, at: str) -> bytes:
    text = text.strip()
    text = text[2:] if text[:2].lower() == "0x" else text
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeySourceError(f"{at}: {what} is not hexadecimal") from None


def _check(encr: str, key: bytes, at: str) -> None:
    problem = key_problem(encr, key)
    if problem and encr not in ("null", "twofish-cbc"):
        raise KeySourceError(f"{at}: {problem}")


def parse_ikev1(text: str, where: str) -> KeyRing:
    ring = KeyRing()
    for at, (cookie, key) in _records(text, where, 2):
        icookie = _hex(cookie, "the initiator cookie", at)
        if len(icookie) != 8:
            raise KeySourceError(f"{at}: the initiator cookie must be 8 octets")
        ring.add(IkeV1Key(icookie, _hex(key, "the encryption key", at), where))
    return ring


def parse_ikev2(text: str, where: str) -> KeyRing:
    ring = KeyRing()
    for at, (spii, spir, skei, sker, encr, skai, skar, integ) in _records(text, where, 8):
        if encr not in V2_ENCR or integ not in V2_INTEG:
            bad = encr if encr not in V2_ENCR else integ
            raise KeySourceError(f"{at}: unknown algorithm name {bad!r} (Wireshark's names, e.g. \"AES-CBC-256 "
                                 "[RFC3602]\", \"HMAC_SHA2_256_128 [RFC4868]\")")
        keys = IkeV2Keys(_hex(spii, "SPIi", at), _hex(spir, "SPIr", at), _hex(skei, "SK_ei", at),
                         _hex(sker, "SK_er", at), V2_ENCR[encr], _hex(skai, "SK_ai", at), _hex(skar, "SK_ar", at),
                         V2_INTEG[integ], where)
        if len(keys.spi_i) != 8 or len(keys.spi_r) != 8:
            raise KeySourceError(f"{at}: SPIs must be 8 octets")
        bits = re.search(r"-(\d{3}) ", encr)
        if bits and keys.encr != "null" and len(keys.sk_ei) - _SALT.get(keys.encr[:7], 0) != int(bits[1]) // 8:
            raise KeySourceError(f"{at}: SK_ei is {len(keys.sk_ei)} octets, {encr} needs "
                                 f"{int(bits[1]) // 8 + _SALT.get(keys.encr[:7], 0)}")
        _check(keys.encr, keys.sk_ei, at)
        ring.add(keys)
    return ring


def _esp_key(text: str, what: str, at: str) -> bytes:
    """packet-ipsec.c compute_ascii_key: "0x..." is hex (odd length: a leading 0), else the text itself."""
    if text[:2].lower() == "0x":
        digits = text[2:]
        return _hex("0" * (len(digits) % 2) + digits, what, at)
    return text.encode("latin-1", "replace")


def _esp_addr(text: str, at: str) -> str:
    text = text.strip()
    if text in ("", "*") or "*" in text or "/" in text:
        return text or "*"
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise KeySourceError(f"{at}: {text!r} is not an IP address or a '*' pattern") from None


def parse_esp(text: str, where: str) -> KeyRing:
    ring = KeyRing()
    for at, (family, src, dst, spi, encr, ekey, integ, akey) in _records(text, where, 8):
        if family not in ("IPv4", "IPv6", "Any"):
            raise KeySourceError(f"{at}: protocol must be IPv4, IPv6 or Any, not {family!r}")
        if encr not in ESP_ENCR or integ not in ESP_INTEG:
            bad = encr if encr not in ESP_ENCR else integ
            raise KeySourceError(f"{at}: unknown algorithm name {bad!r} (Wireshark's esp_sa names, e.g. "
                                 "\"AES-CBC [RFC3602]\", \"HMAC-SHA-1-96 [RFC2404]\")")
        ours, auth = ESP_ENCR[encr], ESP_INTEG[integ]
        if ours.startswith("aes-gcm-"):
            auth = "none"
        spi = spi.strip()
        try:
            number = None if spi == "*" else int(spi, 0)
        except ValueError:
            raise KeySourceError(f"{at}: SPI {spi!r} is not a number or '*' (partial SPI wildcards are not "
                                 "supported)") from None
        key = _esp_key(ekey, "the encryption key", at)
        _check(ours, key, at)
        ring.add(EspKey(number, _esp_addr(src, at), _esp_addr(dst, at), ours, key, auth,
                        _esp_key(akey, "the authentication key", at), where))
    return ring


PARSERS = {V1_TABLE: parse_ikev1, V2_TABLE: parse_ikev2, ESP_TABLE: parse_esp}


def by_name(name: str, text: str, where: str) -> KeyRing | None:
    """A table recognised by its file name (also `*.tmpl`, as in Wireshark's test/config)."""
    base = name[:-5] if name.endswith(".tmpl") else name
    parser = PARSERS.get(base)
    return parser(text, where) if parser else None


_LOOKS = [(re.compile(r'^"(IPv4|IPv6|Any)",', re.M), parse_esp),
          (re.compile(r"^[0-9a-fA-F]{16},[0-9a-fA-F]{16},[0-9a-fA-F]*,[0-9a-fA-F]*,\"", re.M), parse_ikev2),
          (re.compile(r"^[0-9a-fA-F]{16},[0-9a-fA-F]+\s*$", re.M), parse_ikev1)]


def by_content(name: str, text: str, where: str) -> KeyRing | None:
    """A table under another file name, recognised by the shape of its lines."""
    for pattern, parser in _LOOKS:
        if pattern.search(text):
            return parser(text, where)
    return None


# ------------------------------------------------------------------ export

def _v2_encr_name(encr: str, key: bytes) -> str | None:
    bits = (len(key) - _SALT.get(encr[:7], 0)) * 8
    for name, ours in V2_ENCR.items():
        if ours == encr and (ours in ("3des", "null") or f"-{bits} " in name):
            return name
    return None


def _first(table: dict[str, str], ours: str) -> str | None:
    return next((name for name, o in table.items() if o == ours), None)


def export(ring: KeyRing, out: Path) -> tuple[dict[str, int], list[str]]:
    """Write Wireshark's three tables into `out`; returns (lines written per file, keys left out and why)."""
    lines: dict[str, list[str]] = {V1_TABLE: [], V2_TABLE: [], ESP_TABLE: []}
    skipped = []
    for key in ring.all():
        if isinstance(key, IkeV1Key):
            lines[V1_TABLE].append(f"{key.icookie.hex()},{key.enc_key.hex()}")
        elif isinstance(key, IkeV2Keys):
            encr, integ = _v2_encr_name(key.encr, key.sk_ei), _first(V2_INTEG, key.integ)
            if not key.encr:
                skipped.append(f"IKEv2 SA {key.spi_i.hex()}/{key.spi_r.hex()}: its source does not name the "
                               "algorithms (give them with --ike-algorithms)")
                continue
            if not encr or not integ:
                skipped.append(f"IKEv2 SA {key.spi_i.hex()}/{key.spi_r.hex()}: Wireshark has no name for "
                               f"{key.encr}/{key.integ}")
                continue
            lines[V2_TABLE].append(f'{key.spi_i.hex()},{key.spi_r.hex()},{key.sk_ei.hex()},{key.sk_er.hex()},'
                                   f'"{encr}",{key.sk_ai.hex()},{key.sk_ar.hex()},"{integ}"')
        else:
            encr, integ = _first(ESP_ENCR, key.encr), _first(ESP_INTEG, key.integ)
            spi = "*" if key.spi is None else f"0x{key.spi:08x}"
            if not encr or not integ:
                skipped.append(f"ESP SPI {spi}: Wireshark has no name for "
                               f"{key.encr or 'an unknown cipher'}/{key.integ or 'unknown integrity'}")
                continue
            auth = f"0x{key.auth_key.hex()}" if key.auth_key else ""
            wild = key.src == key.dst == "*"
            for family in ("IPv4", "IPv6") if wild else ("IPv6" if ":" in key.src + key.dst else "IPv4",):
                lines[ESP_TABLE].append(f'"{family}","{key.src}","{key.dst}","{spi}","{encr}",'
                                        f'"0x{key.enc_key.hex()}","{integ}","{auth}"')
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in lines.items():
            (out / name).write_text("".join(r + "\n" for r in rows))
    except OSError as e:
        raise KeySourceError(f"{out}: cannot write the key tables: {e.strerror or e}") from None
    return {name: len(rows) for name, rows in lines.items()}, skipped
