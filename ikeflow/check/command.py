"""`ikeflow check CONFIG [CONFIG]`: read one or both ends' configurations, pair their conns and say what
does not match. Exit codes as `read`: 0 the configurations agree, 1 a mismatch that breaks the tunnel,
2 usage error or an unreadable configuration."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from ikeflow import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from ikeflow.check import ipsec_conf, secrets, swanctl
from ikeflow.check.capture import Note, notes
from ikeflow.check.compare import Pair, compare, pair
from ikeflow.check.config import Config, ConfigError
from ikeflow.check.defaults import DAEMONS
from ikeflow.check.resolve import Conn, conns
from ikeflow.diagnose.causes import CHECK

SCHEMA = 1


@dataclass
class CheckResult:
    ends: list[Config]
    conns: list[list[Conn]]
    pairs: list[Pair] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    captures: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # the capture's findings beside the configurations
    capture_breaks: bool = False
    decrypted: bool = False  # --keys were given

    @property
    def exit_code(self) -> int:
        return EXIT_FINDINGS if self.capture_breaks or any(p.breaks for p in self.pairs) else EXIT_OK


def _kind(path: Path) -> str:
    name = path.name
    for suffix, kind in (("swanctl.conf", "swanctl"), ("ipsec.secrets", "secrets"), ("strongswan.conf", "options"),
                         (".secrets", "secrets"), ("ipsec.conf", "ipsec")):
        if name.endswith(suffix):
            return kind
    try:
        head = path.read_text(errors="replace")[:4000]
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    if "connections" in head and "{" in head:
        return "swanctl"
    if " : PSK" in head or ": RSA" in head:
        return "secrets"
    return "ipsec"


def _siblings(path: Path, kind: str) -> list[Path]:
    """The secrets and strongswan.conf that go with a configuration file: same folder, same name stem
    (`NAME.resp.ipsec.conf` -> `NAME.resp.ipsec.secrets`, `NAME.resp.strongswan.conf`)."""
    stem = path.name.removesuffix("ipsec.conf").removesuffix("swanctl.conf")
    names = [f"{stem}strongswan.conf"] + ([f"{stem}ipsec.secrets"] if kind == "ipsec" else [])
    return [path.parent / n for n in names if (path.parent / n).is_file()]


def load(arg: str) -> Config:
    """One end: a file, or a folder holding swanctl.conf or ipsec.conf (with ipsec.secrets, strongswan.conf)."""
    path = Path(arg)
    if path.is_dir():
        files = [p for n in ("swanctl.conf", "swanctl/swanctl.conf", "ipsec.conf") if (p := path / n).is_file()]
        if not files:
            raise ConfigError(f"{arg}: no swanctl.conf or ipsec.conf in this folder")
        main, extra = files[0], [p for n in ("ipsec.secrets", "strongswan.conf") if (p := path / n).is_file()]
    elif path.is_file():
        main, extra = path, []
    else:
        raise ConfigError(f"{arg}: no such file or folder")
    kind = _kind(main)
    extra = extra or _siblings(main, kind)
    if kind == "swanctl":
        cfg = swanctl.parse(main, arg)
    elif kind == "ipsec":
        cfg = ipsec_conf.parse(main, arg)
    else:
        raise ConfigError(f"{main}: a {kind} file alone holds no conn; give the ipsec.conf or swanctl.conf")
    for p in extra:
        if _kind(p) == "secrets":
            secrets.parse(p, cfg)
        else:
            swanctl.parse_options(p, cfg)
            cfg.files.append(str(p))
    return cfg


def run_check(args: list[str], daemons: list[str | None], name: str | None) -> CheckResult:
    """Read, resolve, pair and compare (the sans-I/O part is everything after `load`)."""
    ends = [load(a) for a in args]
    resolved = [conns(cfg, daemons[min(n, len(daemons) - 1)]) for n, cfg in enumerate(ends)]
    for cfg, cs in zip(ends, resolved):
        if not cs:
            raise ConfigError(f"{cfg.source}: no conn with left=/right= (or connections section) found")
    res = CheckResult(ends, resolved)
    if len(ends) == 2:
        res.pairs = [compare(p) for p in pair(resolved[0], resolved[1], name)]
        if name and not res.pairs:
            raise ConfigError(f"--conn {name}: no conn of that name in either configuration")
        paired = {(id(p.init.config), p.init.name) for p in res.pairs} | {(id(p.resp.config), p.resp.name) for p in res.pairs}
        res.unpaired = [f"{c.name} ({c.config.source})" for cs in resolved for c in cs
                        if (id(c.config), c.name) not in paired and (not name or c.name == name)]
    return res


def beside(res: CheckResult, sas, findings) -> None:
    """Put a capture's IKE SAs and findings beside the configurations; each finding's causes are re-ranked in
    place (explained first, ruled out last), so that every report of the capture shows that order."""
    res.notes = notes(res.pairs, sas, findings)
    for n in res.notes:
        if n.pair is not None and n.causes:
            n.finding.causes = list(n.causes)
        if n.cause:  # what to check next follows the settled cause
            n.finding.hint = f"{CHECK[n.cause][0].upper()}{CHECK[n.cause][1:]}. The configurations settle the cause: " \
                f"{n.cause} (see Configurations)."


CHECK_HELP = """Read both ends' IPsec configurations and find the mismatch.

\b
Compare the two ends (a file or a folder each):
  ikeflow check gw-a/ gw-b/
  ikeflow check west/ipsec.conf east/swanctl/swanctl.conf --conn office
  ikeflow check gw-a/ gw-b/ --table       (the Configuration Table, side by side)
  ikeflow check gw-a/ gw-b/ --daemon libreswan-5 --daemon strongswan-6

\b
Put a capture beside them (decrypted with the daemons' keys if you have them):
  ikeflow check gw-a/ gw-b/ --capture tun.pcap
  ikeflow check gw-a/ gw-b/ --capture tun.pcap --keys charon.log
  ikeflow read tun.pcap --config gw-a/ --config gw-b/    (the same, in the report)

A CONFIG is swanctl.conf (strongSwan), or ipsec.conf in the libreswan /
Openswan dialect or strongSwan's stroke dialect; ipsec.secrets and
strongswan.conf are read from the same folder (for NAME.ipsec.conf:
NAME.ipsec.secrets, NAME.strongswan.conf).  Each conn is resolved with its
daemon's defaults (--daemon, else guessed from the dialect, and said), the
conns of the two ends are paired by addresses and IDs, and every mismatch is
named with its cause and the message where the negotiation stalls (e.g.
"psk-mismatch at MM5"), with the file:line of the settings that make it.
Pre-shared keys and passwords are compared, never printed.

\b
With --capture, each finding of the capture is shown with:
  explained by   the configuration lines (or the frame on the wire) behind it
  ruled out      the causes the configurations exclude, and why
  cause          the one cause left, when the configurations settle it
With --keys, the IDs, traffic selectors and Quick Mode IDs decrypted from
the wire are compared with each conn too (an IKEv2 AUTHENTICATION_FAILED is
then told apart: wrong ID or wrong PSK); a wire that shows other values than
a conn says is a capture-differs-from-config warning: that daemon runs
another configuration than the one given.

\b
Exit codes: 0 the configurations agree, 1 a mismatch that breaks the
tunnel (or an error in the capture), 2 usage error or unreadable
configuration (file:line: what is wrong).
"""


@click.command(help=CHECK_HELP)
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG [CONFIG]")
@click.option("--conn", "name", default=None, metavar="NAME", help="Compare only the conn of this name.")
@click.option("--daemon", "daemon", multiple=True, type=click.Choice(sorted(DAEMONS)),
              help="The daemon and version of each end (once for both, or twice in CONFIG order).")
@click.option("--capture", "captures", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also read this capture (repeatable) and point each of its findings at the configuration lines.")
@click.option("--keys", "keys", multiple=True, type=click.Path(), metavar="PATH",
              help="Decrypt the capture with these keys (as read --keys) and compare the IDs and subnets on the "
                   "wire with the conns.")
@click.option("--table", is_flag=True, help="Print the Configuration Table: both ends side by side.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (schema 1, kind check).")
@click.option("--no-color", is_flag=True, help="No colours, even on a terminal.")
def check(configs, name, daemon, captures, keys, table, as_json, no_color) -> None:
    if len(configs) > 2:
        raise click.UsageError("give one or two CONFIGs (one per end)")
    if keys and not captures:
        raise click.UsageError("--keys decrypts a capture: give --capture FILE too")
    try:
        res = run_check(list(configs), list(daemon) or [None], name)
    except ConfigError as e:
        click.echo(f"ikeflow check: {e}", err=True)
        sys.exit(EXIT_USAGE)
    if captures:
        from ikeflow.diagnose.finding import ERROR
        from ikeflow.keys import KeySourceError, load_keys
        from ikeflow.pipeline import Options, read_captures
        from ikeflow.sources.capture import CaptureError
        try:
            result = read_captures(list(captures), Options(keys=load_keys(list(keys)) if keys else None))
        except (CaptureError, KeySourceError, OSError) as e:
            click.echo(f"ikeflow check: {e}", err=True)
            sys.exit(EXIT_USAGE)
        res.captures, res.decrypted = list(captures), bool(keys)
        beside(res, result.model.sas.values(), result.findings)
        res.capture_breaks = any(f.severity == ERROR for f in result.findings)
    if as_json:
        from ikeflow.render import check_json
        click.echo(check_json.render(res, SCHEMA))
    else:
        from rich.console import Console

        from ikeflow.render import check_terminal
        console = Console(no_color=no_color, highlight=False, soft_wrap=True)
        check_terminal.render(console, res, table)
    sys.exit(res.exit_code)
