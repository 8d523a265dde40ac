"""Turn decoded SA proposals into admin-readable summaries.

Algorithm keywords follow strongSwan / libreswan spelling (aes256, aes128gcm16,
3des, sha1, sha256, prfsha256, modp2048, ecp256, x25519 ...), so a summary can
be compared with, or pasted into, a peer's configuration:

* libreswan style (`ike=` / `phase2alg=`): "aes256-sha1;modp1024" for IKEv1,
  "aes256+aes128-sha256-modp2048" for an IKEv2 proposal ("+" joins
  alternatives of one transform type).
* swanctl style (`proposals =` / `esp_proposals =`): every keyword joined with
  "-", e.g. "aes256-sha1-modp1024", "aes256gcm16-prfsha384-ecp384".

Entry points: `summarize_v1(V1Transform)`, `summarize_v2(Proposal)`,
`ike_string_v1(V1Transform)`, `swanctl_string(V1Transform | Proposal)` and
`summarize_sa(payload)` for a whole SA payload; `transform_ids` (the algorithms as IKEv2
transform IDs, for the policy tables of diagnose) and `attribute_problems` (repeated attributes).
"""

from __future__ import annotations

from ikeflow.decode import names
from ikeflow.decode.ike import Payload, Proposal, V1Transform, V2Transform

# cipher family -> (display, keyword template; "{k}" is the key length)
_CIPHERS = {
    "des_iv64": ("DES-IV64", "des"),
    "des": ("DES", "des"),
    "3des": ("3DES", "3des"),
    "rc5": ("RC5", "rc5"),
    "idea": ("IDEA", "idea"),
    "cast": ("CAST", "cast{k}"),
    "blowfish": ("Blowfish", "blowfish{k}"),
    "null": ("NULL", "null"),
    "aes": ("AES", "aes{k}"),
    "aesctr": ("AES-CTR", "aes{k}ctr"),
    "aesccm8": ("AES-CCM8", "aes{k}ccm8"),
    "aesccm12": ("AES-CCM12", "aes{k}ccm12"),
    "aesccm16": ("AES-CCM16", "aes{k}ccm16"),
    "aesgcm8": ("AES-GCM8", "aes{k}gcm8"),
    "aesgcm12": ("AES-GCM12", "aes{k}gcm12"),
    "aesgcm16": ("AES-GCM16", "aes{k}gcm16"),
    "aesgmac": ("AES-GMAC", "aes{k}gmac"),
    "camellia": ("Camellia", "camellia{k}"),
    "camelliactr": ("Camellia-CTR", "camellia{k}ctr"),
    "camelliaccm8": ("Camellia-CCM8", "camellia{k}ccm8"),
    "camelliaccm12": ("Camellia-CCM12", "camellia{k}ccm12"),
    "camelliaccm16": ("Camellia-CCM16", "camellia{k}ccm16"),
    "chacha20poly1305": ("ChaCha20-Poly1305", "chacha20poly1305"),
}
_AEAD = {"aesccm8", "aesccm12", "aesccm16", "aesgcm8", "aesgcm12", "aesgcm16",
         "camelliaccm8", "camelliaccm12", "camelliaccm16", "chacha20poly1305"}
_DEFAULT_KEY = {"cast": 128, "blowfish": 128}

# IKEv1 phase-1 Encryption-Algorithm attribute (RFC 2409 appendix A)
_V1_IKE_CIPHER = {1: "des", 2: "idea", 3: "blowfish", 4: "rc5", 5: "3des", 6: "cast", 7: "aes", 8: "camellia"}
# IKEv1 ESP transform ids (RFC 2407 4.4.4, IANA) and IKEv2 ENCR ids (RFC 7296, IANA)
_COMMON_CIPHER = {
    1: "des_iv64", 2: "des", 3: "3des", 4: "rc5", 5: "idea", 6: "cast", 7: "blowfish", 11: "null",
    12: "aes", 13: "aesctr", 14: "aesccm8", 15: "aesccm12", 16: "aesccm16",
    18: "aesgcm8", 19: "aesgcm12", 20: "aesgcm16",
}
_V1_ESP_CIPHER = _COMMON_CIPHER | {22: "camellia", 23: "aesgmac"}
_V2_CIPHER = _COMMON_CIPHER | {
    21: "aesgmac", 23: "camellia", 24: "camelliactr", 25: "camelliaccm8", 26: "camelliaccm12",
    27: "camelliaccm16", 28: "chacha20poly1305",
}

_V1_HASH_KW = {1: "md5", 2: "sha1", 3: "tiger", 4: "sha256", 5: "sha384", 6: "sha512"}
# IKEv1 IPsec Authentication-Algorithm attribute (RFC 2407 4.5, IANA)
_V1_AUTH_KW = {1: "md5", 2: "sha1", 3: "desmac", 5: "sha256", 6: "sha384", 7: "sha512",
               8: "ripemd", 9: "aesxcbc", 11: "aes128gmac", 12: "aes192gmac", 13: "aes256gmac"}
# IKEv1 AH transform id -> Authentication-Algorithm equivalent
_AH_TO_AUTH = {2: 1, 3: 2, 4: 3, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 11: 11, 12: 12, 13: 13}
_V2_INTEG_KW = {1: "md5", 2: "sha1", 3: "desmac", 5: "aesxcbc", 6: "md5_128", 7: "sha1_160", 8: "aescmac",
                9: "aes128gmac", 10: "aes192gmac", 11: "aes256gmac", 12: "sha256", 13: "sha384", 14: "sha512"}
_V2_PRF_KW = {1: "prfmd5", 2: "prfsha1", 4: "prfaesxcbc", 5: "prfsha256", 6: "prfsha384", 7: "prfsha512",
              8: "prfaescmac"}
_DH_KW = {27: "ecp224bp", 28: "ecp256bp", 29: "ecp384bp", 30: "ecp512bp", 31: "x25519", 32: "x448"}


def dh_keyword(group: int) -> str:
    """strongSwan/libreswan DH keyword: modp2048, ecp256, ecp256bp, x25519..."""
    return _DH_KW.get(group) or names.DH_GROUPS.get(group, f"dh{group}")


def _cipher(family: str | None, tid: int, key_length: int | None) -> tuple[str, str]:
    """(display, keyword) for a cipher family and key length."""
    if family is None:
        return f"encr {tid}", f"encr{tid}"
    display, template = _CIPHERS[family]
    k = key_length or _DEFAULT_KEY.get(family)
    if "{k}" in template and k:
        return f"{display}-{k}", template.format(k=k)
    return display, template.format(k="")


def _lifetimes(t: V1Transform) -> tuple[int | None, int | None]:
    """(seconds, kilobytes) from the ordered life-type/life-duration attribute pairs."""
    type_attr, dur_attr = (11, 12) if t.protocol == 1 else (1, 2)
    seconds = kilobytes = None
    life_type = 1
    for atype, val in t.attrs:
        if atype == type_attr and isinstance(val, int):
            life_type = val
        elif atype == dur_attr and isinstance(val, int):
            if life_type == 2:
                kilobytes = val
            else:
                seconds = val
    return seconds, kilobytes


def _v1_parts(t: V1Transform) -> tuple[str, str | None, int | None]:
    """(cipher keyword, integrity/hash keyword, group) for an IKEv1 transform."""
    a = t.attributes
    group = a.get("group") if isinstance(a.get("group"), int) else None
    key_length = a.get("key_length") if isinstance(a.get("key_length"), int) else None
    if t.protocol == 1:
        enc = a.get("encryption")
        _, enc_kw = _cipher(_V1_IKE_CIPHER.get(enc), enc, key_length) if isinstance(enc, int) else ("", "")
        return enc_kw, _V1_HASH_KW.get(a.get("hash")), group
    auth = a.get("auth_alg")
    if t.protocol == 2:
        return "", _V1_AUTH_KW.get(auth if auth is not None else _AH_TO_AUTH.get(t.id)), group
    family = _V1_ESP_CIPHER.get(t.id)
    _, enc_kw = _cipher(family, t.id, key_length)
    return enc_kw, _V1_AUTH_KW.get(auth), group


def ike_string_v1(t: V1Transform) -> str:
    """libreswan `ike=` (phase 1) or `phase2alg=` (ESP/AH) string, e.g. "aes256-sha1;modp1024"."""
    enc, integ, group = _v1_parts(t)
    algs = "-".join(x for x in (enc, integ) if x)
    return f"{algs};{dh_keyword(group)}" if group else algs


def _v2_keywords(p: Proposal) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {"encr": [], "integ": [], "prf": [], "dh": [], "esn": []}
    for t in p.transforms:
        if t.type == 1:
            by_type["encr"].append(_cipher(_V2_CIPHER.get(t.id), t.id, t.key_length)[1])
        elif t.type == 3 and t.id != 0:
            by_type["integ"].append(_V2_INTEG_KW.get(t.id, f"integ{t.id}"))
        elif t.type == 2:
            by_type["prf"].append(_V2_PRF_KW.get(t.id, f"prf{t.id}"))
        elif t.type == 4 and t.id != 0:
            by_type["dh"].append(dh_keyword(t.id))
        elif t.type == 5:
            by_type["esn"].append("esn" if t.id == 1 else "noesn")
    return by_type


def swanctl_string(item: V1Transform | Proposal) -> str:
    """strongSwan swanctl proposal string, e.g. "aes256-sha1-modp1024".

    For IKEv2 the PRF is listed only when it does not follow from the
    integrity algorithms (always for AEAD ciphers); ESN only when offered.
    """
    if isinstance(item, V1Transform):
        enc, integ, group = _v1_parts(item)
        return "-".join(x for x in (enc, integ, dh_keyword(group) if group else "") if x)
    kw = _v2_keywords(item)
    implied = {"prf" + i for i in kw["integ"]}
    prf = [] if kw["prf"] and set(kw["prf"]) <= implied else kw["prf"]
    esn = kw["esn"] if "esn" in kw["esn"] else []
    return "-".join(kw["encr"] + kw["integ"] + prf + kw["dh"] + esn)


def _libreswan_v2(p: Proposal) -> str:
    """libreswan IKEv2 proposal: ENCR-INTEG(or PRF for AEAD)-DH, alternatives joined by "+"."""
    kw = _v2_keywords(p)
    second = kw["integ"] or [x.removeprefix("prf") for x in kw["prf"]]
    return "-".join("+".join(dict.fromkeys(part)) for part in (kw["encr"], second, kw["dh"]) if part)


def summarize_v1(t: V1Transform) -> dict:
    """Summary of one IKEv1 transform.

    Phase 1 (ISAKMP): encryption ("AES-256"), hash ("SHA1"), group, group_name,
    auth ("PSK"), lifetime (s), lifetime_kb, ike ("aes256-sha1;modp1024"), swanctl.
    ESP/AH: encryption, integrity ("HMAC-SHA1"), group/group_name (PFS, may be
    None), mode ("Tunnel"), lifetime, lifetime_kb, esp or ah ("aes128-sha1"),
    phase2alg ("aes128-sha1;modp1024"), swanctl. IPCOMP: compression.
    """
    a = t.attributes
    seconds, kilobytes = _lifetimes(t)
    group = a.get("group") if isinstance(a.get("group"), int) else None
    out: dict = {
        "protocol": names.protocol_name(1, t.protocol),
        "transform": t.name,
        "group": group,
        "group_name": names.group_name(group) if group is not None else None,
        "lifetime": seconds,
        "lifetime_kb": kilobytes,
    }
    key_length = a.get("key_length") if isinstance(a.get("key_length"), int) else None
    if t.protocol == 1:
        enc = a.get("encryption")
        hash_alg = a.get("hash")
        out["encryption"] = (_cipher(_V1_IKE_CIPHER.get(enc), enc, key_length)[0]
                             if isinstance(enc, int) else None)
        out["hash"] = names.V1_HASH.get(hash_alg, f"hash {hash_alg}") if hash_alg is not None else None
        auth = a.get("auth")
        out["auth"] = names.V1_AUTH_METHODS.get(auth, f"auth {auth}") if auth is not None else None
        out["ike"] = ike_string_v1(t)
        out["swanctl"] = swanctl_string(t)
        return out
    if t.protocol == 4:
        out["compression"] = t.name.removeprefix("IPCOMP_")
        return out
    auth = a.get("auth_alg")
    mode = a.get("encap_mode")
    out["mode"] = names.ENCAP_MODES.get(mode, f"mode {mode}") if mode is not None else None
    if t.protocol == 3:
        family = _V1_ESP_CIPHER.get(t.id)
        out["encryption"] = _cipher(family, t.id, key_length)[0]
    else:
        auth = auth if auth is not None else _AH_TO_AUTH.get(t.id)
    out["integrity"] = names.V1_AUTH_ALGORITHMS.get(auth, f"auth {auth}") if auth is not None else None
    enc_kw, integ_kw, _ = _v1_parts(t)
    out["esp" if t.protocol == 3 else "ah"] = "-".join(x for x in (enc_kw, integ_kw) if x)
    out["phase2alg"] = ike_string_v1(t)
    out["swanctl"] = swanctl_string(t)
    return out


def summarize_v2(p: Proposal) -> dict:
    """Summary of one IKEv2 proposal.

    Keys: protocol, number, spi (hex), encryption (["AES_CBC_256"]), integrity
    (["HMAC_SHA2_256_128"]), prf (["HMAC_SHA2_256"]), groups (["modp2048"]),
    group_ids ([14]), esn (["ESN"]), swanctl ("aes256-sha256-modp2048") and the
    libreswan string under "ike", "esp" or "ah" after the protocol.
    """
    out: dict = {
        "protocol": p.protocol_name, "number": p.number, "spi": p.spi.hex(),
        "encryption": [], "integrity": [], "prf": [], "groups": [], "group_ids": [], "esn": [],
    }
    for t in p.transforms:
        if not isinstance(t, V2Transform):
            continue
        if t.type == 1:
            out["encryption"].append(f"{t.name}_{t.key_length}" if t.key_length else t.name)
        elif t.type == 2:
            out["prf"].append(t.name)
        elif t.type == 3:
            out["integrity"].append(t.name)
        elif t.type == 4:
            out["groups"].append(names.group_name(t.id))
            out["group_ids"].append(t.id)
        elif t.type == 5:
            out["esn"].append(t.name)
    key = {"IKE": "ike", "AH": "ah"}.get(p.protocol_name, "esp")
    out[key] = _libreswan_v2(p)
    out["swanctl"] = swanctl_string(p)
    return out


def summarize_sa(payload: Payload) -> list[dict]:
    """Summaries for an SA payload: one per IKEv1 transform, one per IKEv2 proposal.

    IKEv1 entries also carry "proposal" (the proposal number).
    """
    out = []
    for prop in payload.info.get("proposals", []):
        if prop.version == 2:
            out.append(summarize_v2(prop))
        else:
            out.extend({"proposal": prop.number, **summarize_v1(t)} for t in prop.transforms)
    return out


# IKEv1 values as IKEv2 transform IDs (IANA), so that one table of algorithm levels serves both versions.
_V1_IKE_TO_ENCR = {1: 2, 2: 5, 3: 7, 4: 4, 5: 3, 6: 6, 7: 12, 8: 23}  # phase-1 Encryption-Algorithm -> ENCR
_V1_HASH_TO_PRF = {1: 1, 2: 2, 4: 5, 5: 6, 6: 7}  # phase-1 Hash-Algorithm -> PRF (IKEv1's PRF is HMAC of it)
_V1_AUTH_TO_INTEG = {1: 1, 2: 2, 3: 3, 4: 4, 5: 12, 6: 13, 7: 14, 9: 5, 11: 9, 12: 10, 13: 11}  # RFC 2407 4.5
_V1_ESP_TO_ENCR = {22: 23, 23: 21}  # the other IKEv1 ESP transform IDs (RFC 2407 4.4.4) equal the ENCR IDs
_LIFE_TYPES = {1: "seconds", 2: "kilobytes"}


def transform_ids(item: V1Transform | Proposal) -> dict[int, list[int]]:
    """The algorithms of one IKEv1 transform or one IKEv2 proposal as IKEv2 transform IDs by type
    (1 ENCR, 2 PRF, 3 INTEG, 4 DH; NONE left out); IKEv1 values are translated, its phase-1 hash is the PRF."""
    out: dict[int, list[int]] = {1: [], 2: [], 3: [], 4: []}
    if isinstance(item, Proposal):
        for t in item.transforms:
            if t.type in out and not (t.type in (3, 4) and t.id == 0):
                out[t.type].append(t.id)
        return out
    a = item.attributes
    if isinstance(a.get("group"), int):
        out[4].append(a["group"])
    if item.protocol == 1:
        for ttype, table, value in ((1, _V1_IKE_TO_ENCR, a.get("encryption")), (2, _V1_HASH_TO_PRF, a.get("hash"))):
            if value in table:
                out[ttype].append(table[value])
        return out
    if item.protocol == 3:
        out[1].append(_V1_ESP_TO_ENCR.get(item.id, item.id))
    elif item.protocol != 2:  # IPCOMP
        return out
    auth = a.get("auth_alg") if item.protocol == 3 else a.get("auth_alg", _AH_TO_AUTH.get(item.id))
    if auth in _V1_AUTH_TO_INTEG:
        out[3].append(_V1_AUTH_TO_INTEG[auth])
    return out


def keyword(ttype: int, tid: int) -> str:
    """strongSwan keyword of an IKEv2 transform ID: "3des", "md5", "prfsha1", "modp1024"."""
    if ttype == 1:
        return _cipher(_V2_CIPHER.get(tid), tid, None)[1]
    if ttype == 2:
        return _V2_PRF_KW.get(tid, f"prf{tid}")
    if ttype == 3:
        return _V2_INTEG_KW.get(tid, f"integ{tid}")
    return dh_keyword(tid)


def attribute_problems(prop: Proposal) -> list[str]:
    """What a proposal repeats that the summaries resolve silently: an IKEv1 attribute given twice in one
    transform (a life duration counts per life type), or the same IKEv2 transform twice in one proposal.

    One text per repetition, e.g. "transform 1: life_duration (seconds) twice, conflicting: 86400, 65535"."""
    out = []
    if prop.version == 2:
        counts: dict[tuple, int] = {}
        for t in prop.transforms:
            key = (t.type, t.id, t.key_length)
            counts[key] = counts.get(key, 0) + 1
        for (ttype, tid, key_length), n in counts.items():
            name = names.v2_transform_name(ttype, tid) + (f"_{key_length}" if key_length else "")
            if n > 1:
                out.append(f"{names.V2_TRANSFORM_TYPES.get(ttype, ttype)} {name} {'twice' if n == 2 else f'{n} times'}")
        return out
    for t in prop.transforms:
        table = names.IKE_ATTRIBUTES if t.protocol == 1 else names.IPSEC_ATTRIBUTES
        type_attr, dur_attr = (11, 12) if t.protocol == 1 else (1, 2)
        values: dict[tuple, list] = {}
        life_type = 1
        for atype, val in t.attrs:
            if atype == type_attr:
                key = (atype, val)
                life_type = val
            else:
                key = (atype, life_type) if atype == dur_attr else (atype,)
            values.setdefault(key, []).append(val)
        for key, vals in values.items():
            if len(vals) > 1:
                name = table.get(key[0], f"attr_{key[0]}")
                if key[0] == dur_attr:
                    name += f" ({_LIFE_TYPES.get(key[1], f'life type {key[1]}')})"
                kind = "duplicate" if len(set(vals)) == 1 else "conflicting"
                count = "twice" if len(vals) == 2 else f"{len(vals)} times"
                out.append(f"transform {t.number}: {name} {count}, {kind}: "
                           + ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in vals))
    return out


def is_aead(p: Proposal) -> bool:
    """True when every ENCR transform of an IKEv2 proposal is an AEAD cipher."""
    encr = [t for t in p.transforms if t.type == 1]
    return bool(encr) and all(_V2_CIPHER.get(t.id) in _AEAD for t in encr)


# Bytes an SK payload spends besides the plaintext, per IKEv2 transform (RFC 7296 3.14, RFC 5282):
# the IV of the cipher and the integrity checksum (for AEAD ciphers, the ICV of the cipher).
SK_IV = {2: 8, 3: 8, 12: 16, 13: 8, 14: 8, 15: 8, 16: 8, 18: 8, 19: 8, 20: 8, 23: 16, 28: 8}
SK_ICV_AEAD = {14: 8, 15: 12, 16: 16, 18: 8, 19: 12, 20: 16, 28: 16}
SK_ICV_INTEG = {1: 12, 2: 12, 5: 12, 6: 12, 7: 20, 8: 12, 12: 16, 13: 24, 14: 32}


def sk_overhead(p: Proposal | None) -> int:
    """IV + ICV bytes of the chosen IKEv2 proposal (16 + 12 when unknown: the smallest common case)."""
    iv, icv = 16, 12
    for t in p.transforms if p else []:
        if t.type == 1:
            iv = SK_IV.get(t.id, iv)
            icv = SK_ICV_AEAD.get(t.id, icv)
        elif t.type == 3:
            icv = SK_ICV_INTEG.get(t.id, icv)
    return iv + icv
