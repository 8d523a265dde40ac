"""`ikeflow check` on a terminal: each end (dialect, daemon and how it was chosen, warnings), then per pair of
conns the findings and the verdict, and with `--table` the Configuration Table side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from ikeflow.diagnose.finding import ERROR, INFO
from ikeflow.render.layout import grid, wrap
from ikeflow.render.read_terminal import FROM_CONSOLE, finding_lines
from ikeflow.sources.capture import split_ref

if TYPE_CHECKING:
    from ikeflow.check.command import CheckResult


def render(console: Console, res: CheckResult, table: bool = False, width: int | None = FROM_CONSOLE) -> None:
    """Print the check; `width` as for read_terminal.render (FROM_CONSOLE: the console's width on a terminal,
    no limit elsewhere)."""
    if width == FROM_CONSOLE:
        width = console.width if console.is_terminal else None

    frame = _frames(len(res.captures))
    out: list[Text] = []
    for cfg, conns in zip(res.ends, res.conns):
        daemon = f"{conns[0].daemon} ({conns[0].daemon_how})" if conns else ""
        out += wrap(Text.assemble((cfg.source, "bold"), f": {cfg.dialect} dialect, {daemon}; "
                                  f"{len(conns)} conn{'s' if len(conns) != 1 else ''} "
                                  f"({', '.join(c.name for c in conns)}); read {', '.join(cfg.files)}"), width, 2)
        for w in cfg.warnings + [w for c in conns for w in c.warnings]:
            out += wrap(Text(f"  warning: {w}", style="yellow"), width, 4)
    for p in res.pairs:
        out.append(Text(""))
        out += wrap(Text.assemble(("conn ", "bold"), (f"{p.init.name}", "bold"), f" ({p.init.config.source}) "
                                  "initiates to ", (f"{p.resp.name}", "bold"), f" ({p.resp.config.source}), "
                                  f"IKEv{p.version}; paired: {p.how}"), width, 2)
        shown = [f for f in p.findings if f.severity != INFO or f.code in ("psk-match", "subnet-narrowed")]
        out += finding_lines(shown, str, width)
        notes = [f for f in p.findings if f.severity == INFO and f not in shown]
        for f in notes:
            out += wrap(Text(f"  note: {f.summary} ({f.hint.removeprefix('from ')})", style="dim"), width, 4)
        errors = [f for f in p.findings if f.severity == ERROR]
        verdict = (Text(f"the configurations do not agree: {errors[0].code} at {errors[0].at}"
                        + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), style="bold red")
                   if errors else Text("the configurations agree", style="bold green"))
        out += wrap(Text("  verdict: ") + verdict, width, 4)
        if table:
            rows = [[Text(("* " if d else "  ") + name, style="bold" if d else ""), a, b] for name, a, b, d in p.table()]
            out.append(Text(""))
            out += grid(["  parameter", f"initiator: {p.init.name}", f"responder: {p.resp.name}"], rows, width, indent=2)
            out += wrap(Text("  * differs", style="dim"), width)
    if res.captures:
        out.append(Text(""))
        out += wrap(Text.assemble(("capture ", "bold"), ", ".join(res.captures),
                                  " (decrypted with --keys)" if res.decrypted else "",
                                  f": {len(res.notes)} finding{'s' if len(res.notes) != 1 else ''} beside the "
                                  "configurations"), width, 2)
    out += note_lines(res, width, frame)
    for u in res.unpaired:
        out += wrap(Text(f"no partner on the other end for conn {u}", style="yellow"), width, 2)
    if len(res.ends) == 1:
        out.append(Text("one configuration: its effective settings only (give the other end's to compare)"))
    for line in out:
        console.print(line, overflow="ignore", crop=False)


def _frames(files: int):
    """A frame reference as the terminal reports show it: N, or FILE:N when several captures are read."""
    def frame(ref: int) -> str:
        f, n = split_ref(ref)
        return f"{f + 1}:{n}" if files > 1 else str(n)
    return frame


def note_lines(res: CheckResult, width: int | None, frame) -> list[Text]:
    """Each capture finding beside the configurations: what explains it (`file:line`, or the frame on the wire),
    what they rule out and why, the causes re-ranked, and the one cause when they settle it."""
    out: list[Text] = []
    for n in res.notes:
        f = n.finding
        frames = f" (frame {', '.join(frame(r) for r in f.frames[:8])})" if f.frames else ""
        style = "red" if f.severity == ERROR else "yellow" if f.severity != INFO else ""
        out += wrap(Text.assemble((f"{f.severity.upper():8}", style), f"{f.code} at {f.at}: {f.summary}{frames}"),
                    width, 8)
        if n.pair is None:
            out += wrap(Text(" " * 8 + "no conn pair of these configurations uses these peers' addresses", style="dim"),
                        width, 10)
            continue
        for c in n.explained_by:
            by = f"the wire, frame {', '.join(frame(r) for r in c.frames)}" if c.frames else "the configurations"
            out += wrap(Text(" " * 8 + f"explained by {by}: {c.summary} ({c.hint.removeprefix('from ')})"), width, 10)
        for cause, why in n.ruled_out:
            out += wrap(Text(" " * 8 + f"ruled out: {cause} ({why})", style="dim"), width, 10)
        if n.cause:
            out += wrap(Text.assemble(" " * 8, ("cause: ", "bold"), n.cause,
                                      f" (the others: {', '.join(c for c in n.causes if c != n.cause)})"
                                      if len(n.causes) > 1 else ""), width, 10)
        elif n.causes:
            out += wrap(Text(" " * 8 + f"causes, most likely first: {', '.join(n.causes)}"), width, 10)
        elif f.hint and not n.explained_by:
            out += wrap(Text(" " * 8 + f"→ {f.hint}", style="dim"), width, 10)
    return out


def render_beside(console: Console, res: CheckResult, width: int | None) -> None:
    """`read --config`: after the report, the configurations' verdict per pair of conns and the capture's findings
    beside them."""
    out: list[Text] = [Text(""), Text("Configurations", style="bold")]
    for cfg, conns in zip(res.ends, res.conns):
        daemon = f"{conns[0].daemon} ({conns[0].daemon_how})" if conns else ""
        out += wrap(Text(f"{cfg.source}: {cfg.dialect} dialect, {daemon}; read {', '.join(cfg.files)}"), width, 2)
    for p in res.pairs:
        errors = [f for f in p.findings if f.severity == ERROR]
        verdict = (Text(f"do not agree: {errors[0].code} at {errors[0].at}: {errors[0].summary}", style="red")
                   if errors else Text("agree", style="green"))
        out += wrap(Text.assemble(f"conn {p.init.name} ({p.init.config.source}) initiates to {p.resp.name} "
                                  f"({p.resp.config.source}), IKEv{p.version}: the configurations ", verdict), width, 4)
    for u in res.unpaired:
        out += wrap(Text(f"no partner on the other end for conn {u}", style="yellow"), width, 2)
    out += note_lines(res, width, _frames(len(res.captures)))
    if len(res.ends) == 1:
        out.append(Text("one configuration: give the other end's too (--config twice) to compare them", style="yellow"))
    elif not res.notes:
        out.append(Text("no finding of the capture concerns the configurations", style="dim"))
    for line in out:
        console.print(line, overflow="ignore", crop=False)
