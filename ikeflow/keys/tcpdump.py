"""tcpdump -E secrets files, and the same `ikev2 I|R` lines that libreswan's pluto logs.

ESP lines: `0xSPI@DESTINATION ALGORITHM:0xKEY` (tcpdump print-esp.c: des-cbc, 3des-cbc, aes128-cbc ...,
a `-hmac96` suffix = a 12-octet ICV tcpdump does not check). IKE lines (libreswan programs/pluto/state.c
DBG_tcpdump_ike_sa_keys, also read by tcpdump print-isakmp): `ikev2 I 0xSPIi 0xSPIr INTEG:0xSK_ai
ENCR[BITS]:0xSK_ei` and the `R` line with SK_ar/SK_er. Names from libreswan lib/libswan/ike_alg_*.c
(`integ_tcpdump_name`, `encrypt_tcpdump_name`). Pluto prints the AEAD and CTR keys without their salt, so
those SAs cannot be opened from these lines.
"""

from __future__ import annotations

import re

from ikeflow.keys.ring import EspKey, IkeV2Keys, KeyRing, KeySourceError

IKE_LINE = re.compile(r"\bikev([12]) ([IR]) 0x([0-9a-fA-F]{16}) 0x([0-9a-fA-F]{16}) (\w+):(?:0x)?([0-9a-fA-F]*) "
                      r"([a-z_0-9]+?)(\d{3})?:(?:0x)?([0-9a-fA-F]*)\s*$")
ESP_LINE = re.compile(r"^\s*0x([0-9a-fA-F]{1,8})@(\S+)\s+([a-z0-9-]+):(?:0x)?([0-9a-fA-F]+)\s*$")

ENCR = {"aes": "aes-cbc", "3des": "3des", "des": "des", "null": "null"}
INTEG = {"md5": "hmac-md5-96", "sha1": "hmac-sha1-96", "sha256": "hmac-sha2-256-128", "sha384": "hmac-sha2-384-192",
         "sha512": "hmac-sha2-512-256", "none": "none", "hmac_sha2_256_truncbug": "hmac-sha2-256-96"}
ESP_ENCR = {"des-cbc": "des", "3des-cbc": "3des", "aes128-cbc": "aes-cbc", "aes192-cbc": "aes-cbc",
            "aes256-cbc": "aes-cbc", "blowfish-cbc": "blowfish-cbc", "cast128-cbc": "cast5-cbc", "none": "null"}


def ike_lines(text: str, where: str) -> tuple[list[IkeV2Keys], list[str]]:
    """IKEv2 keys from pairs of `ikev2 I`/`ikev2 R` lines; and what could not be used, and why."""
    halves: dict[tuple[bytes, bytes], dict[str, tuple[str, bytes, str, bytes]]] = {}
    unusable = []
    for line in text.splitlines():
        m = IKE_LINE.search(line)
        if not m:
            continue
        spis = (bytes.fromhex(m[3]), bytes.fromhex(m[4]))
        if m[1] == "1":
            unusable.append(f"IKEv1 SA {m[3]}: these lines carry no IKEv1 encryption key")
            continue
        encr, integ = ENCR.get(m[7], ""), INTEG.get(m[5], "")
        if not encr or not integ:
            unusable.append(f"IKEv2 SA {m[3]}/{m[4]}: {m[7]}/{m[5]} (the line has no salt for AEAD or CTR "
                            "ciphers, or the algorithm is unknown)")
            continue
        halves.setdefault(spis, {})[m[2]] = (encr, bytes.fromhex(m[9]), integ, bytes.fromhex(m[6]))
    keys = []
    for (spi_i, spi_r), sides in halves.items():
        if "I" in sides and "R" in sides:
            (encr, ei, integ, ai), (_, er, _, ar) = sides["I"], sides["R"]
            keys.append(IkeV2Keys(spi_i, spi_r, ei, er, encr, ai, ar, integ, where))
    return keys, unusable


def parse(name: str, text: str, where: str) -> KeyRing | None:
    """A tcpdump -E secrets file (ESP lines and/or ikev2 lines, `#` comments); None if it is not one."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines or not all(ESP_LINE.match(ln) or IKE_LINE.search(ln) for ln in lines):
        return None
    ring = KeyRing()
    for line in lines:
        m = ESP_LINE.match(line)
        if not m:
            continue
        algo = m[3].removesuffix("-hmac96")
        if algo not in ESP_ENCR:
            raise KeySourceError(f"{where}: ESP algorithm {m[3]!r} is not one ikeflow can use")
        ring.add(EspKey(int(m[1], 16), "*", m[2], ESP_ENCR[algo], bytes.fromhex(m[4]),
                        "unchecked-96" if m[3].endswith("-hmac96") else "none", b"", where))
    keys, unusable = ike_lines(text, where)
    for key in keys:
        ring.add(key)
    if not ring:
        raise KeySourceError(f"{where}: no usable keys ({'; '.join(unusable)})", keyless=True)
    return ring
