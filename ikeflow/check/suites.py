"""Proposal strings (`ike=`, `esp=`, `phase2alg=`, swanctl `proposals`/`esp_proposals`) as sets of algorithms.

A `Suite` is one proposal: per transform type the keywords it allows, in strongSwan spelling (aes256,
aes128gcm16, sha256, prfsha256, modp2048, ecp256, x25519). Two suites agree when every type has a common
keyword. strongSwan (`-` joins keywords, `,` separates proposals, `!` ends a strict stroke list) and
libreswan (`encr-integ-dh`, `encr-integ;dh` for IKEv1, `+` joins alternatives of one type) are both read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TYPES = ("encr", "integ", "prf", "dh", "esn")

_INTEG = {"md5": "md5", "sha": "sha1", "sha1": "sha1", "sha2": "sha256", "sha256": "sha256", "sha2256": "sha256",
          "sha384": "sha384", "sha2384": "sha384", "sha512": "sha512", "sha2512": "sha512", "aesxcbc": "aesxcbc",
          "aescmac": "aescmac", "sha25696": "sha256_96", "md596": "md5", "sha196": "sha1", "null": "none",
          "none": "none"}
_DH = {"curve25519": "x25519", "x25519": "x25519", "curve448": "x448", "x448": "x448", "none": "none",
       "modpnone": "none", "ecp521": "ecp521", "ecp192": "ecp192", "ecp224": "ecp224", "ecp256": "ecp256",
       "ecp384": "ecp384", "modp1024s160": "modp1024s160", "modp2048s224": "modp2048s224",
       "modp2048s256": "modp2048s256", "ecp224bp": "ecp224bp", "ecp256bp": "ecp256bp", "ecp384bp": "ecp384bp",
       "ecp512bp": "ecp512bp"}
# IANA group number -> keyword (RFC 3526, 5114, 5903, 7027, 8031)
_DH_NUM = {1: "modp768", 2: "modp1024", 5: "modp1536", 14: "modp2048", 15: "modp3072", 16: "modp4096",
           17: "modp6144", 18: "modp8192", 19: "ecp256", 20: "ecp384", 21: "ecp521", 22: "modp1024s160",
           23: "modp2048s224", 24: "modp2048s256", 25: "ecp192", 26: "ecp224", 27: "ecp224bp", 28: "ecp256bp",
           29: "ecp384bp", 30: "ecp512bp", 31: "x25519", 32: "x448"}
_AEAD_MODES = {"gcm": "gcm16", "gcm8": "gcm8", "gcm12": "gcm12", "gcm16": "gcm16", "gcm64": "gcm8", "gcm96": "gcm12",
               "gcm128": "gcm16", "ccm": "ccm16", "ccm8": "ccm8", "ccm12": "ccm12", "ccm16": "ccm16",
               "ccm64": "ccm8", "ccm96": "ccm12", "ccm128": "ccm16", "gmac": "gmac", "ctr": "ctr", "cbc": ""}
_CIPHER = re.compile(r"^(aes|camellia)(128|192|256)?(ctr|cbc|gcm|ccm|gmac)?(8|12|16|64|96|128|c|b|a)?(128|192|256)?$")


@dataclass(frozen=True)
class Suite:
    encr: frozenset[str] = frozenset()
    integ: frozenset[str] = frozenset()
    prf: frozenset[str] = frozenset()
    dh: frozenset[str] = frozenset()
    esn: frozenset[str] = frozenset()

    def text(self) -> str:
        """The suite in strongSwan spelling, alternatives of one type joined with `/`."""
        return "-".join("/".join(sorted(getattr(self, t))) for t in TYPES
                        if getattr(self, t) and getattr(self, t) != {"none"})  # "none": no PFS group


@dataclass
class Proposals:
    suites: list[Suite] = field(default_factory=list)
    strict: bool = True  # stroke: no `!` means charon appends its defaults
    unknown: list[str] = field(default_factory=list)
    uses_default: bool = False  # the `default` keyword (swanctl) or nothing configured
    dh_order: list[str] = field(default_factory=list)  # DH groups as written: the first is the initiator's KE
    firsts: list[Suite] = field(default_factory=list)  # each written proposal with its first algorithm per type


def keyword(token: str, family: str) -> tuple[str, list[str]] | None:
    """(type, keywords) of one algorithm token; None when unknown. `family` is "strongswan" or "libreswan"
    (libreswan's AES without a key length stands for 128 and 256 bits, strongSwan's for 128)."""
    t = token.lower().replace("_", "").replace("-", "")
    if t in ("3des", "des", "null", "chacha20poly1305", "blowfish", "cast", "cast128", "serpent", "twofish"):
        return "encr", [{"cast": "cast128", "blowfish": "blowfish128"}.get(t, t)]
    m = _CIPHER.match(t)
    if m:
        name, k1, mode, icv, k2 = m.groups()
        if icv in ("c", "b", "a"):  # libreswan aes_gcm_c (16), _b (12), _a (8)
            icv = {"c": "16", "b": "12", "a": "8"}[icv]
        if mode in ("gcm", "ccm") and icv in ("128",) and not k1 and not k2:  # libreswan aes_gcm128: key length
            k2, icv = icv, None
        suffix = _AEAD_MODES[(mode or "cbc") + (icv or "")] if (mode or "cbc") + (icv or "") in _AEAD_MODES else None
        if suffix is None:
            return None
        keys = [k1 or k2] if (k1 or k2) else (["128", "256"] if family == "libreswan" else ["128"])
        return "encr", [f"{name}{k}{suffix}" for k in keys]
    if t in _INTEG:
        return "integ", [_INTEG[t]]
    if t.startswith("hmac") and t[4:] in _INTEG:
        return "integ", [_INTEG[t[4:]]]
    if t.startswith("prf") and t[3:] in _INTEG:
        return "prf", ["prf" + _INTEG[t[3:]]]
    if t in _DH or re.fullmatch(r"modp\d+", t):
        return "dh", [_DH.get(t, t)]
    if re.fullmatch(r"(dh|group)\d+", t) and int(re.sub(r"\D", "", t)) in _DH_NUM:
        return "dh", [_DH_NUM[int(re.sub(r"\D", "", t))]]
    if t in ("esn", "noesn"):
        return "esn", [t]
    return None


def parse(text: str, family: str, default: list[Suite] | None = None) -> Proposals:
    """The proposals of one setting; `default` replaces the `default` keyword."""
    out = Proposals()
    text = text.strip()
    if text.endswith("!"):
        text = text[:-1]
    else:
        out.strict = family != "stroke"
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "default":
            out.uses_default = True
            out.suites += default or []
            continue
        found: dict[str, list[str]] = {t: [] for t in TYPES}
        for token in re.split(r"[-;+ ]", part):
            if not token:
                continue
            kw = keyword(token, "libreswan" if family in ("libreswan", "openswan") else "strongswan")
            if kw is None:
                out.unknown.append(token)
                continue
            if kw == ("encr", ["null"]) and found["encr"]:  # libreswan esp=aes_gcm-null: no integrity
                continue
            found[kw[0]] += [k for k in kw[1] if k not in found[kw[0]]]
            if kw[0] == "dh" and kw[1][0] not in out.dh_order:
                out.dh_order.append(kw[1][0])
        found["integ"] = [i for i in found["integ"] if i != "none"]
        out.suites.append(Suite(**{t: frozenset(v) for t, v in found.items()}))
        out.firsts.append(Suite(**{t: frozenset(v[:1]) for t, v in found.items()}))
    return out


def agree(a: Suite, b: Suite, kinds: tuple[str, ...]) -> bool:
    """Every type of `kinds` has a common keyword (an empty set on both sides agrees)."""
    return all((getattr(a, t) & getattr(b, t)) or not (getattr(a, t) or getattr(b, t)) for t in kinds)


def with_prf(s: Suite) -> Suite:
    """An IKEv2 suite without PRF takes the PRFs of its integrity algorithms (charon does the same)."""
    if s.prf or not s.integ:
        return s
    return Suite(s.encr, s.integ, frozenset("prf" + i for i in s.integ if i != "none"), s.dh, s.esn)
