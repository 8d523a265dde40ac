"""ipsec.conf: the Openswan/libreswan dialect and strongSwan's legacy stroke dialect (same file syntax).

Syntax (libreswan ipsec.conf(5), strongSwan ipsec.conf(5)): a section starts at column 0 (`config setup`,
`conn NAME`, `ca NAME`), its `key=value` lines are indented; `include PATTERN` (shell wildcards, relative to
the including file) may appear at column 0; `#` starts a comment; `conn %default` gives every conn its
defaults and `also=NAME` pulls in another conn's settings (the conn's own settings win).
"""

from __future__ import annotations

import re
from pathlib import Path

from ikeflow.check.config import Config, ConfigError, Section, Setting, include_paths, read_text, strip_comment, unquote

_SIDE = ("id", "subnet", "subnets", "nexthop", "sourceip", "cert", "rsasigkey", "auth", "auth2", "protoport",
         "firewall", "sendcert", "ca", "updown", "xauthserver", "xauthclient", "modecfgserver", "modecfgclient",
         "hostaccess", "cert2", "id2", "groups", "allowany", "dns", "ikeport", "vti", "username", "addresspool",
         "pubkey", "ckaid", "sigkey", "eap_identity", "ca2")
KNOWN = ({"left", "right", "also", "auto", "type", "authby", "ike", "esp", "ah", "phase2alg", "phase2", "pfs",
          "pfsgroup", "aggrmode", "aggressive", "ikev2", "keyexchange", "ikelifetime", "salifetime", "keylife",
          "lifetime", "rekeymargin", "margintime", "rekeyfuzz", "keyingtries", "rekey", "reauth", "encapsulation",
          "forceencaps", "fragmentation", "ike_frag", "ike-frag", "dpddelay", "dpdtimeout", "dpdaction", "mobike",
          "compress", "narrowing", "installpolicy", "mark", "reqid", "closeaction", "modecfgpull", "xauth",
          "eap_identity", "aaa_identity", "nat-keepalive", "nat_keepalive", "ikepad", "sha2-truncbug",
          "sha2_truncbug", "failureshunt", "negotiationshunt", "policy", "keyingtries", "ikelifetime", "replay_window",
          "tfc", "inactivity", "rekeymargin", "leftsubnets", "rightsubnets", "nat-ikev1-method", "overlapip",
          "remote_peer_type", "cisco-unity", "decap-dscp", "nopmtudisc", "ipsec-interface", "priority",
          "sareftrack", "send-no-esp-tfc", "modecfgdns", "modecfgdomains", "modecfgbanner", "retransmit-timeout",
          "retransmit-interval", "pam-authorize", "labeled-ipsec", "hostaddrfamily", "clientaddrfamily",
          "connaddrfamily", "esn", "authby2", "ppk", "intermediate", "metric", "mtu", "encapsulation"}
         | {f"{s}{k}" for s in ("left", "right") for k in _SIDE})
_STROKE = {"keyexchange", "leftauth", "rightauth", "reauth", "margintime", "mobike", "leftsendcert", "rightsendcert",
           "closeaction", "eap_identity", "aaa_identity", "leftfirewall", "rightfirewall", "charondebug",
           "charonstart", "forceencaps", "lifetime", "strictcrlpolicy"}
_LIBRESWAN = {"ikev2", "phase2alg", "phase2", "pfs", "aggrmode", "protostack", "plutodebug", "dumpdir", "listen",
              "nat_traversal", "salifetime", "encapsulation", "ikev1-policy", "logfile", "logtime", "leftrsasigkey",
              "rightrsasigkey", "nhelpers", "oe", "interfaces", "virtual_private", "virtual-private", "ike-frag",
              "ike_frag", "pfsgroup", "logappend", "dnssec-enable", "secretsfile", "ipsecdir"}
_OPENSWAN = {"nat_traversal", "oe", "nhelpers"}  # config setup keys libreswan 4 no longer has
_SECTION = re.compile(r"^(config|conn|ca)\s+(\S+)\s*$")
_KEY = re.compile(r"^\s+([A-Za-z0-9_+-]+)\s*=\s*(.*?)\s*$")


def parse(path: Path, source: str | None = None) -> Config:
    """Every section of `path` and its includes; the dialect guessed from the keys used."""
    cfg = Config(source=source or str(path), dialect="")
    _read(path, cfg, [], None)
    cfg.dialect = guess_dialect(cfg)
    return cfg


def _read(path: Path, cfg: Config, stack: list[Path], current: Section | None) -> Section | None:
    real = path.resolve()
    if real in stack:
        raise ConfigError(f"{path}: included from itself")
    cfg.files.append(str(path))
    for n, raw in enumerate(read_text(path), 1):
        where = f"{path}:{n}"
        line = strip_comment(raw).rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            words = line.split()
            if words[0] == "include" and len(words) == 2:
                for inc in include_paths(words[1], path, where):
                    current = _read(inc, cfg, [*stack, real], None)
                current = None
                continue
            if words[0] == "version":
                continue
            m = _SECTION.match(line)
            if not m:
                raise ConfigError(f"{where}: expected `conn NAME`, `config setup`, `ca NAME` or `include FILE`, "
                                  f"not {line.strip()[:40]!r}")
            kind = {"config": "setup"}.get(m[1], m[1])
            current = Section(kind, m[2], where)
            cfg.sections.append(current)
            continue
        m = _KEY.match(line)
        if not m:
            raise ConfigError(f"{where}: expected `key=value`, not {line.strip()[:40]!r}")
        if current is None:
            raise ConfigError(f"{where}: `{m[1]}=` outside a `conn` or `config setup` section")
        key = m[1].lower()
        if current.kind == "conn" and key not in KNOWN and not key.startswith("x-"):
            cfg.warnings.append(f"{where}: unknown key {key} (ignored)")
        current.settings[key] = Setting(unquote(m[2], where), where)
    return current


def guess_dialect(cfg: Config) -> str:
    """"stroke" (strongSwan's ipsec.conf), "openswan" or "libreswan", from the keys and values used."""
    keys = {k for s in cfg.sections for k in s.settings}
    ends_bang = any(s.settings[k].value.endswith("!") for s in cfg.sections for k in ("ike", "esp")
                    if k in s.settings)
    stroke, libre = len(keys & _STROKE) + 2 * ends_bang, len(keys & _LIBRESWAN)
    if stroke > libre:
        return "stroke"
    if keys & _OPENSWAN or any(s.settings.get("protostack", Setting("", "")).value == "klips" for s in cfg.sections):
        return "openswan"
    return "libreswan"


def conns(cfg: Config) -> dict[str, dict[str, Setting]]:
    """Each conn's settings after `also=` and `conn %default`, own settings first; conns with auto=ignore and
    also= targets that are templates (no left= and right=, or no auto= of their own: ipsec.conf(5), auto defaults to
    ignore) are left out."""
    named = {s.name: s for s in cfg.sections if s.kind == "conn"}
    default = named.pop("%default", None)
    targets = {v for s in named.values() for k, st in s.settings.items() if k == "also" for v in st.value.split()}
    out = {}
    for name, sec in named.items():
        merged = _merged(sec, named, [])
        for k, v in (default.settings.items() if default else ()):
            merged.setdefault(k, v)
        if merged.get("auto", Setting("", "")).value == "ignore":
            continue
        if name in targets and not ({"left", "right", "auto"} <= merged.keys()):
            continue
        out[name] = merged
    return out


def _merged(sec: Section, named: dict[str, Section], stack: list[str]) -> dict[str, Setting]:
    if sec.name in stack:
        raise ConfigError(f"{sec.where}: also= loop: {' -> '.join([*stack, sec.name])}")
    merged = {k: v for k, v in sec.settings.items() if k != "also"}
    for target in sec.settings.get("also", Setting("", "")).value.split():
        if target not in named:
            raise ConfigError(f"{sec.settings['also'].where}: also={target}: no conn of that name")
        for k, v in _merged(named[target], named, [*stack, sec.name]).items():
            merged.setdefault(k, v)
    return merged


def setup(cfg: Config) -> dict[str, Setting]:
    """The `config setup` settings."""
    out: dict[str, Setting] = {}
    for s in cfg.sections:
        if s.kind == "setup":
            out.update(s.settings)
    return out
