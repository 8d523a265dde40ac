"""The effective settings of one conn: what its daemon will propose and accept after also=, %default and the
daemon's own defaults. Every value keeps where it came from: `file:line`, or `default: <source>`."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from ikeflow.check import ipsec_conf
from ikeflow.check.config import Config, ConfigError, Secret, Section, Setting
from ikeflow.check.defaults import DAEMONS, GUESS, default, default_ike
from ikeflow.check.suites import Proposals, Suite, parse


@dataclass
class Value:
    value: Any
    where: str  # "file:line" or "default: <source>"
    shown: str = ""  # as the table shows it

    @property
    def configured(self) -> bool:
        return not self.where.startswith("default")

    def __str__(self) -> str:
        return self.shown or str(self.value)


@dataclass
class Conn:
    name: str
    config: Config
    daemon: str  # a key of defaults.DAEMONS
    daemon_how: str  # "--daemon" or "guessed from the ipsec.conf dialect" ...
    v: dict[str, Value] = field(default_factory=dict)  # the effective settings by name (initiates, ike, esp, local_id, ...)
    warnings: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[Secret]:
        return self.config.secrets

    def __getitem__(self, key: str) -> Value:
        return self.v[key]


_ANY = ("%any", "%any4", "%any6", "0.0.0.0", "::", "%defaultroute", "%")


def seconds(text: str, where: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m:
        raise ConfigError(f"{where}: {text!r} is not a time (e.g. 3600, 60m, 8h, 1d)")
    return int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def daemon_of(cfg: Config, chosen: str | None) -> tuple[str, str]:
    if chosen:
        if chosen not in DAEMONS:
            raise ConfigError(f"--daemon {chosen}: not one of {', '.join(DAEMONS)}")
        return chosen, "--daemon"
    return GUESS[cfg.dialect], f"guessed from the {'swanctl.conf' if cfg.dialect == 'swanctl' else cfg.dialect} dialect"


def _dflt(conn: Conn, dialect: str, setting: str) -> tuple[str, str]:
    row = default(conn.daemon, dialect, setting)
    if row is None:
        raise ConfigError(f"{conn.config.source}: no default for {setting} of {conn.daemon} ({dialect})")
    return row.value, f"default: {row.source}"


def _ike(conn: Conn, text: Setting | None, dialect: str, version: int) -> Value:
    family = dialect
    dflt, dsrc = default_ike(conn.daemon, version)
    if text is None:
        value, where = _dflt(conn, dialect, "ike")
        props = Proposals(list(dflt), True, [], True) if value == "default" else parse(value, family, dflt)
        if value == "default":
            where = f"default: {dsrc}"
    else:
        props, where = parse(text.value, family, dflt), text.where
    if not props.strict:
        props.suites += dflt
    if dialect in ("libreswan", "openswan"):  # an ike= without a group takes the default groups
        groups = frozenset(g for s in dflt for g in s.dh)
        props.suites = [s if s.dh else Suite(s.encr, s.integ, s.prf, groups, s.esn) for s in props.suites]
    if conn.daemon.startswith("libreswan"):
        _drop_unbuilt(conn, props, where)
    conn.warnings += [f"{where}: unknown algorithm {u}" for u in props.unknown]
    return Value(props, where, _shown(text, props, "ike"))


# DH groups libreswan is built without (mk/userland.mk USE_DH2 ?= false since 3.30; groups 22 since 3.19,
# 23-24 since 3.26; CHANGES), so no ike=/esp= line brings them back
_LS_UNBUILT = {"modp1024", "modp1024s160", "modp2048s224", "modp2048s256"}


def _drop_unbuilt(conn: Conn, props: Proposals, where: str) -> None:
    gone = sorted({g for s in props.suites for g in s.dh} & _LS_UNBUILT)
    if not gone:
        return
    conn.warnings.append(f"{where}: libreswan 3.30 and later is built without {', '.join(gone)}: pluto rejects "
                         f"this proposal list (the conn is not loaded); compared here without those groups")
    props.suites = [Suite(s.encr, s.integ, s.prf, s.dh - _LS_UNBUILT, s.esn) for s in props.suites]


def _esp(conn: Conn, text: Setting | None, dialect: str) -> Value:
    family = dialect
    esp_default = default(conn.daemon, "swanctl", "esp_default")
    dflt = parse(esp_default.value, "strongswan").suites if esp_default else []
    if conn.daemon == "strongswan-6":  # since 6.0.2 every supported group and none: PFS optional
        groups = frozenset(g for x in default_ike(conn.daemon, 2)[0] for g in x.dh) | {"none"}
        dflt = [Suite(x.encr, x.integ, x.prf, groups, x.esn) for x in dflt]
    if text is None:
        value, where = _dflt(conn, dialect, "esp")
        if value == "default":
            props, where = Proposals(list(dflt), True, [], True), f"default: {esp_default.source}"
        else:
            props = parse(value, family, dflt)
    else:
        props, where = parse(text.value, family, dflt), text.where
    if not props.strict:
        props.suites += dflt
    if conn.daemon.startswith("libreswan"):
        _drop_unbuilt(conn, props, where)
    conn.warnings += [f"{where}: unknown algorithm {u}" for u in props.unknown]
    return Value(props, where, _shown(text, props, "esp"))


def _shown(text: Setting | None, props: Proposals, what: str) -> str:
    if text is None:
        return "(default)" if props.uses_default or len(props.suites) > 3 else ", ".join(s.text() for s in props.suites)
    return text.value + ("" if props.strict else " (+ charon's defaults)")


def _ts(text: str, addr: str) -> list[str]:
    out = []
    for part in re.split(r"[,\s{}]+", text):
        part = re.sub(r"\[.*\]$", "", part.strip())
        if not part or part in ("dynamic", "%dynamic"):
            part = addr
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            out.append(part)
    return out


def _versions(word: str, dialect: str, where: str, daemon: str) -> tuple[int, set[int]]:
    w = word.lower()
    if dialect == "swanctl" or w in ("0", "1", "2"):
        n = int(w) if w.isdigit() else 0
        return (n or 2), ({n} if n else {1, 2})
    table = {"ike": (2, {1, 2}), "ikev1": (1, {1}), "ikev2": (2, {2}), "yes": (2, {2}), "insist": (2, {2}),
             "no": (1, {1}), "never": (1, {1}), "permit": (1, {1, 2}), "propose": (2, {1, 2})}
    if w not in table:
        raise ConfigError(f"{where}: unknown IKE version {word!r}")
    ini, acc = table[w]
    if daemon.startswith("openswan") and w == "yes":
        ini, acc = 2, {1, 2}  # Openswan: yes = propose
    return ini, acc


def from_ipsec_conf(name: str, s: dict[str, Setting], cfg: Config, daemon: str, how: str,
                    local: str = "left") -> Conn:
    """A conn of ipsec.conf; `local` says which side (left/right) is this host."""
    conn = Conn(name, cfg, daemon, how)
    d = "stroke" if cfg.dialect == "stroke" else "libreswan"
    remote = "right" if local == "left" else "left"
    v = conn.v

    def get(key: str) -> Setting | None:
        return s.get(key)

    def val(key: str, setting: str, conv=lambda x, w: x) -> Value:
        st = get(key)
        if st is not None:
            return Value(conv(st.value, st.where), st.where, st.value)
        text, where = _dflt(conn, d, setting)
        return Value(conv(text, where), where, text)

    ver = get("keyexchange") or get("ikev2")
    if ver is not None:
        ini, acc = _versions(ver.value, d, ver.where, daemon)
        v["initiates"], v["accepts"] = Value(ini, ver.where, ver.value), Value(acc, ver.where, ver.value)
    else:
        text, where = _dflt(conn, d, "version")
        n = int(text)
        v["initiates"] = Value(n or 2, where, f"IKEv{n or 2}")
        v["accepts"] = Value({n} if n else {1, 2}, where, "IKEv1 and IKEv2" if not n else f"IKEv{n}")
        if daemon.startswith("openswan"):
            v["accepts"] = Value({1, 2}, where, "IKEv1 (IKEv2 accepted)")
    if d == "libreswan" and daemon.startswith("libreswan") and 1 in v["accepts"].value:
        pol = ipsec_conf.setup(cfg).get("ikev1-policy")
        if pol is None or pol.value != "accept":
            conn.warnings.append(f"{pol.where if pol else cfg.source}: libreswan {daemon[-1]}.x drops IKEv1 unless "
                                 f"config setup has ikev1-policy=accept")
    aggr = get("aggressive") or get("aggrmode")
    v["aggressive"] = Value(aggr.value.lower() == "yes", aggr.where, aggr.value) if aggr else \
        Value(False, "default: aggressive=no (ipsec.conf(5))", "no")
    for side, key in ((local, "local"), (remote, "remote")):
        addr = get(side)
        v[f"{key}_addrs"] = Value([addr.value] if addr else ["%any"], addr.where if addr else
                                  f"default: {side}= unset", addr.value if addr else "%any")
        ident = get(f"{side}id")
        if ident:
            v[f"{key}_id"] = Value(ident.value, ident.where, ident.value)
        else:
            a = addr.value if addr else "%any"
            v[f"{key}_id"] = Value("%any" if a in _ANY and key == "remote" else a,
                                   f"default: {side}id unset, the {side}= address (ipsec.conf(5) {side}id)",
                                   ("%any" if a in _ANY and key == "remote" else a))
        sub = get(f"{side}subnet") or get(f"{side}subnets")
        host = addr.value if addr else "%any"
        v[f"{key}_ts"] = Value(_ts(sub.value, host), sub.where, sub.value) if sub else \
            Value(_ts(host, host), f"default: {side}subnet unset, the host itself", host)
        sauth = get(f"{side}auth")
        authby = get("authby")
        if sauth:
            v[f"{key}_auth"] = Value(_auth(sauth.value), sauth.where, sauth.value)
        elif authby:
            v[f"{key}_auth"] = Value(_auth(authby.value), authby.where, authby.value)
        else:
            text, where = _dflt(conn, d, "auth")
            v[f"{key}_auth"] = Value(_auth(text), where, text)
    xs = [k for k in (f"{local}xauthclient", f"{local}xauthserver") if get(k) and get(k).value == "yes"]
    authby = get("authby")
    if authby and authby.value.startswith("xauth"):
        xs.append("xauth")
    v["xauth"] = Value(bool(xs), get(xs[0]).where if xs and get(xs[0]) else authby.where if xs else "default: no XAUTH",
                       "yes" if xs else "no")
    version = v["initiates"].value
    v["ike"] = _ike(conn, get("ike"), cfg.dialect, version)
    v["esp"] = _esp(conn, get("esp") or get("phase2alg"), cfg.dialect)
    if d == "libreswan":
        pfs = val("pfs", "pfs")
        pfs.value = pfs.value.lower() == "yes"
        v["pfs_from_ike"] = pfs
        group = get("pfsgroup")
        if group:
            conn.warnings.append(f"{group.where}: pfsgroup= is read as the PFS group of every ESP proposal")
            groups = parse(group.value, "libreswan").suites
            dh = frozenset(g for x in groups for g in x.dh)
            v["esp"].value.suites = [Suite(x.encr, x.integ, x.prf, x.dh or dh, x.esn) for x in v["esp"].value.suites]
        if not pfs.value:
            v["esp"].value.suites = [Suite(x.encr, x.integ, x.prf, frozenset({"none"}), x.esn)
                                     for x in v["esp"].value.suites]
    else:
        v["pfs_from_ike"] = Value(False, "default: strongSwan takes PFS from the DH group of esp=", "no")
        _no_group_is_none(v["esp"])
    v["ike_lifetime"] = val("ikelifetime", "ike_lifetime", seconds)
    life = get("salifetime") or get("keylife") or get("lifetime")
    v["child_lifetime"] = Value(seconds(life.value, life.where), life.where, life.value) if life else \
        val("salifetime", "child_lifetime", seconds)
    enc = get("forceencaps") or get("encapsulation")
    v["encap"] = Value(enc.value, enc.where, enc.value) if enc else val("encapsulation", "encap")
    frag = get("fragmentation") or get("ike_frag") or get("ike-frag")
    v["fragmentation"] = Value(frag.value, frag.where, frag.value) if frag else val("fragmentation", "fragmentation")
    dpd = get("dpddelay")
    act = get("dpdaction")
    if d == "stroke" and (act is None or act.value == "none"):
        v["dpd"] = Value(0, act.where if act else _dflt(conn, d, "dpd")[1], "off (dpdaction=none)")
    elif dpd:
        v["dpd"] = Value(seconds(dpd.value, dpd.where), dpd.where, dpd.value)
    elif d == "stroke":
        v["dpd"] = Value(30, "default: strongSwan ipsec.conf(5) dpddelay", "30s")
    else:
        v["dpd"] = Value(0, _dflt(conn, d, "dpd")[1], "off")
    _aggressive_psk(conn, d)
    _libipsec(conn)
    auto = get("auto")
    v["auto"] = Value(auto.value, auto.where, auto.value) if auto else Value("ignore", "default: auto unset", "")
    return conn


def _aggressive_psk(conn: Conn, dialect: str) -> None:
    if not conn.daemon.startswith("strongswan"):
        conn.v["aggressive_psk"] = Value(True, "default: libreswan/Openswan answer Aggressive Mode PSK when the conn "
                                         "has aggressive=yes", "yes")
        return
    key = "charon.i_dont_care_about_security_and_use_aggressive_mode_psk"
    opt = conn.config.options.get(key)
    if opt is not None:
        conn.v["aggressive_psk"] = Value(opt.value.lower() in ("yes", "1", "true"), opt.where, opt.value)
    else:
        row = default(conn.daemon, dialect, "aggressive_psk")
        conn.v["aggressive_psk"] = Value(None if not conn.config.options else False,
                                         f"default: {row.source}" if row else "default",
                                         "unknown (no strongswan.conf read)" if not conn.config.options else "no")


# docs.strongswan.org, kernel-libipsec plugin: "the plugin enforces UDP encapsulation (NAT-T)"; charon then fakes
# NAT-D, so both ends float to 4500 without a NAT
_LIBIPSEC = "charon.plugins.kernel-libipsec.load"


def _libipsec(conn: Conn) -> None:
    """charon with kernel-libipsec (strongswan.conf) always encapsulates ESP in UDP."""
    opts = conn.config.options
    load = opts.get("charon.load")
    on = opts.get(_LIBIPSEC) if opts.get(_LIBIPSEC) and opts[_LIBIPSEC].value.lower() in ("yes", "1", "true") else \
        load if load and "kernel-libipsec" in load.value.split() else None
    if on and conn.daemon.startswith("strongswan") and str(conn["encap"]).lower() not in ("yes", "force"):
        conn.v["encap"] = Value("yes", on.where, "yes (kernel-libipsec)")


def _no_group_is_none(esp: Value) -> None:
    """strongSwan: an ESP proposal without a DH group asks for no PFS."""
    for name in ("suites", "firsts"):
        setattr(esp.value, name, [x if x.dh else Suite(x.encr, x.integ, x.prf, frozenset({"none"}), x.esn)
                                  for x in getattr(esp.value, name)])


def _auth(text: str) -> str:
    t = text.lower()
    if t in ("secret", "psk", "xauthpsk", "secret|rsasig"):
        return "psk"
    if t in ("rsasig", "pubkey", "ecdsasig", "rsa", "ecdsa", "xauthrsasig", "rsa-sha2", "rsasig,ecdsa"):
        return "pubkey"
    if t.startswith("eap"):
        return "eap"
    return t


def from_swanctl(sec: Section, cfg: Config, daemon: str, how: str) -> Conn:
    """A connection of swanctl.conf (its first child is the phase 2 compared)."""
    conn = Conn(sec.name, cfg, daemon, how)
    s, v = sec.settings, conn.v
    d = "swanctl"

    def val(key: str, setting: str, conv=lambda x, w: x) -> Value:
        st = s.get(key)
        if st is not None:
            return Value(conv(st.value, st.where), st.where, st.value)
        text, where = _dflt(conn, d, setting)
        return Value(conv(text, where), where, text)

    ver = val("version", "version")
    ini, acc = _versions(ver.shown, d, ver.where, daemon)
    v["initiates"], v["accepts"] = Value(ini, ver.where, ver.shown), Value(acc, ver.where, ver.shown)
    aggr = s.get("aggressive")
    v["aggressive"] = Value(aggr.value == "yes", aggr.where, aggr.value) if aggr else \
        Value(False, "default: swanctl.conf(5) aggressive [no]", "no")
    children = sorted({k.split(".")[1] for k in s if k.startswith("children.")})
    child = children[0] if children else ""
    if len(children) > 1:
        conn.warnings.append(f"{sec.where}: {len(children)} children; phase 2 is compared for {child} only")
    for key in ("local", "remote"):
        addrs = s.get(f"{key}_addrs")
        v[f"{key}_addrs"] = Value([a.strip() for a in addrs.value.split(",")], addrs.where, addrs.value) if addrs \
            else Value(["%any"], f"default: swanctl.conf(5) {key}_addrs [%any]", "%any")
        rounds = sorted(k.split(".")[0] for k in s if k.startswith(key) and "." in k and not k.startswith("children"))
        first = rounds[0] if rounds else key
        ident = s.get(f"{first}.id")
        addr = v[f"{key}_addrs"].value[0]
        if ident:
            v[f"{key}_id"] = Value(ident.value, ident.where, ident.value)
        elif key == "local":
            v["local_id"] = Value(addr, "default: swanctl.conf(5) local.id: the IP address", addr)
        else:
            v["remote_id"] = Value("%any", "default: swanctl.conf(5) remote.id [%any]", "%any")
        auth = s.get(f"{first}.auth")
        v[f"{key}_auth"] = Value(_auth(auth.value), auth.where, auth.value) if auth else \
            Value("pubkey", "default: swanctl.conf(5) auth [pubkey]", "pubkey")
        ts = s.get(f"children.{child}.{key}_ts")
        v[f"{key}_ts"] = Value(_ts(ts.value, addr), ts.where, ts.value) if ts else \
            Value(_ts(addr, addr), "default: swanctl.conf(5) local_ts/remote_ts [dynamic]", "dynamic")
    xauth = [k for k in s if re.match(r"(local|remote)[^.]*\.auth$", k) and s[k].value.startswith("xauth")]
    v["xauth"] = Value(bool(xauth), s[xauth[0]].where if xauth else "default: no XAUTH round",
                       xauth[0].split(".")[0] if xauth else "no")
    eap = [k for k in s if re.match(r"(local|remote)[^.]*\.auth$", k) and s[k].value.startswith("eap")]
    if eap:
        v["eap"] = Value(eap[0].split(".")[0].split("-")[0], s[eap[0]].where, s[eap[0]].value)
    v["ike"] = _ike(conn, s.get("proposals"), d, v["initiates"].value)
    v["esp"] = _esp(conn, s.get(f"children.{child}.esp_proposals"), d)
    _no_group_is_none(v["esp"])
    v["pfs_from_ike"] = Value(False, "default: swanctl takes PFS from the DH group of esp_proposals", "no")
    v["ike_lifetime"] = val("rekey_time", "ike_lifetime", seconds)
    v["child_lifetime"] = val(f"children.{child}.rekey_time", "child_lifetime", seconds)
    v["encap"] = val("encap", "encap")
    v["fragmentation"] = val("fragmentation", "fragmentation")
    v["dpd"] = val("dpd_delay", "dpd", seconds)
    _aggressive_psk(conn, d)
    _libipsec(conn)
    start = s.get(f"children.{child}.start_action")
    v["auto"] = Value(start.value if start else "none", start.where if start else "default", start.value if start else "none")
    return conn


def conns(cfg: Config, daemon: str | None = None) -> list[Conn]:
    """Every conn of one end, resolved."""
    chosen, how = daemon_of(cfg, daemon)
    if cfg.dialect == "swanctl":
        return [from_swanctl(s, cfg, chosen, how) for s in cfg.sections if s.kind == "connection"]
    return [from_ipsec_conf(n, s, cfg, chosen, how) for n, s in ipsec_conf.conns(cfg).items()]


def flipped(conn: Conn) -> Conn:
    """The same ipsec.conf conn read with right= as this host."""
    s = ipsec_conf.conns(conn.config)[conn.name]
    return from_ipsec_conf(conn.name, s, conn.config, conn.daemon, conn.daemon_how, local="right")
