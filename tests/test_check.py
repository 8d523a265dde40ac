"""`ikeflow check`: the configuration dialects, the effective settings with each daemon's defaults, the
pairing and the mismatches (cause and stall label), the CLI, and the lab's own configurations: every
configuration-made failure named with the recorded cause, the network-made ones said to agree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import PCAPS, REQUIRE_ALL, need_tshark
from ikeflow.check import ipsec_conf, secrets, swanctl
from ikeflow.check.command import check, load, run_check
from ikeflow.check.config import Config, ConfigError
from ikeflow.check.secrets import lookup
from ikeflow.check.suites import parse

CONFIGS = Path(__file__).parent / "configs"
LAB = PCAPS / "lab"


def _copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(CONFIGS / name, dst)
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _errors(res) -> list[tuple[str, str]]:
    return [(f.code, f.at) for p in res.pairs for f in p.findings if f.severity == "error"]


# -- dialects -------------------------------------------------------------------------------------------------

def test_ipsec_conf_include_also_and_default():
    cfg = ipsec_conf.parse(CONFIGS / "libreswan" / "ipsec.conf")
    assert cfg.dialect == "libreswan"
    assert any(f.endswith("conns/west-east.conf") for f in cfg.files)  # include with a wildcard, relative
    conns = ipsec_conf.conns(cfg)
    assert list(conns) == ["west-east"]  # the also= target with auto=ignore is no conn of its own
    s = conns["west-east"]
    assert s["leftsubnet"].value == "198.51.100.0/28" and s["leftsubnet"].where.endswith("west-east.conf:4")
    assert s["ikelifetime"].value == "1h" and s["ikelifetime"].where.endswith("ipsec.conf:8")  # from %default
    assert "also" not in s


def test_ipsec_conf_dialects():
    assert ipsec_conf.parse(CONFIGS / "stroke" / "ipsec.conf").dialect == "stroke"
    assert ipsec_conf.parse(CONFIGS / "openswan" / "ipsec.conf").dialect == "openswan"


def test_also_loop_and_missing_target(tmp_path):
    f = tmp_path / "ipsec.conf"
    f.write_text("conn a\n\talso=b\n\tleft=192.0.2.1\n\tright=192.0.2.2\nconn b\n\talso=a\n")
    with pytest.raises(ConfigError, match=r"ipsec.conf:\d+: also= loop"):
        ipsec_conf.conns(ipsec_conf.parse(f))
    f.write_text("conn a\n\talso=nowhere\n")
    with pytest.raises(ConfigError, match=r"ipsec.conf:2: also=nowhere: no conn of that name"):
        ipsec_conf.conns(ipsec_conf.parse(f))


def test_strict_proposals_in_the_stroke_dialect():
    strict, loose = parse("aes256-sha1-modp1024!", "stroke"), parse("aes256-sha1-modp1024", "stroke")
    assert strict.strict and not loose.strict
    assert [s.text() for s in strict.suites] == ["aes256-sha1-modp1024"]
    libre = parse("aes256-sha1;modp1024", "libreswan")
    assert libre.strict and libre.suites == strict.suites
    assert parse("aes_gcm256-null", "libreswan").suites[0].text() == "aes256gcm16"
    assert parse("aes-sha2_256+sha1-modp2048", "libreswan").suites[0].text() == "aes128/aes256-sha1/sha256-modp2048"


def test_ipsec_secrets():
    cfg = Config("x", "libreswan")
    secrets.parse(CONFIGS / "libreswan" / "ipsec.secrets", cfg)
    kinds = [(s.kind, s.ids) for s in cfg.secrets]
    assert kinds == [("PSK", ("@west.example", "@east.example")), ("PSK", ("%any",)), ("RSA", ())]
    east = Config("y", "stroke")
    secrets.parse(CONFIGS / "stroke" / "ipsec.secrets", east)
    assert east.secrets[0].value == cfg.secrets[0].value  # 0x hex and a quoted string, the same key
    assert "shared" not in repr(cfg.secrets[0])  # never printed
    best = lookup(cfg.secrets, "PSK", "@west.example", "east.example")
    assert best.secret is cfg.secrets[0] and best.how == "both IDs"
    other = lookup(cfg.secrets, "PSK", "@west.example", "@north.example")
    assert other.secret is cfg.secrets[0] and other.how == "the local ID"
    assert lookup(cfg.secrets, "PSK", "@south", "@north").secret is cfg.secrets[1]  # only %any names neither


def test_swanctl_nested_include_reference_secrets():
    cfg = swanctl.parse(CONFIGS / "swanctl" / "swanctl.conf")
    names = [s.name for s in cfg.sections]
    assert names == ["base", "east-west"]
    ew = cfg.sections[1].settings
    assert ew["proposals"].value == "aes256-sha256-ecp256"  # copied from `base` by `east-west : base`
    assert ew["local.id"].value == "east.example" and ew["remote.id"].value == "west.example"
    assert ew["children.net.esp_proposals"].where.endswith("swanctl.conf:23")
    assert [(s.kind, s.ids) for s in cfg.secrets] == [("PSK", ("east.example", "west.example"))]


def test_parse_errors_name_file_and_line(tmp_path):
    f = tmp_path / "swanctl.conf"
    f.write_text("connections {\n  a {\n    version = 2\n    what is this\n")
    with pytest.raises(ConfigError, match=r"swanctl.conf:4: expected"):
        swanctl.parse(f)
    f.write_text("connections {\n  a {\n")
    with pytest.raises(ConfigError, match=r"swanctl.conf:2: section a .* is not closed"):
        swanctl.parse(f)
    g = tmp_path / "ipsec.conf"
    g.write_text("conn a\n\tleft=192.0.2.1\n\tthis line has no equals\n")
    with pytest.raises(ConfigError, match=r"ipsec.conf:3: expected `key=value`"):
        ipsec_conf.parse(g)
    g.write_text("conn a\n\tleft=192.0.2.1\n\tright=192.0.2.2\n\tfrobnicate=yes\n")
    assert any("ipsec.conf:4: unknown key frobnicate" in w for w in ipsec_conf.parse(g).warnings)


# -- resolve and compare ------------------------------------------------------------------------------------

def test_both_ends_agree():
    res = run_check([str(CONFIGS / "libreswan"), str(CONFIGS / "stroke")], [None], None)
    (p,) = res.pairs
    assert (p.init.name, p.resp.name, p.version) == ("west-east", "east-west", 1)
    assert p.init.daemon == "libreswan-4" and p.resp.daemon == "strongswan-5.9"
    assert _errors(res) == [] and res.exit_code == 0
    assert any(f.code == "psk-match" for f in p.findings)


@pytest.mark.parametrize("edit, expected", [
    (("stroke/ipsec.conf", "ike=aes256-sha1-modp2048!", "ike=aes256-sha1-modp1024!"), ("proposal-mismatch", "MM1")),
    (("stroke/ipsec.conf", "esp=aes256-sha1!", "esp=aes128-sha256!"), ("proposal-mismatch", "QM1")),
    (("stroke/ipsec.conf", "esp=aes256-sha1!", "esp=aes256-sha1-modp2048!"), ("pfs-mismatch", "QM1")),
    (("stroke/ipsec.conf", "rightid=@west.example", "rightid=@intruder.example"), ("peer-id-mismatch", "MM5")),
    (("stroke/ipsec.conf", "rightsubnet=198.51.100.0/28", "rightsubnet=198.51.100.64/28"), ("subnet-mismatch", "QM1")),
    (("stroke/ipsec.secrets", "0x7368", "0x7468"), ("psk-mismatch", "MM5")),
    (("stroke/ipsec.conf", "keyexchange=ikev1", "keyexchange=ikev2"), ("ike-version-mismatch", "MM1")),
    (("libreswan/conns/west-east.conf", "\tauto=start", "\taggressive=yes\n\tauto=start"), ("aggressive-mode-refused", "AM1")),
])
def test_mismatch_named_with_cause_and_stall(tmp_path, edit, expected):
    for name in ("libreswan", "stroke"):
        _copy(tmp_path, name)
    (tmp_path / "stroke" / "strongswan.conf").write_text("charon {\n  retransmit_tries = 3\n}\n")
    _edit(tmp_path / edit[0], edit[1], edit[2])
    res = run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None)
    assert _errors(res)[0] == expected
    assert res.exit_code == 1


def test_defaultroute_id_is_only_known_at_run_time(tmp_path):
    for name in ("libreswan", "stroke"):
        _copy(tmp_path, name)
    _edit(tmp_path / "libreswan/conns/west-east.conf", "\tleftid=@west.example\n", "")
    _edit(tmp_path / "libreswan/conns/west-east.conf", "\tleft=192.0.2.10", "\tleft=%defaultroute")
    _edit(tmp_path / "stroke/ipsec.conf", "rightid=@west.example", "rightid=192.0.2.10")
    res = run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None)
    (p,) = res.pairs
    assert p.init.name == "west-east" and p.init["local_addrs"].value == ["%defaultroute"]
    assert not _errors(res) and any(f.code == "id-unknown" and f.at == "MM5" for f in p.findings)
    from ikeflow.check.capture import notes
    from ikeflow.diagnose.finding import Finding
    stall = Finding("error", "stall", "MM5", "MM5 answered with an error", causes=["psk-mismatch", "peer-id-mismatch"])
    (note,) = notes(res.pairs, [], [stall])
    assert [c for c, _ in note.ruled_out] == ["psk-mismatch"]  # the ID is not known, so not ruled out
    assert note.causes == ["peer-id-mismatch", "psk-mismatch"] and note.cause is None


def test_ikev1_charon_offers_the_first_algorithm_only(tmp_path):
    """strongSwan ipsec.conf(5) esp=: "IKEv1 only includes the first algorithm in a proposal": east starting
    with esp=aes128-aes256-sha1! offers aes128 only, which west (aes256) refuses; as responder it accepts both."""
    for name in ("libreswan", "stroke"):
        _copy(tmp_path, name)
    _edit(tmp_path / "stroke/ipsec.conf", "esp=aes256-sha1!", "esp=aes128-aes256-sha1!")
    assert not _errors(run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None))
    _edit(tmp_path / "stroke/ipsec.conf", "\tauto=add", "\tauto=start")
    _edit(tmp_path / "libreswan/conns/west-east.conf", "\tauto=start", "\tauto=add")
    res = run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None)
    assert res.pairs[0].init.name == "east-west"
    assert _errors(res) == [("proposal-mismatch", "QM1")]
    assert any(f.code == "ikev1-first-algorithm" and "aes128-sha1" in f.summary for f in res.pairs[0].findings)


def test_strongswan_appends_its_defaults_without_bang(tmp_path):
    for name in ("libreswan", "stroke"):
        _copy(tmp_path, name)
    # west offers modp1024 only: strict east refuses; without `!` east also accepts charon's defaults, which
    # lack modp1024 since 5.6.1 too, so it still refuses -- but aes256-sha1-modp2048 from west passes both ways
    _edit(tmp_path / "libreswan/conns/west-east.conf", "ike=aes256-sha1;modp2048", "ike=aes128-sha256;modp3072")
    strict = run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None)
    assert _errors(strict)[0] == ("proposal-mismatch", "MM1")
    _edit(tmp_path / "stroke/ipsec.conf", "ike=aes256-sha1-modp2048!", "ike=aes256-sha1-modp2048")
    loose = run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None)
    assert _errors(loose) == []


def test_libreswan_has_no_modp1024(tmp_path):
    """Both ends write modp1024, but libreswan 3.30+ is built without it: no common DH group, and a warning
    that pluto will not load the line."""
    for name in ("libreswan", "stroke"):
        _copy(tmp_path, name)
    _edit(tmp_path / "libreswan/conns/west-east.conf", "ike=aes256-sha1;modp2048", "ike=aes256-sha1;modp1024")
    _edit(tmp_path / "stroke/ipsec.conf", "ike=aes256-sha1-modp2048!", "ike=aes256-sha1-modp1024!")
    res = run_check([str(tmp_path / "libreswan"), str(tmp_path / "stroke")], [None], None)
    assert _errors(res)[0] == ("proposal-mismatch", "MM1")
    assert "no common DH group" in res.pairs[0].findings[0].summary
    assert any("west-east.conf:14: libreswan 3.30 and later is built without modp1024" in w
               for w in res.conns[0][0].warnings)


def test_daemon_defaults_by_version():
    """Openswan 2.6 starts IKEv1 by default (ikev2=permit) with its spdb.c proposals; a swanctl conn with
    version = 2 refuses it; the finding cites the default's source."""
    res = run_check([str(CONFIGS / "openswan"), str(CONFIGS / "swanctl")], [None], None)
    f = next(f for p in res.pairs for f in p.findings if f.severity == "error")
    assert (f.code, f.at) == ("ike-version-mismatch", "MM1")
    assert "ikev2.xml" in f.hint and "swanctl.conf:5" in f.hint
    lib = run_check([str(CONFIGS / "openswan")], ["libreswan-5"], None)
    assert lib.conns[0][0].daemon == "libreswan-5" and lib.conns[0][0].daemon_how == "--daemon"


@pytest.mark.parametrize("daemon, breaks", [("strongswan-5.9", True), ("strongswan-6", False)])
def test_default_esp_pfs_by_version(tmp_path, daemon, breaks):
    """The default ESP proposal has no DH group in 5.9 and every group plus none since 6.0.2 (PFS optional)."""
    body = ("connections {{ c {{ version = 2\n local_addrs = {l}\n remote_addrs = {r}\n local {{ auth = psk }}\n"
            " remote {{ auth = psk }}\n children {{ n {{ {esp} }} }} }} }}\nsecrets {{ ike {{ secret = x }} }}\n")
    a, b = tmp_path / "a.swanctl.conf", tmp_path / "b.swanctl.conf"
    a.write_text(body.format(l="192.0.2.1", r="192.0.2.2", esp="esp_proposals = aes128-sha256-modp2048"))
    b.write_text(body.format(l="192.0.2.2", r="192.0.2.1", esp=""))
    res = run_check([str(a), str(b)], [daemon], None)
    assert (_errors(res) == [("pfs-mismatch", "CREATE_CHILD_SA")]) is breaks


def test_defaults_ids_from_addresses_behind_nat(tmp_path):
    """Neither end sets an ID: each sends its own address; behind NAT that is not the address the other
    end connects to."""
    a, b = tmp_path / "a.swanctl.conf", tmp_path / "b.swanctl.conf"
    body = ("connections {{ c {{ version = 2\n local_addrs = {l}\n remote_addrs = {r}\n local {{ auth = psk }}\n"
            " remote {{ auth = psk\n id = {rid} }}\n children {{ n {{ esp_proposals = aes128-sha256 }} }} }} }}\n"
            "secrets {{ ike {{ secret = same }} }}\n")
    a.write_text(body.format(l="10.0.0.2", r="203.0.113.20", rid="%any"))
    b.write_text(body.format(l="203.0.113.20", r="%any", rid="198.51.100.7"))  # the NAT's public address
    res = run_check([str(a), str(b)], [None], None)
    f = next(f for p in res.pairs for f in p.findings if f.code == "peer-id-mismatch")
    assert f.at == "IKE_AUTH" and "10.0.0.2" in f.summary and "198.51.100.7" in f.summary


# -- command line -------------------------------------------------------------------------------------------

def test_cli_exit_codes_json_table_and_no_secret(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(check, [str(CONFIGS / "libreswan"), str(CONFIGS / "stroke"), "--table", "--no-color"])
    assert ok.exit_code == 0, ok.output
    assert "the configurations agree" in ok.output and "Phase 1 proposals" in ok.output
    assert "shared secret" not in ok.output and "7368617265" not in ok.output
    js = runner.invoke(check, [str(CONFIGS / "openswan"), str(CONFIGS / "swanctl"), "--json"])
    assert js.exit_code == 1
    doc = json.loads(js.output)
    assert (doc["schema"], doc["kind"]) == (1, "check")
    assert doc["pairs"][0]["findings"][0]["causes"] == ["ike-version-mismatch"]
    assert "road secret" not in js.output
    bad = tmp_path / "ipsec.conf"
    bad.write_text("conn a\n\tleft=192.0.2.1\n\tnot a setting\n")
    err = runner.invoke(check, [str(bad), str(CONFIGS / "stroke")])
    assert err.exit_code == 2 and f"{bad}:3: expected `key=value`" in err.output
    assert "Traceback" not in err.output
    missing = runner.invoke(check, [str(tmp_path / "nothing"), str(CONFIGS / "stroke")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    noconn = runner.invoke(check, [str(CONFIGS / "libreswan"), str(CONFIGS / "stroke"), "--conn", "nope"])
    assert noconn.exit_code == 2 and "--conn nope" in noconn.output


def test_load_a_folder_reads_secrets_beside():
    cfg = load(str(CONFIGS / "stroke"))
    assert cfg.dialect == "stroke" and [s.kind for s in cfg.secrets] == ["PSK"]


# -- the lab's configurations ---------------------------------------------------------------------------------

CONFIG_MADE = {"psk-mismatch", "peer-id-mismatch", "proposal-mismatch", "dh-group-mismatch", "pfs-mismatch",
               "subnet-mismatch", "aggressive-mode-refused", "ike-version-mismatch", "xauth-failed", "eap-failed"}
NOT_IN_FILES = {"cert-untrusted"}  # the CA certificates the responder lacks are not in its configuration files


def _lab_scenarios() -> list[dict]:
    path = LAB / "scenarios.json"
    return json.loads(path.read_text())["scenarios"] if path.is_file() else []


def _lab_ends(name: str) -> list[Path]:
    init = LAB / f"{name}.init.swanctl.conf"
    resp = next((p for p in (LAB / f"{name}.resp.ipsec.conf", LAB / f"{name}.resp.swanctl.conf") if p.is_file()),
                LAB / f"{name}.resp.swanctl.conf")
    return [init, resp]


@pytest.mark.parametrize("sc", _lab_scenarios(), ids=lambda s: s["scenario"])
def test_lab_configurations(sc):
    ends = _lab_ends(sc["scenario"])
    if not all(p.is_file() for p in ends):
        pytest.skip(f"the lab has not saved the configurations of {sc['scenario']} yet "
                    f"(pcaps/lab/record.py writes NAME.init.swanctl.conf / NAME.resp.*)")
    res = run_check([str(p) for p in ends], [None], None)
    cause = sc["expected_cause"]
    errors = [f for p in res.pairs for f in p.findings if f.severity == "error"]
    if cause in CONFIG_MADE:
        assert errors, f"{sc['scenario']}: no mismatch found"
        assert errors[0].causes[0] == cause
        assert errors[0].at == sc["expected_at"]
    elif cause in NOT_IN_FILES:
        assert not errors and any(cause in f.causes for p in res.pairs for f in p.findings)
    else:  # made by the network, or ok
        assert not errors, [f.summary for f in errors]


def test_lab_configurations_present():
    if not _lab_scenarios():
        pytest.skip("pcaps/lab/scenarios.json not found")
    missing = [s["scenario"] for s in _lab_scenarios() if not all(p.is_file() for p in _lab_ends(s["scenario"]))]
    if missing and not REQUIRE_ALL:
        pytest.skip(f"{len(missing)} lab scenarios without saved configurations yet: {', '.join(missing[:4])} ...")
    assert not missing


# -- with a capture ---------------------------------------------------------------------------------------------

def _with_capture(configs_of: str, capture_of: str):
    ends = [str(p) for p in _lab_ends(configs_of)]
    cap = LAB / f"{capture_of}.outside.pcap"
    if not all(Path(p).is_file() for p in ends) or not cap.is_file():
        pytest.skip(f"lab files of {configs_of}/{capture_of} not present")
    r = CliRunner().invoke(check, [*ends, "--capture", str(cap), "--json"])
    return r.exit_code, json.loads(r.output)


def _stalls(doc) -> list[dict]:
    """The notes of capture findings that name causes (not the wire's differences, not NAT-T)."""
    return [n for n in doc["capture_findings"] if n["finding"]["causes"]]


def _differs(doc) -> list[dict]:
    return [n["finding"] for n in doc["capture_findings"] if n["finding"]["code"] == "capture-differs-from-config"]


def test_capture_stall_explained_by_config_lines():
    code, doc = _with_capture("ikev1-main-psk-mismatch", "ikev1-main-psk-mismatch")
    assert code == 1
    (note,) = _stalls(doc)
    assert note["finding"]["at"] == "MM5" and note["causes"][0] == "psk-mismatch"
    assert note["explained_by"][0]["code"] == "psk-mismatch"
    assert ".swanctl.conf:39" in note["explained_by"][0]["hint"]
    assert [c["cause"] for c in note["ruled_out"]] == ["peer-id-mismatch"]


def test_capture_causes_ruled_out_drop():
    """The configurations of a working tunnel against a PSK stall: every configuration-decided cause of the
    stall is ruled out and goes to the end of the ranking."""
    _, doc = _with_capture("ikev1-main-ok", "ikev1-main-psk-mismatch")
    (note,) = _stalls(doc)
    assert not note["explained_by"]
    assert {c["cause"] for c in note["ruled_out"]} == {"psk-mismatch", "peer-id-mismatch"}
    assert note["ruled_out"][0]["why"] == "the PSKs for this pair match"


def test_capture_network_stall_left_alone():
    _, doc = _with_capture("ikev2-udp4500-blocked", "ikev2-udp4500-blocked")
    (note,) = _stalls(doc)
    assert note["causes"][0] == "udp4500-blocked" and not note["ruled_out"] and not note["explained_by"]


def test_invalid_ke_round_trip_agrees_with_tshark():
    """ikev2-invalid-ke: the configurations say the initiator's KE is for its first group and charon asks for its
    own first group; tshark reads the same two groups from the recording (KE payload, INVALID_KE_PAYLOAD data)."""
    tshark = need_tshark()
    ends, cap = _lab_ends("ikev2-invalid-ke"), LAB / "ikev2-invalid-ke.outside.pcap"
    if not cap.is_file() or not all(p.is_file() for p in ends):
        pytest.skip("lab files of ikev2-invalid-ke not present")
    rows = subprocess.run([tshark, "-r", str(cap), "-T", "fields", "-e", "isakmp.key_exchange.dh_group",
                           "-e", "isakmp.notify.msgtype", "-e", "isakmp.notify.data.accepted_dh_group"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    first_ke = int(rows[0].split("\t")[0])
    asked = next(int(r.split("\t")[2]) for r in rows if "17" in r.split("\t")[1].split(","))  # INVALID_KE_PAYLOAD
    groups = {14: "modp2048", 19: "ecp256"}  # RFC 3526 / RFC 5903 group numbers
    res = run_check([str(p) for p in ends], [None], None)
    note = next(f for p in res.pairs for f in p.findings if f.code == "invalid-ke-expected")
    assert f"key exchange for {groups[first_ke]}" in note.summary and f"prefers {groups[asked]}" in note.summary
    assert not _errors(res)


def test_capture_shows_other_proposals_than_the_configuration():
    """ikev2-ok's configurations against the ikev2-invalid-ke recording: on the wire the initiator offers two
    groups (frame 1) and the responder chooses ecp256, neither of which ikev2-ok's files hold; frames and
    groups as tshark reads them."""
    tshark = need_tshark()
    cap = LAB / "ikev2-invalid-ke.outside.pcap"
    _, doc = _with_capture("ikev2-ok", "ikev2-invalid-ke")
    rows = [r.split("\t") for r in subprocess.run(
        [tshark, "-r", str(cap), "-T", "fields", "-e", "frame.number", "-e", "isakmp.tf.id.dh"],
        capture_output=True, text=True, check=True).stdout.splitlines()]
    groups = {14: "modp2048", 19: "ecp256"}  # RFC 3526 / RFC 5903 group numbers
    offered = rows[0][1].split(",")
    chosen_frame = next(int(n) for n, dh in rows[1:] if dh and "," not in dh)
    differs = [n["finding"] for n in doc["capture_findings"] if n["finding"]["code"] == "capture-differs-from-config"]
    assert [f["frames"] for f in differs] == [[int(rows[0][0])], [chosen_frame]]
    assert all(groups[int(g)] in differs[0]["summary"] for g in offered)
    _, same = _with_capture("ikev2-invalid-ke", "ikev2-invalid-ke")
    assert not [n for n in same["capture_findings"] if n["finding"]["code"] == "capture-differs-from-config"]


def test_capture_aggressive_mode_ids_against_the_configuration():
    """Aggressive Mode IDs are in clear: the recording's AM1 ID (as tshark reads it) against a configuration
    whose initiator says another ID."""
    tshark = need_tshark()
    cap = LAB / "ikev1-aggr-ok.outside.pcap"
    _, doc = _with_capture("ikev1-peerid-mismatch", "ikev1-aggr-ok")
    first = subprocess.run([tshark, "-r", str(cap), "-T", "fields", "-e", "frame.number", "-e", "isakmp.id.data.fqdn"],
                           capture_output=True, text=True, check=True).stdout.splitlines()[0].split("\t")
    (f,) = _differs(doc)
    assert (f["code"], f["at"], f["frames"]) == ("capture-differs-from-config", "AM1", [int(first[0])])
    assert f"identifies as {first[1]}," in f["summary"] and "intruder.example.net" in f["summary"]
    _, same = _with_capture("ikev1-aggr-ok", "ikev1-aggr-ok")
    assert not _differs(same)


# -- read --config, and the wire against the conns with --keys ------------------------------------------------

def _lab_keys(name: str) -> list[str]:
    """--keys for the scenario's keys logs that hold keys (none are derived before a phase-1 proposal fails)."""
    from ikeflow.keys import KeySourceError, load_keys
    out = []
    for side in ("init", "resp"):
        path = LAB / f"{name}.{side}.keys.log"
        try:
            load_keys([str(path)])
        except KeySourceError:
            continue
        out += ["--keys", str(path)]
    return out


def _read_config(name: str, *extra: str, capture_of: str | None = None):
    from ikeflow.cli import main
    ends, cap = _lab_ends(name), LAB / f"{capture_of or name}.outside.pcap"
    if not cap.is_file() or not all(p.is_file() for p in ends):
        pytest.skip(f"lab files of {name} not present")
    return CliRunner().invoke(main, ["read", str(cap), "--config", str(ends[0]), "--config", str(ends[1]), *extra])


def _log(sc: dict, side: str) -> str:
    return " ".join(x["line"] for x in sc["decisive_log_lines"] if x["side"] == side)


@pytest.mark.parametrize("sc", _lab_scenarios(), ids=lambda s: s["scenario"])
def test_lab_read_config_with_keys(sc):
    """Every lab recording read with both ends' configurations and their keys logs: a configuration-made failure
    is settled to exactly the cause and message its daemon log records; nothing else is settled; the wire never
    differs from the configurations the daemons ran."""
    name = sc["scenario"]
    r = _read_config(name, "--json", *_lab_keys(name))
    assert r.exit_code in (0, 1), r.output[-400:]
    doc = json.loads(r.output)
    settled = [(f["at"], c["cause"]) for f in doc["findings"] for c in f["config"] if c["verdict"] == "settles"]
    if sc["expected_cause"] in CONFIG_MADE:
        assert settled == [(sc["expected_at"], sc["expected_cause"])]
        stall = next(f for f in doc["findings"] if any(c["verdict"] == "settles" for c in f["config"]))
        assert stall["causes"][0] == sc["expected_cause"]  # the report's own ranking follows
    else:
        assert not settled
    assert not doc["configurations"]["capture_differs"]


def test_ikev2_auth_failed_tie_settled_by_the_wire():
    """IKEv2 AUTHENTICATION_FAILED hides whether the PSK or the ID is wrong. The decrypted IDi against the
    responder's remote id tells: the IDs the responder's log names (tried a shared key for them / Peer ID
    mismatched) are the ones the wire shows."""
    lab = {s["scenario"]: s for s in _lab_scenarios()}
    for name, cause in (("ikev2-psk-mismatch", "psk-mismatch"), ("ikev2-peerid-mismatch", "peer-id-mismatch"),
                        ("ikev2-libreswan-peerid-mismatch", "peer-id-mismatch")):
        if name not in lab:
            pytest.skip("lab scenarios not present")
        doc = json.loads(_read_config(name, "--json", *_lab_keys(name)).output)
        (stall,) = [f for f in doc["findings"] if f["code"] == "stall"]
        verdicts = {c["verdict"]: c for c in reversed(stall["config"])}
        assert verdicts["settles"]["cause"] == cause
        if cause == "psk-mismatch":
            why = next(c["why"] for c in stall["config"] if c.get("cause") == "peer-id-mismatch")
            assert "decrypted" in why and "init.example.net" in why and "init.example.net" in _log(lab[name], "resp")
        else:
            wire = next(c for c in stall["config"] if c["verdict"] == "explains" and c["frames"])
            assert wire["evidence"] == "decrypted" and "intruder.example.net" in wire["summary"]
            assert "intruder.example.net" in _log(lab[name], "resp") or "no matching peer config" in _log(lab[name], "resp")


def test_quick_mode_ids_on_the_wire_explain_the_subnet_mismatch():
    """The Quick Mode client IDs decrypted from QM1 are the subnets the responder's log could not match."""
    lab = {s["scenario"]: s for s in _lab_scenarios()}
    if "ikev1-subnet-mismatch" not in lab:
        pytest.skip("lab scenarios not present")
    doc = json.loads(_read_config("ikev1-subnet-mismatch", "--json", *_lab_keys("ikev1-subnet-mismatch")).output)
    (stall,) = [f for f in doc["findings"] if f["code"] == "stall"]
    wire = next(c for c in stall["config"] if c["verdict"] == "explains" and c["frames"])
    proposed = wire["summary"].split("proposes ")[1].split(" ")[0]
    assert proposed in _log(lab["ikev1-subnet-mismatch"], "resp")  # "no matching CHILD_SA config found for ..."
    assert wire["causes"] == ["subnet-mismatch"] and wire["evidence"] == "decrypted"


def test_read_config_terminal_points_at_the_lines():
    """End to end through the CLI: a PSK, an ID and a proposal mismatch get their configuration lines; a
    network-made stall is left as read ranks it, and the configurations are said to agree."""
    r = _read_config("ikev1-main-psk-mismatch", "--no-color", "-q")
    assert r.exit_code == 1 and "\nConfigurations\n" in r.output
    assert "explained by the configurations: the PSKs for this pair differ" in r.output
    assert ".swanctl.conf:39" in r.output and "ruled out: peer-id-mismatch" in r.output
    assert "cause: psk-mismatch" in r.output
    ident = _read_config("ikev2-peerid-mismatch", "--no-color", "-q")
    assert "intruder.example.net" in ident.output and "cause: peer-id-mismatch" in ident.output
    assert "→ Compare the identities" in ident.output  # what to check next follows the settled cause
    assert "The configurations settle the cause: peer-id-mismatch" in ident.output
    prop = _read_config("ikev2-ike-proposal-mismatch", "--no-color", "-q")
    assert "explained by the configurations: phase 1:" in prop.output and "cause: proposal-mismatch" in prop.output
    net = _read_config("ikev2-udp4500-blocked", "--no-color", "-q")
    assert net.exit_code == 1 and "the configurations agree" in net.output
    assert "causes, most likely first: udp4500-blocked" in net.output and "cause:" not in net.output


def test_read_config_bad_input(tmp_path):
    from ikeflow.cli import main
    cap = LAB / "ikev2-ok.outside.pcap"
    if not cap.is_file():
        pytest.skip("lab capture not present")
    bad = tmp_path / "ipsec.conf"
    bad.write_text("conn a\n\tleft=192.0.2.1\n\tnonsense\n")
    r = CliRunner().invoke(main, ["read", str(cap), "--config", str(bad)])
    assert r.exit_code == 2 and f"{bad}:3:" in r.output and "Traceback" not in r.output
    three = CliRunner().invoke(main, ["read", str(cap), *["--config", str(CONFIGS / "stroke")] * 3])
    assert three.exit_code == 2 and "one or two" in three.output
    nokeys = CliRunner().invoke(check, [str(CONFIGS / "stroke"), "--keys", str(cap)])
    assert nokeys.exit_code == 2 and "--capture" in nokeys.output


def test_wire_differs_from_the_configuration_given():
    """ikev2-ok's configurations against the ikev2-peerid-mismatch recording decrypted: the IDi on the wire is not
    the initiator's conn's (a warning on the IKE_AUTH request, the frame tshark numbers as exchange type 35)."""
    tshark = need_tshark()
    cap = LAB / "ikev2-peerid-mismatch.outside.pcap"
    doc = json.loads(_read_config("ikev2-ok", "--json", *_lab_keys("ikev2-peerid-mismatch"),
                                  capture_of="ikev2-peerid-mismatch").output)
    rows = subprocess.run([tshark, "-r", str(cap), "-T", "fields", "-e", "frame.number", "-e", "isakmp.exchangetype"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    auth = next(int(r.split("\t")[0]) for r in rows if r.endswith("\t35"))  # RFC 7296: 35 is IKE_AUTH
    (f,) = doc["configurations"]["capture_differs"]
    assert f["frames"] == [auth] and "identifies as intruder.example.net" in f["summary"]


def test_nat_d_faked_by_forced_encapsulation(tmp_path):
    """The lab's charon loads kernel-libipsec, which forces UDP encapsulation (so both ends fake NAT-D, pcaps/lab
    SCENARIOS.md): read --config explains the nat-t finding with that strongswan.conf line; without the plugin the
    same NAT-D differs from the configuration."""
    name = "ikev2-ok"
    r = _read_config(name, "--json")
    doc = json.loads(r.output)
    (natt,) = [f for f in doc["findings"] if f["code"] == "nat-t"]
    lines = [c["hint"].removeprefix("from ") for c in natt["config"]]
    assert len(lines) == 2
    for where in lines:
        path, line = where.rsplit(":", 1)
        assert "load = yes" in Path(path).read_text().splitlines()[int(line) - 1]
    for end in ("init", "resp"):
        for suffix in ("swanctl.conf", "strongswan.conf"):
            shutil.copy(LAB / f"{name}.{end}.{suffix}", tmp_path / f"{name}.{end}.{suffix}")
        _edit(tmp_path / f"{name}.{end}.strongswan.conf", "load = yes", "load = no")
        _edit(tmp_path / f"{name}.{end}.strongswan.conf", "kdf kernel-libipsec ", "kdf ")
    from ikeflow.cli import main
    r = CliRunner().invoke(main, ["read", str(LAB / f"{name}.outside.pcap"), "--json",
                                  "--config", str(tmp_path / f"{name}.init.swanctl.conf"),
                                  "--config", str(tmp_path / f"{name}.resp.swanctl.conf")])
    differs = json.loads(r.output)["configurations"]["capture_differs"]
    assert len(differs) == 2 and all("NAT-D is faked" in f["summary"] for f in differs)


def test_openswan_documentation_example():
    """Openswan's own example (docs/examples.txt of github.com/xelerance/Openswan, as tests/configs/openswan-howto/
    cites): its phase 1 and phase 2 lines, as that text gives them, in the Configuration Table; the also= template
    without auto= is no conn of its own; userA pairs with its conn, userB has no partner."""
    howto = CONFIGS / "openswan-howto"
    r = CliRunner().invoke(check, [str(howto / "gateway.ipsec.conf"), str(howto / "userA.ipsec.conf"), "--table",
                                   "--no-color"])
    assert r.exit_code == 0, r.output
    assert "openswan dialect, openswan-2.6" in r.output and "the configurations agree" in r.output
    rows = {line.split("  ")[2].strip(): line for line in r.output.splitlines() if line.startswith("    ")}
    assert rows["Phase 1 proposals"].count("3des-sha1;modp1024,aes256-sha2_256;modp2048") == 2
    assert rows["Phase 2 proposals"].count("3des-sha1;modp1024") == 2
    assert rows["IKE SA lifetime"].count("3h") == 2 and rows["IPsec SA lifetime"].count("3h") == 2
    assert rows["Phase 1 mode"].count("Main") == 2  # aggrmode=no
    assert "initiator: gateway" in r.output and "responder: user_userA" in r.output
    assert "no partner on the other end for conn user_userB" in r.output
    assert "roadwarriors_rsa" not in r.output.split("\n", 2)[0]
    conns = ipsec_conf.conns(ipsec_conf.parse(howto / "gateway.ipsec.conf"))
    assert list(conns) == ["user_userA", "user_userB"]
    assert [s.text() for s in parse(conns["user_userA"]["ike"].value, "openswan").suites] == \
        ["3des-sha1-modp1024", "aes256-sha256-modp2048"]


def test_check_help_teaches_with_working_examples():
    """--help shows examples; every option an example uses is one check (or read) has."""
    from ikeflow.cli import read
    text = CliRunner().invoke(check, ["--help"]).output
    examples = [line.split() for line in text.splitlines() if line.strip().startswith("ikeflow ")]
    assert len(examples) >= 6 and any("--keys" in e for e in examples) and any("--capture" in e for e in examples)
    known = {"check": {o for p in check.params for o in p.opts}, "read": {o for p in read.params for o in p.opts}}
    for e in examples:
        used = {w for w in e if w.startswith("--")}
        assert used <= known[e[1]], (e, used - known[e[1]])
    assert "explained by" in text and "ruled out" in text and "Exit codes" in text


def test_check_keys_bad_input(tmp_path):
    cap = LAB / "ikev2-psk-mismatch.outside.pcap"
    if not cap.is_file():
        pytest.skip("lab capture not present")
    bad = tmp_path / "keys.txt"
    bad.write_text("this is not a key table\n")
    r = CliRunner().invoke(check, [str(CONFIGS / "stroke"), str(CONFIGS / "libreswan"), "--capture", str(cap),
                                   "--keys", str(tmp_path / "missing.log")])
    assert r.exit_code == 2 and "Traceback" not in r.output and "missing.log" in r.output


def test_check_capture_json_settles_and_never_prints_secrets():
    """check --capture --keys --json: the settled cause per stall, the configuration lines of what explains it, and
    no PSK (the lab's secrets are base64 in the swanctl.conf) anywhere in the output."""
    name = "ikev1-main-psk-mismatch"
    ends, cap = _lab_ends(name), LAB / f"{name}.outside.pcap"
    if not cap.is_file():
        pytest.skip("lab files not present")
    r = CliRunner().invoke(check, [*map(str, ends), "--capture", str(cap), *_lab_keys(name), "--json"])
    doc = json.loads(r.output)
    assert doc["decrypted"] is True
    (note,) = _stalls(doc)
    assert note["cause"] == "psk-mismatch"
    assert all(":" in line for line in note["explained_by"][0]["lines"])
    secrets = [line.split("=", 1)[1].strip() for p in ends for line in p.read_text().splitlines()
               if line.strip().startswith("secret =")]
    assert secrets and not any(s in r.output or s.removeprefix("0s") in r.output for s in secrets)


def test_read_config_one_end_says_so():
    from ikeflow.cli import main
    cap, init = LAB / "ikev2-ok.outside.pcap", LAB / "ikev2-ok.init.swanctl.conf"
    if not cap.is_file() or not init.is_file():
        pytest.skip("lab files not present")
    r = CliRunner().invoke(main, ["read", str(cap), "-q", "--no-color", "--config", str(init)])
    assert r.exit_code == 0 and "give the other end's too" in r.output


def test_forced_encapsulation_against_a_capture_that_stays_on_500(tmp_path):
    """A conn forcing UDP encapsulation against Wireshark's ikev2-decrypt-aes128ccm12 recording, whose NAT-D is
    genuine and which stays on UDP 500: both are wire differences, at the frames tshark shows (the initiator's
    IKE_SA_INIT, the first IKE_AUTH and its UDP port)."""
    tshark = need_tshark()
    cap = PCAPS.parent.parent / "shared" / "pcaps" / "public" / "wireshark" / "test" / "captures" / \
        "ikev2-decrypt-aes128ccm12.pcap"
    if not cap.is_file():
        pytest.skip("public capture not present")
    rows = [r.split("\t") for r in subprocess.run(
        [tshark, "-r", str(cap), "-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "udp.dstport",
         "-e", "isakmp.exchangetype"], capture_output=True, text=True, check=True).stdout.splitlines()]
    init_frame, init_addr, _, _ = rows[0]  # RFC 7296: 34 IKE_SA_INIT, 35 IKE_AUTH
    auth_frame, _, auth_port, _ = next(r for r in rows if r[3] == "35")
    resp_addr = next(r[1] for r in rows if r[1] != init_addr)
    for end, local, remote, extra in (("a", init_addr, resp_addr, "    encap = yes\n"),
                                      ("b", resp_addr, init_addr, "")):
        (tmp_path / f"{end}.swanctl.conf").write_text(
            f"connections {{\n  gw {{\n    local_addrs = {local}\n    remote_addrs = {remote}\n{extra}"
            f"    local {{\n      auth = psk\n    }}\n    remote {{\n      auth = psk\n    }}\n"
            f"    children {{\n      net {{\n      }}\n    }}\n  }}\n}}\n")
    r = CliRunner().invoke(check, [str(tmp_path / "a.swanctl.conf"), str(tmp_path / "b.swanctl.conf"),
                                   "--capture", str(cap), "--json"])
    natt = [f for f in _differs(json.loads(r.output)) if "encapsulation" in f["summary"]]
    assert [f["frames"] for f in natt] == [[int(auth_frame)], [int(init_frame)]]
    assert f"stays on UDP port {auth_port}" in natt[0]["summary"] and "NAT-D is genuine" in natt[1]["summary"]


def test_quick_mode_client_id_forms():
    """IKEv1 client IDs as decode/ike.py writes them (RFC 2407 4.6.2: address, subnet, range) read as networks;
    anything else (a name) reads as nothing, never an error."""
    from ikeflow.check.capture import _client_id
    assert [str(n) for n in _client_id("192.0.2.0/28")] == ["192.0.2.0/28"]
    assert [str(n) for n in _client_id("192.0.2.1")] == ["192.0.2.1/32"]
    assert [str(n) for n in _client_id("192.0.2.0-192.0.2.23")] == ["192.0.2.0/28", "192.0.2.16/29"]
    assert _client_id("host.example.net") == [] and _client_id("192.0.2.9-x") == []
