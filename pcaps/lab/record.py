#!/usr/bin/env python3
"""Record real IKE/ESP negotiations (strongSwan charon x2) as small pcaps.

Runs two charon daemons in Linux network namespaces joined by a router
namespace, makes each scenario fail (or succeed) on purpose, captures both
router interfaces with tcpdump and keeps the daemons' logs as ground truth.

    sudo python3 pcaps/lab/record.py                 # all scenarios
    sudo python3 pcaps/lab/record.py --only ikev2-ok,ikev2-psk-mismatch
    sudo python3 pcaps/lab/record.py --list

Outputs (next to this file unless --out is given), per scenario NAME:
    NAME.inside.pcap   router interface towards the initiator (before NAT)
    NAME.outside.pcap  router interface towards the responder (after NAT)
    NAME.init.log      initiator charon log (IKE/CFG/NET/ENC, level 1)
    NAME.resp.log      responder charon log (same; pluto's log without its debug lines)
    NAME.ROLE.keys.log charon log with IKE/CHD at level 4 (key dumps) and MGR at 2 (SPIs);
                       pluto's log with plutodebug=private
    NAME.ROLE.swanctl.conf, NAME.ROLE.strongswan.conf (charon), NAME.resp.ipsec.conf,
    NAME.resp.ipsec.secrets (pluto): the configurations as run (temp folder -> @INSTANCE@)
plus SCENARIOS.md and scenarios.json describing every scenario.

Addresses are documentation prefixes only (RFC 5737):
    initiator 192.0.2.2  -- 192.0.2.1 [router] 203.0.113.1 -- 203.0.113.2 responder
    protected: 198.51.100.0/28 (initiator, .1) and 198.51.100.16/28 (responder, .17)
Network namespaces are named ikf-*; all are deleted after each scenario.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
CHARON = "/usr/lib/ipsec/charon"
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
PIDFILE = Path("/tmp/ikf-lab.pids")  # PIDs of processes this recorder started

NS_I, NS_RT, NS_R = "ikf-init", "ikf-router", "ikf-resp"
INIT_IP, RTR_IN, RTR_OUT, RESP_IP = "192.0.2.2", "192.0.2.1", "203.0.113.1", "203.0.113.2"
INIT_NET, INIT_HOST = "198.51.100.0/28", "198.51.100.1"
RESP_NET, RESP_HOST = "198.51.100.16/28", "198.51.100.17"
OTHER_NET = "198.51.100.32/28"
INIT_ID, RESP_ID, ROGUE_ID = "init.example.net", "resp.example.net", "intruder.example.net"
PSK = "0sbGFiLXNoYXJlZC1zZWNyZXQtb2YtdGhlLWlrZWZsb3ctbGFi"   # "lab-shared-secret-of-the-ikeflow-lab"
WRONG_PSK = "0sd3Jvbmctc2hhcmVkLXNlY3JldC1vbi10aGUtaW5pdGlhdG9y"  # "wrong-shared-secret-on-the-initiator"
NAT_PORTS = "20000-30000"

WANTED_PLUGINS = ("random nonce openssl aes sha1 sha2 hmac gmp curve25519 pem pkcs1 "
                  "pkcs8 x509 pubkey constraints kdf kernel-libipsec kernel-netlink "
                  "socket-default vici").split()
# loaded only by the scenarios that use them (XAUTH, EAP-MD5), so the other recordings stay as they were
AUTH_PLUGINS = "xauth-generic eap-identity eap-md5 md5".split()
XAUTH_USER, USER_PASSWORD, WRONG_PASSWORD = "labuser", "right-password", "wrong-password"

VERBOSE = False


def log(msg: str) -> None:
    print(msg, flush=True)


def sh(*args: str, check: bool = True, ns: str | None = None, env=None,
       timeout: float = 60, capture: bool = True) -> subprocess.CompletedProcess:
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    if VERBOSE:
        log("  $ " + " ".join(cmd))
    r = subprocess.run(cmd, env=env, timeout=timeout, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.STDOUT if capture else None)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}")
    return r


# --------------------------------------------------------------------------
# process bookkeeping: we only ever signal PIDs we started ourselves
# --------------------------------------------------------------------------
class Procs:
    def __init__(self) -> None:
        self.live: dict[int, subprocess.Popen] = {}

    def _save(self) -> None:
        PIDFILE.write_text("".join(f"{p}\n" for p in self.live))

    def add(self, p: subprocess.Popen) -> subprocess.Popen:
        self.live[p.pid] = p
        self._save()
        return p

    def stop(self, p: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 5) -> None:
        if p is None or p.pid not in self.live:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
            except ProcessLookupError:
                pass
        del self.live[p.pid]
        self._save()

    def stop_all(self) -> None:
        for p in list(self.live.values()):
            self.stop(p, signal.SIGKILL)

    @staticmethod
    def reap_stale() -> None:
        """Kill charon/tcpdump left over by an earlier, crashed run of this recorder."""
        if not PIDFILE.exists():
            return
        for line in PIDFILE.read_text().split():
            try:
                pid = int(line)
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (ValueError, OSError):
                continue
            if "charon" in cmd or "tcpdump" in cmd or "pluto" in cmd:
                log(f"killing stale process {pid} from an earlier run: {cmd.strip()}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        PIDFILE.unlink(missing_ok=True)


PROCS = Procs()


# --------------------------------------------------------------------------
# topology
# --------------------------------------------------------------------------
def delete_namespaces() -> None:
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("ikf-"):
            sh("ip", "netns", "del", name, check=False)


def build_topology(nat: bool, fwd_rules: list[str], early_rules: list[str]) -> None:
    for ns in (NS_I, NS_RT, NS_R):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for k in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1", ns=ns)
    sh("ip", "-n", NS_I, "link", "add", "eth0", "type", "veth", "peer", "name", "r-in", "netns", NS_RT)
    sh("ip", "-n", NS_R, "link", "add", "eth0", "type", "veth", "peer", "name", "r-out", "netns", NS_RT)
    for ns, dev, addr in ((NS_I, "eth0", f"{INIT_IP}/24"), (NS_RT, "r-in", f"{RTR_IN}/24"),
                          (NS_RT, "r-out", f"{RTR_OUT}/24"), (NS_R, "eth0", f"{RESP_IP}/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    # protected-subnet hosts as /32 on loopback (this kernel has no dummy driver);
    # the other side's subnet is only reachable through the tunnel
    for ns, addr in ((NS_I, f"{INIT_HOST}/32"), (NS_R, f"{RESP_HOST}/32")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", "lo")
    # routes only towards the other documentation prefix, no default route
    sh("ip", "-n", NS_I, "route", "add", "203.0.113.0/24", "via", RTR_IN)
    sh("ip", "-n", NS_R, "route", "add", "192.0.2.0/24", "via", RTR_OUT)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS_RT)
    sh("sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0", ns=NS_RT)
    ruleset = ["table inet ikf {",
               "  chain early { type filter hook prerouting priority -450; policy accept;",
               *[f"    {r}" for r in early_rules], "  }",
               "  chain tmp { }",
               "  chain forward_filter { type filter hook forward priority 0; policy accept;",
               "    jump tmp", *[f"    {r}" for r in fwd_rules], "  }", "}"]
    if nat:
        ruleset += ["table ip ikfnat {",
                    "  chain postrouting { type nat hook postrouting priority 100; policy accept;",
                    f'    oifname "r-out" ip saddr 192.0.2.0/24 meta l4proto udp masquerade to :{NAT_PORTS}',
                    '    oifname "r-out" ip saddr 192.0.2.0/24 masquerade', "  }", "}"]
    nft(NS_RT, "\n".join(ruleset) + "\n")
    # per-connection packet counters, used by "ct reply packets" rules
    sh("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1", ns=NS_RT, check=False)


def nft(ns: str, text: str) -> None:
    p = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True,
                       capture_output=True)
    if p.returncode:
        raise RuntimeError(f"nft failed in {ns}: {p.stderr}\n{text}")


# --------------------------------------------------------------------------
# certificates (only for the fragmentation scenarios)
# --------------------------------------------------------------------------
def make_certs(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    if (d / "resp.crt").exists():
        return d
    log("generating RSA-4096 CA and peer certificates with pki ...")

    def pki(*a: str, stdin: bytes | None = None) -> bytes:
        return subprocess.run(["pki", *a], input=stdin, capture_output=True, check=True).stdout

    (d / "ca.key").write_bytes(pki("--gen", "--type", "rsa", "--size", "4096", "--outform", "pem"))
    (d / "ca.crt").write_bytes(pki("--self", "--ca", "--lifetime", "3650", "--in", str(d / "ca.key"),
                                   "--type", "rsa", "--dn", "C=US, O=ikeflow lab, CN=ikeflow lab CA",
                                   "--outform", "pem"))
    for who, ident in (("init", INIT_ID), ("resp", RESP_ID)):
        key = pki("--gen", "--type", "rsa", "--size", "4096", "--outform", "pem")
        (d / f"{who}.key").write_bytes(key)
        pub = pki("--pub", "--in", str(d / f"{who}.key"), "--type", "rsa")
        (d / f"{who}.crt").write_bytes(pki(
            "--issue", "--lifetime", "1825", "--cacert", str(d / "ca.crt"), "--cakey", str(d / "ca.key"),
            "--dn", f"C=US, O=ikeflow lab, CN={ident}", "--san", ident, "--outform", "pem", stdin=pub))
    return d


# --------------------------------------------------------------------------
# charon instances
# --------------------------------------------------------------------------
def conn_conf(role: str, o: dict) -> str:
    """swanctl.conf for one side; o holds the (merged) connection parameters."""
    local_addr, remote_addr = (INIT_IP, RESP_IP) if role == "init" else (RESP_IP, "%any")
    ids = (o["local_id"], o["remote_id"])
    lines = ["connections {", "  lab {",
             f"    version = {o['version']}",
             f"    local_addrs = {local_addr}",
             f"    remote_addrs = {remote_addr}",
             f"    proposals = {o['proposals']}",
             f"    aggressive = {'yes' if o['aggressive'] else 'no'}",
             f"    rekey_time = {o['ike_rekey']}",
             "    reauth_time = 0",
             f"    dpd_delay = {o['dpd_delay']}",
             f"    fragmentation = {o['fragmentation']}",
             "    mobike = no"]
    if o["version"] == 1 and o["dpd_delay"] != "0s":
        lines.append(f"    dpd_timeout = {o['dpd_timeout']}")
    if o["auth"] == "pubkey":
        lines.append("    send_cert = always")
    client, server = ("local", "remote") if role == "init" else ("remote", "local")
    local_auth = {"local": o["auth"], "remote": o["auth"]}
    if o.get("eap"):  # IKEv2 EAP-MD5 for the initiator, PSK for the responder
        local_auth[client] = "eap-md5"
    lines += ["    local {", f"      auth = {local_auth['local']}", f"      id = {ids[0]}"]
    if o["auth"] == "pubkey":
        lines.append(f"      certs = {role}.crt")
    if o.get("eap") and client == "local":
        lines.append(f"      eap_id = {XAUTH_USER}")
    lines += ["    }", "    remote {", f"      auth = {local_auth['remote']}", f"      id = {ids[1]}"]
    if o.get("eap") and client == "remote":
        lines.append("      eap_id = %any")
    lines.append("    }")
    if o.get("xauth"):  # IKEv1 XAUTH as the initiator's second authentication round
        lines += [f"    {client}-xauth {{", "      auth = xauth"]
        if client == "local":
            lines.append(f"      xauth_id = {XAUTH_USER}")
        lines.append("    }")
    lines += [
              "    children {", "      net {",
              f"        local_ts = {o['local_ts']}",
              f"        remote_ts = {o['remote_ts']}",
              f"        esp_proposals = {o['esp_proposals']}",
              f"        rekey_time = {o['child_rekey']}",
              f"        life_time = {o['child_life']}",
              "        rand_time = 0s",
              f"        dpd_action = {o['dpd_action']}",
              "        start_action = none",
              "      }", "    }", "  }", "}"]
    secrets = []
    if o["auth"] == "psk":
        secrets += ["  ike-lab {", f"    id-a = {ids[0]}", f"    id-b = {ids[1]}", f"    secret = {o['psk']}", "  }"]
    for kind in ("xauth", "eap"):
        if o.get(kind):  # the initiator's password, or the one the responder expects
            secrets += [f"  {kind}-lab {{", f"    id = {XAUTH_USER}", f"    secret = {o[kind]}", "  }"]
    if secrets:
        lines += ["secrets {", *secrets, "}"]
    return "\n".join(lines) + "\n"


# charon's log files: name, file, log levels (the full log, the trimmed one kept as NAME.*.log, the keys log)
FILELOGS = [
    ("full", "charon-full.log", {"default": 1, "ike": 2, "cfg": 2}),
    ("trimmed", "charon.log", {"default": -1, "ike": 1, "cfg": 1, "net": 1, "enc": 1, "job": 1}),
    ("keys", "charon-keys.log", {"default": -1, "ike": 4, "chd": 4, "mgr": 2}),
]


def _filelog(name: str, path: str, levels: dict) -> str:
    """One strongswan.conf filelog section with the lab's time format."""
    lines = [f"path = {path}", "time_format = %Y-%m-%d %H:%M:%S", "time_add_ms = yes", "ike_name = yes",
             "append = no", "flush_line = yes", *(f"{k} = {v}" for k, v in levels.items())]
    return f"    {name} {{\n" + "".join(f"      {line}\n" for line in lines) + "    }"


def strongswan_conf(inst: Path, extra: dict, auth_plugins: bool = False) -> str:
    wanted = WANTED_PLUGINS + (AUTH_PLUGINS if auth_plugins else [])
    plugins = [p for p in wanted if (PLUGIN_DIR / f"libstrongswan-{p}.so").exists()]
    charon = {
        "load": " ".join(plugins),
        "retransmit_timeout": "0.5", "retransmit_base": "1.5", "retransmit_tries": "3",
        "keep_alive": "2s", "install_virtual_ip": "no", "half_open_timeout": "30",
    }
    charon.update(extra)
    body = "\n".join(f"  {k} = {v}" for k, v in charon.items())
    filelogs = "\n".join(_filelog(name, f"{inst}/{file}", levels) for name, file, levels in FILELOGS)
    return f"""charon {{
{body}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  filelog {{
{filelogs}
  }}
  plugins {{
    vici {{
      socket = unix://{inst}/run/charon.vici
    }}
    kernel-libipsec {{
      load = yes
    }}
  }}
}}
swanctl {{
  socket = unix://{inst}/run/charon.vici
}}
"""


INSTANCE = "@INSTANCE@"   # stands for a daemon's temp folder in the saved configurations


def stable(text: str, inst: Path) -> str:
    """A configuration as saved next to the captures: the temp folder replaced by INSTANCE."""
    return text.replace(str(inst), INSTANCE)


class Charon:
    def __init__(self, role: str, ns: str, base: Path, conn: dict, extra: dict, certs: Path | None,
                 trust_ca: bool = True):
        self.role, self.ns = role, ns
        self.inst = base / role
        self.proc: subprocess.Popen | None = None
        (self.inst / "run").mkdir(parents=True)
        sw = self.inst / "swanctl"
        for sub in ("conf.d", "x509", "x509ca", "private", "rsa"):
            (sw / sub).mkdir(parents=True)
        swanctl_conf = conn_conf(role, conn)
        (sw / "swanctl.conf").write_text(swanctl_conf)
        if certs:
            if trust_ca:
                shutil.copy(certs / "ca.crt", sw / "x509ca" / "ca.crt")
            shutil.copy(certs / f"{role}.crt", sw / "x509" / f"{role}.crt")
            shutil.copy(certs / f"{role}.key", sw / "private" / f"{role}.key")
        ss_conf = strongswan_conf(self.inst, extra, bool(conn.get("xauth") or conn.get("eap")))
        (self.inst / "strongswan.conf").write_text(ss_conf)
        # saved as NAME.ROLE.<suffix>: what the daemon ran with
        self.configs = {"swanctl.conf": swanctl_conf, "strongswan.conf": stable(ss_conf, self.inst)}
        self.env = dict(os.environ, STRONGSWAN_CONF=str(self.inst / "strongswan.conf"),
                        SWANCTL_DIR=str(sw))
        self.uri = f"unix://{self.inst}/run/charon.vici"
        self.logfile = self.inst / "charon.log"
        self.fulllog = self.inst / "charon-full.log"
        self.keylog = self.inst / "charon-keys.log"
        self.mark = 0

    def start(self) -> None:
        out = open(self.inst / "charon.stdout", "w")
        # ip netns exec gives a private mount namespace: bind our run dir over /run
        # so the compiled-in /var/run/charon.pid does not collide between instances.
        self.proc = PROCS.add(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "sh", "-c",
             f"mount --bind {self.inst}/run /run && exec {CHARON}"],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        sock = self.inst / "run" / "charon.vici"
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} charon exited: {(self.inst / 'charon.stdout').read_text()}")
            if sock.exists() and self.swanctl("--stats", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{self.role} charon did not come up")
        r = self.swanctl("--load-all", "--noprompt")
        if VERBOSE:
            log(r.stdout)

    def swanctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return sh("swanctl", *args, "--uri", self.uri, env=self.env, check=check, timeout=timeout)

    def set_mark(self) -> None:
        self.mark = self.fulllog.stat().st_size if self.fulllog.exists() else 0

    def wait_log(self, regex: str, timeout: float) -> str | None:
        rx = re.compile(regex)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.fulllog.exists():
                with open(self.fulllog, errors="replace") as f:
                    f.seek(self.mark)
                    for line in f:
                        if rx.search(line):
                            return line
            time.sleep(0.1)
        return None

    def stop(self, sig=signal.SIGTERM) -> None:
        PROCS.stop(self.proc, sig)


# --------------------------------------------------------------------------
# libreswan pluto as the responder (scenarios with responder="pluto")
# --------------------------------------------------------------------------
# libreswan conflicts with strongSwan's packages, so it is not installed: its .deb is unpacked into a
# private cache dir (never into the system or the repo). pluto execs the compiled-in
# /usr/libexec/ipsec/addconn to load its connections, so the responder's mount namespace gets a tmpfs
# over /usr/libexec with the unpacked folder bound in.
LIBRESWAN_CACHE = Path("/var/cache/ikf-lab/libreswan")
LIBRESWAN_ROOT = LIBRESWAN_CACHE / "root"
LIBRESWAN_EXEC = LIBRESWAN_ROOT / "usr/libexec/ipsec"
PLUTO = LIBRESWAN_EXEC / "pluto"
PLUTO_DEPS = "libnss3-tools libldns3 libevent-pthreads-2.1-7 libunbound8"


def libreswan_version() -> str:
    f = LIBRESWAN_CACHE / "version"
    return f.read_text().strip() if f.exists() else "unknown"


def fetch_libreswan() -> str | None:
    """Unpack Debian's libreswan .deb into LIBRESWAN_CACHE (once). Returns an error text or None."""
    if PLUTO.exists():
        return None
    log(f"libreswan: apt-get download libreswan + dpkg -x into {LIBRESWAN_CACHE} (not installed) ...")
    dl = LIBRESWAN_CACHE / "deb"
    shutil.rmtree(LIBRESWAN_CACHE, ignore_errors=True)
    dl.mkdir(parents=True)
    os.chmod(dl, 0o777)   # apt's _apt user downloads into it
    r = subprocess.run(["apt-get", "download", "libreswan"], cwd=dl, capture_output=True, text=True)
    debs = sorted(dl.glob("libreswan_*.deb"))
    if r.returncode or not debs:
        return f"`apt-get download libreswan` failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}"
    r = subprocess.run(["dpkg", "-x", str(debs[-1]), str(LIBRESWAN_ROOT)], capture_output=True, text=True)
    if r.returncode or not PLUTO.exists():
        return f"`dpkg -x {debs[-1].name}` failed: {r.stderr.strip()}"
    ver = subprocess.run(["dpkg-deb", "-f", str(debs[-1]), "Version"], capture_output=True, text=True).stdout
    (LIBRESWAN_CACHE / "version").write_text(ver.strip() + "\n")
    return None


def pluto_preflight() -> list[str]:
    """What pluto still lacks here, each with what to do about it."""
    err = fetch_libreswan()
    if err:
        return [f"libreswan pluto: {err}"]
    problems = []
    r = subprocess.run(["ldd", str(PLUTO)], capture_output=True, text=True)
    libs = [l.split()[0] for l in r.stdout.splitlines() if "not found" in l]
    if libs or not shutil.which("certutil"):
        problems.append("libreswan pluto: missing shared libraries " + (", ".join(libs) or "-")
                        + ("" if shutil.which("certutil") else "; certutil (for its NSS db)")
                        + f"\n  install: apt-get update && apt-get install -y -o DPkg::Lock::Timeout=120 {PLUTO_DEPS}")
    if not (LIBRESWAN_EXEC / "addconn").exists():
        problems.append(f"libreswan pluto: {LIBRESWAN_EXEC}/addconn missing (delete {LIBRESWAN_CACHE} and rerun)")
    return problems


def pluto_conf(inst: Path, o: dict) -> str:
    """ipsec.conf for pluto as the responder; o holds the same merged parameters as conn_conf()."""
    def pid(ident: str) -> str:
        return ident if re.match(r"^[\d.]+$", ident) else "@" + ident
    return "\n".join([
        "config setup",
        "\tikev1-policy=accept",          # libreswan 4.10 drops IKEv1 without it
        "\tlogtime=yes", "\tlogappend=no",
        "\tdnssec-enable=no",
        f"\tlisten={RESP_IP}",
        f"\tdumpdir={inst}/run",
        "\tprotostack=xfrm",
        "\tplutodebug=private",            # the PSK and IKEv2 tcpdump-style key lines: the keys log
        "",
        "conn lab",
        "\tikev2=" + ("insist" if o["version"] == 2 else "no"),
        "\tauthby=secret",
        "\taggressive=" + ("yes" if o["aggressive"] else "no"),
        f"\tleft={RESP_IP}", f"\tleftid={pid(o['local_id'])}", f"\tleftsubnet={o['local_ts']}",
        "\tright=%any", f"\trightid={pid(o['remote_id'])}", f"\trightsubnet={o['remote_ts']}",
        f"\tike={o['proposals']}",        # strongSwan-style names that libreswan also parses (no modp1024 here)
        f"\tesp={o['esp_proposals']}",
        # PFS as charon's esp_proposals say (pluto's default pfs=yes refuses a QM1 without a DH group)
        "\tpfs=" + ("yes" if re.search(r"modp|ecp|curve|x25519", o["esp_proposals"]) else "no"),
        "\tauto=add", ""])


def pluto_psk(secret: str) -> str:
    """charon's secret in libreswan's secrets syntax (0s base64 decoded into a quoted string)."""
    import base64
    if secret.startswith("0s"):
        secret = base64.b64decode(secret[2:]).decode()
    return '"' + secret.replace('"', '\\"') + '"'


class Pluto:
    """libreswan's pluto as the responder: the interface the steps use (start/stop/wait_log/set_mark/logfile)."""

    def __init__(self, role: str, ns: str, base: Path, conn: dict, extra: dict, certs: Path | None = None,
                 trust_ca: bool = True):
        if conn["auth"] != "psk" or certs:
            raise ValueError("the pluto responder is set up for PSK authentication only")
        self.role, self.ns = role, ns
        self.inst = base / role
        self.proc: subprocess.Popen | None = None
        (self.inst / "run").mkdir(parents=True)
        (self.inst / "nss").mkdir()
        ipsec_conf = pluto_conf(self.inst, conn)
        (self.inst / "ipsec.conf").write_text(ipsec_conf)
        ids = " ".join(("@" + i if not re.match(r"^[\d.]+$", i) else i) for i in (conn["local_id"], conn["remote_id"]))
        secrets = self.inst / "ipsec.secrets"
        secrets_text = f"{ids} : PSK {pluto_psk(conn['psk'])}\n"
        secrets.write_text(secrets_text)
        self.configs = {"ipsec.conf": stable(ipsec_conf, self.inst), "ipsec.secrets": secrets_text}
        os.chmod(secrets, 0o600)
        sh("certutil", "-N", "-d", f"sql:{self.inst}/nss", "--empty-password")   # what `ipsec initnss` does
        self.logfile = self.inst / "pluto.log"
        self.fulllog = self.keylog = self.logfile   # NAME.resp.log leaves out the plutodebug lines
        self.mark = 0

    def start(self) -> None:
        out = open(self.inst / "pluto.stdout", "w")
        mounts = (f"mount -t tmpfs -o mode=0755 ikf-libexec /usr/libexec && mkdir /usr/libexec/ipsec && "
                  f"mount --bind {LIBRESWAN_EXEC} /usr/libexec/ipsec")
        cmd = (f"{PLUTO} --nofork --config {self.inst}/ipsec.conf --secretsfile {self.inst}/ipsec.secrets "
               f"--ipsecdir {self.inst} --nssdir {self.inst}/nss --rundir {self.inst}/run "
               f"--logfile {self.logfile}")
        self.proc = PROCS.add(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "sh", "-c", f"{mounts} && exec {cmd}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} pluto exited: {(self.inst / 'pluto.stdout').read_text()}"
                                   + (self.logfile.read_text()[-2000:] if self.logfile.exists() else ""))
            text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            if re.search(r'"lab": added IKEv\d connection', text) and "adding UDP interface" in text \
                    and "loading secrets from" in text:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{self.role} pluto did not load its connection (see {self.logfile})")

    def swanctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        raise RuntimeError("swanctl steps need charon; this responder is pluto")

    set_mark = Charon.set_mark
    wait_log = Charon.wait_log

    def stop(self, sig=signal.SIGTERM) -> None:
        PROCS.stop(self.proc, sig)


class Capture:
    def __init__(self, ifname: str, path: Path):
        self.ifname, self.path = ifname, path
        self.proc: subprocess.Popen | None = None
        self.err: list[str] = []

    def start(self) -> None:
        self.proc = PROCS.add(subprocess.Popen(
            ["ip", "netns", "exec", NS_RT, "tcpdump", "-Z", "root", "-n", "-U", "--immediate-mode", "-s", "0",
             "-i", self.ifname, "-w", str(self.path), "ip"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True))
        ready = threading.Event()

        def reader() -> None:
            for line in self.proc.stderr:
                self.err.append(line)
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        if not ready.wait(10) or not any("listening on" in l for l in self.err):
            raise RuntimeError(f"tcpdump on {self.ifname} did not start: {''.join(self.err)}")

    def stop(self) -> None:
        PROCS.stop(self.proc, signal.SIGINT)


# --------------------------------------------------------------------------
# reading captures back with tshark
# --------------------------------------------------------------------------
FIELDS = ["frame.time_relative", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "ip.flags.mf",
          "ip.frag_offset", "isakmp.version", "isakmp.exchangetype", "isakmp.flag_r", "isakmp.flag_e",
          "isakmp.messageid", "isakmp.notify.msgtype", "esp.spi", "icmp.type", "frame.len",
          "isakmp.nextpayload"]


@dataclass
class Pkt:
    t: float
    src: str
    dst: str
    sport: int
    dport: int
    frag: bool
    ver: int | None
    xch: int | None
    response: bool
    enc: bool
    mid: int | None
    notify: list[int]
    esp: bool
    icmp: int | None
    length: int

    @property
    def from_resp(self) -> bool:
        return self.src == RESP_IP

    @property
    def from_init(self) -> bool:
        return self.src in (INIT_IP, RTR_OUT)


def read_pcap(path: Path) -> list[Pkt]:
    if not path.exists():
        return []
    args = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-T", "fields",
            "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    pkts = []
    for line in out.splitlines():
        v = line.split("|")
        if len(v) < len(FIELDS):
            continue
        d = dict(zip(FIELDS, v))

        def num(k, base=10):
            x = d[k].split(",")[0]
            try:
                return int(x, 0) if base == 0 else int(x)
            except ValueError:
                return None

        ver_raw = d["isakmp.version"].split(",")[0]
        ver = None
        if ver_raw:
            ver = 2 if int(ver_raw, 16) >> 4 == 2 else 1
        pkts.append(Pkt(
            t=float(d["frame.time_relative"] or 0), src=d["ip.src"].split(",")[0], dst=d["ip.dst"].split(",")[0],
            sport=num("udp.srcport") or 0, dport=num("udp.dstport") or 0,
            frag=d["ip.flags.mf"] in ("1", "True", "true") or (num("ip.frag_offset") or 0) > 0,
            ver=ver, xch=num("isakmp.exchangetype"),
            response=d["isakmp.flag_r"].split(",")[0] in ("1", "True", "true"),
            enc=d["isakmp.flag_e"].split(",")[0] in ("1", "True", "true"),
            mid=num("isakmp.messageid", 0),
            notify=[int(x) for x in d["isakmp.notify.msgtype"].split(",") if x.isdigit()],
            esp=bool(d["esp.spi"]), icmp=num("icmp.type"), length=num("frame.len") or 0))
    return pkts


def one_line_view(path: Path, limit: int = 40) -> list[str]:
    out = subprocess.run(["tshark", "-n", "-r", str(path)], capture_output=True, text=True).stdout
    return out.splitlines()[:limit]


# IKE exchange numbers
MM, AM, INFO1, QM = 2, 4, 5, 32
SA_INIT, AUTH, CCSA, INFO2 = 34, 35, 36, 37
N_NO_PROP, N_INVALID_KE, N_AUTH_FAILED, N_INVALID_ID, N_TS_UNACC, N_COOKIE = 14, 17, 24, 18, 38, 16390


class Checker:
    def __init__(self, inside: list[Pkt], outside: list[Pkt]):
        self.cap = {"in": inside, "out": outside}
        self.errors: list[str] = []

    def count(self, where: str, pred: Callable[[Pkt], bool]) -> int:
        return sum(1 for p in self.cap[where] if pred(p))

    def need(self, where: str, desc: str, pred: Callable[[Pkt], bool], lo: int = 1, hi: int | None = None) -> None:
        n = self.count(where, pred)
        if n < lo or (hi is not None and n > hi):
            rng = f">={lo}" if hi is None else f"{lo}..{hi}"
            self.errors.append(f"{where}: {desc}: {n} (want {rng})")

    def none(self, where: str, desc: str, pred: Callable[[Pkt], bool]) -> None:
        self.need(where, desc, pred, 0, 0)


def ike(xch=None, frm=None, response=None, enc=None, port=None, notify=None):
    def pred(p: Pkt) -> bool:
        if p.ver is None or p.frag:
            return False
        if xch is not None and p.xch not in (xch if isinstance(xch, tuple) else (xch,)):
            return False
        if frm == "i" and not p.from_init or frm == "r" and not p.from_resp:
            return False
        if response is not None and p.response != response:
            return False
        if enc is not None and p.enc != enc:
            return False
        if port is not None and port not in (p.sport, p.dport):
            return False
        if notify is not None and notify not in p.notify:
            return False
        return True
    return pred


def esp(frm):
    return lambda p: p.esp and (p.from_init if frm == "i" else p.from_resp)


def check_ok(c: Checker, version: int, nat: bool) -> None:
    for w in ("in", "out"):
        c.need(w, "ESP from initiator", esp("i"), 3)
        c.need(w, "ESP from responder", esp("r"), 3)
    if nat:
        c.need("out", "NATed IKE from 203.0.113.1 on a high port", lambda p: p.ver and p.src == RTR_OUT and p.sport >= 20000, 1)
        c.none("out", "packets with the initiator's private address", lambda p: p.src == INIT_IP)


# --------------------------------------------------------------------------
# scenario definitions
# --------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    version: int
    what: str
    expected_at: str | None
    cause: str
    init: dict = field(default_factory=dict)
    resp: dict = field(default_factory=dict)
    both: dict = field(default_factory=dict)
    iconf: dict = field(default_factory=dict)
    rconf: dict = field(default_factory=dict)
    nat: bool = False
    rules: list[str] = field(default_factory=list)
    early: list[str] = field(default_factory=list)
    steps: list[tuple] = field(default_factory=lambda: [("initiate", False)])
    decisive: list[tuple[str, str]] = field(default_factory=list)
    check: Callable[[Checker], None] | None = None
    resp_running: bool = True
    certs: bool = False
    resp_trusts_ca: bool = True
    router_sysctl: dict = field(default_factory=dict)
    note: str = ""
    responder: str = "charon"   # or "pluto": libreswan as the responder (PSK only)


BASE_CONN = dict(version=2, aggressive=False, proposals="aes128-sha256-modp2048",
                 esp_proposals="aes128-sha256", auth="psk", psk=PSK, ike_rekey="0s",
                 dpd_delay="0s", dpd_timeout="6s", dpd_action="clear", fragmentation="yes",
                 child_rekey="0s", child_life="0s")
PINGS = [("sleep", 0.3), ("ping", "init", 3, True), ("ping", "resp", 3, True)]
OK_STEPS = [("initiate", True), *PINGS]
RESP_IN_DROP = 'iifname "r-out"'
ESP_IN_UDP = "udp sport 4500 @th,64,32 != 0"   # UDP 4500 with a non-zero SPI: ESP-in-UDP, not IKE
AGGR = {"aggressive": True}
AGGR_OK_CONF = {"i_dont_care_about_security_and_use_aggressive_mode_psk": "yes"}


def scenarios() -> list[Scenario]:
    S: list[Scenario] = []

    def add(**kw) -> None:
        S.append(Scenario(**kw))

    # ---------------------------------------------------------------- success
    for v, mode, nat in ((1, "main", False), (1, "main", True), (1, "aggr", False), (1, "aggr", True),
                         (2, None, False), (2, None, True)):
        name = f"ikev{v}" + (f"-{mode}" if mode else "") + ("-nat" if nat else "") + "-ok"
        add(name=name, version=v, expected_at=None, cause="ok", nat=nat,
            both=dict(AGGR) if mode == "aggr" else {},
            rconf=AGGR_OK_CONF if mode == "aggr" else {}, steps=OK_STEPS,
            what=(f"IKEv{v}" + (f" {'Main' if mode == 'main' else 'Aggressive'} Mode" if mode else "")
                  + " PSK tunnel" + (" through NAT (router masquerades the initiator, UDP 500/4500 get different outside ports)" if nat else "")
                  + "; 3 pings each way through the tunnel (ESP-in-UDP)"),
            decisive=[("init", r"established between"), ("init", r"CHILD_SA net\{\d+\} established"),
                      ("resp", r"CHILD_SA net\{\d+\} established")],
            check=lambda c, v=v, nat=nat: check_ok(c, v, nat))

    # ---------------------------------------------------------------- PSK
    add(name="ikev1-main-psk-mismatch", version=1, expected_at="MM5", cause="psk-mismatch",
        init={"psk": WRONG_PSK},
        what="IKEv1 Main Mode, initiator has a different pre-shared key; the responder cannot decrypt MM5",
        decisive=[("resp", r"decryption failed|invalid HASH|integrity check"), ("resp", r"generating INFORMATIONAL_V1 .*N\(PLD_MAL\)"),
                  ("init", r"retransmit 3 of request|giving up|establishing IKE_SA failed")],
        check=lambda c: (c.need("in", "encrypted MM (MM5 + retransmits) from initiator", ike(MM, "i", enc=True), 3),
                         c.none("in", "encrypted MM6 from responder", ike(MM, "r", enc=True))))
    add(name="ikev1-aggr-psk-mismatch", version=1, expected_at="AM2", cause="psk-mismatch",
        both=dict(AGGR), init={"psk": WRONG_PSK}, rconf=AGGR_OK_CONF,
        what="IKEv1 Aggressive Mode, initiator has a different PSK; it cannot verify the responder's HASH_R in AM2",
        decisive=[("init", r"calculated HASH does not match HASH payload"), ("init", r"generating INFORMATIONAL_V1 .*N\(AUTH_FAILED\)")],
        check=lambda c: (c.need("in", "AM1 from initiator", ike(AM, "i"), 1),
                         c.need("in", "AM2 from responder", ike(AM, "r"), 1),
                         c.none("in", "AM3 (encrypted AM) from initiator", ike(AM, "i", enc=True))))
    add(name="ikev2-psk-mismatch", version=2, expected_at="IKE_AUTH", cause="psk-mismatch",
        init={"psk": WRONG_PSK},
        what="IKEv2, initiator has a different PSK; responder answers IKE_AUTH with AUTHENTICATION_FAILED",
        decisive=[("resp", r"tried \d+ shared key.*failed|MAC mismatched"), ("init", r"received AUTHENTICATION_FAILED")],
        check=lambda c: (c.need("in", "IKE_AUTH request", ike(AUTH, "i", response=False), 1),
                         c.need("in", "IKE_AUTH response", ike(AUTH, "r", response=True), 1, 1),
                         c.none("in", "ESP", lambda p: p.esp)))

    # ---------------------------------------------------------------- IDs
    rogue = {"local_id": ROGUE_ID}
    add(name="ikev1-peerid-mismatch", version=1, expected_at="MM5", cause="peer-id-mismatch",
        init=rogue,
        what=f"IKEv1 Main Mode, initiator identifies as {ROGUE_ID} (same PSK) but the responder only has a config for {INIT_ID}",
        decisive=[("resp", r"no peer config found|no matching peer config"), ("init", r"received AUTHENTICATION_FAILED")],
        check=lambda c: (c.need("in", "MM5 from initiator", ike(MM, "i", enc=True), 1),
                         c.none("in", "MM6 from responder", ike(MM, "r", enc=True))))
    add(name="ikev2-peerid-mismatch", version=2, expected_at="IKE_AUTH", cause="peer-id-mismatch",
        init=rogue,
        what=f"IKEv2, initiator identifies as {ROGUE_ID} (same PSK) but the responder only has a config for {INIT_ID}",
        decisive=[("resp", r"no matching peer config found"), ("init", r"received AUTHENTICATION_FAILED")],
        check=lambda c: (c.need("in", "IKE_AUTH response", ike(AUTH, "r", response=True), 1, 1),
                         c.none("in", "ESP", lambda p: p.esp)))

    # ---------------------------------------------------------------- proposals
    add(name="ikev1-p1-proposal-mismatch", version=1, expected_at="MM1", cause="proposal-mismatch",
        resp={"proposals": "aes256-sha384-modp2048"},
        what="IKEv1 Main Mode, IKE proposals share no cipher (initiator aes128-sha256-modp2048, responder aes256-sha384-modp2048)",
        decisive=[("resp", r"no proposal found|received proposals|configured proposals"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: (c.need("in", "MM1", ike(MM, "i"), 1),
                         c.none("in", "MM2", ike(MM, "r")),
                         c.need("in", "INFORMATIONAL NO_PROPOSAL_CHOSEN", ike(INFO1, "r", notify=N_NO_PROP), 1)))
    add(name="ikev2-ike-proposal-mismatch", version=2, expected_at="IKE_SA_INIT", cause="proposal-mismatch",
        resp={"proposals": "aes256-sha384-modp2048"},
        what="IKEv2, IKE proposals share no cipher (initiator aes128-sha256-modp2048, responder aes256-sha384-modp2048)",
        decisive=[("resp", r"received proposals|configured proposals|no proposal"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: c.need("in", "IKE_SA_INIT response with NO_PROPOSAL_CHOSEN", ike(SA_INIT, "r", notify=N_NO_PROP), 1, 1))
    add(name="ikev2-dh-group-mismatch", version=2, expected_at="IKE_SA_INIT", cause="dh-group-mismatch",
        resp={"proposals": "aes128-sha256-ecp256"},
        what="IKEv2, IKE proposals identical except the DH group (initiator modp2048, responder ecp256 only)",
        decisive=[("resp", r"received proposals|configured proposals|no proposal"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: c.need("in", "IKE_SA_INIT response with NO_PROPOSAL_CHOSEN", ike(SA_INIT, "r", notify=N_NO_PROP), 1, 1))
    add(name="ikev2-invalid-ke", version=2, expected_at=None, cause="ok",
        init={"proposals": "aes128-sha256-modp2048-ecp256"}, resp={"proposals": "aes128-sha256-ecp256-modp2048"},
        steps=OK_STEPS,
        what="IKEv2, initiator's first KE is modp2048 but the responder prefers ecp256: INVALID_KE_PAYLOAD, initiator retries with ecp256 and succeeds; pings",
        note="recovered dh-group negotiation (one extra IKE_SA_INIT round trip)",
        decisive=[("init", r"peer didn't accept DH group"), ("init", r"CHILD_SA net\{\d+\} established")],
        check=lambda c: (c.need("in", "IKE_SA_INIT response INVALID_KE_PAYLOAD", ike(SA_INIT, "r", notify=N_INVALID_KE), 1, 1),
                         c.need("in", "IKE_SA_INIT requests", ike(SA_INIT, "i", response=False), 2),
                         check_ok(c, 2, False)))
    add(name="ikev1-p2-proposal-mismatch", version=1, expected_at="QM1", cause="proposal-mismatch",
        resp={"esp_proposals": "aes256-sha384"},
        what="IKEv1 Main Mode succeeds; Quick Mode ESP proposals share no cipher (initiator aes128-sha256, responder aes256-sha384)",
        decisive=[("resp", r"no matching proposal found|received proposals|configured proposals"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: (c.need("in", "encrypted MM6", ike(MM, "r", enc=True), 1),
                         c.need("in", "QM1", ike(QM, "i"), 1), c.none("in", "QM2", ike(QM, "r")),
                         c.need("in", "encrypted INFORMATIONAL from responder", ike(INFO1, "r"), 1)))
    add(name="ikev2-child-proposal-mismatch", version=2, expected_at="IKE_AUTH", cause="proposal-mismatch",
        resp={"esp_proposals": "aes256-sha384"},
        what="IKEv2, IKE SA is fine but the ESP proposals share no cipher: IKE_AUTH response carries NO_PROPOSAL_CHOSEN, no CHILD_SA",
        decisive=[("resp", r"no acceptable proposal found|received proposals|configured proposals"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: (c.need("in", "IKE_AUTH response", ike(AUTH, "r", response=True), 1),
                         c.none("in", "ESP", lambda p: p.esp)))

    # ---------------------------------------------------------------- PFS
    add(name="ikev1-pfs-mismatch", version=1, expected_at="QM1", cause="pfs-mismatch",
        init={"esp_proposals": "aes128-sha256-modp3072"}, resp={"esp_proposals": "aes128-sha256-modp2048"},
        what="IKEv1, Quick Mode PFS group differs (initiator modp3072, responder modp2048)",
        decisive=[("resp", r"no matching proposal found|received proposals|configured proposals"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: (c.need("in", "QM1", ike(QM, "i"), 1), c.none("in", "QM2", ike(QM, "r"))))
    add(name="ikev2-pfs-mismatch", version=2, expected_at="CREATE_CHILD_SA", cause="pfs-mismatch",
        init={"esp_proposals": "aes128-sha256-modp3072", "child_rekey": "4s", "child_life": "60s"},
        resp={"esp_proposals": "aes128-sha256-modp2048"},
        steps=[("initiate", True), ("sleep", 0.3), ("ping", "init", 2, True),
               ("wait_log", "init", r"received NO_PROPOSAL_CHOSEN|CREATE_CHILD_SA.*N\(NO_PROP\)|failed to establish CHILD_SA", 15),
               ("sleep", 0.5)],
        what="IKEv2, PFS group differs (initiator modp3072, responder modp2048): first CHILD_SA (in IKE_AUTH, no KE) works; the CHILD rekey after 4 s with KE is refused",
        decisive=[("resp", r"no acceptable proposal found|received proposals|configured proposals"), ("init", r"received NO_PROPOSAL_CHOSEN")],
        check=lambda c: (c.need("in", "ESP before the rekey", esp("i"), 2),
                         c.need("in", "CREATE_CHILD_SA request", ike(CCSA, "i", response=False), 1),
                         c.need("in", "CREATE_CHILD_SA response", ike(CCSA, "r", response=True), 1)))

    # ---------------------------------------------------------------- subnets
    add(name="ikev1-subnet-mismatch", version=1, expected_at="QM1", cause="subnet-mismatch",
        resp={"remote_ts": OTHER_NET},
        what=f"IKEv1, responder expects the initiator's subnet to be {OTHER_NET}, initiator proposes {INIT_NET}",
        decisive=[("resp", r"no matching CHILD_SA config|traffic selectors"), ("init", r"received INVALID_ID_INFORMATION|received .* error notify")],
        check=lambda c: (c.need("in", "QM1", ike(QM, "i"), 1), c.none("in", "QM2", ike(QM, "r"))))
    add(name="ikev2-subnet-mismatch", version=2, expected_at="IKE_AUTH", cause="subnet-mismatch",
        resp={"remote_ts": OTHER_NET},
        what=f"IKEv2, responder expects the initiator's subnet to be {OTHER_NET}, initiator proposes {INIT_NET}: TS_UNACCEPTABLE",
        decisive=[("resp", r"traffic selectors .* unacceptable|no acceptable traffic selectors"), ("init", r"received TS_UNACCEPTABLE")],
        check=lambda c: (c.need("in", "IKE_AUTH response", ike(AUTH, "r", response=True), 1),
                         c.none("in", "ESP", lambda p: p.esp)))

    # ---------------------------------------------------------------- path problems
    for v, at in ((1, "MM1"), (2, "IKE_SA_INIT")):
        add(name=f"ikev{v}-udp500-blocked", version=v, expected_at=at, cause="path-blocked",
            rules=['iifname "r-in" udp dport 500 drop'],
            what=f"IKEv{v}, router drops UDP 500 from the initiator: first message retransmitted, never reaches the responder",
            decisive=[("init", r"retransmit 3 of request|giving up after")],
            check=lambda c: (c.need("in", "first message + retransmits", ike(frm="i"), 3),
                             c.none("in", "anything from responder", lambda p: p.from_resp),
                             c.none("out", "IKE on the outside", ike())))
        add(name=f"ikev{v}-responder-down", version=v, expected_at=at, cause="peer-down",
            resp_running=False,
            what=f"IKEv{v}, no IKE daemon on the responder host: its kernel answers ICMP port unreachable",
            decisive=[("init", r"retransmit 3 of request|giving up after")],
            check=lambda c: (c.need("out", "first message + retransmits", ike(frm="i"), 3),
                             c.need("out", "ICMP port unreachable", lambda p: p.icmp == 3 and p.from_resp, 1),
                             c.need("in", "ICMP port unreachable", lambda p: p.icmp == 3, 1)))
        add(name=f"ikev{v}-replies-dropped", version=v, expected_at="MM2" if v == 1 else "IKE_SA_INIT",
            cause="reply-path-lost",
            rules=['iifname "r-out" udp sport { 500, 4500 } drop'],
            what=f"IKEv{v}, responder's replies are dropped by the router on the way back (visible outside, never inside)",
            decisive=[("resp", r"sending packet"), ("init", r"retransmit 3 of request|giving up after")],
            check=lambda c: (c.need("out", "responder replies on the outside", ike(frm="r"), 1),
                             c.none("in", "responder replies on the inside", ike(frm="r")),
                             c.need("in", "initiator retransmits", ike(frm="i"), 3)))
        add(name=f"ikev{v}-udp4500-blocked", version=v, expected_at="MM5" if v == 1 else "IKE_AUTH",
            cause="udp4500-blocked", nat=True,
            rules=['iifname "r-in" udp dport 4500 drop'],
            what=f"IKEv{v} through NAT; router drops UDP 4500 from the initiator: the {'MM5' if v == 1 else 'IKE_AUTH'} after the float to 4500 is retransmitted, never arrives",
            decisive=[("init", r"retransmit 3 of request|giving up after"), ("init", r"host is behind NAT")],
            check=lambda c, v=v: (c.need("in", "IKE on 500 both ways", ike(frm="r", port=500), 1),
                                  c.need("in", "IKE to 4500 from initiator", ike(frm="i", port=4500), 3),
                                  c.none("out", "UDP 4500 on the outside", lambda p: 4500 in (p.sport, p.dport))))
        add(name=f"ikev{v}-esp-oneway", version=v, expected_at="ESP", cause="esp-blocked",
            steps=[("initiate", True), ("nft", f'{RESP_IN_DROP} {ESP_IN_UDP} drop'), ("sleep", 0.3),
                   ("ping", "init", 3, False)],
            what=f"IKEv{v} tunnel up; router then drops ESP-in-UDP (UDP 4500, non-zero SPI) from the responder: pings leave as ESP, replies never come back",
            decisive=[("init", r"CHILD_SA net\{\d+\} established"), ("resp", r"CHILD_SA net\{\d+\} established")],
            check=lambda c: (c.need("in", "ESP from initiator", esp("i"), 3),
                             c.none("in", "ESP from responder", esp("r")),
                             c.need("out", "ESP replies from responder (dropped later)", esp("r"), 3)))
        dpd = {"dpd_delay": "2s", "dpd_timeout": "6s"}
        add(name=f"ikev{v}-dpd-dead-peer", version=v, expected_at="INFO" if v == 1 else "INFORMATIONAL",
            cause="peer-dead", init=dpd,
            steps=[("initiate", True), ("sleep", 0.3), ("ping", "init", 2, True),
                   ("resp_firewall",), ("kill_resp",),
                   ("wait_log", "init", r"DPD check timed out|giving up after|deleting IKE_SA|destroying IKE_SA", 20),
                   ("sleep", 0.3)],
            what=f"IKEv{v} tunnel up, pings; then the responder host dies (charon SIGKILLed, host drops everything so no ICMP either): the initiator's DPD goes unanswered",
            decisive=[("init", r"DPD check timed out|giving up after \d+ retransmits"), ("init", r"sending DPD request|R_U_THERE|INFORMATIONAL request")],
            check=lambda c, v=v: (c.need("out", "DPD requests", ike(INFO1 if v == 1 else INFO2, "i"), 2),
                                  c.none("out", "DPD replies", ike(INFO1 if v == 1 else INFO2, "r"))))
        # idle tunnel: charon sends a DPD probe every dpd_delay and the peer answers it, until the event
        info = INFO1 if v == 1 else INFO2
        idle = [("initiate", True), ("sleep", 7.0)]
        gone = r"DPD check timed out|giving up after|deleting IKE_SA|destroying IKE_SA"
        add(name=f"ikev{v}-dpd-answered-then-silent", version=v, expected_at="INFO" if v == 1 else "INFORMATIONAL",
            cause="peer-dead", init=dpd,
            steps=[*idle, ("resp_firewall",), ("kill_resp",), ("wait_log", "init", gone, 20), ("sleep", 0.3)],
            what=f"IKEv{v} tunnel up and idle: the initiator's DPD probes (every 2 s) are answered; then the responder "
                 "host dies (charon SIGKILLed, host drops everything, no ICMP): the later probes go unanswered",
            decisive=[("init", r"DPD check timed out|giving up after \d+ retransmits")],
            check=lambda c, info=info: (c.need("out", "DPD answers before the event", ike(info, "r"), 2),
                                        c.need("out", "DPD probes", ike(info, "i"), 4)))
        add(name=f"ikev{v}-dpd-answered-then-gone", version=v, expected_at="INFO" if v == 1 else "INFORMATIONAL",
            cause="peer-down", init=dpd,
            steps=[*idle, ("kill_resp",), ("wait_log", "init", gone, 20), ("sleep", 0.3)],
            what=f"IKEv{v} tunnel up and idle: DPD probes answered; then the responder's charon is SIGKILLed while "
                 "its host stays up: its kernel answers the later probes with ICMP port unreachable",
            decisive=[("init", r"DPD check timed out|giving up after \d+ retransmits")],
            check=lambda c, info=info: (c.need("out", "DPD answers before the event", ike(info, "r"), 2),
                                        c.need("out", "ICMP port unreachable", lambda p: p.icmp == 3 and p.from_resp,
                                               1)))
        # IKEv1 probes are not re-sent: only the restart after dpd_timeout shows on the wire that the answers
        # were lost (with dpd_action=clear, the outside capture would look like a healthy tunnel)
        restart = {**dpd, "dpd_action": "restart"} if v == 1 else dpd
        then = [("wait_log", "init", r"initiating Main Mode", 20), ("sleep", 1.0)] if v == 1 else \
            [("wait_log", "init", gone, 20), ("sleep", 0.3)]
        add(name=f"ikev{v}-dpd-replies-lost", version=v, expected_at="INFO" if v == 1 else "INFORMATIONAL",
            cause="reply-path-lost", init=restart,
            steps=[*idle, ("nft", f'{RESP_IN_DROP} udp sport 4500 drop'), *then],
            what=f"IKEv{v} tunnel up and idle: DPD probes answered; then the router drops everything the responder "
                 "sends on UDP 4500: the outside capture still sees every probe answered, the initiator never gets "
                 "the answers and declares the peer dead" + (" (dpd_action=restart: it starts a new Main Mode)"
                                                              if v == 1 else ""),
            decisive=[("init", r"DPD check timed out|giving up after \d+ retransmits")],
            check=lambda c, info=info: (c.need("out", "DPD answers", ike(info, "r"), 4),
                                        c.need("in", "DPD answers before the drop", ike(info, "r"), 2)))
        add(name=f"ikev{v}-rekey-delete", version=v, expected_at=None, cause="ok",
            steps=[("initiate", True), ("sleep", 0.3), ("ping", "init", 2, True),
                   ("swanctl", "init", "--rekey", "--child", "net"),
                   ("wait_log", "init", r"CHILD_SA net\{2\} established", 10),
                   ("sleep", 0.3), ("ping", "init", 2, True),
                   ("swanctl", "init", "--rekey", "--ike", "lab"),
                   ("wait_log", "init", r"IKE_SA lab\[\d+\] rekeyed|IKE_SA lab\[2\] established|reauthenticat", 10),
                   ("sleep", 1.0), ("ping", "resp", 2, True),
                   ("swanctl", "init", "--terminate", "--ike", "lab", "--timeout", "10"),
                   ("sleep", 0.5)],
            what=f"IKEv{v} tunnel up; CHILD_SA rekeyed, then IKE_SA rekeyed, pings in between, then a clean terminate (Delete payloads) before daemons stop",
            decisive=[("init", r"rekeyed|reauthenticat|CHILD_SA net\{2\} established"), ("init", r"deleting IKE_SA|IKE_SA deleted")],
            check=lambda c, v=v: (c.need("in", "Quick Mode / CREATE_CHILD_SA for rekeys", ike(QM if v == 1 else CCSA), 4),
                                  c.need("in", "INFORMATIONAL (deletes)", ike(INFO1 if v == 1 else INFO2), 2),
                                  c.need("in", "ESP", lambda p: p.esp, 4)))

    # ---------------------------------------------------------------- misc
    add(name="ikev1-aggr-refused", version=1, expected_at="AM1", cause="aggressive-mode-refused",
        both=dict(AGGR),
        what="IKEv1 Aggressive Mode with PSK; responder has the default charon setting that refuses Aggressive Mode PSK",
        decisive=[("resp", r"Aggressive Mode PSK disabled|aggressive")],
        check=lambda c: (c.need("in", "AM1", ike(AM, "i"), 1), c.none("in", "AM2", ike(AM, "r"))))
    add(name="ikev1-vs-ikev2-only", version=1, expected_at="MM1", cause="ike-version-mismatch",
        resp={"version": 2},
        what="Initiator speaks IKEv1 Main Mode, responder's only connection is IKEv2",
        decisive=[("resp", r"no IKE config found|NO_PROPOSAL_CHOSEN|IKEv1"), ("init", r"received NO_PROPOSAL_CHOSEN|retransmit|giving up")],
        check=lambda c: (c.need("in", "MM1", ike(MM, "i"), 1), c.none("in", "MM2", ike(MM, "r"))))
    add(name="ikev2-responder-hung", version=2, expected_at="IKE_SA_INIT", cause="peer-ignores",
        steps=[("stop_resp",), ("initiate", False)],
        what="IKEv2, responder host is up and its charon still owns UDP 500 but is frozen (SIGSTOP): requests arrive, no reply, no ICMP",
        decisive=[("init", r"retransmit 3 of request|giving up after")],
        check=lambda c: (c.need("out", "IKE_SA_INIT + retransmits reach the responder", ike(SA_INIT, "i"), 3),
                         c.none("out", "any reply", lambda p: p.from_resp)))
    add(name="ikev2-nat-cookie", version=2, expected_at=None, cause="ok", nat=True,
        rconf={"dos_protection": "yes", "cookie_threshold": "1", "cookie_threshold_ip": "1"},
        rules=['iifname "r-out" udp sport 500 ct reply packets 1 drop'],
        steps=OK_STEPS,
        what="IKEv2 through NAT, responder's cookie_threshold=1; the router drops the responder's first IKE_SA_INIT reply, leaving a half-open SA, so the initiator's retransmission is answered with a COOKIE notify; the initiator repeats IKE_SA_INIT with the cookie, tunnel up, pings",
        note="recovered (one extra IKE_SA_INIT round trip)",
        decisive=[("init", r"COOKIE"), ("init", r"CHILD_SA net\{\d+\} established")],
        check=lambda c: (c.need("in", "IKE_SA_INIT response with COOKIE", ike(SA_INIT, "r", notify=N_COOKIE), 1),
                         check_ok(c, 2, True)))

    # ---------------------------------------------------------------- user authentication, certificates
    add(name="ikev1-xauth-failed", version=1, expected_at="CFG", cause="xauth-failed",
        init={"xauth": WRONG_PASSWORD}, resp={"xauth": USER_PASSWORD},
        steps=[("initiate", False), ("sleep", 5.0)],  # longer than a retransmission interval: no QM1 comes
        what="IKEv1 Main Mode with PSK plus XAUTH (xauth-generic) as the initiator's second round: the PSK is "
             "right, the XAUTH password wrong; the responder answers the credentials with XAUTH status FAIL and "
             "no Quick Mode follows",
        decisive=[("resp", r"XAuth authentication of .* failed|xauth.*failed"),
                  ("init", r"XAuth authentication .*failed|received .*XAUTH|destroying IKE_SA")],
        check=lambda c: (c.need("in", "Transaction (CFG) exchanges", ike(6), 2), c.none("in", "QM1", ike(QM))))
    add(name="ikev2-eap-failed", version=2, expected_at="IKE_AUTH", cause="eap-failed",
        init={"eap": WRONG_PASSWORD}, resp={"eap": USER_PASSWORD},
        what="IKEv2 with EAP-MD5 client authentication (responder authenticates with PSK): the initiator's EAP "
             "password is wrong; the EAP rounds in IKE_AUTH end with EAP-Failure and AUTHENTICATION_FAILED",
        decisive=[("resp", r"EAP method EAP_MD5 failed|EAP_MD5 .*failed|verification failed"),
                  ("init", r"received EAP_FAILURE|EAP method .* failed|AUTHENTICATION_FAILED")],
        check=lambda c: (c.need("in", "IKE_AUTH rounds", ike(AUTH, "i", response=False), 3),
                         c.none("in", "ESP", lambda p: p.esp)))
    for v in (1, 2):
        add(name=f"ikev{v}-cert-untrusted", version=v, expected_at="MM5" if v == 1 else "IKE_AUTH",
            cause="cert-untrusted", both={"auth": "pubkey", "fragmentation": "yes"}, certs=True,
            resp_trusts_ca=False,
            what=f"IKEv{v} with RSA certificates (IKE fragmentation on): the responder does not have the CA that "
                 "issued the initiator's certificate, so it cannot verify it and refuses the authentication",
            decisive=[("resp", r"no trusted RSA public key found|constraint check failed|no trusted .*certificate"
                               r"|building CRED_CERTIFICATE .*failed|no issuer certificate found")],
            check=lambda c: (c.none("in", "ESP", lambda p: p.esp),))
    # ---------------------------------------------------------------- MTU black hole
    add(name="ikev2-mtu-blackhole", version=2, expected_at="ESP", cause="mtu-blackhole",
        rules=['iifname "r-in" udp dport 4500 udp length > 1200 drop'],
        steps=[("initiate", True), *PINGS, ("ping", "init", 3, False, 1300), ("ping", "init", 2, True)],
        what="IKEv2 tunnel up, small pings pass both ways; then 1300-byte pings from the initiator: the router drops "
             "UDP 4500 datagrams longer than 1200 bytes from the initiator without any ICMP (an MTU black hole), so "
             "the large ESP packets never reach the outside and get no answer; small pings after them pass again",
        decisive=[("init", r"CHILD_SA net\{\d+\} established")],
        check=lambda c: (c.need("in", "large ESP from the initiator", lambda p: p.esp and p.from_init
                                and p.length > 1200, 3),
                         c.none("out", "large ESP", lambda p: p.esp and p.length > 1200),
                         c.none("in", "ICMP", lambda p: p.icmp is not None)))

    # ---------------------------------------------------------------- NAT mapping expiry
    for v in (1, 2):
        add(name=f"ikev{v}-nat-mapping-expired", version=v, expected_at="ESP", cause="nat-mapping-expired",
            nat=True, iconf={"keep_alive": "0s"},
            router_sysctl={"net.netfilter.nf_conntrack_udp_timeout": "5",
                           "net.netfilter.nf_conntrack_udp_timeout_stream": "5"},
            steps=[("initiate", True), *PINGS, ("sleep", 9.0), ("ping", "resp", 3, False)],
            what=f"IKEv{v} through NAT, the initiator sends no NAT-T keepalives and the router's conntrack forgets "
                 "UDP mappings after 5 s: after 9 s of silence the responder's pings leave as ESP-in-UDP to the "
                 "NAT's old outside port, and the NAT answers ICMP port unreachable; nothing arrives inside",
            decisive=[("init", r"CHILD_SA net\{\d+\} established")],
            check=lambda c: (c.need("out", "ICMP port unreachable from the NAT", lambda p: p.icmp == 3, 1),
                             c.need("out", "ESP from the responder after the pause", esp("r"), 6)))

    # ---------------------------------------------------------------- fragments (certificates)
    cert = {"auth": "pubkey", "fragmentation": "no"}
    add(name="ikev2-fragments-dropped", version=2, expected_at="IKE_AUTH", cause="fragments-dropped",
        both=cert, certs=True, early=["ip frag-off & 0x3fff != 0 drop"],
        what="IKEv2 with RSA-4096 certificates and IKE fragmentation disabled: IKE_AUTH is larger than the 1500 MTU and leaves as IP fragments, which the router drops (prerouting hook below conntrack defrag)",
        decisive=[("init", r"retransmit 3 of request|giving up after"), ("init", r"sending packet: .*\(\d{4} bytes\)")],
        check=lambda c: (c.need("in", "IP fragments", lambda p: p.frag, 4),
                         c.none("out", "IP fragments", lambda p: p.frag),
                         c.none("out", "IKE_AUTH", ike(AUTH))))
    add(name="ikev1-fragments-dropped", version=1, expected_at="MM5", cause="fragments-dropped",
        both=cert, certs=True, early=["ip frag-off & 0x3fff != 0 drop"],
        what="IKEv1 Main Mode with RSA-4096 certificates and IKE fragmentation disabled: MM5 (ID+CERT+SIG) leaves as IP fragments, which the router drops",
        decisive=[("init", r"retransmit 3 of request|giving up after"), ("init", r"sending packet: .*\(\d{4} bytes\)")],
        check=lambda c: (c.need("in", "IP fragments", lambda p: p.frag, 4),
                         c.none("out", "IP fragments", lambda p: p.frag)))
    add(name="ikev2-certs-ikefrag-ok", version=2, expected_at=None, cause="ok",
        both={"auth": "pubkey", "fragmentation": "yes"}, certs=True, early=["ip frag-off & 0x3fff != 0 drop"],
        steps=OK_STEPS,
        what="Same certificates and fragment-dropping router as ikev2-fragments-dropped, but IKEv2 fragmentation (RFC 7383) enabled: IKE_AUTH goes as several SKF messages, tunnel up, pings",
        decisive=[("init", r"splitting IKE message|fragment"), ("init", r"CHILD_SA net\{\d+\} established")],
        check=lambda c: (c.none("in", "IP fragments", lambda p: p.frag), check_ok(c, 2, False)))

    # ---------------------------------------------------------------- libreswan pluto as the responder
    # Debian 12's libreswan 4.10 pluto answers a charon initiator (PSK, modp2048: 4.10 has no modp1024).
    # pluto cannot install ESP SAs on this kernel ("Add SA esp...: Protocol not supported"): it drops
    # every QM1 without an answer, so the success scenario stops after Main Mode (IKE SA only).
    pl = {"responder": "pluto"}
    # charon's IKEv1 SA carries Life-Duration 0 when rekey_time = reauth_time = 0, and pluto takes that
    # literally (IKE SA expires at once and pluto starts a Main Mode of its own to replace it): give it 1 h
    plinit = {"ike_rekey": "3600s"}
    add(name="ikev1-libreswan-ok", version=1, expected_at=None, cause="ok", **pl, init=plinit,
        steps=[("initiate_ike", True), ("sleep", 1.0)],
        what="IKEv1 Main Mode PSK, charon initiator, libreswan pluto responder: MM1..MM6, IKE SA established on "
             "both sides; phase 1 only (swanctl --initiate --ike): no Quick Mode, no ESP",
        note="pluto cannot install ESP SAs on this kernel (netlink Add SA: Protocol not supported): it drops "
             "QM1 silently, so a Quick Mode would fail for a reason that is not in the configs",
        decisive=[("resp", r"IKE SA established \{auth=PRESHARED_KEY"),
                  ("init", r"IKE_SA lab\[\d+\] established between")],
        check=lambda c: [(c.need(w, "MM6 (encrypted MM from responder)", ike(MM, "r", enc=True), 1, 1),
                          c.none(w, "Quick Mode", ike(QM)), c.none(w, "INFORMATIONAL", ike(INFO1)),
                          c.none(w, "ESP", lambda p: p.esp)) for w in ("in", "out")])
    add(name="ikev1-libreswan-psk-mismatch", version=1, expected_at="MM5", cause="psk-mismatch", **pl,
        init={**plinit, "psk": WRONG_PSK}, steps=[("initiate", False)],
        what="IKEv1 Main Mode, libreswan pluto responder, initiator has a different PSK: pluto cannot decrypt "
             "MM5, logs a probable PSK mismatch, sends nothing for it and re-sends MM4 from port 500 on its own "
             "timer (0.5, 1, 2, 4 s); charon re-sends MM5 on 4500 and gives up",
        decisive=[("resp", r"probable authentication failure \(mismatch of preshared secrets\?\)"),
                  ("resp", r"STATE_MAIN_R2: retransmission"),
                  ("init", r"received retransmit of response with ID 0"),
                  ("init", r"giving up after 3 retransmits|establishing IKE_SA failed")],
        check=lambda c: (c.need("in", "MM5 + retransmits from initiator", ike(MM, "i", enc=True), 4),
                         c.none("in", "MM6 (encrypted MM from responder)", ike(MM, "r", enc=True)),
                         c.need("in", "MM2, MM4 and MM4 re-sent from port 500", ike(MM, "r", enc=False, port=500), 4),
                         c.none("in", "INFORMATIONAL from responder", ike(INFO1, "r"))))
    add(name="ikev1-libreswan-peerid-mismatch", version=1, expected_at="MM5", cause="peer-id-mismatch", **pl,
        init={**plinit, **rogue}, steps=[("initiate", False)],
        what=f"IKEv1 Main Mode, libreswan pluto responder, initiator identifies as {ROGUE_ID} (same PSK), pluto "
             f"only has a connection for {INIT_ID}: pluto decrypts every MM5 and answers each with an encrypted "
             "INFORMATIONAL (INVALID_ID_INFORMATION) from port 500 to port 500, and re-sends MM4 from port 500 "
             "on its own timer; charon cannot decrypt the INFORMATIONAL, re-sends MM5 on 4500 and gives up",
        decisive=[("resp", r"Peer ID '@intruder\.example\.net' mismatched"),
                  ("resp", r"sending encrypted notification INVALID_ID_INFORMATION"),
                  ("init", r"invalid HASH_V1 payload length, decryption failed\?"),
                  ("init", r"giving up after 3 retransmits|establishing IKE_SA failed")],
        check=lambda c: (c.need("in", "MM5 + retransmits from initiator", ike(MM, "i", enc=True), 4),
                         c.none("in", "MM6 (encrypted MM from responder)", ike(MM, "r", enc=True)),
                         c.need("in", "encrypted INFORMATIONAL from responder port 500",
                                lambda p: ike(INFO1, "r", enc=True)(p) and p.sport == 500, 4),
                         c.none("in", "INFORMATIONAL from responder port 4500",
                                lambda p: ike(INFO1, "r")(p) and p.sport == 4500),
                         c.need("in", "MM2, MM4 and MM4 re-sent from port 500", ike(MM, "r", enc=False, port=500), 4)))
    add(name="ikev2-libreswan-psk-mismatch", version=2, expected_at="IKE_AUTH", cause="psk-mismatch", **pl,
        init={"psk": WRONG_PSK}, steps=[("initiate", False)],
        what="IKEv2, libreswan pluto responder, initiator has a different PSK: pluto answers IKE_AUTH with an "
             "encrypted AUTHENTICATION_FAILED and deletes its state",
        decisive=[("resp", r"authentication failed: computed hash does not match"),
                  ("resp", r"responding to IKE_AUTH message .*AUTHENTICATION_FAILED"),
                  ("init", r"received AUTHENTICATION_FAILED")],
        check=lambda c: (c.need("in", "IKE_AUTH request", ike(AUTH, "i", response=False), 1, 1),
                         c.need("in", "IKE_AUTH response", ike(AUTH, "r", response=True), 1, 1),
                         c.none("in", "ESP", lambda p: p.esp)))
    add(name="ikev2-libreswan-peerid-mismatch", version=2, expected_at="IKE_AUTH", cause="peer-id-mismatch", **pl,
        init=rogue, steps=[("initiate", False)],
        what=f"IKEv2, libreswan pluto responder, initiator identifies as {ROGUE_ID} (same PSK), pluto only has a "
             f"connection for {INIT_ID}: pluto answers IKE_AUTH with an encrypted AUTHENTICATION_FAILED of the "
             "same size as for a wrong PSK",
        decisive=[("resp", r"Peer ID '@intruder\.example\.net' mismatched"),
                  ("resp", r"responding to IKE_AUTH message .*AUTHENTICATION_FAILED"),
                  ("init", r"received AUTHENTICATION_FAILED")],
        check=lambda c: (c.need("in", "IKE_AUTH request", ike(AUTH, "i", response=False), 1, 1),
                         c.need("in", "IKE_AUTH response", ike(AUTH, "r", response=True), 1, 1),
                         c.none("in", "ESP", lambda p: p.esp)))
    return S


# --------------------------------------------------------------------------
# running one scenario
# --------------------------------------------------------------------------
LOG_LINE = re.compile(r"^\S+ \S+ \d+\[(\w+)\] (?:<[^>]*> )?(.*)$")
PLUTO_LOG_LINE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d\.\d+: (.*)$")   # libreswan: "Nov 29 12:28:54.747278: ..."


PLUTO_DEBUG_LINES = re.compile(rb"^\w{3} [ \d]\d [\d:.]+: \| .*\n", re.M)   # plutodebug output
# scenarios.json "files" key (ROLE_KEY) of each saved configuration
CONFIG_KEYS = {"swanctl.conf": "conf", "strongswan.conf": "strongswan_conf",
               "ipsec.conf": "conf", "ipsec.secrets": "secrets"}


def decisive_lines(sc: Scenario, logs: dict[str, Path]) -> tuple[list[dict], list[str]]:
    found, missing = [], []
    for side, rx in sc.decisive:
        path = logs[side]
        hit = None
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if re.search(rx, line):
                    m = LOG_LINE.match(line)
                    pm = None if m else PLUTO_LOG_LINE.match(line)
                    hit = f"[{m.group(1)}] {m.group(2)}" if m else f"[pluto] {pm.group(1)}" if pm else line
                    break
        if hit:
            found.append({"side": side, "line": hit})
        else:
            missing.append(f"{side}: /{rx}/")
    return found, missing


def run_scenario(sc: Scenario, out: Path, tmp: Path, certdir: Path) -> dict:
    t0 = time.time()
    work = tmp / sc.name
    work.mkdir()
    conn_i = {**BASE_CONN, "version": sc.version, **sc.both, **sc.init,
              "local_id": INIT_ID, "remote_id": RESP_ID, "local_ts": INIT_NET, "remote_ts": RESP_NET}
    conn_i.update({k: v for k, v in sc.init.items()})
    conn_r = {**BASE_CONN, "version": sc.version, **sc.both,
              "local_id": RESP_ID, "remote_id": INIT_ID, "local_ts": RESP_NET, "remote_ts": INIT_NET}
    conn_r.update(sc.resp)
    certs = make_certs(certdir) if sc.certs else None
    delete_namespaces()
    notes: list[str] = []
    observations: list[str] = []
    caps: list[Capture] = []
    ci = cr = None
    try:
        build_topology(sc.nat, sc.rules, sc.early)
        for key, value in sc.router_sysctl.items():
            sh("sysctl", "-qw", f"{key}={value}", ns=NS_RT)
        ci = Charon("init", NS_I, work, conn_i, sc.iconf, certs)
        cr = (Pluto if sc.responder == "pluto" else Charon)("resp", NS_R, work, conn_r, sc.rconf, certs,
                                                             sc.resp_trusts_ca)
        caps = [Capture("r-in", out / f"{sc.name}.inside.pcap"), Capture("r-out", out / f"{sc.name}.outside.pcap")]
        if sc.resp_running:
            cr.start()
        ci.start()
        for c in caps:
            c.start()
        side = {"init": ci, "resp": cr}
        for step in sc.steps:
            kind = step[0]
            if kind != "wait_log":
                ci.set_mark()
                cr.set_mark()
            if kind == "initiate":
                r = ci.swanctl("--initiate", "--child", "net", "--timeout", "30", check=False, timeout=40)
                ok = r.returncode == 0
                if ok != step[1]:
                    notes.append(f"initiate returned {r.returncode}, expected {'success' if step[1] else 'failure'}")
            elif kind == "initiate_ike":   # the IKE SA alone (IKEv1: Main Mode, no Quick Mode)
                r = ci.swanctl("--initiate", "--ike", "lab", "--timeout", "30", check=False, timeout=40)
                if (r.returncode == 0) != step[1]:
                    notes.append(f"initiate --ike returned {r.returncode}, expected {'success' if step[1] else 'failure'}")
            elif kind == "ping":
                ns, src, dst = (NS_I, INIT_HOST, RESP_HOST) if step[1] == "init" else (NS_R, RESP_HOST, INIT_HOST)
                size = ["-s", str(step[4])] if len(step) > 4 else []  # ICMP payload bytes (default 56)
                r = sh("ping", "-n", "-q", "-c", str(step[2]), "-i", "0.3", "-W", "1", *size, "-I", src, dst,
                       ns=ns, check=False)
                m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
                if m:
                    observations.append(f"ping {src} -> {dst}: {m.group(1)} sent, {m.group(2)} replies")
                if (r.returncode == 0) != step[3]:
                    notes.append(f"ping from {step[1]} rc={r.returncode} (expected {'replies' if step[3] else 'no replies'})")
            elif kind == "sleep":
                time.sleep(step[1])
            elif kind == "nft":
                nft(NS_RT, f"add rule inet ikf forward_filter {step[1]}\n")
            elif kind == "resp_firewall":
                nft(NS_R, "table inet ikfdead {\n chain in { type filter hook input priority -10; policy drop; }\n"
                          " chain out { type filter hook output priority -10; policy drop; }\n}\n")
            elif kind == "kill_resp":
                cr.stop(signal.SIGKILL)
            elif kind == "stop_resp":
                os.kill(cr.proc.pid, signal.SIGSTOP)
            elif kind == "swanctl":
                r = side[step[1]].swanctl(*step[2:], check=False)
                if r.returncode:
                    notes.append(f"swanctl {' '.join(step[2:])} rc={r.returncode}")
            elif kind == "wait_log":
                if not side[step[1]].wait_log(step[2], step[3]):
                    notes.append(f"timeout waiting for {step[1]} log /{step[2]}/")
            else:
                raise ValueError(kind)
        time.sleep(0.3)
    finally:
        for c in caps:
            c.stop()          # captures end before the daemons so shutdown Deletes stay out
        cut: dict[Path, int] = {}
        for ch in (ci, cr):
            if ch:            # log lines written after the capture ended are left out as well
                for f in (ch.logfile, ch.keylog):
                    cut[f] = f.stat().st_size if f.exists() else 0
                ch.stop()
        delete_namespaces()
    logs = {}
    files = {"inside_pcap": f"{sc.name}.inside.pcap", "outside_pcap": f"{sc.name}.outside.pcap"}
    for role, ch in (("init", ci), ("resp", cr)):
        for kind, src, dst in (("log", ch and ch.logfile, out / f"{sc.name}.{role}.log"),
                               ("keys", ch and ch.keylog, out / f"{sc.name}.{role}.keys.log")):
            if ch and src.exists() and ch.proc is not None:
                with open(src, "rb") as f:
                    text = f.read(cut.get(src, 0))
                if kind == "log" and isinstance(ch, Pluto):
                    text = PLUTO_DEBUG_LINES.sub(b"", text)
                dst.write_bytes(text)
            else:
                dst.write_text("# daemon not running in this scenario\n")
            files[f"{role}_{kind}"] = dst.name
        logs[role] = out / f"{sc.name}.{role}.log"
        for suffix, text in (ch.configs.items() if ch else ()):
            (out / f"{sc.name}.{role}.{suffix}").write_text(text)
            files[f"{role}_{CONFIG_KEYS[suffix]}"] = f"{sc.name}.{role}.{suffix}"
    inside, outside = read_pcap(out / f"{sc.name}.inside.pcap"), read_pcap(out / f"{sc.name}.outside.pcap")
    chk = Checker(inside, outside)
    if sc.check:
        sc.check(chk)
    found, missing = decisive_lines(sc, logs)
    problems = notes + chk.errors + [f"decisive log line not found: {m}" for m in missing]
    return {
        "scenario": sc.name,
        "version": sc.version,
        "files": files,
        "what": sc.what,
        "nat": sc.nat,
        "expected_at": sc.expected_at,
        "expected_cause": sc.cause,
        "note": sc.note,
        **({"responder": f"libreswan pluto {libreswan_version()}"} if sc.responder == "pluto" else {}),
        "decisive_log_lines": found,
        "recorder_observations": observations,
        "packets": {"inside": len(inside), "outside": len(outside)},
        "verified": not problems,
        "problems": problems,
        "seconds": round(time.time() - t0, 1),
    }


# --------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------
def md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def write_reports(out: Path, results: dict[str, dict], order: list[str]) -> None:
    rows = [results[n] for n in order if n in results]
    (out / "scenarios.json").write_text(json.dumps({
        "generator": "pcaps/lab/record.py",
        "daemons": "strongSwan charon " + charon_version() + " (kernel-libipsec: ESP is always UDP-encapsulated on port 4500)"
                   + ("; libreswan pluto " + libreswan_version() + " as the responder in the *-libreswan-* scenarios"
                      if any(r.get("responder", "").startswith("libreswan") for r in rows) else ""),
        "addresses": {"initiator": INIT_IP, "router_inside": RTR_IN, "router_outside": RTR_OUT,
                      "responder": RESP_IP, "initiator_subnet": INIT_NET, "responder_subnet": RESP_NET},
        "scenarios": rows}, indent=2) + "\n")
    md = ["# Lab captures: real strongSwan negotiations, failures and successes", "",
          "Recorded by `record.py` in this folder (see README.md). Every scenario ran two real charon daemons "
          "in network namespaces (initiator 192.0.2.2 — router — responder 203.0.113.2, protected subnets "
          f"{INIT_NET} and {RESP_NET}). `*.inside.pcap` is the router's initiator-side interface (before NAT), "
          "`*.outside.pcap` its responder-side interface (after NAT). `*.init.log` / `*.resp.log` are the daemons' "
          "own logs (IKE/CFG/NET/ENC at level 1) — the ground truth. Timestamps in logs and pcaps share one clock. "
          "`*.init.keys.log` / `*.resp.keys.log` hold the key material (charon: IKE and CHD at level 4, MGR at 2; "
          "pluto: plutodebug=private) and `*.swanctl.conf`, `*.strongswan.conf`, `*.ipsec.conf`, `*.ipsec.secrets` "
          "the configurations each daemon ran with (see README.md): the inputs for `--keys` and `ikeflow check`.", "",
          "**expected_at** is the message where the negotiation stops progressing: the last message sent that was "
          "never (successfully) answered or processed. IKEv1: MM1..MM6, AM1..AM3, QM1..QM3, INFO; IKEv2: "
          "IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL; ESP for data-plane failures; `—` for successes. "
          "**cause** uses the project vocabulary (path-blocked, peer-down, peer-ignores, reply-path-lost, "
          "udp4500-blocked, fragments-dropped, proposal-mismatch, ike-version-mismatch, dh-group-mismatch, "
          "pfs-mismatch, psk-mismatch, peer-id-mismatch, subnet-mismatch, aggressive-mode-refused, esp-blocked, "
          "peer-dead, ok).", "",
          "Data plane: the kernel here has no ESP transform, so strongSwan's kernel-libipsec (userspace ESP over TUN) is "
          "used. It always UDP-encapsulates ESP (both peers fake NAT-D and float to UDP 4500 even without NAT), so "
          "no capture here contains raw IP protocol 50 ESP.", "",
          "| scenario | what was done | decisive daemon log line(s) | expected_at | cause | checked |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        dl = "<br>".join([f"{d['side']}: `{md_escape(d['line'])}`" for d in r["decisive_log_lines"]]
                         + [f"recorder: {md_escape(o)}" for o in r.get("recorder_observations", [])]) or "—"
        what = r["what"] + (f" ({r['note']})" if r.get("note") else "")
        ok = "yes" if r["verified"] else "NO: " + "; ".join(r["problems"])
        md.append(f"| {r['scenario']} | {md_escape(what)} | {dl} | {r['expected_at'] or '—'} | "
                  f"{r['expected_cause']} | {md_escape(ok)} |")
    md += ["", "`checked` = the recorder read both pcaps back with tshark and confirmed the packets the scenario is "
               "about (e.g. MM5 retransmitted and no MM6; fragments inside but not outside; ESP replies outside but "
               "not inside), and found the decisive line(s) in the daemon logs. `recorder:` lines are the "
               "recorder's own ping results (ping -c N from one protected host to the other).", "",
          "## Things worth knowing when reading these captures", "",
          "- kernel-libipsec makes both peers fake NAT detection, so every negotiation switches from UDP 500 "
          "to UDP 4500 after MM4 / IKE_SA_INIT even without NAT, and all ESP is ESP-in-UDP on port 4500.",
          "- NAT scenarios (`*-nat-*`, `*-udp4500-blocked`, `ikev2-nat-cookie`): the router masquerades "
          f"192.0.2.0/24 behind 203.0.113.1 with source ports {NAT_PORTS}, so UDP 500 and 4500 map to two "
          "different outside ports; the outside pcap never shows 192.0.2.2.",
          "- ikev1-main-psk-mismatch: the responder answers every undecryptable MM5 with an INFORMATIONAL "
          "PAYLOAD_MALFORMED sent from port 500 (not 4500); the initiator ignores it and retransmits MM5.",
          "- ikev1-aggr-ok: the initiator sends AM3 and QM1 back to back; the responder drops the first QM1 "
          "while still processing AM3, so QM1 is retransmitted once (real charon behaviour, not a failure).",
          "- ikev1-dpd-dead-peer: IKEv1 R_U_THERE messages are not retransmitted; a new one goes out every "
          "dpd_delay (2 s) until dpd_timeout (6 s) expires. IKEv2 DPD is an empty INFORMATIONAL that is "
          "retransmitted (0.5 s, x1.5) and then given up.",
          "- ikev1-udp4500-blocked and ikev2-udp4500-blocked end with a NAT-keepalive from the initiator (it detected that it is behind NAT).",
          "- ikev2-pfs-mismatch and the esp/dpd/rekey scenarios also contain ESP from the pings before the event.",
          "- Logs stop where the capture stopped: daemon shutdown lines are cut off so logs and pcaps cover the same time.",
          "- `*-libreswan-*`: the responder is libreswan's pluto (Debian 12's 4.10, unpacked, not installed), "
          "the initiator charon; `*.resp.log` is pluto's own log (lines quoted as `[pluto]`). pluto cannot install "
          "ESP SAs on this kernel (it drops QM1 without an answer), so ikev1-libreswan-ok stops after Main Mode. "
          "IKEv1 failures: pluto re-sends MM4 from port 500 on its own timer (0.5, 1, 2, 4 s); with a wrong PSK it "
          "sends nothing for MM5, with an unknown ID it answers every MM5 with an encrypted INFORMATIONAL "
          "(INVALID_ID_INFORMATION) from port 500 to port 500, which charon cannot decrypt.",
          "- Log lines are charon's `filelog` with IKE, CFG, NET, ENC (and JOB, for the IKEv1 "
          "`DPD check timed out` line) at level 1.", ""]
    (out / "SCENARIOS.md").write_text("\n".join(md))


def charon_version() -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def preflight() -> None:
    if os.geteuid() != 0:
        sys.exit("must run as root (network namespaces, nftables, tcpdump)")
    missing = [b for b in (CHARON, "/usr/sbin/swanctl") if not os.path.exists(b)]
    missing += [b for b in ("tcpdump", "tshark", "nft", "ip", "ping", "pki") if not shutil.which(b)]
    if not (PLUGIN_DIR / "libstrongswan-kernel-libipsec.so").exists():
        missing.append("kernel-libipsec plugin (libcharon-extra-plugins)")
    if missing:
        sys.exit("missing: " + ", ".join(missing) + "\ninstall: apt-get install -y tshark tcpdump strongswan-charon "
                 "strongswan-swanctl libcharon-extra-plugins libcharon-extauth-plugins "
                 "libstrongswan-standard-plugins libstrongswan-extra-plugins strongswan-pki nftables iproute2 iputils-ping")


def main() -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated scenario names (or prefixes ending in *, or shell patterns)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir with configs and full logs")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    VERBOSE = a.verbose
    all_sc = scenarios()
    if a.list:
        for s in all_sc:
            print(f"{s.name:32} {s.expected_at or '-':16} {s.cause}")
        return 0
    sel = all_sc
    if a.only:
        pats = [p.strip() for p in a.only.split(",") if p.strip()]
        sel = [s for s in all_sc if any(s.name == p or (p.endswith("*") and s.name.startswith(p[:-1]))
                                        or fnmatch.fnmatchcase(s.name, p) for p in pats)]
        if not sel:
            sys.exit(f"no scenario matches {a.only}")
    preflight()
    if any(s.responder == "pluto" for s in sel):
        problems = pluto_preflight()
        if problems:
            sys.exit("the *-libreswan-* scenarios run libreswan's pluto as the responder, which is not usable here:\n"
                     + "\n".join(problems) + "\n(or leave them out: --only with other names)")
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ikf-lab-", dir="/tmp"))
    results: dict[str, dict] = {}
    prev = out / "scenarios.json"
    if prev.exists() and a.only:
        try:
            results = {r["scenario"]: r for r in json.loads(prev.read_text())["scenarios"]}
        except (ValueError, KeyError):
            results = {}
    Procs.reap_stale()
    t_start = time.time()
    failed = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for sc in sel:
            log(f"== {sc.name}")
            try:
                r = run_scenario(sc, out, tmp, tmp / "certs")
            except Exception as e:  # keep going with the next scenario
                log(f"   ERROR: {e}")
                failed.append(sc.name)
                continue
            results[sc.name] = r
            status = "ok" if r["verified"] else "CHECK FAILED: " + "; ".join(r["problems"])
            log(f"   {r['seconds']}s in={r['packets']['inside']} out={r['packets']['outside']} pkts  {status}")
            if not r["verified"]:
                failed.append(sc.name)
    finally:
        PROCS.stop_all()
        delete_namespaces()
        if a.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    write_reports(out, results, [s.name for s in all_sc])
    log(f"done: {len(sel)} scenarios in {time.time() - t_start:.0f}s; "
        f"{len(failed)} with problems{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
