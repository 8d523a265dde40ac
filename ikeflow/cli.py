"""Command line: `ikeflow read`, `ikeflow live` and `ikeflow compare`, sharing one options decorator."""

from __future__ import annotations

import functools
import gc
import os
import sys

import click

from ikeflow import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, __version__
from ikeflow.diagnose.finding import ERROR, INFO, WARNING
from ikeflow.limits import DEFAULT, OPTIONS, Limits
from ikeflow.sources.live import BACKENDS

REPORT_URL = "the ikeflow issue tracker"

READ_HELP = """Rebuild the IKE/ESP negotiations in one or more captures.

\b
Capture on the gateway with:
  F='udp port 500 or udp port 4500 or esp or icmp or icmp6
     or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)'
  tcpdump -i eth0 -s 0 -w tun.pcap "$F"
then run:
  ikeflow read tun.pcap
  tcpdump -i eth0 -w - "$F" | ikeflow read -

The filter keeps ICMP errors (a closed port or a filter on the path answers
with one) and non-first IP fragments (they carry no UDP header, so a port
filter alone drops them, and a cut datagram looks like one lost on the path).

Reads pcap and pcapng (also gzip-compressed); several files are read as one
timeline.  For every peer pair it shows a headline first (where it fails and
the likely cause, or that the tunnel is up; a summary table of them when there
are several), each IKE SA as a ladder (MM1..MM6, AM1..AM3, QM1..QM4,
IKE_SA_INIT, IKE_AUTH, ...) with its start time, NAT-T (who is behind NAT,
where the float to 4500 happened), the ESP flows per SPI, and the findings.
Nothing is cut: values wrap to the terminal's width, or to --width N.

\b
Narrow it, or share it:
  ikeflow read -q --peer 203.0.113.7 --severity warning tun.pcap
  ikeflow read tun.pcap --html report.html --mermaid ladder.md

\b
Exit codes: 0 nothing wrong, 1 at least one error finding,
2 usage error, unreadable input or the report cannot be written,
3 internal error.
"""


class _Commands(click.Group):
    """The subcommands that live in modules of their own are imported when they are called or listed:
    `read` does not pay for `check` (tens of milliseconds a run)."""

    ELSEWHERE = {"keys": "ikeflow.keys.command", "explain": "ikeflow.explain", "check": "ikeflow.check.command"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.ELSEWHERE})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.ELSEWHERE and name not in self.commands:
            import importlib

            self.add_command(getattr(importlib.import_module(self.ELSEWHERE[name]), name))
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ikeflow")
def main() -> None:
    """ikeflow: trace IKE/ESP negotiations in packet captures and say where they stall."""


def analysis_options(json_help: str):
    """The options every command shares: --json, the ports, --no-color and the `--max-*` caps of
    `limits.OPTIONS` (passed on as `limits`)."""
    def decorate(command):
        @functools.wraps(command)
        def with_limits(*args, **kw):
            return command(*args, limits=Limits(**{field: kw.pop(field) for field in OPTIONS}), **kw)

        for field, (flag, what) in reversed(OPTIONS.items()):
            with_limits = click.option(
                flag, field, default=getattr(DEFAULT, field), show_default=True, type=click.IntRange(1), metavar="N",
                help=f"Keep at most N {what}; more are counted and reported as an overflow finding.")(with_limits)
        for option in reversed((
                click.option("--json", "as_json", is_flag=True, help=json_help),
                click.option("--ike-port", default=500, show_default=True, type=click.IntRange(1, 65535),
                             help="UDP port of IKE."),
                click.option("--natt-port", default=4500, show_default=True, type=click.IntRange(1, 65535),
                             help="UDP port of NAT-T (IKE and ESP in UDP)."),
                click.option("--no-color", is_flag=True, help="No colours, even on a terminal."))):
            with_limits = option(with_limits)
        return with_limits
    return decorate


def report_options(command):
    """The options of the reports `read` and `compare` print: narrowing, width and times."""
    for option in reversed((
            click.option("--peer", "peers", multiple=True, metavar="ADDR",
                         help="Only the peer pairs with this address (or in this network, e.g. 203.0.113.0/24) "
                              "at one end; repeat for more.  The counts of the capture stay whole."),
            click.option("--severity", type=click.Choice((ERROR, WARNING, INFO)), default=None,
                         help="Only findings of this severity and above (error > warning > info)."),
            click.option("-q", "--quiet", is_flag=True,
                         help="Only the headline per peer pair and the findings (no ladders or tables)."),
            click.option("--width", type=click.IntRange(20), default=None, metavar="N",
                         help="Lay out for N columns (default: the terminal's width; without a terminal, "
                              "each line as long as its content).  Values are wrapped, never cut."),
            click.option("--utc", is_flag=True, help="Times in UTC (default: local time, its zone named)."))):
        command = option(command)
    return command


def keys_option(command):
    return click.option(
        "--keys", "keys", multiple=True, type=click.Path(exists=False), metavar="PATH",
        help="Decrypt IKE with the keys in PATH, a file or a directory (Wireshark's IKEv1/IKEv2/ESP key "
             "tables, a strongSwan charon log at ike/chd level 4, a libreswan pluto log with plutodebug=private, "
             "tcpdump -E secrets); repeat for more.")(command)


def _narrowing(peers, severity):
    """The Narrowing of --peer/--severity; a bad address is a usage error."""
    from ikeflow.render.narrow import Narrowing, peer_networks

    try:
        return Narrowing(peer_networks(list(peers)), severity)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _keys(paths):
    """The KeyRing of --keys, or None; an unreadable key source is a usage error."""
    if not paths:
        return None
    from ikeflow.keys import KeySourceError, load_keys

    try:
        return load_keys(list(paths))
    except KeySourceError as e:
        raise click.UsageError(f"--keys: {e}") from None


def _console(no_color: bool):
    """stdout as rich prints to it: styles only on a terminal, none at all with --no-color."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, color_system=None if no_color else "auto")


def _one_stdin(files) -> None:
    if list(files).count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")


@main.command(help=READ_HELP)
@click.argument("files", nargs=-1, required=True, metavar="FILE... (or - for stdin)")
@click.option("--filter", "expr", default=None, metavar="EXPR",
              help="Read only the frames this tcpdump filter expression keeps, e.g. 'host 203.0.113.7' "
                   "(the others are counted as skipped: not kept by --filter).")
@report_options
@click.option("--html", "html", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the report as one self-contained HTML page (ladders drawn as pictures).")
@click.option("--mermaid", "mermaid", default=None, type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help="Also write each IKE SA's ladder as a Mermaid sequence diagram in Markdown, for tickets and "
                   "wikis; '-' prints it instead of the report.")
@click.option("--config", "configs", multiple=True, type=click.Path(), metavar="CONFIG",
              help="Also read this end's configuration (a file or folder as for `ikeflow check`; once per end) and "
                   "point each finding at the configuration lines that explain it.")
@keys_option
@analysis_options("Print one JSON document (see README \"JSON output\") instead of the report.")
@click.version_option(__version__, prog_name="ikeflow")
def read(files, expr, **kw) -> None:
    _one_stdin(files)
    if kw["mermaid"] == "-" and kw["as_json"]:
        raise click.UsageError("--mermaid - and --json both print to standard output: give --mermaid a file")
    from ikeflow.sources.capture import cancel_prestart, prestart

    if len(files) == 1 and expr is None and not kw["keys"]:  # the ESP fast path: maybe two cores
        from ikeflow.model.esp import EspTable

        prestart(files[0], EspTable.of(kw["natt_port"], kw["limits"]))  # started while the analysis is imported
    try:
        kw["check"] = _configs(kw.pop("configs"))
        kw["narrowing"] = _narrowing(kw.pop("peers"), kw.pop("severity"))
        kw["keys"] = _keys(kw["keys"])
        kw["keep"] = _frame_filter(expr)
        run_command(_read, list(files), kw)
    finally:
        cancel_prestart()  # a usage error stopped it before the read took the helper (or nothing to end)


def _configs(paths):
    """The configurations of --config, read and compared (a CheckResult), or None; unreadable ones are a usage
    error."""
    if not paths:
        return None
    if len(paths) > 2:
        raise click.UsageError("--config: give one or two configurations (one per end)")
    from ikeflow.check.command import run_check
    from ikeflow.check.config import ConfigError

    try:
        return run_check(list(paths), [None], None)
    except ConfigError as e:
        raise click.UsageError(f"--config: {e}") from None


def _frame_filter(expr):
    """The FrameFilter of --filter, or None; a bad expression is a usage error."""
    if expr is None:
        return None
    from ikeflow.sources.bpf import FilterError, FrameFilter

    try:
        return FrameFilter(expr)
    except FilterError as e:
        raise click.UsageError(str(e)) from None


LIVE_HELP = """Watch IKE/ESP negotiations on INTERFACE as they happen.

\b
  sudo ikeflow live eth0
  sudo ikeflow live any --filter 'host 203.0.113.7' --write tun.pcap

Captures UDP 500, UDP 4500 and ESP (IP protocol 50), plus IP fragments and
ICMP errors, with a kernel BPF filter; --filter adds a pcap-filter expression
(ANDed).  On a terminal it shows one row per peer pair (state, last message,
retransmissions, NAT, ESP each way) and the events as they come, including
"waiting for MM6 for 12 s (3 retransmissions)" while a stall unfolds.
Without a terminal, or with --json, it prints one JSON object per line per
event: start, message, finding, esp (at most once a second per flow), and at
the end capture (packets, kernel drops) and report (the `ikeflow read --json`
document).

\b
Ctrl-C, --count or --duration end the capture with the same final report
and exit codes as `ikeflow read`: 0 nothing wrong, 1 at least one error
finding, 2 usage error or the interface cannot be captured on, 3 internal error.
Needs root or CAP_NET_RAW.  On Linux it reads the kernel's packet ring;
elsewhere (macOS, BSD), or with --backend scapy, libpcap through Scapy.
"""


@main.command(help=LIVE_HELP)
@click.argument("interface")
@click.option("--filter", "extra", default=None, metavar="EXPR",
              help="Also require this pcap-filter expression, e.g. 'host 203.0.113.7'.")
@click.option("--write", "write", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Save the captured packets as pcap while analysing.")
@click.option("--count", default=None, type=click.IntRange(1), metavar="N", help="Stop after N packets.")
@click.option("--duration", default=None, type=click.FloatRange(0, min_open=True), metavar="S",
              help="Stop after S seconds.")
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default=None,
              help="How to capture: ring (Linux packet ring, the fast one) or scapy (libpcap, portable). "
                   "Default: ring where Linux has it.")
@keys_option
@analysis_options("JSON lines (the default when stdout is not a terminal).")
@click.version_option(__version__, prog_name="ikeflow")
def live(interface, extra, write, count, duration, backend, keys, as_json, ike_port, natt_port, no_color,
         limits) -> None:
    from ikeflow import live as body
    from ikeflow.sources.live import LiveError

    run_command(body.run, interface, extra, write, count, duration, as_json, ike_port, natt_port, no_color, backend,
                limits, _keys(keys), usage_errors=(LiveError,))


COMPARE_HELP = """Compare captures taken at two (or more) points of the same path.

\b
Capture at both ends (or before and after a NAT router / firewall):
  F='udp port 500 or udp port 4500 or esp or icmp or icmp6
     or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)'
  tcpdump -i eth0 -s 0 -w local.pcap "$F"
then run:
  ikeflow compare local.pcap remote.pcap
  ikeflow compare a.pcap b.pcap c.pcap     (points in order along the path)

Matches every IKE message (by SPIs, message ID and content, across NAT) and
every ESP SPI seen at one point with the other, estimates the clock offset
between the captures, and reports per peer pair and direction what was sent,
what arrived, what was lost (with the frames on both sides), duplicated or
reordered, the transit delay, the NAT mappings between the points, IP
fragments that arrived incomplete and ICMP errors seen on one side only.
Findings name the segment where packets are lost and the likely cause.

\b
Exit codes: 0 nothing lost, 1 at least one error finding,
2 usage error or unreadable input, 3 internal error.
"""


@main.command(help=COMPARE_HELP)
@click.argument("files", nargs=-1, required=True, metavar="FILE FILE [FILE...]")
@report_options
@click.option("--html", "html", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the comparison as one self-contained HTML page, the points side by side.")
@keys_option
@analysis_options("Print one JSON document (kind compare, see README \"JSON output\").")
@click.version_option(__version__, prog_name="ikeflow")
def compare(files, **kw) -> None:
    if len(files) < 2:
        raise click.UsageError("compare needs at least two captures, in order along the path")
    _one_stdin(files)
    kw["narrowing"] = _narrowing(kw.pop("peers"), kw.pop("severity"))
    kw["keys"] = _keys(kw["keys"])
    run_command(_compare, list(files), kw)


def _html(write, report, kw: dict) -> bool:
    """--html: write the page with `write` (render.html); False, with a one-line message, when it cannot be."""
    try:
        write(report, kw["html"], utc=kw["utc"])
    except OSError as e:
        click.echo(f"ikeflow: cannot write {kw['html']}: {e.strerror or e}", err=True)
        return False
    return True


def _compare(files: list[str], kw: dict) -> int:
    """Compare the captures, write the report, return the exit code."""
    from ikeflow import EXIT_FINDINGS
    from ikeflow.compare import Comparison
    from ikeflow.sources.capture import CaptureError

    cmp = Comparison(files, kw["ike_port"], kw["natt_port"], kw["limits"], kw["keys"])
    try:
        cmp.run()
    except CaptureError as e:
        click.echo(f"ikeflow: {e}", err=True)
        return EXIT_USAGE
    for p in cmp.points:
        for info in p.infos:
            if info.warning:
                click.echo(f"ikeflow: warning: {info.name}: {info.warning}", err=True)
    cmp = kw["narrowing"].compare(cmp)
    if kw["html"]:
        from ikeflow.render.html import write_compare_html

        if not _html(write_compare_html, cmp, kw):
            return EXIT_USAGE
    if kw["as_json"]:
        import json

        from ikeflow.render.compare_json import build

        json.dump(build(cmp), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        from ikeflow.render.compare_terminal import render
        from ikeflow.render.read_terminal import FROM_CONSOLE

        render(_console(kw["no_color"]), cmp, width=kw["width"] or FROM_CONSOLE, quiet=kw["quiet"], utc=kw["utc"],
               narrowed=str(kw["narrowing"]))
    return EXIT_FINDINGS if any(f.severity == ERROR for f in cmp.findings()) else EXIT_OK


class _WriteError(Exception):
    """Standard output cannot be written (other than a closed pipe)."""


class _Stdout:
    """sys.stdout, with its write errors told apart from all other errors."""

    def __init__(self, out):
        self._out = out

    def write(self, s: str) -> int:
        return self._guard(self._out.write, s)

    def flush(self) -> None:
        self._guard(self._out.flush)

    @property
    def buffer(self):
        """The binary layer under it, guarded alike (read --json copies its spooled messages as bytes)."""
        return _Stdout(self._out.buffer)

    def __getattr__(self, name):
        return getattr(self._out, name)

    @staticmethod
    def _guard(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _WriteError(e.strerror or str(e)) from None


def run_command(body, *args, usage_errors: tuple = ()):
    """Run a command's body and exit with its code: a one-line message for `usage_errors` and
    for write errors on stdout (exit 2), never a traceback for anything else (exit 3)."""
    # The analysis keeps many long-lived objects (SAs, flows) and makes few reference cycles: collect
    # the youngest generation less often (a flood of new SAs: about a third faster).
    gc.set_threshold(50_000, 20, 100)
    out = sys.stdout
    sys.stdout = _Stdout(out)
    try:
        code = body(*args)
        sys.stdout.flush()
    except _WriteError as e:
        click.echo(f"ikeflow: cannot write the report: {e}", err=True)
        _drop_output(out)
        sys.exit(EXIT_USAGE)
    except usage_errors as e:
        click.echo(f"ikeflow: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except (click.ClickException, click.exceptions.Exit):
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as e:  # never a traceback for the user
        if os.environ.get("IKEFLOW_DEBUG"):
            raise
        click.echo(f"ikeflow: internal error: {type(e).__name__}: {e}\n"
                   f"Please report it, with the capture if you can, to {REPORT_URL} "
                   "(set IKEFLOW_DEBUG=1 for the traceback).", err=True)
        sys.exit(EXIT_INTERNAL)
    finally:
        sys.stdout = out
    sys.exit(code)


def _drop_output(out) -> None:
    """Send what is still buffered for stdout to /dev/null, so that the flush at exit succeeds."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    except (OSError, ValueError):
        pass


def _read(files: list[str], kw: dict) -> int:
    from ikeflow.pipeline import Options, Pipeline, Result
    from ikeflow.sources.capture import CaptureError

    narrowing, as_json = kw["narrowing"], kw["as_json"]
    spool = None
    if as_json:
        from ikeflow.render.read_json import MessageSpool

        spool = MessageSpool(len(files))
    options = Options(kw["ike_port"], kw["natt_port"], kw["limits"], keys=kw["keys"])
    pipeline = Pipeline(options, [narrowing.listener(spool.add)] if spool else [])
    progress = _Progress(files, kw["no_color"]) if sys.stderr.isatty() and not as_json else None
    try:
        pipeline.read(files, progress=progress.update if progress else None, keep=kw["keep"])
    except CaptureError as e:
        click.echo(f"ikeflow: {e}", err=True)
        return EXIT_USAGE
    finally:
        if progress:
            progress.stop()
    pipeline.finish()
    for info in pipeline.infos:
        if info.warning:
            click.echo(f"ikeflow: warning: {info.name}: {info.warning}", err=True)
    whole = pipeline.diagnose()
    check = kw["check"]
    if check:
        from ikeflow.check.command import beside

        check.captures, check.decrypted = files, kw["keys"] is not None
        beside(check, whole.model.sas.values(), whole.findings)
    model, found, verdicts = narrowing.read(whole.model, whole.findings, whole.verdicts)
    result = Result(model, whole.infos, found, verdicts)  # the exit code follows what the report shows
    if kw["html"]:
        from ikeflow.render.html import write_read_html

        if not _html(write_read_html, result, kw):
            return EXIT_USAGE
    if kw["mermaid"]:
        from ikeflow.render.mermaid import read_mermaid

        text = read_mermaid(result, utc=kw["utc"])
        if kw["mermaid"] == "-":
            sys.stdout.write(text)
            return result.exit_code
        try:
            with open(kw["mermaid"], "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            click.echo(f"ikeflow: cannot write {kw['mermaid']}: {e.strerror or e}", err=True)
            return EXIT_USAGE
    if as_json:
        from ikeflow.render.read_json import build, write

        doc = build(result.model, result.infos, result.findings, result.verdicts, _config_json(check, len(files)))
        if check:
            from ikeflow.render.check_json import beside_json

            doc["configurations"] = beside_json(check)
        write(sys.stdout, doc, spool)
    else:
        from ikeflow.render.read_terminal import FROM_CONSOLE, render

        console = _console(kw["no_color"])
        render(console, result.model, result.infos, result.findings, result.verdicts,
               width=kw["width"] or FROM_CONSOLE, quiet=kw["quiet"], utc=kw["utc"], narrowed=str(narrowing))
        if check:
            from ikeflow.render.check_terminal import render_beside

            render_beside(console, check, kw["width"] or (console.width if console.is_terminal else None))
    return result.exit_code


def _config_json(check, files: int):
    """`read --config --json`: each finding's `config` list (None without --config)."""
    if check is None:
        return None
    from ikeflow.render.check_json import config_list
    from ikeflow.render.common import Frames

    frame, by_finding = Frames(files), {id(n.finding): n for n in check.notes}
    return lambda f: config_list(by_finding.get(id(f)), frame)


class _Progress:
    """A progress bar on stderr while big files are read (only on a terminal)."""

    MIN_BYTES = 20 << 20

    def __init__(self, files: list[str], no_color: bool):
        self.total = sum(os.path.getsize(f) for f in files if f != "-" and os.path.isfile(f))
        self.bar = None
        if self.total >= self.MIN_BYTES:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("reading"), BarColumn(), TextColumn("{task.fields[packets]} packets"),
                                TimeRemainingColumn(), console=Console(stderr=True, no_color=no_color),
                                transient=True)
            self.task = self.bar.add_task("read", total=self.total, packets=0)
            self.bar.start()

    def update(self, infos) -> None:
        if self.bar:
            self.bar.update(self.task, completed=sum(i.bytes_read for i in infos),
                            packets=sum(i.packets for i in infos))

    def stop(self) -> None:
        if self.bar:
            self.bar.stop()
