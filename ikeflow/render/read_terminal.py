"""Terminal report with rich: verdict per peer pair, ladder per IKE SA, findings."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ikeflow.model.analysis import Analyzer
from ikeflow.model.attribution import Owners
from ikeflow.model.esp import EspTable
from ikeflow.sources.capture import FileInfo, split_ref
from ikeflow.diagnose.finding import ERROR, INFO, WARNING, Finding
from ikeflow.diagnose.findings import first_errors
from ikeflow.model.ikesa import IkeSa, Seen
from ikeflow.decode.proposals import summarize_sa
from ikeflow.render.common import ip, nat_text

STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}
LADDER_WIDTH = 30
MAX_LADDER = 60  # messages drawn per SA before eliding the middle


def render(console: Console, an: Analyzer, files: list[FileInfo], findings: list[Finding], verdicts: dict,
           title: str | None = None) -> None:
    several = len(files) > 1

    def frame(ref: int) -> str:
        f, n = split_ref(ref)
        return f"{f + 1}:{n}" if several else str(n)

    s = an.stats
    names = ", ".join(f.name for f in files)
    console.print(Text(title or f"ikeflow read {names}", style="bold"))
    console.print(f"{s.packets} packets: {s.ike} IKE, {s.esp} ESP, {f'{s.ah} AH, ' if an.ah.flows else ''}"
                  f"{s.keepalives} NAT-T keepalives, {s.icmp} ICMP errors, "
                  f"{s.fragments} IP fragments, {s.malformed} malformed, {s.skipped} other (skipped)")
    if an.skipped and not an.pairs:
        console.print("Skipped: " + "; ".join(f"{why} ×{n}" for why, n in an.skipped.most_common()))
    if not an.pairs:
        console.print("No IKE or ESP traffic in this capture.")
    errors, owners = first_errors(an, findings), an.owners
    for key, pair in an.pairs.items():
        verdict = verdicts.get(key, "")
        body = [Text(verdict, style="bold red" if key in errors else "bold green"),
                _pair_table(pair, an.esp.directions(), owners)]
        for sa in pair.sas:
            body.append(_sa_block(an, sa, frame))
        console.print(Panel(Group(*body), title=Text(f"{ip(pair.a)} ⇄ {ip(pair.b)}", style="bold"), title_align="left"))
    if an.esp.flows:
        console.print(_esp_table(an.esp, frame, owners))
    if an.ah.flows:
        console.print(_esp_table(an.ah, frame, owners, "AH flows"))
    if findings:
        console.print(Text("Findings", style="bold"))
        for f in findings:
            where = f" [{f.at}]" if f.at else ""
            frames = f" (frames {', '.join(frame(r) for r in f.frames[:8])}{'…' if len(f.frames) > 8 else ''})" if f.frames else ""
            causes = f" Causes, most likely first: {', '.join(f.causes)}." if f.causes else ""
            console.print(Text.assemble((f"{f.severity.upper():8}", STYLE[f.severity]), f"{f.code}{where}: {f.summary}{frames}.{causes}"))
            if f.hint and f.severity != INFO:
                console.print(Text(f"         → {f.hint}", style="dim"))
    else:
        console.print(Text("No findings.", style="green"))


def _pair_table(pair, directions: dict, owners: Owners) -> Table:
    """One row per IKE SA with the ESP attributed to it, then the pair total when that is not one SA's."""
    t = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("IKE SA (SPIi)", "version", "mode", "state", "NAT", "ESP"):
        t.add_column(col)
    flows = [*directions.get((pair.a, pair.b), []), *(directions.get((pair.b, pair.a), []) if pair.a != pair.b else [])]

    def esp(of) -> str:
        out = sum(f.packets for f in of if f.src == pair.a)
        return f"{ip(pair.a)}→ {out}, ← {sum(f.packets for f in of) - out}" if of else "—"

    for sa in pair.sas:
        nat = nat_text(sa)
        state = sa.state() + (f" (closed: {sa.closed[0]}, frame {split_ref(sa.closed[1])[1]})" if sa.closed else "")
        t.add_row(sa.ispi.hex(), f"IKEv{sa.version}", sa.mode(), state, nat, esp(owners.esp_of(sa)))
    loose = [f for f in flows if owners.sa[f] is None]
    if not pair.sas:
        t.add_row("—", "", "", "no IKE seen", "", esp(flows))
    elif loose or len({id(owners.sa[f]) for f in flows}) > 1:
        why = sorted({owners.why[f] for f in loose})
        note = f"{len(loose)} ESP SA{'s' if len(loose) > 1 else ''} not attributed ({', '.join(why)})" if loose else ""
        t.add_row("pair total", "", "", note, "", esp(flows))
    notes = []
    if pair.keepalives:
        notes.append("NAT-T keepalives: " + ", ".join(f"{ip(a)} sent {n}" for a, n in pair.keepalives.items()))
    churn = owners.churn(pair)
    if any(churn.values()):
        names = {"rekeys": ("rekey", "rekeys"), "collisions": ("collision", "collisions"),
                 "short_lived": ("short-lived IKE SA", "short-lived IKE SAs")}
        notes.append("churn: " + ", ".join(f"{n} {names[what][n != 1]}" for what, n in churn.items() if n))
    t.caption = "; ".join(notes) or None
    return t


def _sa_block(an: Analyzer, sa: IkeSa, frame) -> Group:
    i, r = sa.initiator, sa.responder
    head = Text(f"\nIKEv{sa.version} SA {sa.ispi.hex()}/{sa.rspi.hex()}  initiator {ip(i[0])}:{i[1]}  responder {ip(r[0])}:{r[1]}",
                style="bold")
    if sa.roles_guessed:
        head.append("  (roles guessed: the first message was not seen)", style="dim")
    ladder = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    ladder.add_column("time", justify="right")
    ladder.add_column("frame", justify="right")
    ladder.add_column("initiator ⇄ responder")
    ladder.add_column("payloads / notes")
    t0 = sa.messages[0].time if sa.messages else 0.0
    msgs = sa.messages
    natted = "differs" if sa.rewritten() or sa.opening_missing() else "NATed"
    shown = msgs if len(msgs) <= MAX_LADDER else msgs[: MAX_LADDER // 2] + [None] + msgs[-MAX_LADDER // 2 :]
    for m in shown:
        if m is None:
            ladder.add_row("", "", f"… {len(msgs) - MAX_LADDER} more messages …", "")
            continue
        ladder.add_row(f"{m.time - t0:.3f}", frame(m.ref), _arrow(m), _notes(m, natted))
    parts = [head, ladder]
    proposal = _proposal(sa)
    if proposal is not None:
        parts.append(proposal)
    return Group(*parts)


def _arrow(m: Seen) -> Text:
    label = m.label + (" (again)" if m.retransmission else "") + (f" retry:{m.retry}" if m.retry else "")
    port = f" :{m.dport}" if m.natt or m.dport not in (500,) else ""
    label += port
    fill = max(2, LADDER_WIDTH - len(label) - 4)
    style = "yellow" if m.retransmission else "red" if m.msg.malformed else ""
    if m.sender == "I":
        return Text(f"──{label}{'─' * fill}▶", style=style)
    return Text(f"◀{'─' * fill}{label}──", style=style)


def _notes(m: Seen, natted: str) -> str:
    """The payloads, IP fragments, NAT-D result and size of one message; `natted` is what a NAT-D hash that
    does not match is called ("NATed", or "differs" where the SA's NAT reading is rewritten/unknown)."""
    msg = m.msg
    if msg.malformed:
        return f"MALFORMED: {msg.malformed}"
    names: list[str] = []
    for p in msg.payloads:
        if p.name == "N":
            continue
        if p.name == "SK":  # the first inner payload's type is in clear (RFC 7296 3.14)
            first = msg.encrypted_first
            names.append(f"encrypted {p.info.get('encrypted_length', '')}B "
                         + ("(empty)" if first == "NONE" else f"({first} first)"))
        elif p.name == "ENC":
            names.append(f"encrypted {p.info.get('encrypted_length', '')}B")
        elif p.name == "SKF":
            names.append(f"SKF {p.info.get('fragment')}/{p.info.get('total')}")
        elif p.name in ("VID", "V"):
            names.append(f"VID({p.info.get('vendor') or 'unknown'})")
        elif p.name == "FRAG":
            names.append(f"FRAG {p.info.get('number')}{' last' if p.info.get('last') else ''}")
        else:
            names.append(p.name)
    names += [f"N({n})" for _, n in msg.notifies]
    text = " ".join(names)
    if m.fragments:
        text += f"  [{len(m.fragments)} IP fragments]"
    if m.natd:
        flags = []
        if m.natd.get("sender_translated"):
            flags.append(f"sender {natted}")
        if m.natd.get("receiver_translated"):
            flags.append(f"receiver {natted}")
        text += f"  [NAT-D: {', '.join(flags) or 'no NAT'}]"
    return text + f"  {m.size}B"


def _proposal(sa: IkeSa) -> Table | None:
    chosen = summarize_sa(sa.chosen) if sa.chosen else []
    offered = summarize_sa(sa.offered) if sa.offered else []
    rows = chosen or offered
    if not rows:
        return None
    t = Table(title=("chosen proposal" if chosen else f"offered proposals ({len(offered)}), no answer seen"),
              title_justify="left", box=None, pad_edge=False)
    if sa.version == 1:
        for col in ("Encryption", "Hash", "DH group", "Auth", "Lifetime", "ike=", "swanctl proposals="):
            t.add_column(col)
        for p in rows[:6]:
            life = f"{p['lifetime'] // 60} min" if p.get("lifetime") else ""
            group = f"{p.get('group')} ({p.get('group_name')})" if p.get("group") is not None else ""
            t.add_row(p.get("encryption") or "", p.get("hash") or "", group, p.get("auth") or "", life,
                      p.get("ike") or "", p.get("swanctl") or "")
    else:
        for col in ("Encryption", "Integrity", "PRF", "DH groups", "ike=", "swanctl proposals="):
            t.add_column(col)
        for p in rows[:6]:
            t.add_row(", ".join(p["encryption"]), ", ".join(p["integrity"]), ", ".join(p["prf"]),
                      ", ".join(p["groups"]), p.get("ike") or "", p.get("swanctl") or "")
    return t


def _esp_table(table: EspTable, frame, owners: Owners, title: str = "ESP flows") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("SPI", "from → to", "encap", "packets", "bytes", "seq", "lost", "dup", "time", "IKE SA"):
        t.add_column(col)
    for f in sorted(table.flows.values(), key=lambda f: f.first_time):
        encap = f"UDP {f.sport}→{f.dport}" if f.encap == "udp" else f.encap.upper()
        t.add_row(f"{f.spi:08x}", f"{f.src_ip} → {f.dst_ip}", encap, str(f.packets), str(f.bytes),
                  f"{f.seq_min}–{f.seq_max}", str(f.lost) if f.lost else "", str(f.duplicates) if f.duplicates else "",
                  f"{f.last_time - f.first_time:.1f} s",
                  owners.sa[f].ispi.hex() if owners.sa[f] else f"pair total ({owners.why[f]})")
    return t
