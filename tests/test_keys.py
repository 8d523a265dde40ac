"""Key sources: Wireshark's tables (read, written, and read back by tshark), charon logs of the lab, the CLI."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from ikeflow.decode import decrypt as d
from ikeflow.keys import EspKey, IkeV2Keys, KeyRing, KeySourceError, load_keys, read_source
from ikeflow.keys.command import keys as keys_command
from ikeflow.keys.wireshark import export
from tests.conftest import PCAPS, need_public
from tests.test_decrypt import WS, _chain, _config, _frames, _open_esp, _open_ikev2, _tshark, _tshark_esp

LAB = PCAPS / "lab"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_wireshark_test_tables():
    ring = load_keys([str(need_public() / WS / "config")])
    assert ring.counts == {"ikev1": 3, "ikev2": 9, "esp": 2}
    v2 = ring.ikev2(bytes.fromhex("81f24c0acd8fa55c"), bytes.fromhex("192383172724c706"))
    assert (v2.encr, v2.integ, len(v2.sk_ei), len(v2.sk_ai)) == ("aes-ctr", "hmac-sha2-512-256", 28, 64)
    assert ring.ikev2(bytes.fromhex("0158b8fb90b7623d"), bytes.fromhex("13514610cea16160")).encr == "aes-gcm-16"
    esp = ring.esp(0x070883C2, "192.168.0.1", "192.168.0.100")
    assert (esp.encr, esp.integ, len(esp.enc_key)) == ("aes-cbc", "hmac-sha1-96", 16)
    assert ring.ikev1(bytes.fromhex("fafaeb49382a763c")).enc_key.hex().startswith("735be0cb")


def test_esp_sa_quoting_wildcards_and_ascii_keys(tmp_path):
    path = _write(tmp_path, "esp_sa", '# comment\n\n'
                  '"IPv4","10.0.*.*","*","*","AES-CBC [RFC3602]","aescbcencryption","HMAC-SHA-1-96 [RFC2404]",'
                  '"hmacsha1authenticati"\n'
                  '"IPv6","2001:DB8::1","2001:db8::2","0x0000000a","AES-GCM [RFC4106]","0x\\x30102030405060708090a0b'
                  '0c0d0e0f0102030405","ANY 64 bit authentication [no checking]",""\n'
                  '"IPv4","192.0.2.1","192.0.2.2","10","NULL","","NULL",""\n')
    ring = load_keys([path])
    wild = ring.esp(77, "10.0.3.4", "192.0.2.9")
    assert wild.enc_key == b"aescbcencryption" and wild.integ == "hmac-sha1-96" and wild.spi is None
    gcm = ring.esp(10, "2001:db8:0::1", "2001:db8::2")
    assert gcm.encr == "aes-gcm" and gcm.integ == "unchecked-64" and len(gcm.enc_key) == 20
    assert ring.esp(10, "192.0.2.1", "192.0.2.2").encr == "null"         # "10" is decimal, as strtoul reads it
    assert ring.esp(11, "10.1.0.1", "192.0.2.9") is None


@pytest.mark.parametrize("name, text, message", [
    ("ikev2_decryption_table", 'aa,bb,cc\n', "ikev2_decryption_table:1: expected 8 comma-separated fields"),
    ("ikev2_decryption_table", '0011223344556677,8899aabbccddeeff,00,00,"AES-XTS [RFC0]",,,"NONE [RFC4306]"\n',
     "unknown algorithm name 'AES-XTS [RFC0]'"),
    ("ikev2_decryption_table", '0011223344556677,8899aabbccddeeff,00,00,"AES-CBC-256 [RFC3602]",,,"NONE [RFC4306]"'
     '\n', "SK_ei is 1 octets, AES-CBC-256 [RFC3602] needs 32"),
    ("ikev1_decryption_table", '00112233445566zz,00\n', "the initiator cookie is not hexadecimal"),
    ("esp_sa", '"IPv4","a.b","*","1","NULL","","NULL",""\n', "'a.b' is not an IP address"),
    ("notes.txt", "nothing to see\n", "not a key source ikeflow knows"),
])
def test_bad_tables_say_where_and_why(tmp_path, name, text, message):
    with pytest.raises(KeySourceError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_keys([_write(tmp_path, name, text)])


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(KeySourceError, match="no such file"):
        load_keys([str(tmp_path / "absent")])
    with pytest.raises(KeySourceError, match="no key table or key log"):
        load_keys([str(tmp_path)])


def test_table_recognised_by_content(tmp_path):
    line = '1234567890123456,0987654321098765,,,"NULL [RFC2410]",,,"NONE [RFC4306]"\n'
    assert load_keys([_write(tmp_path, "keys.csv", line)]).counts["ikev2"] == 1


def test_export_reads_back_and_tshark_agrees(tmp_path):
    """Exported tables hold the same keys, and tshark decrypts Wireshark's test captures with them exactly as
    with the original tables."""
    public = need_public() / WS
    ring = load_keys([str(public / "config")])
    written, skipped = export(ring, tmp_path / "out")
    assert written == {"ikev1_decryption_table": 3, "ikev2_decryption_table": 9, "esp_sa": 2} and not skipped
    again = load_keys([str(tmp_path / "out")])
    assert set(again.all()) == set(ring.all())
    original = _config(tmp_path, *sorted((public / "config").glob("*.tmpl")))
    for capture in ("ikev2-decrypt-aes256cbc.pcapng", "ikev2-decrypt-aes192ctr.pcap", "esp-bug-12671.pcapng.gz",
                    "ikev1-certs.pcap"):
        fields = ["isakmp.typepayload", "ip.src", "ip.dst"]
        theirs = _tshark(public / "captures" / capture, original, fields, esp=True)
        assert _tshark(public / "captures" / capture, tmp_path / "out", fields, esp=True) == theirs


def test_export_leaves_out_what_wireshark_cannot_name(tmp_path):
    ring = KeyRing()
    ring.add(IkeV2Keys(bytes(8), bytes(7) + b"\1", bytes(36), bytes(36), "chacha20-poly1305", b"", b"", "none"))
    ring.add(IkeV2Keys(bytes(8), bytes(7) + b"\2", bytes(16), bytes(16), "", b"", b"", ""))
    ring.add(EspKey(5, "*", "*", "aes-gcm-16", bytes(20), "none", b""))
    written, skipped = export(ring, tmp_path)
    assert written["ikev2_decryption_table"] == 0 and len(skipped) == 2
    assert (tmp_path / "esp_sa").read_text().count("AES-GCM with 16 octet ICV [RFC4106]") == 2    # IPv4 and IPv6


def _lab_scenarios() -> list[str]:
    return sorted({p.name.split(".")[0] for p in LAB.glob("*.keys.log")})


def test_lab_charon_logs_decrypt_the_lab_esp():
    """Every lab keys log loads; with a scenario's logs every ESP packet of its captures (both capture points,
    so also behind the NAT) opens, and with IKEv2 the IKE SA's SK payloads open once the negotiated
    algorithms are filled in (AES-CBC with HMAC-SHA2-256-128, the lab's proposal)."""
    scenarios = _lab_scenarios()
    if not scenarios:
        pytest.skip("no lab keys logs in pcaps/lab")
    opened_esp = opened_ike = 0
    for scenario in scenarios:
        ring = KeyRing()
        for log in LAB.glob(f"{scenario}.*.keys.log"):
            try:
                ring.update(load_keys([str(log)]))
            except KeySourceError as e:
                assert "no key" in str(e) or ("libreswan" in scenario and
                                                            "pluto log without usable IKE keys" in str(e)), e
        for capture in LAB.glob(f"{scenario}.*side.pcap"):
            esp = [(f, s, t, p) for f, s, t, kind, p in _frames(capture) if kind == "esp"]
            with_key = [p for _, s, t, p in esp if ring.esp(struct.unpack_from("!I", p)[0], s, t)]
            assert len(_open_esp(capture, ring)) == len(with_key), f"{capture.name}"
            opened_esp += len(with_key)
            filled = KeyRing()
            for key in ring.all():
                if isinstance(key, IkeV2Keys) and key.sk_ai:
                    key = IkeV2Keys(key.spi_i, key.spi_r, key.sk_ei, key.sk_er, "aes-cbc", key.sk_ai, key.sk_ar,
                                    "hmac-sha2-256-128")
                filled.add(key)
            if "ikev2" in scenario and "libreswan" not in scenario:
                opened_ike += len(_open_ikev2(capture, filled))
    assert opened_esp > 100 and opened_ike > 20


def test_charon_log_without_keys_is_explained(tmp_path):
    log = "2026-11-29 14:47:34.832 13[IKE] <lab|1> initiating IKE_SA lab[1] to 203.0.113.2\n"
    with pytest.raises(KeySourceError, match="log levels are below 4"):
        load_keys([_write(tmp_path, "charon.log", log)])


def test_cli_show_hides_keys_unless_revealed_and_export(tmp_path):
    config = str(need_public() / WS / "config")
    runner = CliRunner()
    shown = runner.invoke(keys_command, ["show", "--from", config])
    assert shown.exit_code == 0 and "3 IKEv1, 9 IKEv2, 2 ESP keys" in shown.output
    assert "735be0cb" not in shown.output and "<24 octets>" in shown.output
    assert "735be0cb" in runner.invoke(keys_command, ["show", "--reveal", "--from", config]).output
    out = runner.invoke(keys_command, ["export", "--from", config, "--out", str(tmp_path)])
    assert out.exit_code == 0 and (tmp_path / "ikev2_decryption_table").read_text().count("\n") == 9
    bad = runner.invoke(keys_command, ["show", "--from", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "no such file or directory" in bad.output and "Traceback" not in bad.output


def test_decrypt_with_charon_keys_needs_the_algorithms():
    """A log's IKEv2 keys carry no algorithm: opening says so instead of guessing."""
    keys = IkeV2Keys(bytes(8), bytes(8), bytes(16), bytes(16), "", bytes(32), bytes(32), "")
    assert "not given" in d.open_sk(bytes(80), 28, keys, True).reason


def test_tcpdump_secrets(tmp_path):
    """tcpdump's own test secrets: ESP lines (ICV length only, tcpdump does not check it) open its ESP capture
    (the inner packets are ESP again, as tcpdump's esp2.out shows); the `ikev2 I/R` lines open the IKE_AUTH
    request's SK payload, whose ICV does not verify with the given SK_ai: ikeflow says so, and with the ICV
    unchecked the inner payloads are IDi and AUTH, as in tcpdump's ikev2pI2.out."""
    tests = need_public() / "tcpdump/tests"
    ring = load_keys([str(tests / "esp-secrets.txt"), str(tests / "ikev2pI2-secrets.txt")])
    assert ring.counts == {"ikev1": 0, "ikev2": 1, "esp": 3}
    opened = _open_esp(tests / "08-sunrise-sunset-esp2.pcap", ring)
    assert len(opened) == 8 and set(opened.values()) == {("192.1.2.23", "192.0.1.1", 50)}
    assert not _open_esp(tests / "02-sunrise-sunset-esp.pcap", ring)      # that capture used another key
    for _, _, _, kind, msg in _frames(tests / "ikev2pI2.pcap"):
        keys = ring.ikev2(msg[:8], msg[8:16])
        if keys:
            offset = next(o for t, o in _chain(msg, msg[16], 28) if t == 46)
            assert "ICV does not verify with SK_ai" in d.open_sk(msg, offset, keys, True).reason
            unchecked = IkeV2Keys(keys.spi_i, keys.spi_r, keys.sk_ei, keys.sk_er, keys.encr, b"", b"", "unchecked-96")
            plain = d.open_sk(msg, offset, unchecked, True).plaintext
            assert [plain[0], plain[struct.unpack_from("!H", plain, 2)[0]]] == [39, 0]   # IDi -> AUTH -> end


def test_pluto_logs_decrypt_libreswan_ikev2(tmp_path):
    """Real pluto 4.10 logs (tests/keys_data/record_pluto.py): both sides print the same `ikev2 I/R` lines;
    their keys open both IKE_AUTH messages, and exported, tshark shows the same inner payloads (the response
    carries the TS_UNACCEPTABLE pluto sends when it cannot install the child SA)."""
    data = Path(__file__).parent / "keys_data"
    ring = load_keys([str(data / "pluto-ikev2-psk.init.log"), str(data / "pluto-ikev2-psk.resp.log")])
    assert ring.counts == {"ikev1": 0, "ikev2": 1, "esp": 0}
    capture = data / "pluto-ikev2-psk.pcap"
    ours = _inner_types(capture, ring)
    export(ring, tmp_path)
    rows = _tshark(capture, tmp_path, ["isakmp.typepayload", "isakmp.notify.msgtype"])
    from tests.test_decrypt import _tshark_inner
    assert len(ours) == 2 and ours == {f: _tshark_inner(rows, f) for f in ours}
    assert rows[4][1] == ["38"]                                     # TS_UNACCEPTABLE (RFC 7296 3.10.1)


def test_pluto_line_parsing(tmp_path):
    """The lines pluto prints once an IKEv2 SA is up (state.c DBG_tcpdump_ike_sa_keys); AEAD keys lack the salt."""
    log = ("Nov 29 14:49:02.704927: | ikev2 I 0x0011223344556677 0x8899aabbccddeeff sha256:0x" + "11" * 32
           + " aes128:0x" + "22" * 16 + "\n"
           "Nov 29 14:49:02.704927: | ikev2 R 0x0011223344556677 0x8899aabbccddeeff sha256:0x" + "33" * 32
           + " aes128:0x" + "44" * 16 + "\n")
    key = load_keys([_write(tmp_path, "pluto.log", log)]).ikev2(bytes.fromhex("0011223344556677"),
                                                                 bytes.fromhex("8899aabbccddeeff"))
    assert (key.encr, key.integ, key.sk_er, key.sk_ai) == ("aes-cbc", "hmac-sha2-256-128", b"\x44" * 16, b"\x11" * 32)
    gcm = log.replace("aes128", "aes_gcm_16256").replace("sha256", "none")
    with pytest.raises(KeySourceError, match="no salt"):
        load_keys([_write(tmp_path, "pluto2.log", gcm)])


def _negotiated(captures: list[Path], ring: KeyRing) -> KeyRing:
    """The ring with each IKEv2 SA's algorithms filled from the IKE_SA_INIT response's SA payload, as the
    model does for keys from a log."""
    from ikeflow.decode.ike import decode_isakmp
    chosen = {}
    for capture in captures:
        for _, _, _, kind, msg in _frames(capture):
            if kind == "ike" and len(msg) > 28 and msg[18] == 34 and msg[19] & 0x20:
                for payload in decode_isakmp(msg).payloads:
                    if payload.type == 33 and payload.info.get("proposals"):
                        ids = {t.type: t.id for t in payload.info["proposals"][0].transforms}
                        chosen[(msg[:8], msg[8:16])] = (d.encr_from_transform(ids.get(1, -1)),
                                                        d.integ_from_transform(ids.get(3, 0)))
    out = KeyRing()
    for key in ring.all():
        # an SA made by an IKE rekey negotiated inside the old one: the lab offers one proposal only
        if isinstance(key, IkeV2Keys) and ((key.spi_i, key.spi_r) in chosen or len(set(chosen.values())) == 1):
            encr, integ = chosen.get((key.spi_i, key.spi_r)) or next(iter(chosen.values()))
            key = IkeV2Keys(key.spi_i, key.spi_r, key.sk_ei, key.sk_er, encr, key.sk_ai, key.sk_ar,
                            "none" if d.is_aead(encr) else integ)
        out.add(key)
    return out


def _inner_types(capture: Path, ring: KeyRing) -> dict[int, list[int]]:
    """Frame -> inner payload types, SKF fragments joined (RFC 7383) and shown at the frame that completes them."""
    out, pieces = {}, {}
    for number, _, _, kind, msg in _frames(capture):
        if kind != "ike" or len(msg) < 28 or msg[17] >> 4 != 2 or struct.unpack_from("!I", msg, 24)[0] > len(msg):
            continue
        keys = ring.ikev2(msg[:8], msg[8:16])
        sk = [(t, o) for t, o in _chain(msg, msg[16], 28) if t in (46, 53)]
        if not keys or not sk or not keys.encr:
            continue
        kind_, offset = sk[0]
        opened = d.open_sk(msg, offset, keys, bool(msg[19] & 0x08), kind_ == 53)
        assert opened.ok, f"{capture.name} frame {number}: {opened.reason}"
        if kind_ == 46:
            out[number] = [t for t, _ in _chain(opened.plaintext, msg[offset], 0)]
            continue
        fragment, total = struct.unpack_from("!HH", msg, offset + 4)
        whole = pieces.setdefault((msg[:20], msg[20:24]), {})
        whole[fragment] = (msg[offset], opened.plaintext)
        if len(whole) == total:
            plain = b"".join(whole[i][1] for i in range(1, total + 1))
            out[number] = [t for t, _ in _chain(plain, whole[1][0], 0)]
    return out


def _lab_ring(scenario: str) -> KeyRing:
    """The keys of a lab scenario's daemon logs (a log without usable keys is passed over)."""
    ring = KeyRing()
    for log in LAB.glob(f"{scenario}.*.keys.log"):
        try:
            ring.update(load_keys([str(log)]))
        except KeySourceError:
            continue
    return ring


def test_lab_ikev2_with_charon_keys_agrees_with_tshark(tmp_path):
    """For every strongSwan IKEv2 lab scenario: keys from both daemons' logs, algorithms from the negotiation,
    exported as Wireshark tables; tshark decrypts the inside capture with them and shows the same inner payload
    types per frame (SK, and SKF fragments reassembled) and the same inner addresses of the ESP packets."""
    from tests.test_decrypt import _tshark_inner
    scenarios = [s for s in _lab_scenarios() if s.startswith("ikev2") and "libreswan" not in s]
    if not scenarios:
        pytest.skip("no lab keys logs in pcaps/lab")
    compared = 0
    for scenario in scenarios:
        ring = _lab_ring(scenario)
        capture = LAB / f"{scenario}.inside.pcap"
        if not ring or not capture.exists():
            continue
        ring = _negotiated([capture], ring)
        config = tmp_path / scenario
        export(ring, config)
        rows = _tshark(capture, config, ["isakmp.typepayload", "ip.src", "ip.dst", "ip.proto"], esp=True)
        theirs = {f: _tshark_inner(rows, f) if r[0][0] == "46" else [int(t) for t in r[0][1:] if t not in "23"]
                  for f, r in rows.items() if r[0] and (r[0][0] == "46" or r[0][0] == "53" and len(r[0]) > 1)}
        ike_frames = {f for f, _, _, kind, _ in _frames(capture) if kind == "ike"}    # not ICMP errors quoting one
        theirs = {f: types for f, types in theirs.items() if f in ike_frames}
        ours = _inner_types(capture, ring)
        assert ours == theirs, scenario
        assert _open_esp(capture, ring) == _tshark_esp(rows), scenario
        compared += len(ours)
    assert compared > 40


def test_lab_ikev1_with_charon_keys():
    """Every encrypted IKEv1 message of the lab's inside captures (Main, Aggressive, Quick Mode, XAUTH,
    Informational, DPD, IKEv1 fragments joined) gives a plausible payload chain with the keys of the daemons'
    logs: with a PSK mismatch each side's key opens its own messages, and pluto's Informational sent before
    phase 1 ended opens with the empty-phase1-iv variant."""
    from tests.test_decrypt import _open_ikev1
    opened = 0
    for scenario in [s for s in _lab_scenarios() if s.startswith("ikev1")]:
        ring = _lab_ring(scenario)
        capture = LAB / f"{scenario}.inside.pcap"
        if ring.counts["ikev1"] and capture.exists():
            result = _open_ikev1(capture, ring)
            assert None not in result.values(), (scenario, result)
            opened += len(result)
    if not opened:
        pytest.skip("no lab keys logs in pcaps/lab")
    assert opened > 100


def test_charon_initial_iv_matches_rfc2409():
    """charon's own `initial IV` dump (keymat_v1.c) equals hash(g^xi | g^xr) computed from the capture."""
    import re
    from ikeflow.decode.ike import decode_isakmp
    log, capture = LAB / "ikev1-main-ok.init.keys.log", LAB / "ikev1-main-ok.inside.pcap"
    if not log.exists():
        pytest.skip("no lab keys logs in pcaps/lab")
    text = log.read_text()
    at = text.index("initial IV => 16 bytes")
    row = re.search(r"> +0: ((?:[0-9A-F]{2} ){16})", text[at:])
    ke = [p.body for _, _, _, kind, m in _frames(capture) if kind == "ike" and not m[19] & 1
          for p in decode_isakmp(m).payloads if p.type == 4]
    assert d.v1_phase1_iv("sha256", ke[0], ke[1], 16) == bytes.fromhex(row[1].replace(" ", ""))


def test_directory_skips_files_without_keys_but_not_broken_tables(tmp_path):
    _write(tmp_path, "charon.log", "2026-11-29 14:47:34.832 13[IKE] <lab|1> initiating IKE_SA lab[1] to 203.0.113.2\n")
    (tmp_path / "capture.pcap").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16))
    _write(tmp_path, "ikev1_decryption_table", "fafaeb49382a763c,735be0cb62f82675c4f7bf8fbab9b56834ba76d6ab4fa240\n")
    assert load_keys([str(tmp_path)]).counts == {"ikev1": 1, "ikev2": 0, "esp": 0}
    _write(tmp_path, "esp_sa", '"IPv4","*","*","1","AES-CBC [RFC3602]","0x00","NULL",""\n')
    with pytest.raises(KeySourceError, match="esp_sa:1: the aes-cbc key is 1 octets"):
        load_keys([str(tmp_path)])


def test_charon_log_without_sa_names(tmp_path):
    """A filelog without `ike_name = yes` has no `<lab|1>` prefixes: the same keys come out."""
    import re
    logs = [log for scenario in ("ikev2-rekey-delete", "ikev1-main-psk-mismatch", "ikev2-certs-ikefrag-ok")
            for log in LAB.glob(f"{scenario}.*.keys.log")]
    if not logs:
        pytest.skip("no lab keys logs in pcaps/lab")
    for log in logs:
        bare = re.sub(r"(\d+\[\w+\]) <[^>]*> ", r"\1 ", log.read_text())
        assert set(load_keys([_write(tmp_path, log.name, bare)]).all()) == set(load_keys([str(log)]).all())


def test_cli_export_with_ike_algorithms(tmp_path):
    """Keys from a charon log are exported once the negotiated algorithms are given; tshark then decrypts
    the lab capture's IKE_AUTH with them."""
    log = LAB / "ikev2-ok.init.keys.log"
    if not log.exists():
        pytest.skip("no lab keys logs in pcaps/lab")
    runner = CliRunner()
    plain = runner.invoke(keys_command, ["export", "--from", str(log), "--out", str(tmp_path / "a")])
    assert plain.exit_code == 0 and "give them with --ike-algorithms" in plain.output
    out = runner.invoke(keys_command, ["export", "--from", str(log), "--out", str(tmp_path / "b"),
                                       "--ike-algorithms", "aes-cbc/hmac-sha2-256-128"])
    assert out.exit_code == 0 and "ikev2_decryption_table: 1 lines" in out.output
    rows = _tshark(LAB / "ikev2-ok.inside.pcap", tmp_path / "b", ["isakmp.typepayload"])
    assert sum(1 for r in rows.values() if r[0][:1] == ["46"] and len(r[0]) > 1) == 2      # IKE_AUTH both ways
    bad = runner.invoke(keys_command, ["export", "--from", str(log), "--out", str(tmp_path / "c"),
                                       "--ike-algorithms", "aes/sha"])
    assert bad.exit_code == 2 and "not ENCR/INTEG" in bad.output


def test_keyless_source_among_several_is_a_note(tmp_path):
    """pluto 4.10 prints no IKEv1 phase-1 keys and IKEv2 keys only once an SA is up, so a libreswan responder's
    log of the lab holds none.  Given with other sources it is a warning and the read goes on; given alone it
    stays an error (exit 2 on the command line); a directory names it but not its captures or configurations."""
    from ikeflow.cli import main
    charon, pluto = (str(LAB / f"ikev1-libreswan-psk-mismatch.{side}.keys.log") for side in ("init", "resp"))
    if not Path(pluto).is_file():
        pytest.skip("no lab keys logs in pcaps/lab")
    said: list[str] = []
    ring = load_keys([charon, pluto], warn=said.append)
    assert ring.counts["ikev1"] == 1 and ring.notes == said and len(said) == 1
    assert said[0].startswith(pluto) and "a pluto log without usable IKE keys" in said[0]
    with pytest.raises(KeySourceError, match="a pluto log without usable IKE keys"):
        load_keys([pluto])
    with pytest.raises(KeySourceError, match="no usable keys in any source given: .*pluto log.*no key dumps"):
        load_keys([pluto, str(LAB / "ikev1-libreswan-psk-mismatch.init.log")], warn=said.append)
    folder = tmp_path / "keys"
    folder.mkdir()
    for src in (charon, pluto, str(LAB / "ikev1-libreswan-psk-mismatch.outside.pcap"),
                str(LAB / "ikev1-libreswan-psk-mismatch.resp.ipsec.conf")):
        (folder / Path(src).name).write_bytes(Path(src).read_bytes())
    said.clear()
    assert load_keys([str(folder)], warn=said.append).counts["ikev1"] == 1
    assert len(said) == 1 and "pluto log without usable IKE keys" in said[0]
    capture = str(LAB / "ikev1-libreswan-psk-mismatch.outside.pcap")
    both = CliRunner().invoke(main, ["read", "--json", "--keys", charon, "--keys", pluto, capture])
    assert both.exit_code in (0, 1) and "Traceback" not in both.output
    assert "ikeflow: warning: " in both.stderr and "pluto log without usable IKE keys" in both.stderr
    assert '"decrypted":true' in both.stdout.replace(" ", "")
    alone = CliRunner().invoke(main, ["read", "--keys", pluto, capture])
    assert alone.exit_code == 2 and "pluto log without usable IKE keys" in alone.stderr


def test_save_keys_3des_spelling_is_read_and_exported_as_wiresharks(tmp_path):
    """strongSwan 5.9's save-keys plugin names 3DES "TripleDes-CBC" in esp_sa (tests/keys_data/save-keys/README.md);
    it is read, and export writes Wireshark's "TripleDES-CBC" so that tshark loads the table."""
    table = tmp_path / "esp_sa"
    table.write_text('"IPv4","192.0.2.2","203.0.113.2","0x0badcafe","TripleDes-CBC [RFC2451]",'
                     '"0x' + "11" * 24 + '","HMAC-SHA-1-96 [RFC2404]","0x' + "22" * 20 + '"\n')
    ring = load_keys([str(table)])
    key = ring.esp(0x0BADCAFE, "192.0.2.2", "203.0.113.2")
    assert key is not None and key.encr == "3des"
    export(ring, tmp_path / "out")
    assert '"TripleDES-CBC [RFC2451]"' in (tmp_path / "out" / "esp_sa").read_text()


def test_charon_logs_say_which_auth_each_end_computed():
    """charon at ike level 4 dumps every AUTH it computes with a PSK (its own, and the one it expects from the
    peer): on the lab's ikev2-ok each end's own AUTH is the one on the wire (decrypted from the capture), and the
    responder also computed the initiator's; ikev2-peerid-mismatch's responder computed none (no peer config)."""
    from ikeflow.pipeline import Options, read_captures

    logs = [str(LAB / f"ikev2-ok.{side}.keys.log") for side in ("init", "resp")]
    ring = load_keys(logs)
    result = read_captures([str(LAB / "ikev2-ok.outside.pcap")], Options(keys=ring))
    sa = next(iter(result.model.sas.values()))
    wire = {m.sender: m.msg.inner_payload("AUTH").info["data"] for m in sa.messages
            if m.msg.exchange == "IKE_AUTH" and m.msg.inner_payload("AUTH") is not None}
    roles = {log.role: log.values for log in ring.auth_logs(sa.ispi, sa.rspi)}
    assert set(wire) == {"I", "R"} and wire["I"] in roles["initiator"]
    assert set(roles["responder"]) == {wire["I"], wire["R"]}
    refused = load_keys([str(LAB / "ikev2-peerid-mismatch.resp.keys.log")])
    key = refused.all()[0]
    assert [(log.role, log.values) for log in refused.auth_logs(key.spi_i, key.spi_r)] == [("responder", ())]


def test_a_markdown_table_is_not_a_pluto_log(tmp_path):
    """Rows of a Markdown table start with "| " as pluto's debug lines do: pcaps/lab/SCENARIOS.md (which quotes
    pluto's log lines) is no key source, while the lab's pluto keys logs are still read as pluto logs."""
    scenarios = tmp_path / "SCENARIOS.md"
    scenarios.write_text((LAB / "SCENARIOS.md").read_text())
    with pytest.raises(KeySourceError) as e:
        read_source(scenarios)
    assert e.value.unknown
    with pytest.raises(KeySourceError, match="a pluto log without usable IKE keys"):
        read_source(LAB / "ikev2-libreswan-psk-mismatch.resp.keys.log")
