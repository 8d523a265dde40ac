"""Key sources: Wireshark's key tables (also what strongSwan's save-keys plugin writes), strongSwan
charon logs at ike/chd level 4, libreswan pluto logs with plutodebug=private, tcpdump -E secrets.

`load_keys(paths)` reads files and directories and recognises each source by name or content.
"""

from __future__ import annotations

from pathlib import Path

from ikeflow.keys.ring import EspKey, IkeV1Key, IkeV2Keys, KeyRing, KeySourceError

__all__ = ["EspKey", "IkeV1Key", "IkeV2Keys", "KeyRing", "KeySourceError", "load_keys", "read_source"]

_MAX_FILE = 64 << 20


def read_source(path: Path) -> KeyRing:
    """The keys in one file, recognised by its name or, failing that, its content."""
    from ikeflow.keys import charon, pluto, tcpdump, wireshark

    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE + 1)
    except OSError as e:
        raise KeySourceError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > _MAX_FILE or b"\0" in raw[:4096]:
        raise KeySourceError(f"{path}: a binary or very large file, not a key table or log", keyless=True)
    text = raw.decode("utf-8", "replace")
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        raise KeySourceError(f"{path}: no keys (the file is empty or holds only comments)", keyless=True)
    for parser in (wireshark.by_name, charon.parse, pluto.parse, tcpdump.parse, wireshark.by_content):
        ring = parser(path.name, text, str(path))
        if ring is not None:
            return ring
    raise KeySourceError(f"{path}: not a key source ikeflow knows (Wireshark ikev1_decryption_table, "
                         "ikev2_decryption_table or esp_sa; charon log with ike/chd level 4; pluto log with "
                         "plutodebug=private; tcpdump -E secrets)", keyless=True)


def load_keys(paths: list[str]) -> KeyRing:
    """All keys in `paths` (files, or directories whose files are read; in a directory, files without keys
    are skipped, but a malformed key table or a directory without any key is an error)."""
    ring = KeyRing()
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = False
            for child in sorted(p for p in path.iterdir() if p.is_file()):
                try:
                    ring.update(read_source(child))
                    found = True
                except KeySourceError as e:
                    if not e.keyless:
                        raise
                    continue
            if not found:
                raise KeySourceError(f"{path}: no key table or key log in this directory")
        elif path.exists():
            ring.update(read_source(path))
        else:
            raise KeySourceError(f"{path}: no such file or directory")
    return ring
