"""Key sources: Wireshark's key tables (also what strongSwan's save-keys plugin writes), strongSwan
charon logs at ike/chd level 4, libreswan pluto logs with plutodebug=private, tcpdump -E secrets.

`load_keys(paths)` reads files and directories and recognises each source by name or content.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ikeflow.keys.ring import EspKey, IkeV1Key, IkeV2Keys, KeyRing, KeySourceError

__all__ = ["EspKey", "IkeV1Key", "IkeV2Keys", "KeyRing", "KeySourceError", "load_keys", "read_source"]

_MAX_FILE = 64 << 20
DIRECTORY_NOTES = 3  # notes per directory about files without usable keys; the rest are counted


def read_source(path: Path) -> KeyRing:
    """The keys in one file, recognised by its name or, failing that, its content."""
    from ikeflow.keys import charon, pluto, tcpdump, wireshark

    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE + 1)
    except OSError as e:
        raise KeySourceError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > _MAX_FILE or b"\0" in raw[:4096]:
        raise KeySourceError(f"{path}: a binary or very large file, not a key table or log", keyless=True,
                             unknown=True)
    text = raw.decode("utf-8", "replace")
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        raise KeySourceError(f"{path}: no keys (the file is empty or holds only comments)", keyless=True,
                             unknown=True)
    for parser in (wireshark.by_name, charon.parse, pluto.parse, tcpdump.parse, wireshark.by_content):
        ring = parser(path.name, text, str(path))
        if ring is not None:
            return ring
    raise KeySourceError(f"{path}: not a key source ikeflow knows (Wireshark ikev1_decryption_table, "
                         "ikev2_decryption_table or esp_sa; charon log with ike/chd level 4; pluto log with "
                         "plutodebug=private; tcpdump -E secrets)", keyless=True, unknown=True)


def load_keys(paths: list[str], warn: Callable[[str], None] | None = None) -> KeyRing:
    """All keys in `paths` (files, or directories whose files are read).

    A source that is readable but holds no usable keys (a pluto log that never printed any, a charon log below
    level 4, a failed negotiation's log) is an error when it is the one file given.  Among several sources
    (several paths, or the files of a directory) it is a note and the read goes on: the note is passed to
    `warn` (default: printed on stderr as "ikeflow: warning: ...") and kept in the ring's `notes`; an error
    only when no source gave any key.  A directory's files that are no key source at all (captures,
    configurations) are skipped without a note.  A malformed key table, an unreadable file and a missing path
    are errors always."""
    say = warn if warn is not None else _stderr
    ring = KeyRing()
    several = len(paths) > 1
    notes: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found, skipped = False, []
            for child in sorted(p for p in path.iterdir() if p.is_file()):
                try:
                    ring.update(read_source(child))
                    found = True
                except KeySourceError as e:
                    if not e.keyless:
                        raise
                    if not e.unknown:
                        skipped.append(str(e))
            if not found:
                why = f"{path}: no key table or key log with usable keys in this directory" + (
                    f" ({'; '.join(skipped)})" if skipped else "")
                if not several:
                    raise KeySourceError(why)
                skipped = [why]
            notes += skipped[:DIRECTORY_NOTES] + ([f"{path}: {len(skipped) - DIRECTORY_NOTES} more files without "
                                                  "usable keys"] if len(skipped) > DIRECTORY_NOTES else [])
        elif path.exists():
            try:
                ring.update(read_source(path))
            except KeySourceError as e:
                if not (e.keyless and several):
                    raise
                notes.append(str(e))
        else:
            raise KeySourceError(f"{path}: no such file or directory")
    if not ring and notes:
        raise KeySourceError("no usable keys in any source given: " + "; ".join(notes), keyless=True)
    for note in notes:
        say(note)
    ring.notes = notes
    return ring


def _stderr(note: str) -> None:
    print(f"ikeflow: warning: {note}", file=sys.stderr)
