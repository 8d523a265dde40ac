"""How tests/keys_data/pluto-ikev2-psk.* were recorded (as root): two libreswan 4.10 plutos (Debian 12's package,
unpacked by pcaps/lab/record.py into /var/cache/ikf-lab/libreswan) with plutodebug=private in network namespaces
ikfA-i / ikfA-r joined by a veth pair, IKEv2 PSK; the IKE SA comes up (the child SA fails: pluto cannot install
ESP SAs on this kernel), and both logs then print the `ikev2 I/R` key lines. Captured on the responder's side.

Usage: python3 tests/keys_data/record_pluto.py OUTDIR
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

EXEC = Path("/var/cache/ikf-lab/libreswan/root/usr/libexec/ipsec")
PEERS = {"ikfA-i": ("192.0.2.10", "init", "198.51.100.0/28"), "ikfA-r": ("192.0.2.20", "resp", "198.51.100.16/28")}


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def ipsec_conf(ns: str, inst: Path) -> str:
    (me, my_id, my_net), (peer, peer_id, peer_net) = PEERS[ns], next(v for k, v in PEERS.items() if k != ns)
    return "\n".join([
        "config setup", "\tlogtime=yes", "\tlogappend=no", "\tdnssec-enable=no", f"\tlisten={me}",
        f"\tdumpdir={inst}/run", "\tprotostack=xfrm", "\tplutodebug=private", "",
        "conn lab", "\tikev2=insist", "\tauthby=secret", f"\tleft={me}", f"\tleftid=@{my_id}",
        f"\tleftsubnet={my_net}", f"\tright={peer}", f"\trightid=@{peer_id}", f"\trightsubnet={peer_net}",
        "\tike=aes128-sha2_256-modp2048", "\tesp=aes128-sha2_256", "\tauto=add", ""])


def start_pluto(ns: str, inst: Path) -> subprocess.Popen:
    (inst / "run").mkdir(parents=True)
    (inst / "nss").mkdir()
    (inst / "ipsec.conf").write_text(ipsec_conf(ns, inst))
    (inst / "ipsec.secrets").write_text('@init @resp : PSK "example-shared-secret-ikfA"\n')
    os.chmod(inst / "ipsec.secrets", 0o600)
    sh("certutil", "-N", "-d", f"sql:{inst}/nss", "--empty-password")
    # pluto runs addconn from /usr/libexec/ipsec: a tmpfs there (private to this `ip netns exec`) with ours bound in
    mounts = (f"mount -t tmpfs -o mode=0755 ikfA-libexec /usr/libexec && mkdir /usr/libexec/ipsec && "
              f"mount --bind {EXEC} /usr/libexec/ipsec")
    cmd = (f"{EXEC}/pluto --nofork --config {inst}/ipsec.conf --secretsfile {inst}/ipsec.secrets "
           f"--ipsecdir {inst} --nssdir {inst}/nss --rundir {inst}/run --logfile {inst}/pluto.log")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", f"{mounts} && exec {cmd}"],
                            stdout=open(inst / "stdout", "w"), stderr=subprocess.STDOUT)
    for _ in range(150):
        log = (inst / "pluto.log").read_text(errors="replace") if (inst / "pluto.log").exists() else ""
        if "added IKEv2 connection" in log and "loading secrets" in log:
            return proc
        time.sleep(0.1)
    raise RuntimeError(f"pluto in {ns} did not start: {(inst / 'stdout').read_text()[-500:]}")


def main(base: Path) -> None:
    procs: list[subprocess.Popen] = []
    try:
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        for ns in PEERS:
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "netns", "add", ns)
        sh("ip", "-n", "ikfA-i", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", "ikfA-r")
        for ns, (ip, _, _) in PEERS.items():
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        procs.append(subprocess.Popen(["ip", "netns", "exec", "ikfA-r", "tcpdump", "-Z", "root", "-n", "-U", "-i",
                                       "eth0", "-w", str(base / "capture.pcap"), "udp"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        procs += [start_pluto("ikfA-r", base / "resp"), start_pluto("ikfA-i", base / "init")]
        whack = sh("ip", "netns", "exec", "ikfA-i", str(EXEC / "whack"), "--ctlsocket",
                   str(base / "init/run/pluto.ctl"), "--name", "lab", "--initiate", check=False)
        print(whack.stdout + whack.stderr)
        time.sleep(2)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in PEERS:
            sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ikfA-pluto"))
