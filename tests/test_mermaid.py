"""The Mermaid ladder (render/mermaid.py): every block parses under the rules of Mermaid's sequence
grammar (a small checker written from mermaid-js/mermaid sequenceDiagram.jison and encodeEntities in
mermaidAPI.ts), arrows and times agree with tshark, and hostile capture text survives intact."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

import pytest

from conftest import PCAPS, need_public, need_tshark
from ikeflow.pipeline import read_captures
from ikeflow.render.mermaid import MAX_ARROWS, read_mermaid

LAB = PCAPS / "lab"
ACTOR = r"[^+\->:\n,;]+?"  # sequenceDiagram.jison: ACTOR
TEXT = r"[^#\n;]+"  # the TXT token: a message or note ends at # ; or newline
ARROWS = ("->>", "-->>", "->", "-->", "-x", "--x", "-)", "--)")
KEYWORDS = {"end", "note", "over", "participant", "actor", "loop", "alt", "else", "opt", "par", "and", "rect",
            "critical", "break", "box", "create", "destroy", "activate", "deactivate", "autonumber", "title"}
NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode(s: str) -> str:
    return re.sub(r"\x00(\w+)\x01", lambda m: chr(int(m[1])) if m[1].isdigit() else NAMED[m[1]], s)


def check(block: str) -> list[tuple]:
    """The statements of one sequenceDiagram, text decoded; AssertionError where Mermaid would not parse
    the line as meant."""
    lines = block.split("\n")
    assert lines[0] == "sequenceDiagram", lines[0]
    declared, out = set(), []
    for line in filter(None, (raw.strip() for raw in lines[1:])):
        # encodeEntities: a style/classDef line loses its last ';', then codes become placeholders
        assert not re.search(r"style.*:\S*#.*;|classDef.*:\S*#.*;", line), line
        line = re.sub(r"#(\w+);", lambda m: f"\x00{m[1]}\x01", line)
        assert "%%" not in line and "#" not in line and ";" not in line, line  # comment / end of statement
        if m := re.fullmatch(rf"title\s({TEXT})", line):
            out.append(("title", _decode(m[1])))
        elif m := re.fullmatch(rf"participant ({ACTOR}) as ({TEXT})", line):
            assert m[1].lower() not in KEYWORDS, line
            declared.add(m[1])
            out.append(("participant", m[1], _decode(m[2])))
        elif m := re.fullmatch(rf"Note (over|right of|left of) ({ACTOR})(?:,({ACTOR}))?:({TEXT})", line, re.I):
            assert {m[2], m[3] or m[2]} <= declared, line
            out.append(("note", _decode(m[4]).strip()))
        elif m := re.fullmatch(rf"({ACTOR})(-->>|->>|-->|->|--x|-x|--\)|-\))({ACTOR}):({TEXT})", line):
            assert {m[1], m[3]} <= declared and m[2] in ARROWS, line
            out.append(("arrow", m[1], m[2], m[3], _decode(m[4]).strip()))
        else:
            raise AssertionError(f"not a statement Mermaid reads as meant: {line!r}")
    return out


def blocks(markdown: str) -> list[str]:
    found = re.findall(r"```mermaid\n(.*?)```", markdown, re.S)
    assert markdown.count("```") == 2 * len(found), "a fence that is not a mermaid block"
    return found


@pytest.mark.parametrize("name", ["ikev1-main-psk-mismatch.outside", "ikev2-nat-ok.outside",
                                  "ikev2-invalid-ke.outside", "ikev2-responder-down.outside"])
def test_lab_ladders_agree_with_tshark(name):
    """One arrow per IKE message of the SA, times since its first message, as tshark reads the capture."""
    tshark = need_tshark()
    path = LAB / f"{name}.pcap"
    result = read_captures([str(path)])
    fields = subprocess.run([tshark, "-n", "-r", str(path), "-Y", "isakmp and not icmp", "-T", "fields",
                             "-e", "isakmp.ispi", "-e", "frame.time_epoch"],
                            capture_output=True, text=True, check=True).stdout
    wire = defaultdict(list)
    for row in fields.splitlines():
        ispi, t = row.split("\t")
        wire[ispi.replace("0x", "")].append(float(t))
    text = read_mermaid(result)
    diagrams = blocks(text)
    assert len(diagrams) == len(wire) == sum(len(p.sas) for p in result.model.pairs.values())
    for block in diagrams:
        st = check(block)
        ispi = re.search(r"SA ([0-9a-f]{16})", st[0][1])[1]
        times = wire[ispi]
        arrows = [s for s in st if s[0] == "arrow"]
        assert [float(a[4].rsplit("+", 1)[1].split()[0]) for a in arrows] == \
               pytest.approx([t - times[0] for t in times], abs=0.0011)
        parts = {s[1]: s[2] for s in st if s[0] == "participant"}
        assert parts.keys() == {"I", "R"} and parts["I"].startswith("initiator ") and parts["R"].startswith("responder ")


def test_retransmissions_and_stall_are_noted():
    result = read_captures([str(LAB / "ikev1-main-psk-mismatch.outside.pcap")])
    sa = next(iter(result.model.sas.values()))
    st = check(blocks(read_mermaid(result))[0])
    notes = [s[1] for s in st if s[0] == "note"]
    assert notes.count("retransmission") == sum(m.retransmission for m in sa.messages) > 0
    stall = [n for n in notes if n.startswith("stall at MM5")]
    assert len(stall) == 1 and "psk-mismatch" in stall[0]
    assert [s[2] for s in st if s[0] == "arrow" and s[4].startswith("MM5")].count("-)") == 3  # re-sent MM5


def test_hostile_text_stays_text():
    """Capture-borne text with Mermaid's and Markdown's special characters parses and decodes back."""
    result = read_captures([str(LAB / "ikev2-invalid-ke.outside.pcap")])
    sa = next(iter(result.model.sas.values()))
    hostile = "IKE;x#1 %%{init} <b>y</b> ``` end style:#a; classDef c:#d; -->> R: \x07"
    sa.messages[0].label = hostile
    key = next(iter(result.verdicts))
    result.verdicts[key] = "<script>alert(1)</script>\n```"
    text = read_mermaid(result)
    assert "<script>" not in text and "\n```\n" not in text.split("```mermaid")[0]
    first = next(s for s in check(blocks(text)[0]) if s[0] == "arrow")
    assert first[4].startswith(hostile.replace("\x07", "\\x07"))


def test_public_many_sas():
    """The nDPI capture with 70 IKEv2 SAs: one block each, all parse, arrows = messages."""
    path = need_public() / "nDPI/tests/cfgs/default/pcap/ipsec_isakmp_esp.pcap"
    result = read_captures([str(path)])
    diagrams = blocks(read_mermaid(result))
    sas = [sa for p in result.model.pairs.values() for sa in p.sas]
    assert len(diagrams) == len(sas) > 60
    for sa, block in zip(sas, diagrams):
        arrows = [s for s in check(block) if s[0] == "arrow"]
        assert len(arrows) == min(len(sa.messages), MAX_ARROWS)
