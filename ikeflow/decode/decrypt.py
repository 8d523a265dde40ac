"""Decryption of IKEv1, IKEv2 (SK/SKF) and ESP: pure functions of (bytes, keys), no I/O.

Every primitive comes from `cryptography`, imported on first use (`_lib`): a read without keys does not
load it (11 MiB and 30 ms). A key that does not verify gives `ok=False` and the
reason, never plaintext. Cipher names are one vocabulary (`ENCR`, `INTEG`); the key sources and
the negotiated SA both map onto it (`encr_from_transform`, `integ_from_transform`, ...).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ikeflow.keys import EspKey, IkeV2Keys


@functools.cache
def _lib() -> types.SimpleNamespace:
    """The primitives of `cryptography` this module uses."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.decrepit.ciphers.algorithms import CAST5, Blowfish, TripleDES
    from cryptography.hazmat.primitives import constant_time, hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM, ChaCha20Poly1305

    return types.SimpleNamespace(InvalidTag=InvalidTag, CAST5=CAST5, Blowfish=Blowfish, TripleDES=TripleDES,
                                 constant_time=constant_time, hashes=hashes, hmac=hmac, Cipher=Cipher,
                                 algorithms=algorithms, modes=modes, AESCCM=AESCCM, ChaCha20Poly1305=ChaCha20Poly1305)


@dataclass(frozen=True)
class Encr:
    """How a cipher is laid out on the wire: mode, block (CBC), IV, ICV (AEAD) and salt (in the key) sizes."""
    mode: str          # null, cbc, ctr, gcm, ccm, chacha
    block: int
    iv: int
    icv: int
    salt: int
    key_sizes: tuple[int, ...]


_AES = (16, 24, 32)

# Cipher vocabulary. Sizes: RFC 3602 (AES-CBC), RFC 5930/3686 (AES-CTR: 4-octet nonce after the key),
# RFC 5282/4106 (AES-GCM: 4-octet salt; AES-CCM: 3-octet salt), RFC 7634/7539 (ChaCha20-Poly1305: 4-octet
# salt), RFC 2451 (3DES, Blowfish, CAST5), RFC 2405 (DES), RFC 2410 (NULL).
ENCR: dict[str, Encr] = {
    "null": Encr("null", 1, 0, 0, 0, ()),
    "des": Encr("cbc", 8, 8, 0, 0, (8,)),
    "3des": Encr("cbc", 8, 8, 0, 0, (24,)),
    "blowfish-cbc": Encr("cbc", 8, 8, 0, 0, tuple(range(5, 57))),
    "cast5-cbc": Encr("cbc", 8, 8, 0, 0, tuple(range(5, 17))),
    "aes-cbc": Encr("cbc", 16, 16, 0, 0, _AES),
    "aes-ctr": Encr("ctr", 1, 8, 0, 4, _AES),
    **{f"aes-gcm-{n}": Encr("gcm", 1, 8, n, 4, _AES) for n in (8, 12, 16)},
    "aes-gcm": Encr("gcm", 1, 8, 16, 4, _AES),      # ICV length not given (Wireshark's "AES-GCM [RFC4106]")
    **{f"aes-ccm-{n}": Encr("ccm", 1, 8, n, 3, _AES) for n in (8, 12, 16)},
    "chacha20-poly1305": Encr("chacha", 1, 8, 16, 4, (32,)),
}

# Integrity vocabulary: (hash, ICV octets). "unchecked-N": Wireshark's "ANY N bits ... [No Checking]".
# RFC 2403 (MD5-96), RFC 2404 (SHA1-96), RFC 4595 (MD5-128, SHA1-160), RFC 4868 (SHA2), draft-ietf-ipsec-
# ciph-sha-256-00 (SHA2-256-96, Linux's old sha256 truncation).
INTEG: dict[str, tuple[str | None, int]] = {
    "none": (None, 0),
    "hmac-md5-96": ("md5", 12),
    "hmac-md5-128": ("md5", 16),
    "hmac-sha1-96": ("sha1", 12),
    "hmac-sha1-160": ("sha1", 20),
    "hmac-sha2-256-96": ("sha256", 12),
    "hmac-sha2-256-128": ("sha256", 16),
    "hmac-sha2-384-192": ("sha384", 24),
    "hmac-sha2-512-256": ("sha512", 32),
    **{f"unchecked-{n}": (None, n // 8) for n in (64, 96, 128, 160, 192, 256)},
}

# IKEv2 transform IDs (RFC 7296 3.3.2, IANA "Transform Type 1/3"); IKEv1 ESP transform IDs use the same
# numbers for these ciphers (RFC 2407 4.4.4, RFC 4106/4309).
ENCR_IDS = {2: "des", 3: "3des", 6: "cast5-cbc", 7: "blowfish-cbc", 11: "null", 12: "aes-cbc", 13: "aes-ctr",
            14: "aes-ccm-8", 15: "aes-ccm-12", 16: "aes-ccm-16", 18: "aes-gcm-8", 19: "aes-gcm-12",
            20: "aes-gcm-16", 28: "chacha20-poly1305"}
INTEG_IDS = {0: "none", 1: "hmac-md5-96", 2: "hmac-sha1-96", 6: "hmac-md5-128", 7: "hmac-sha1-160",
             12: "hmac-sha2-256-128", 13: "hmac-sha2-384-192", 14: "hmac-sha2-512-256"}
# IKEv1 phase 1 "Encryption Algorithm" and "Hash Algorithm" attributes (RFC 2409 appendix A, RFC 3602, RFC 4868).
V1_ENCR = {1: "des", 5: "3des", 7: "aes-cbc"}
V1_HASH = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}


def encr_from_transform(transform_id: int) -> str:
    """Our cipher name for an IKEv2 (or IKEv1 ESP) encryption transform ID; "" if not supported."""
    return ENCR_IDS.get(transform_id, "")


def integ_from_transform(transform_id: int) -> str:
    """Our integrity name for an IKEv2 integrity transform ID; "" if not supported."""
    return INTEG_IDS.get(transform_id, "")


def is_aead(encr: str) -> bool:
    return encr in ENCR and ENCR[encr].icv > 0


def key_problem(encr: str, key: bytes) -> str:
    """Why `key` cannot be a key of `encr` ("" when it can): unknown cipher or wrong length."""
    spec = ENCR.get(encr)
    if spec is None:
        return f"cipher {encr or '(not given)'} is not supported"
    sizes = sorted({n + spec.salt for n in spec.key_sizes}) if spec.key_sizes else [0]
    if len(key) not in sizes:
        want = ", ".join(map(str, sizes)) if len(sizes) < 6 else f"{sizes[0]} to {sizes[-1]}"
        return f"the {encr} key is {len(key)} octets, it must be {want}"
    return ""


@dataclass(frozen=True)
class Opened:
    """Result of opening an SK/SKF payload: plaintext without padding when ok, else the reason."""
    ok: bool
    plaintext: bytes
    reason: str = ""


def _fail(reason: str) -> Opened:
    return Opened(False, b"", reason)


def _block_cipher(encr: str, key: bytes):
    c = _lib()
    if encr == "3des":
        return c.TripleDES(key)
    if encr == "des":
        return c.TripleDES(key * 3)
    if encr == "blowfish-cbc":
        return c.Blowfish(key)
    if encr == "cast5-cbc":
        return c.CAST5(key)
    return c.algorithms.AES(key)


def decrypt_raw(encr: str, key: bytes, iv: bytes, data: bytes, aad: bytes = b"", icv: bytes = b"") -> bytes | None:
    """Plaintext of `data` under `encr` (salt/nonce at the end of `key`, as IKEv2 derives it); for AEAD
    ciphers `icv` is the tag over `aad` and the data, and None means it does not verify."""
    spec = ENCR[encr]
    if spec.mode == "null":
        return data
    secret, salt = (key[:-spec.salt], key[-spec.salt:]) if spec.salt else (key, b"")
    c = _lib()
    if spec.mode == "cbc":
        return c.Cipher(_block_cipher(encr, secret), c.modes.CBC(iv)).decryptor().update(data)
    if spec.mode == "ctr":
        return c.Cipher(c.algorithms.AES(secret), c.modes.CTR(salt + iv + b"\0\0\0\1")).decryptor().update(data)
    try:
        if spec.mode == "gcm":
            dec = c.Cipher(c.algorithms.AES(secret), c.modes.GCM(salt + iv, icv, min_tag_length=len(icv))).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(data) + dec.finalize()
        if spec.mode == "ccm":
            return c.AESCCM(secret, tag_length=len(icv)).decrypt(salt + iv, data + icv, aad)
        return c.ChaCha20Poly1305(secret).decrypt(salt + iv, data + icv, aad)
    except c.InvalidTag:
        return None


_HASHES = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512"}  # cryptography's


def _hash_of(name: str):
    """A fresh hash object of `cryptography` for a name of _HASHES."""
    return getattr(_lib().hashes, _HASHES[name])()


def integrity_icv(integ: str, key: bytes, data: bytes) -> bytes:
    """The ICV of `data`: the HMAC truncated as `integ` says (b"" for none/unchecked)."""
    algo, size = INTEG[integ]
    if algo is None:
        return b""
    mac = _lib().hmac.HMAC(key, _hash_of(algo))
    mac.update(data)
    return mac.finalize()[:size]


def _mac_ok(integ: str, key: bytes, signed: bytes, icv: bytes) -> bool:
    return INTEG[integ][0] is None or _lib().constant_time.bytes_eq(integrity_icv(integ, key, signed), icv)


def open_sk(message: bytes, sk_offset: int, keys: IkeV2Keys, from_initiator: bool, skf: bool = False) -> Opened:
    """Verify and decrypt the SK payload (or with `skf`, one SKF fragment, RFC 7383) at `sk_offset` of an
    IKEv2 message (IKE header at offset 0). Messages sent by the original initiator use SK_ei/SK_ai.

    Integrity covers the message from the IKE header to the end of the encrypted data (RFC 7296 3.14);
    the AEAD associated data is the IKE header through the SK/SKF payload header (RFC 5282 5.1, RFC 7383 2.5).
    Returns the inner payloads without padding and pad length."""
    encr, integ = keys.encr, keys.integ
    enc_key = keys.sk_ei if from_initiator else keys.sk_er
    auth_key = keys.sk_ai if from_initiator else keys.sk_ar
    problem = key_problem(encr, enc_key)
    if problem:
        return _fail(problem)
    spec = ENCR[encr]
    if spec.icv:
        integ, icv_len = "none", spec.icv
    elif integ not in INTEG:
        return _fail(f"integrity {integ or '(not given)'} is not supported")
    else:
        icv_len = INTEG[integ][1]
    head = sk_offset + (8 if skf else 4)
    if sk_offset < 28 or len(message) < head:
        return _fail("the SK payload is cut off")
    end = sk_offset + struct.unpack_from("!H", message, sk_offset + 2)[0]
    if end > len(message):
        return _fail("the SK payload runs past the end of the data (cut off, or one IP fragment of it)")
    if end - head < spec.iv + icv_len + 1:
        return _fail("the SK payload is shorter than its IV, pad length and ICV")
    iv = message[head:head + spec.iv]
    data = message[head + spec.iv:end - icv_len]
    icv = message[end - icv_len:end]
    if len(data) % spec.block:
        return _fail(f"the encrypted data is not a whole number of {spec.block}-octet {encr} blocks")
    if not spec.icv and not _mac_ok(integ, auth_key, message[:end - icv_len], icv):
        return _fail(f"the {integ} ICV does not verify with SK_a{'i' if from_initiator else 'r'}")
    plain = decrypt_raw(encr, enc_key, iv, data, message[:head], icv)
    if plain is None:
        return _fail(f"the {encr} ICV does not verify with SK_e{'i' if from_initiator else 'r'}")
    pad = plain[-1]
    if pad + 1 > len(plain):
        return _fail("the pad length is longer than the decrypted data (wrong key?)")
    return Opened(True, plain[:-pad - 1], "" if INTEG[integ][0] or spec.icv else "integrity not checked")


# ---------------------------------------------------------------- IKEv1 (RFC 2409 appendix B)

def _hash(name: str, *parts: bytes) -> bytes:
    h = _lib().hashes.Hash(_hash_of(name))
    for p in parts:
        h.update(p)
    return h.finalize()


def v1_phase1_iv(hash_name: str, gxi: bytes, gxr: bytes, block: int) -> bytes:
    """First phase-1 IV: hash(g^xi | g^xr) cut to the cipher block (RFC 2409 appendix B)."""
    return _hash(hash_name, gxi, gxr)[:block]


def v1_phase2_iv(hash_name: str, last_phase1_block: bytes, message_id: int, block: int) -> bytes:
    """First IV of a Quick Mode / Informational / Transaction exchange: hash(last phase-1 CBC block | M-ID)."""
    return _hash(hash_name, last_phase1_block, struct.pack("!I", message_id))[:block]


# First IV of an exchange with a new message ID (Quick Mode, Informational, Transaction), as implementations
# compute it; try them in order and keep the one whose result is `v1_plausible`.
#   rfc2409          hash(last phase-1 CBC block | M-ID)                 RFC 2409 appendix B; strongSwan, Wireshark
#   empty-phase1-iv  hash(M-ID): an Informational sent before phase 1 ended, when libreswan's "IV at end of
#                    phase 1" (programs/pluto/state.h st_v1_ph1_iv, hashed by ikev1_quick.c) is still empty;
#                    seen from pluto 4.10 answering a peer-ID mismatch at MM5 (lab ikev1-libreswan-peerid-mismatch)
V1_IV_VARIANTS = ("rfc2409", "empty-phase1-iv")


def v1_new_exchange_ivs(hash_name: str, last_phase1_block: bytes, message_id: int,
                        block: int) -> list[tuple[str, bytes]]:
    """(variant, IV) for the first message of an exchange with a new message ID, in `V1_IV_VARIANTS` order."""
    return [("rfc2409", v1_phase2_iv(hash_name, last_phase1_block, message_id, block)),
            ("empty-phase1-iv", v1_phase2_iv(hash_name, b"", message_id, block))]


def v1_decrypt(ciphertext: bytes, key: bytes, iv: bytes, cipher: str) -> tuple[bytes, bytes]:
    """CBC-decrypt an IKEv1 message body; returns (plaintext with padding, next IV = last ciphertext block).
    `cipher` is des, 3des or aes-cbc (AES key length from the key). Raises ValueError on a key of the wrong
    length or ciphertext that is not whole blocks."""
    problem = key_problem(cipher, key)
    if problem:
        raise ValueError(problem)
    spec = ENCR[cipher]
    if spec.mode != "cbc" or len(iv) != spec.block:
        raise ValueError(f"{cipher} is not an IKEv1 CBC cipher with a {len(iv)}-octet IV")
    if not ciphertext or len(ciphertext) % spec.block:
        raise ValueError(f"the encrypted data is not a whole number of {spec.block}-octet {cipher} blocks")
    c = _lib()
    plain = c.Cipher(_block_cipher(cipher, key), c.modes.CBC(iv)).decryptor().update(ciphertext)
    return plain, ciphertext[-spec.block:]


def v1_plausible(plaintext: bytes, first_payload: int) -> bool:
    """True when the generic payload chain (RFC 2408 3.2) walks from `first_payload` to a next-payload of 0
    inside the data, with zero reserved octets, and leaves less than 256 octets of padding."""
    kind, off = first_payload, 0
    while kind:
        if not (1 <= kind <= 20 or 128 <= kind <= 255) or off + 4 > len(plaintext):
            return False
        nxt, reserved, length = struct.unpack_from("!BBH", plaintext, off)
        if reserved or length < 4 or off + length > len(plaintext):
            return False
        kind, off = nxt, off + length
    return len(plaintext) - off < 256


# ---------------------------------------------------------------- ESP (RFC 4303)

@dataclass(frozen=True)
class EspOpened:
    """Result of opening one ESP packet: the inner packet (tunnel) or upper-layer data (transport)."""
    ok: bool
    next_header: int
    inner: bytes
    reason: str = ""


def open_esp(packet_payload: bytes, key: EspKey) -> EspOpened:
    """Verify and decrypt one ESP packet starting at its SPI (UDP encapsulation already removed).
    ICV over SPI..trailer (RFC 4303 2.8); AES-GCM AAD is SPI | sequence number (RFC 4106 5, no ESN).
    The padding must be the default 1, 2, 3... (RFC 4303 2.4), which also tells a wrong key when
    there is no integrity. "aes-gcm" without an ICV length tries 16, 12 and 8 octets (strongSwan's
    save-keys writes "ANY 64 bit" for the 12-octet ICV)."""
    if key.encr == "aes-gcm":
        tries = [_open_esp(packet_payload, key, f"aes-gcm-{n}") for n in (16, 12, 8)]
        return next((t for t in tries if t.ok), tries[0])
    return _open_esp(packet_payload, key, key.encr)


def _open_esp(packet_payload: bytes, key: EspKey, encr: str) -> EspOpened:
    def fail(reason: str) -> EspOpened:
        return EspOpened(False, 0, b"", reason)

    problem = key_problem(encr, key.enc_key) if encr != "null" else ""
    if problem:
        return fail(problem)
    spec = ENCR[encr]
    integ = "none" if spec.icv else key.integ
    if integ not in INTEG:
        return fail(f"integrity {integ or '(not given)'} is not supported")
    icv_len = spec.icv or INTEG[integ][1]
    if len(packet_payload) < 8 + spec.iv + icv_len + 2:
        return fail("the ESP packet is shorter than its header, IV, trailer and ICV")
    body_end = len(packet_payload) - icv_len
    icv = packet_payload[body_end:]
    if not spec.icv and not _mac_ok(integ, key.auth_key, packet_payload[:body_end], icv):
        return fail(f"the {integ} ICV does not verify")
    iv = packet_payload[8:8 + spec.iv]
    data = packet_payload[8 + spec.iv:body_end]
    if len(data) % spec.block:
        return fail(f"the encrypted data is not a whole number of {spec.block}-octet {encr} blocks")
    plain = decrypt_raw(encr, key.enc_key, iv, data, packet_payload[:8], icv)
    if plain is None:
        return fail(f"the {encr} ICV does not verify")
    pad, next_header = plain[-2], plain[-1]
    if pad + 2 > len(plain) or plain[-2 - pad:-2] != bytes(range(1, pad + 1)):
        return fail("the ESP padding does not verify (wrong key?)")
    return EspOpened(True, next_header, plain[:-2 - pad],
                     "" if spec.icv or INTEG[integ][0] else "integrity not checked")


_PORTS = {6, 17, 132, 136}          # TCP, UDP, SCTP, UDP-Lite: ports in the first 4 octets
_V6_EXT = {0, 43, 60}               # hop-by-hop, routing, destination options (RFC 8200 4)


def inner_summary(next_header: int, inner: bytes) -> tuple[str, str, int, int | None, int | None]:
    """(source, destination, protocol, source port, destination port) of the inner packet: for tunnel mode
    (next header 4 or 41) from the inner IP header; for transport mode source/destination are "" (the outer
    addresses) and the protocol is `next_header`. Ports are None for protocols without them or cut off."""
    src = dst = ""
    proto, rest = next_header, inner
    if next_header == 4 and len(inner) >= 20 and inner[0] >> 4 == 4:
        ihl = (inner[0] & 15) * 4
        src, dst = str(ipaddress.IPv4Address(inner[12:16])), str(ipaddress.IPv4Address(inner[16:20]))
        proto = inner[9]
        fragment_offset = struct.unpack_from("!H", inner, 6)[0] & 0x1FFF
        rest = inner[ihl:] if not fragment_offset else b""
    elif next_header == 41 and len(inner) >= 40 and inner[0] >> 4 == 6:
        src, dst = str(ipaddress.IPv6Address(inner[8:24])), str(ipaddress.IPv6Address(inner[24:40]))
        proto, rest = inner[6], inner[40:]
        while proto in _V6_EXT and len(rest) >= 8:
            proto, rest = rest[0], rest[(rest[1] + 1) * 8:]
    if proto in _PORTS and len(rest) >= 4:
        sport, dport = struct.unpack_from("!HH", rest)
        return src, dst, proto, sport, dport
    return src, dst, proto, None, None
