#!/usr/bin/env python3
"""Record an IKEv2 and an IKEv1 Main Mode negotiation with strongSwan's save-keys plugin loaded.

Debian 12's strongSwan packages do not ship the save-keys plugin, so it is built alone from the same
version's source package (see README.md next to this file) and preloaded into the packaged charon:

    sudo python3 tests/keys_data/save-keys/record_save_keys.py --plugin /tmp/ikfS-build/libstrongswan-save-keys.so

Reuses pcaps/lab/record.py (imported, not changed): its topology, its charon instances and its capture,
with the namespaces renamed ikfS-* and every process it starts tracked in its own PID file. Per scenario
NAME (ikev2-ok, ikev1-main-ok) it writes NAME/NAME.pcap (the router's interface towards the initiator)
and NAME/<the tables the initiator's save-keys plugin wrote> (ikev2_decryption_table or
ikev1_decryption_table, and esp_sa). The responder's tables are compared with the initiator's: they
must hold the same lines (each daemon writes both directions of the child SA).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "pcaps" / "lab"))
import record  # noqa: E402  (pcaps/lab/record.py)

PREFIX = "ikfS-"
record.NS_I, record.NS_RT, record.NS_R = PREFIX + "init", PREFIX + "router", PREFIX + "resp"
record.PIDFILE = Path("/tmp/ikfS-save-keys.pids")
TABLES = ("ikev1_decryption_table", "ikev2_decryption_table", "esp_sa")
SCENARIOS = {"ikev2-ok": {"version": 2}, "ikev1-main-ok": {"version": 1}}
_strongswan_conf = record.strongswan_conf


def strongswan_conf(inst: Path, extra: dict, auth_plugins: bool = False) -> str:
    """record.py's strongswan.conf with save-keys loaded and writing into INST/wireshark-keys."""
    text = _strongswan_conf(inst, extra, auth_plugins)
    text = re.sub(r"^(  load = .*)$", r"\1 save-keys", text, count=1, flags=re.M)
    return text.replace("  plugins {\n", "  plugins {\n    save-keys {\n      load = yes\n      ike = yes\n"
                        f"      esp = yes\n      wireshark_keys = {inst}/wireshark-keys\n    }}\n", 1)


record.strongswan_conf = strongswan_conf


def delete_namespaces() -> None:
    """Only ours (ikfS-*): record.delete_namespaces() would take every ikf-* namespace."""
    for line in record.sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            record.sh("ip", "netns", "del", name, check=False)


def run(name: str, version: int, out: Path, tmp: Path) -> None:
    work = tmp / name
    work.mkdir()
    base = {**record.BASE_CONN, "version": version}
    conn_i = {**base, "local_id": record.INIT_ID, "remote_id": record.RESP_ID,
              "local_ts": record.INIT_NET, "remote_ts": record.RESP_NET}
    conn_r = {**base, "local_id": record.RESP_ID, "remote_id": record.INIT_ID,
              "local_ts": record.RESP_NET, "remote_ts": record.INIT_NET}
    dest = out / name
    dest.mkdir(parents=True, exist_ok=True)
    delete_namespaces()
    ci = cr = cap = None
    try:
        record.build_topology(False, [], [])
        ci = record.Charon("init", record.NS_I, work, conn_i, {}, None)
        cr = record.Charon("resp", record.NS_R, work, conn_r, {}, None)
        for ch in (ci, cr):
            (ch.inst / "wireshark-keys").mkdir()
        cap = record.Capture("r-in", dest / f"{name}.pcap")
        cr.start()
        ci.start()
        cap.start()
        r = ci.swanctl("--initiate", "--child", "net", "--timeout", "30", check=False, timeout=40)
        if r.returncode:
            raise RuntimeError(f"initiate failed: {r.stdout}")
        time.sleep(0.3)
        for ns, src, dst in ((record.NS_I, record.INIT_HOST, record.RESP_HOST),
                             (record.NS_R, record.RESP_HOST, record.INIT_HOST)):
            p = record.sh("ping", "-n", "-q", "-c", "2", "-i", "0.3", "-W", "1", "-I", src, dst, ns=ns, check=False)
            record.log(f"   ping {src} -> {dst}: rc={p.returncode}")
        # an encrypted Delete too (IKEv1: an Informational under a new message ID)
        ci.swanctl("--terminate", "--ike", "lab", "--timeout", "10", check=False, timeout=20)
        time.sleep(0.5)
    finally:
        if cap:
            cap.stop()
        for ch in (ci, cr):
            if ch:
                ch.stop()
        delete_namespaces()
    got = {}
    for role, ch in (("init", ci), ("resp", cr)):
        got[role] = {t: (ch.inst / "wireshark-keys" / t).read_text()
                     for t in TABLES if (ch.inst / "wireshark-keys" / t).exists()}
    for table, text in got["init"].items():
        (dest / table).write_text(text)
        same = sorted(text.splitlines()) == sorted(got["resp"].get(table, "").splitlines())
        record.log(f"   {table}: {len(text.splitlines())} lines, responder's {'the same' if same else 'DIFFERENT'}")
    record.log(f"   charon stdout (init): {(ci.inst / 'charon.stdout').read_text()[:400]!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugin", type=Path, default=Path("/tmp/ikfS-build/libstrongswan-save-keys.so"))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", help="ikev2-ok or ikev1-main-ok")
    a = ap.parse_args()
    if not a.plugin.exists():
        sys.exit(f"{a.plugin}: build the save-keys plugin first (README.md)")
    # preloaded into charon only (swanctl has no libcharon to resolve the plugin's symbols against)
    record.CHARON = f"env LD_PRELOAD={a.plugin.resolve()} /usr/lib/ipsec/charon"
    record.Procs.reap_stale()
    tmp = Path(tempfile.mkdtemp(prefix="ikfS-save-keys-", dir="/tmp"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for name, o in SCENARIOS.items():
            if a.only and name != a.only:
                continue
            record.log(f"== {name}")
            run(name, o["version"], a.out.resolve(), tmp)
    finally:
        record.PROCS.stop_all()
        delete_namespaces()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
