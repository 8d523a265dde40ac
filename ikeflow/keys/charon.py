"""strongSwan charon log with `ike` and `chd` at level 4 (and `mgr` at 2 for the SPIs): the key dumps.

What charon prints (strongSwan src/libcharon/sa/ikev2/keymat_v2.c, ikev1/keymat_v1.c, sa/ike_sa_manager.c,
sa/child_sa.c): `Sk_ei secret => 16 bytes @ 0x...` followed by hex dump lines `   0: 73 F7 ...  s...`;
IKEv1 `SKEYID_e => N bytes` and `encryption key Ka => N bytes` (the key itself, RFC 2409 appendix B);
ESP `encryption initiator key`, `integrity responder key`, then `adding inbound ESP SA` / `  SPI 0x...,
src A dst B`; the SA's SPIs in `checkin IKEv2 SA lab[1] with SPIs f357993b1a6e610a_i 357f27c7919ce90d_r`.
Each line carries the IKE SA as `<name|unique id>` (with filelog's `ike_name = yes`; without it, a thread works
on the SA its last `IKE_SA lab[1] ...` line named); a set of IKE keys belongs to the SPIs that the deriving
thread checks in next (an IKE SA rekey derives the new SA's keys under the old SA's name).

The IKE keys' algorithms are not in these lines: IKEv2 keys come with encr/integ "" (fill them from the
negotiated SA). ESP algorithms come from `using AES_CBC for encryption` / `using HMAC_SHA2_256_128 for integrity`.
Which ESP SA gets the initiator's keys: IKEv1 names the SPI in the `initiator SA seed` (protocol, SPI, nonces);
in IKEv2 the keys "initiator" protect what the CHILD_SA initiator sends, and this daemon initiated the
CHILD_SA when it logged `establishing CHILD_SA` before the keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ikeflow.keys.ring import AuthLog, EspKey, IkeV1Key, IkeV2Keys, KeyRing, KeySourceError

_LINE = re.compile(r"(\d+)\[(\w+)\] (?:<([^>|]*\|)?(\d+)> )?(.*)$")
_DUMP_HEAD = re.compile(r"(.+?) => (\d+) bytes @ (?:0x)?[0-9a-fA-F]+$")
_DUMP_ROW = re.compile(r"\s*(\d+): ((?:[0-9A-F]{2} ){1,16})")
_SPIS = re.compile(r"IKEv([12]) SA .*with SPIs ([0-9a-f]{16})_i ([0-9a-f]{16})_r")
_SA_NAME = re.compile(r"(?:IKE_SA|IKEv[12] SA) \S*?\[(\d+)\]")
_ESP_SPI = re.compile(r"\s*SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)")

# strongSwan's algorithm names (libstrongswan/crypto/crypters/crypter.c, signers/signer.c) -> ours.
ENCR_NAMES = {"AES_CBC": "aes-cbc", "AES_CTR": "aes-ctr", "3DES": "3des", "DES": "des", "NULL": "null",
              "AES_GCM_8": "aes-gcm-8", "AES_GCM_12": "aes-gcm-12", "AES_GCM_16": "aes-gcm-16",
              "AES_CCM_8": "aes-ccm-8", "AES_CCM_12": "aes-ccm-12", "AES_CCM_16": "aes-ccm-16",
              "CHACHA20_POLY1305": "chacha20-poly1305", "BLOWFISH_CBC": "blowfish-cbc", "CAST_CBC": "cast5-cbc"}
INTEG_NAMES = {"HMAC_MD5_96": "hmac-md5-96", "HMAC_SHA1_96": "hmac-sha1-96", "HMAC_MD5_128": "hmac-md5-128",
               "HMAC_SHA1_160": "hmac-sha1-160", "HMAC_SHA2_256_96": "hmac-sha2-256-96",
               "HMAC_SHA2_256_128": "hmac-sha2-256-128", "HMAC_SHA2_384_192": "hmac-sha2-384-192",
               "HMAC_SHA2_512_256": "hmac-sha2-512-256"}
_IKE_DUMPS = {"Sk_d secret": "sk_d", "SKEYID_e": "skeyid_e",
              "Sk_ei secret": "sk_ei", "Sk_er secret": "sk_er", "Sk_ai secret": "sk_ai", "Sk_ar secret": "sk_ar",
              "encryption key Ka": "ka", "AUTH = prf(prf(secret, keypad), octets)": "auth"}
_CHILD_DUMPS = {"encryption initiator key": "ei", "encryption responder key": "er", "integrity initiator key": "ai",
                "integrity responder key": "ar", "initiator SA seed": "seed_i", "responder SA seed": "seed_r"}


@dataclass
class _Sa:
    """What one IKE SA (by charon's unique id) has logged so far."""
    spis: list[tuple[bytes, bytes]] = field(default_factory=list)
    ike: list[list] = field(default_factory=list)       # [SPI pair or None, {dump name: key}] per key derivation
    child: dict[str, bytes] = field(default_factory=dict)
    encr: str = ""
    integ: str = ""
    initiating_child: bool = False
    esp: list[tuple[bool, int, str, str]] = field(default_factory=list)      # (inbound, spi, src, dst)
    role: str = ""  # of the IKE SA: "initiator" ("initiating IKE_SA"), "responder" ("... is initiating an IKE_SA")
    auth: list[bytes] = field(default_factory=list)  # every AUTH it computed with a PSK (own, and to verify)


def _child_keys(sa: _Sa, where: str) -> list[EspKey]:
    """Pair the dumped ESP keys with the inbound/outbound SPIs of one CHILD_SA install."""
    keys = sa.child
    out = []
    for inbound, spi, src, dst in sa.esp:
        if "seed_i" in keys and len(keys["seed_i"]) >= 5:
            mine = int.from_bytes(keys["seed_i"][1:5], "big") == spi
        else:
            mine = inbound != sa.initiating_child
        side = "i" if mine else "r"
        out.append(EspKey(spi, src, dst, sa.encr, keys.get("e" + side, b""), sa.integ if sa.encr else "",
                          keys.get("a" + side, b""), where))
    return out


def parse(name: str, text: str, where: str) -> KeyRing | None:
    """Keys in a charon log; None if the text is not a charon log with key dumps."""
    if "Sk_ei secret =>" not in text and "SKEYID_e =>" not in text \
            and "encryption initiator key =>" not in text:
        if re.search(r"\d+\[(IKE|CFG|MGR)\] ", text):
            if _DUMP_HEAD.search(text) or re.search(r"\] <[^>]*> .* => \d+ bytes @", text):
                raise KeySourceError(f"{where}: no keys were derived in this charon log (the negotiation "
                                     "stopped before the key exchange; an IKEv2 responder derives its keys only "
                                     "once the first IKE_AUTH request arrives)", keyless=True)
            raise KeySourceError(f"{where}: no key dumps in this charon log (no keys were derived before the "
                                 "negotiation stopped, or the ike and chd log levels are below 4)", keyless=True)
        return None
    sas: dict[str, _Sa] = {}
    ring = KeyRing()
    dump: tuple[_Sa, str, int, bytearray] | None = None
    named = re.search(r"\d+\[\w+\] <[^>]*\d+> ", text) is not None   # filelog's ike_name = yes
    current: dict[str, str] = {}                          # without names: thread -> the IKE SA it works on
    checked_out: dict[str, tuple[bytes, bytes]] = {}      # thread -> SPIs of a checkout line without an SA name
    unpaired: dict[str, list[list]] = {}                  # thread -> IKE key sets waiting for their SPIs
    for line in text.splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        thread, group, uid, message = m[1], m[2], m[4], m[5]
        if not named:
            sa_name = _SA_NAME.search(message)
            if sa_name:
                current[thread] = sa_name[1]
            uid = current.get(thread)
        if dump is not None:
            row = _DUMP_ROW.match(message)
            sa_, key, size, buf = dump
            if row and sas.get(uid) is sa_:
                buf += bytes.fromhex(row[2].replace(" ", ""))
                if len(buf) >= size:
                    _store(sa_, key, bytes(buf[:size]))
                    dump = None
                continue
            if len(buf) == size:
                _store(sa_, key, bytes(buf))
            dump = None
        spis = _SPIS.search(message)
        pair = (bytes.fromhex(spis[2]), bytes.fromhex(spis[3])) if spis else None
        if uid is None:
            if pair:
                checked_out[thread] = pair
            continue
        sa = sas.setdefault(uid, _Sa())
        if thread in checked_out:
            _add_spis(sa, checked_out.pop(thread))
        head = _DUMP_HEAD.match(message.strip())
        if head and (head[1] in _IKE_DUMPS or head[1] in _CHILD_DUMPS):
            key = _IKE_DUMPS.get(head[1]) or _CHILD_DUMPS[head[1]]
            if key in ("sk_d", "skeyid_e"):     # the first dump of a new set of IKE keys
                sa.ike.append([None, {}])
                unpaired.setdefault(thread, []).append(sa.ike[-1])
            dump = (sa, key, int(head[2]), bytearray())
            if int(head[2]) == 0:
                _store(sa, key, b"")
                dump = None
            continue
        if pair:
            _add_spis(sa, pair)
            if any(pair[1]):                    # the SA a derivation made: the next SPIs its thread checks in
                for entry in unpaired.pop(thread, []):
                    entry[0] = pair
            continue
        if message.startswith("establishing CHILD_SA"):
            sa.initiating_child = True
        elif message.startswith("initiating IKE_SA") or message.endswith("is initiating an IKE_SA"):
            sa.role = sa.role or ("initiator" if message.startswith("initiating") else "responder")
        elif group == "CHD" and message.strip().startswith("using "):
            words = message.split()
            if message.endswith("for encryption"):
                sa.encr = ENCR_NAMES.get(words[1], "")
            elif message.endswith("for integrity"):
                sa.integ = INTEG_NAMES.get(words[1], "")
        elif message.startswith(("adding inbound ESP SA", "adding outbound ESP SA")):
            sa.esp.append((message.startswith("adding inbound"), 0, "", ""))
        else:
            spi = _ESP_SPI.match(message)
            if spi and sa.esp and not sa.esp[-1][1]:
                sa.esp[-1] = (sa.esp[-1][0], int(spi[1], 16), spi[2], spi[3])
                if len(sa.esp) == 2 and all(e[1] for e in sa.esp):
                    for key in _child_keys(sa, where):
                        ring.add(key)
                    sa.esp, sa.child, sa.initiating_child = [], {}, False
                    sa.encr = sa.integ = ""
    for sa in sas.values():
        for pair, keys in sa.ike:
            pair = pair or (sa.spis[-1] if sa.spis else None)
            if pair is None:
                continue
            if "skeyid_e" in keys:             # Ka is SKEYID_e cut or expanded to the cipher's key size
                ring.add(IkeV1Key(pair[0], keys.get("ka", keys["skeyid_e"]), where))
            elif "sk_ei" in keys and "sk_er" in keys and any(pair[1]):
                ring.add(IkeV2Keys(pair[0], pair[1], keys["sk_ei"], keys["sk_er"], "", keys.get("sk_ai", b""),
                                   keys.get("sk_ar", b""), "", where))
                if sa.role and keys is sa.ike[0][1]:  # IKE_AUTH runs on the SA's first keys only
                    ring.add_auth(AuthLog(pair[0], pair[1], sa.role, tuple(sa.auth), where))
    if not ring:
        raise KeySourceError(f"{where}: the charon log has key dumps but no SPIs to pair them with (set the mgr "
                             "log level to 2)", keyless=True)
    return ring


def _add_spis(sa: _Sa, pair: tuple[bytes, bytes]) -> None:
    """Keep the SA's SPI pairs in order; a pair with the responder SPI filled in replaces its zero form."""
    half = (pair[0], bytes(8))
    if half in sa.spis and any(pair[1]):
        sa.spis[sa.spis.index(half)] = pair
    elif pair not in sa.spis:
        sa.spis.append(pair)


def _store(sa: _Sa, key: str, value: bytes) -> None:
    if key == "auth":
        sa.auth.append(value)
    elif key in _IKE_DUMPS.values():
        if sa.ike:
            sa.ike[-1][1][key] = value
    else:
        sa.child[key] = value
