"""`ikeflow keys show` and `ikeflow keys export`: what a key source holds, and Wireshark's tables from it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from ikeflow import EXIT_USAGE
from ikeflow.decode.decrypt import ENCR, INTEG
from ikeflow.keys import EspKey, IkeV1Key, IkeV2Keys, KeyRing, KeySourceError, load_keys
from ikeflow.keys.wireshark import export


def _load(sources: tuple[str, ...]) -> KeyRing:
    try:
        return load_keys(list(sources))
    except KeySourceError as e:
        click.echo(f"ikeflow keys: {e}", err=True)
        sys.exit(EXIT_USAGE)


def _hidden(data: bytes, reveal: bool) -> str:
    return data.hex() if reveal else f"<{len(data)} octets>"


def describe(ring: KeyRing, reveal: bool = False) -> list[str]:
    """One line per key: the SA it belongs to and its algorithms; key bytes only with `reveal`."""
    out = []
    for key in ring.all():
        if isinstance(key, IkeV1Key):
            out.append(f"IKEv1  icookie {key.icookie.hex()}  key {_hidden(key.enc_key, reveal)}  ({key.source})")
        elif isinstance(key, EspKey):
            spi = "*" if key.spi is None else f"0x{key.spi:08x}"
            out.append(f"ESP    SPI {spi} {key.src} -> {key.dst}  {key.encr or '?'}/{key.integ or '?'}  "
                       f"enc {_hidden(key.enc_key, reveal)} auth {_hidden(key.auth_key, reveal)}  ({key.source})")
        else:
            out.append(f"IKEv2  SPIs {key.spi_i.hex()}/{key.spi_r.hex()}  {key.encr or '?'}/{key.integ or '?'}  "
                       f"SK_ei {_hidden(key.sk_ei, reveal)} SK_er {_hidden(key.sk_er, reveal)} "
                       f"SK_ai {_hidden(key.sk_ai, reveal)} SK_ar {_hidden(key.sk_ar, reveal)}  ({key.source})")
    return out


@click.group(help="Read key sources: Wireshark key tables or strongSwan save-keys output, charon logs at "
                  "ike/chd level 4, pluto logs with plutodebug=private, tcpdump -E secrets.")
def keys() -> None:
    pass


_FROM = click.option("--from", "sources", multiple=True, required=True, metavar="PATH",
                     help="A key file or a directory of them (repeatable).")


@keys.command(help="List the keys found (SPIs/cookies, algorithms; '?' = taken from the negotiation), "
                   "without key bytes unless --reveal.")
@_FROM
@click.option("--reveal", is_flag=True, help="Also print the key bytes.")
def show(sources: tuple[str, ...], reveal: bool) -> None:
    ring = _load(sources)
    counts = ring.counts
    click.echo(f"{counts['ikev1']} IKEv1, {counts['ikev2']} IKEv2, {counts['esp']} ESP keys")
    for line in describe(ring, reveal):
        click.echo(line)


@keys.command("export", help="Write Wireshark's ikev1_decryption_table, ikev2_decryption_table and esp_sa "
                             "into DIR (use it as Wireshark's configuration directory or copy the files there).")
@_FROM
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), metavar="DIR")
@click.option("--ike-algorithms", "algorithms", default=None, metavar="ENCR/INTEG",
              help="For IKEv2 keys whose source does not name them (charon and pluto logs): the negotiated "
                   "algorithms, e.g. aes-cbc/hmac-sha2-256-128 or aes-gcm-16/none.")
def export_command(sources: tuple[str, ...], out: str, algorithms: str | None) -> None:
    ring = _load(sources)
    if algorithms:
        encr, _, integ = algorithms.partition("/")
        if encr not in ENCR or integ not in INTEG:
            click.echo(f"ikeflow keys: --ike-algorithms {algorithms}: not ENCR/INTEG from "
                       f"{', '.join(ENCR)} / {', '.join(INTEG)}", err=True)
            sys.exit(EXIT_USAGE)
        filled = KeyRing()
        for key in ring.all():
            if isinstance(key, IkeV2Keys) and not key.encr:
                key = dataclasses.replace(key, encr=encr, integ=integ)
            filled.add(key)
        ring = filled
    try:
        written, skipped = export(ring, Path(out))
    except KeySourceError as e:
        click.echo(f"ikeflow keys: {e}", err=True)
        sys.exit(EXIT_USAGE)
    for why in skipped:
        click.echo(f"left out: {why}", err=True)
    click.echo(", ".join(f"{name}: {n} lines" for name, n in written.items()) + f" in {out}")
