"""What the parsers hand on: settings that remember their `file:line`, sections, secrets, and the error type."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """An unreadable or unparsable configuration; the message is `file:line: what is wrong`."""


@dataclass(frozen=True)
class Setting:
    value: str
    where: str  # "path:line"


@dataclass
class Section:
    kind: str  # "conn" / "setup" (ipsec.conf), "connection" (swanctl)
    name: str
    where: str
    settings: dict[str, Setting] = field(default_factory=dict)


@dataclass(frozen=True)
class Secret:
    kind: str  # "PSK", "RSA", "ECDSA", "XAUTH", "EAP", "PIN", "P12"
    ids: tuple[str, ...]  # empty: any ID
    where: str
    value: bytes = field(default=b"", repr=False)  # never printed; compared by equality only


@dataclass
class Config:
    """One end: what the files of one CONFIG argument say."""
    source: str  # the argument as given
    dialect: str  # "libreswan", "stroke" (strongSwan's ipsec.conf) or "swanctl"
    files: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    options: dict[str, Setting] = field(default_factory=dict)  # strongswan.conf settings, if one was read


def read_text(path: Path, where: str = "") -> list[str]:
    """The lines of a file, or a ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise ConfigError(f"{where + ': ' if where else ''}cannot read {path}: {e.strerror or e}") from None


def include_paths(pattern: str, base: Path, where: str) -> list[Path]:
    """The files an `include` names: shell wildcards, relative to the including file's folder; a pattern
    without wildcards must name an existing file."""
    full = pattern if pattern.startswith("/") else str(base.parent / pattern)
    found = sorted(Path(p) for p in glob.glob(full))
    if not found and not glob.has_magic(full):
        raise ConfigError(f"{where}: include {pattern}: no such file")
    return found


def unquote(text: str, where: str) -> str:
    """A value as the daemon reads it: double or single quotes removed, backslash escapes in double quotes."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        q = text[0]
        if len(text) < 2 or text[-1] != q:
            raise ConfigError(f"{where}: unterminated quoted value {text[:20]}")
        body = text[1:-1]
        return body.replace('\\"', '"').replace("\\\\", "\\") if q == '"' else body
    return text


def strip_comment(line: str) -> str:
    """The line without a `#` comment outside quotes."""
    quote = ""
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i]
    return line
