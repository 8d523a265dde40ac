"""swanctl.conf: strongSwan's current format (swanctl.conf(5); syntax of strongswan.conf(5)).

Nested sections `name { ... }` (a section may copy others: `name : other { ... }`), `key = value`,
`include PATTERN` (wildcards, relative to the including file), `#` comments. Each connection becomes one
`Section` with dotted keys (`version`, `local.id`, `remote-xauth.auth`, `children.net.esp_proposals`);
`secrets` gives `Secret`s (ike-/eap-/xauth- with their `id*` keys). A strongswan.conf may be read the same
way for the daemon options that change the outcome (`charon.i_dont_care_about_security_and_use_aggressive_mode_psk`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ikeflow.check.config import Config, ConfigError, Section, Secret, Setting, include_paths, read_text, strip_comment, unquote
from ikeflow.check.secrets import secret_bytes

CONN_KEYS = {"version", "local_addrs", "remote_addrs", "local_port", "remote_port", "proposals", "vips",
             "aggressive", "pull", "dscp", "encap", "mobike", "dpd_delay", "dpd_timeout", "fragmentation",
             "childless", "send_certreq", "send_cert", "ppk_id", "ppk_required", "keyingtries", "unique",
             "reauth_time", "rekey_time", "over_time", "rand_time", "pools", "if_id_in", "if_id_out", "mediation",
             "mediated_by", "mediation_peer", "close_action", "ocsp"}
END_KEYS = {"round", "certs", "cert", "pubkeys", "auth", "id", "eap_id", "aaa_id", "xauth_id", "revocation", "groups",
            "cert_policy", "cacerts", "cacert", "ca_id", "ake"}
CHILD_KEYS = {"ah_proposals", "esp_proposals", "sha256_96", "local_ts", "remote_ts", "rekey_time", "life_time",
              "rand_time", "rekey_bytes", "life_bytes", "rand_bytes", "rekey_packets", "life_packets",
              "rand_packets", "updown", "hostaccess", "mode", "policies", "policies_fwd_out", "dpd_action",
              "ipcomp", "inactivity", "reqid", "priority", "interface", "mark_in", "mark_in_sa", "mark_out",
              "set_mark_in", "set_mark_out", "label", "label_mode", "tfc_padding", "replay_window", "hw_offload",
              "copy_df", "copy_ecn", "copy_dscp", "start_action", "close_action", "if_id_in", "if_id_out",
              "per_cpu_sas", "esp_proposals"}
_OPEN = re.compile(r"\s*([\w.%-]+)\s*(?::\s*([^{]*?))?\s*\{")
_CLOSE = re.compile(r"\s*\}")
_KV = re.compile(r"""\s*([\w.%-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^}]*)""")
_INCLUDE = re.compile(r"\s*include\s+(\S+)\s*$")


class _Node:
    def __init__(self, name: str, where: str):
        self.name, self.where = name, where
        self.values: dict[str, Setting] = {}
        self.children: dict[str, _Node] = {}


def parse(path: Path, source: str | None = None) -> Config:
    """The connections and secrets of a swanctl.conf and its includes."""
    cfg = Config(source=source or str(path), dialect="swanctl")
    root = _Node("", f"{path}:1")
    _read(path, cfg, [root], [])
    for name, node in root.children.get("connections", _Node("", "")).children.items():
        sec = Section("connection", name, node.where)
        _flatten(node, "", sec.settings, cfg, 0)
        cfg.sections.append(sec)
    for name, node in root.children.get("secrets", _Node("", "")).children.items():
        kind = name.split("-")[0].lower()
        ids = tuple(v.value for k, v in node.values.items() if k.startswith("id"))
        if kind in ("ike", "eap", "xauth", "ntlm"):
            if "secret" not in node.values:
                raise ConfigError(f"{node.where}: secrets.{name} has no `secret`")
            s = node.values["secret"]
            cfg.secrets.append(Secret("PSK" if kind == "ike" else kind.upper(), ids, s.where, secret_bytes(s.value)))
        else:
            cfg.secrets.append(Secret(kind.upper(), ids, node.where))
    return cfg


def parse_options(path: Path, cfg: Config) -> None:
    """Read a strongswan.conf into `cfg.options` (dotted keys, e.g. `charon.retransmit_tries`)."""
    root = _Node("", f"{path}:1")
    _read(path, Config(source=str(path), dialect="swanctl"), [root], [])

    def walk(node: _Node, prefix: str) -> None:
        for k, v in node.values.items():
            cfg.options[prefix + k] = v
        for k, c in node.children.items():
            walk(c, f"{prefix}{k}.")
    walk(root, "")


def _read(path: Path, cfg: Config, stack: list[_Node], files: list[Path]) -> None:
    real = path.resolve()
    if real in files:
        raise ConfigError(f"{path}: included from itself")
    cfg.files.append(str(path))
    depth = len(stack)
    lines = read_text(path)
    for n, raw in enumerate(lines, 1):
        where = f"{path}:{n}"
        rest = strip_comment(raw)
        m = _INCLUDE.match(rest)
        if m:
            for inc in include_paths(m[1], path, where):
                _read(inc, cfg, stack, [*files, real])
            continue
        while rest.strip():
            if m := _CLOSE.match(rest):
                if len(stack) <= 1:
                    raise ConfigError(f"{where}: `}}` without an open section")
                stack.pop()
            elif m := _OPEN.match(rest):
                parent = stack[-1]
                node = parent.children.get(m[1]) or _Node(m[1], where)
                for ref in (r.strip() for r in (m[2] or "").split(",") if r.strip()):
                    if ref not in parent.children:
                        raise ConfigError(f"{where}: section {m[1]} refers to {ref}, which is not defined before it")
                    _copy(parent.children[ref], node)
                parent.children[m[1]] = node
                stack.append(node)
            elif m := _KV.match(rest):
                stack[-1].values[m[1]] = Setting(unquote(m[2].strip(), where), where)
            else:
                raise ConfigError(f"{where}: expected `name {{`, `}}`, `key = value` or `include FILE`, "
                                  f"not {rest.strip()[:40]!r}")
            rest = rest[m.end():]
    if len(stack) > depth and not files:
        raise ConfigError(f"{path}:{len(lines)}: section {stack[-1].name} ({stack[-1].where}) is not closed")


def _copy(src: _Node, dst: _Node) -> None:
    dst.values.update(src.values)
    for k, c in src.children.items():
        copy = dst.children.setdefault(k, _Node(k, c.where))
        _copy(c, copy)


def _flatten(node: _Node, prefix: str, out: dict[str, Setting], cfg: Config, level: int) -> None:
    """Dotted keys of a connection; unknown keys are warnings."""
    for k, v in node.values.items():
        known = (CONN_KEYS if level == 0 else END_KEYS if level == 1 else CHILD_KEYS)
        if k not in known:
            cfg.warnings.append(f"{v.where}: unknown key {prefix}{k} (ignored)")
        out[prefix + k] = v
    for k, c in node.children.items():
        if level == 0 and k == "children":
            for child, cn in c.children.items():
                _flatten(cn, f"children.{child}.", out, cfg, 2)
        elif level == 0:
            _flatten(c, f"{k}.", out, cfg, 1)
        else:
            cfg.warnings.append(f"{c.where}: unexpected section {prefix}{k} (ignored)")
