"""ipsec.secrets (libreswan and strongSwan ipsec.secrets(5)) and the PSK lookup each daemon does.

An entry is `[ID ...] : TYPE value` (the colon stands alone between blanks); a line starting with a blank
continues the entry above (libreswan's `: RSA { ... }` blocks); `include PATTERN` as in ipsec.conf. A PSK is a
quoted string, `0x` hex or `0s` base64; the value is kept as bytes and only compared.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from ikeflow.check.config import Config, ConfigError, Secret, include_paths, read_text, strip_comment, unquote

TYPES = {"PSK", "RSA", "ECDSA", "XAUTH", "EAP", "PIN", "P12", "PKCS8", "NTLM", "BLISS", "PPK", "PRIVATE"}
_SPLIT = re.compile(r"(?:^|\s):(?=\s|$)")


def secret_bytes(text: str) -> bytes:
    """A secret as the daemons read it: `0x` hex, `0s` base64, else the string itself."""
    try:
        if text[:2].lower() == "0x":
            return binascii.unhexlify(text[2:].replace("_", ""))
        if text[:2].lower() == "0s":
            return base64.b64decode(text[2:], validate=True)
    except (binascii.Error, ValueError):
        pass
    return text.encode()


def parse(path: Path, cfg: Config, stack: tuple[Path, ...] = ()) -> None:
    """Add the entries of `path` (and its includes) to `cfg.secrets`."""
    real = path.resolve()
    if real in stack:
        raise ConfigError(f"{path}: included from itself")
    cfg.files.append(str(path))
    entries: list[tuple[str, str]] = []
    depth = 0
    for n, raw in enumerate(read_text(path), 1):
        line = strip_comment(raw).rstrip()
        if not line.strip():
            continue
        where = f"{path}:{n}"
        if depth or (line[0].isspace() and entries):
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
        elif line.split()[0] == "include" and len(line.split()) == 2:
            for inc in include_paths(line.split()[1], path, where):
                parse(inc, cfg, (*stack, real))
            continue
        else:
            entries.append((where, line.strip()))
        depth += line.count("{") - line.count("}")
    for where, text in entries:
        cfg.secrets.append(_entry(where, text))


def _entry(where: str, text: str) -> Secret:
    m = _SPLIT.search(text)
    if not m:
        raise ConfigError(f"{where}: expected `[IDs] : TYPE secret` (the colon between blanks)")
    ids = tuple(_ids(text[:m.start()].strip(), where))
    rest = text[m.end():].strip()
    word = rest.split(None, 1)[0] if rest else ""
    kind, value = (word.upper(), rest[len(word):].strip()) if word.upper() in TYPES else ("PSK", rest)
    if kind in ("PSK", "XAUTH", "EAP", "NTLM", "PPK"):
        if not value:
            raise ConfigError(f"{where}: {kind} without a secret")
        return Secret(kind, ids, where, secret_bytes(unquote(value, where)))
    return Secret(kind, ids, where)


def _ids(text: str, where: str) -> list[str]:
    out, rest = [], text
    while rest:
        if rest[0] in "\"'":
            end = rest.find(rest[0], 1)
            if end < 0:
                raise ConfigError(f"{where}: unterminated quoted ID")
            out.append(rest[1:end])
            rest = rest[end + 1:].lstrip()
        else:
            word, _, rest = rest.partition(" ")
            out.append(word)
            rest = rest.lstrip()
    return out


@dataclass(frozen=True)
class Lookup:
    """Which secret a daemon takes for a pair of IDs, and why."""
    secret: Secret | None
    how: str  # "both IDs", "local ID only", "%any", "no IDs", ...


def norm_id(ident: str) -> str:
    """An ID as compared: `@` prefixes dropped (FQDN), case-folded, DN blanks after commas dropped."""
    s = ident.strip().lstrip("@")
    return re.sub(r",\s+", ",", s).lower()


def _match(ids: tuple[str, ...], ident: str) -> int:
    """How well one entry's IDs name `ident`: 2 exactly, 1 by %any, 0 not."""
    if norm_id(ident) in {norm_id(i) for i in ids}:
        return 2
    return 1 if any(i.lower() in ("%any", "%any6", "0.0.0.0", "::") for i in ids) else 0


def lookup(secrets: list[Secret], kind: str, local: str, remote: str) -> Lookup:
    """The best entry of `kind` for the local and remote IDs, as charon (mem_cred.c shared-key filter) and pluto
    (secrets.c lsw_get_secret) rank them: both IDs named beats one, an exact ID beats %any, and an entry without
    IDs matches any pair at the lowest rank; an entry naming neither ID is not used."""
    best, best_score, how = None, -1, "no entry"
    for s in secrets:
        if s.kind != kind:
            continue
        if not s.ids:
            score, text = 0, "an entry without IDs"
        else:
            m_local, m_remote = _match(s.ids, local), _match(s.ids, remote)
            if not (m_local or m_remote):
                continue
            score = m_local + m_remote
            text = ("both IDs" if m_local == 2 and m_remote == 2 else
                    "the local ID" if m_local == 2 and m_remote < 2 else
                    "the remote ID" if m_remote == 2 else "%any")
        if score > best_score:
            best, best_score, how = s, score, text
    return Lookup(best, how)
