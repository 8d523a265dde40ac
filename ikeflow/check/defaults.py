"""Each daemon's defaults for what a conn leaves unset, by family and version: one cited table.

`DAEMONS` names the versions `--daemon` takes; `DEFAULTS` holds one row per (daemon, dialect, setting) with its
source. The default IKE proposals of strongSwan and libreswan come from `ikeflow.diagnose.defaults.DEFAULTS`
(what each accepts unconfigured, as IKEv2 transform IDs); the rows here add the settings that table does not
hold (ESP proposals, lifetimes, PFS, IKE version, DPD, fragmentation, NAT-T, IDs).
"""

from __future__ import annotations

from dataclasses import dataclass

from ikeflow.check.suites import Suite, parse
from ikeflow.decode.proposals import keyword
from ikeflow.diagnose.defaults import DEFAULTS as RESPONDER_DEFAULTS
from ikeflow.diagnose.defaults import DH, ENCR, INTEG, PRF

DAEMONS = {
    "strongswan-5.9": ("strongswan", "strongSwan 5.9"),
    "strongswan-6": ("strongswan", "strongSwan 6.x"),
    "libreswan-4": ("libreswan", "libreswan 4.x"),
    "libreswan-5": ("libreswan", "libreswan 5.x"),
    "openswan-2.6": ("openswan", "Openswan 2.6"),
}
GUESS = {"stroke": "strongswan-5.9", "swanctl": "strongswan-5.9", "libreswan": "libreswan-4",
         "openswan": "openswan-2.6"}

_SS_MAN = "strongSwan ipsec.conf(5) (5.9.x)"
_SW_MAN = "strongSwan swanctl.conf(5) (5.9.x, 6.0.x)"
_LS_MAN = "libreswan ipsec.conf(5) (v4.x, v5.x)"
_OS_MAN = "Openswan 2.6 ipsec.conf(5) (programs/_confread/d.ipsec.conf/*.xml)"


@dataclass(frozen=True)
class Row:
    daemons: tuple[str, ...]
    dialect: str  # "stroke", "swanctl", "libreswan" (also Openswan's ipsec.conf)
    setting: str
    value: str
    source: str


_SS = ("strongswan-5.9", "strongswan-6")
_LS = ("libreswan-4", "libreswan-5")
_OS = ("openswan-2.6",)
DEFAULTS = [
    Row(_SS, "stroke", "version", "0", f"{_SS_MAN} keyexchange=ike: IKEv2 when initiating, either as responder"),
    Row(_SS, "stroke", "ike", "aes128-sha256-modp3072",
        f"{_SS_MAN} ike= (since 5.4.0); charon appends its default proposal unless the list ends with !"),
    Row(_SS, "stroke", "esp", "aes128-sha256",
        f"{_SS_MAN} esp= (since 5.4.0); charon appends its default proposal unless the list ends with !"),
    Row(_SS, "stroke", "ike_lifetime", "3h", f"{_SS_MAN} ikelifetime"),
    Row(_SS, "stroke", "child_lifetime", "1h", f"{_SS_MAN} lifetime / keylife"),
    Row(_SS, "stroke", "dpd", "none", f"{_SS_MAN} dpdaction=none (dpddelay=30s only with an action)"),
    Row(_SS, "stroke", "fragmentation", "yes", f"{_SS_MAN} fragmentation"),
    Row(_SS, "stroke", "encap", "no", f"{_SS_MAN} forceencaps"),
    Row(_SS, "stroke", "auth", "pubkey", f"{_SS_MAN} authby / leftauth"),
    Row(_SS, "swanctl", "version", "0", f"{_SW_MAN} connections.<conn>.version: either as responder, IKEv2 as initiator"),
    Row(_SS, "swanctl", "ike", "default", f"{_SW_MAN} proposals"),
    Row(_SS, "swanctl", "esp", "default", f"{_SW_MAN} children.<child>.esp_proposals"),
    Row(_SS, "swanctl", "ike_lifetime", "4h", f"{_SW_MAN} rekey_time"),
    Row(_SS, "swanctl", "child_lifetime", "1h", f"{_SW_MAN} children.<child>.rekey_time"),
    Row(_SS, "swanctl", "dpd", "0s", f"{_SW_MAN} dpd_delay (0: no DPD)"),
    Row(_SS, "swanctl", "fragmentation", "yes", f"{_SW_MAN} fragmentation"),
    Row(_SS, "swanctl", "encap", "no", f"{_SW_MAN} encap"),
    Row(_SS, "swanctl", "auth", "pubkey", f"{_SW_MAN} local/remote.auth"),
    Row(_SS, "swanctl", "aggressive_psk", "no",
        "strongSwan strongswan.conf(5) charon.i_dont_care_about_security_and_use_aggressive_mode_psk [no]: "
        "as responder charon refuses Aggressive Mode with PSK"),
    Row(_SS, "stroke", "aggressive_psk", "no",
        "strongSwan strongswan.conf(5) charon.i_dont_care_about_security_and_use_aggressive_mode_psk [no]"),
    Row(("strongswan-5.9",), "swanctl", "esp_default",
        "aes128gcm16-aes192gcm16-aes256gcm16, aes128-aes192-aes256-sha256-sha384-sha512-sha1-aesxcbc",
        "strongSwan 5.9.14 src/libstrongswan/crypto/proposal/proposal.c proposal_create_default (no PFS group)"),
    Row(("strongswan-6",), "swanctl", "esp_default",
        "aes128gcm16-aes192gcm16-aes256gcm16, aes128-aes192-aes256-sha256-sha384-sha512-sha1-aesxcbc",
        "strongSwan 6.0.x proposal.c; since 6.0.2 with every supported group and none (NEWS 6.0.2: PFS optional)"),
    Row(("libreswan-4",), "libreswan", "version", "2", f"{_LS_MAN} ikev2=yes; IKEv1 dropped unless "
        "ikev1-policy=accept (libreswan 4.10 in pcaps/lab/record.py pluto_conf)"),
    Row(("libreswan-5",), "libreswan", "version", "2", f"{_LS_MAN} keyexchange=ikev2; IKEv1 needs ikev1-policy=accept"),
    Row(_LS, "libreswan", "ike", "default", "libreswan lib/libswan/ike_info.c (rows of diagnose/defaults.py)"),
    Row(_LS, "libreswan", "esp", "aes+3des-sha1+sha2_512+sha2_256, aes_gcm16_128+aes_gcm16_256",
        "libreswan lib/libswan/esp_info.c default ESP proposals (as diagnose/defaults.py)"),
    Row(_LS, "libreswan", "pfs", "yes", f"{_LS_MAN} pfs (PFS group: phase 2's own, else the IKE SA's)"),
    Row(_LS, "libreswan", "ike_lifetime", "1h", f"{_LS_MAN} ikelifetime (\"about 60 minutes, which is the default "
        "ikelifetime\": libreswan/libreswan issue #405, 2021)"),
    Row(_LS, "libreswan", "child_lifetime", "8h", f"{_LS_MAN} salifetime"),
    Row(_LS, "libreswan", "dpd", "0s", f"{_LS_MAN} dpddelay (unset: no DPD)"),
    Row(_LS, "libreswan", "fragmentation", "yes", f"{_LS_MAN} fragmentation"),
    Row(_LS, "libreswan", "encap", "auto", f"{_LS_MAN} encapsulation"),
    Row(_LS, "libreswan", "auth", "rsasig", f"{_LS_MAN} authby"),
    Row(_OS, "libreswan", "version", "1", f"{_OS_MAN} ikev2.xml: permit (the default) initiates IKEv1, accepts IKEv2"),
    Row(_OS, "libreswan", "ike", "aes128-sha1-modp1536, aes128-md5-modp1536, 3des-sha1-modp1536, 3des-md5-modp1536, "
        "3des-sha1-modp1024, 3des-md5-modp1024", "Openswan programs/pluto/spdb.c oakley_trans_psk"),
    Row(_OS, "libreswan", "esp", "aes128-sha1, aes128-md5, 3des-sha1, 3des-md5",
        "Openswan programs/pluto/spdb.c espa_trans"),
    Row(_OS, "libreswan", "pfs", "yes", f"{_OS_MAN} pfs.xml"),
    Row(_OS, "libreswan", "ike_lifetime", "1h", f"{_OS_MAN} ikelifetime.xml"),
    Row(_OS, "libreswan", "child_lifetime", "8h", f"{_OS_MAN} keylife.xml"),
    Row(_OS, "libreswan", "dpd", "0s", f"{_OS_MAN} dpddelay.xml (unset: no DPD)"),
    Row(_OS, "libreswan", "fragmentation", "no", "Openswan 2.6 has no IKE fragmentation"),
    Row(_OS, "libreswan", "encap", "auto", f"{_OS_MAN} (NAT-T with nat_traversal=yes in config setup)"),
    Row(_OS, "libreswan", "auth", "rsasig", f"{_OS_MAN} authby"),
]


def default(daemon: str, dialect: str, setting: str) -> Row | None:
    """The table's row for a daemon version, its configuration dialect and a setting."""
    dialect = "libreswan" if dialect == "openswan" else dialect
    return next((r for r in DEFAULTS if daemon in r.daemons and r.dialect == dialect and r.setting == setting), None)


# IKEv2 ENCR IDs of the responder table -> keywords with every key length (RFC 7296 / IANA; CBC and GCM-16)
_ENCR_KW = {3: ["3des"], 12: ["aes128", "aes192", "aes256"], 13: ["aes128ctr", "aes192ctr", "aes256ctr"],
            14: ["aes128ccm8", "aes192ccm8", "aes256ccm8"], 15: ["aes128ccm12", "aes192ccm12", "aes256ccm12"],
            16: ["aes128ccm16", "aes192ccm16", "aes256ccm16"], 18: ["aes128gcm8", "aes192gcm8", "aes256gcm8"],
            19: ["aes128gcm12", "aes192gcm12", "aes256gcm12"], 20: ["aes128gcm16", "aes192gcm16", "aes256gcm16"],
            23: ["camellia128", "camellia192", "camellia256"], 24: ["camellia128ctr", "camellia192ctr", "camellia256ctr"],
            25: ["camellia128ccm8"], 26: ["camellia128ccm12"], 27: ["camellia128ccm16"], 28: ["chacha20poly1305"]}


def default_ike(daemon: str, version: int) -> tuple[list[Suite], str]:
    """The IKE proposals a daemon accepts unconfigured, and the source; for Openswan the table row here."""
    family = DAEMONS[daemon][0]
    if family == "openswan":
        row = default(daemon, "libreswan", "ike")
        return parse(row.value, "strongswan").suites, row.source
    name = {"strongswan": "strongSwan", "libreswan": "libreswan"}[family]
    want = {"strongswan-5.9": "5.9", "strongswan-6": "6.0", "libreswan-4": "4.0", "libreswan-5": "5."}[daemon]
    rows = [d for d in RESPONDER_DEFAULTS if d.implementation == name and (version or 2) in d.ike_versions
            and want in d.versions]
    if not rows:
        return [], "no row in diagnose/defaults.py"
    d = rows[0]
    ids = d.accepts
    integ = {keyword(INTEG, i) for i in ids.get(INTEG, ())}
    prf = {keyword(PRF, i) for i in ids.get(PRF, ())}
    if version == 1:  # IKEv1 names a hash where IKEv2 has PRF and integrity
        integ |= {p.removeprefix("prf") for p in prf}
        prf = set()
    suite = Suite(frozenset(k for i in ids.get(ENCR, ()) for k in _ENCR_KW.get(i, [])), frozenset(integ),
                  frozenset(prf), frozenset(keyword(DH, i) for i in ids.get(DH, ())))
    return [suite], f"{d.source} (diagnose/defaults.py, {d.implementation} {d.versions})"
