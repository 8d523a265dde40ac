"""The keys an admin hands over, in one vocabulary of cipher names (see `ikeflow.decode.decrypt.ENCR`/`INTEG`).

An `encr`/`integ` of "" means the source gave the key bytes but not the algorithm (a charon or pluto
log): fill it from the negotiated SA with `decrypt.encr_from_transform`/`integ_from_transform` and
`dataclasses.replace`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


class KeySourceError(Exception):
    """A key file or directory that cannot be read or recognised; the message says which and why.
    `keyless`: the file is readable but holds no keys (another file, a log of a failed negotiation); among
    several sources such a file is a note (`load_keys`), while a malformed key table is an error there too.
    `unknown`: keyless because it is no key source at all (a capture, a configuration): a directory skips it
    without a note."""

    def __init__(self, message: str, keyless: bool = False, unknown: bool = False) -> None:
        super().__init__(message)
        self.keyless = keyless
        self.unknown = unknown


@dataclass(frozen=True)
class IkeV1Key:
    """IKEv1 SKEYID_e-derived encryption key of one ISAKMP SA (RFC 2409 appendix B), by initiator cookie."""
    icookie: bytes
    enc_key: bytes
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class IkeV2Keys:
    """SK_e/SK_a of one IKEv2 SA (RFC 7296 2.14). encr/integ "" = not given by the source."""
    spi_i: bytes
    spi_r: bytes
    sk_ei: bytes
    sk_er: bytes
    encr: str
    sk_ai: bytes
    sk_ar: bytes
    integ: str
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class AuthLog:
    """What one daemon's log says of an IKEv2 SA's PSK authentication: its role and every AUTH value it computed
    with its pre-shared key (charon level 4: `AUTH = prf(prf(secret, keypad), octets)`, RFC 7296 2.15), for its
    own IKE_AUTH and to verify the peer's. A responder that logged the SA's keys but no AUTH never got to a PSK."""
    spi_i: bytes
    spi_r: bytes
    role: str  # "initiator" or "responder" of the IKE SA
    values: tuple[bytes, ...]
    source: str = ""


@dataclass(frozen=True)
class EspKey:
    """One direction of an ESP SA; src/dst "*" match any address, spi None any SPI (Wireshark's `*`).
    encr/integ "" = not given by the source."""
    spi: int | None
    src: str
    dst: str
    encr: str
    enc_key: bytes
    integ: str
    auth_key: bytes
    source: str = field(default="", compare=False)


def _addr(text: str) -> str:
    """Canonical text of an address ("*" stays "*"), so 2001:DB8::1 and 2001:db8:0::1 match."""
    if text in ("", "*"):
        return "*"
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _matches(pattern: str, addr: str) -> bool:
    """Wireshark esp_sa address patterns: "*", an address, a prefix "a/len", IPv4 octets "*" ("10.0.*.*")."""
    if pattern in ("*", addr):
        return True
    try:
        if "/" in pattern:
            return ipaddress.ip_address(addr) in ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    if "*" in pattern and "." in pattern:
        want, have = pattern.split("."), addr.split(".")
        return len(want) == len(have) == 4 and all(w in ("*", h) for w, h in zip(want, have))
    return False


def _bytes(key: IkeV2Keys) -> tuple[bytes, ...]:
    return key.sk_ei, key.sk_er, key.sk_ai, key.sk_ar


class KeyRing:
    """Keys by what a capture shows: IKEv1 initiator cookie, IKEv2 SPI pair, ESP SPI and addresses."""

    def __init__(self) -> None:
        self._v1: dict[bytes, list[IkeV1Key]] = {}
        self._v2: dict[tuple[bytes, bytes], list[IkeV2Keys]] = {}
        self._auth: dict[tuple[bytes, bytes], list[AuthLog]] = {}
        self._esp: dict[int | None, list[EspKey]] = {}
        self.notes: list[str] = []  # sources given that held no usable keys (load_keys), each with why

    def add(self, key: IkeV1Key | IkeV2Keys | EspKey) -> None:
        """Add a key. Different keys for one IKE SA are all kept (two peers with different PSKs derive
        different IKEv1 keys for the same cookies); the same key bytes are kept once, with algorithms if
        any source gave them. An ESP key replaces one for the same SPI and addresses."""
        if isinstance(key, IkeV1Key):
            known = self._v1.setdefault(key.icookie, [])
            if key not in known:
                known.append(key)
        elif isinstance(key, IkeV2Keys):
            known2 = self._v2.setdefault((key.spi_i, key.spi_r), [])
            same = [i for i, k in enumerate(known2) if _bytes(k) == _bytes(key)]
            if not same:
                known2.append(key)
            elif key.encr and not known2[same[0]].encr:
                known2[same[0]] = key
        else:
            key = EspKey(key.spi, _addr(key.src), _addr(key.dst), key.encr, key.enc_key, key.integ,
                         key.auth_key, key.source)
            same_spi = self._esp.setdefault(key.spi, [])
            old = [k for k in same_spi if (k.src, k.dst) == (key.src, key.dst)]
            if old and old[0].encr and not key.encr:
                return
            same_spi[:] = [k for k in same_spi if (k.src, k.dst) != (key.src, key.dst)] + [key]

    def add_auth(self, log: AuthLog) -> None:
        self._auth.setdefault((log.spi_i, log.spi_r), []).append(log)

    def auth_logs(self, spi_i: bytes, spi_r: bytes) -> list[AuthLog]:
        """What the daemons' logs say of this IKEv2 SA's PSK authentication (see AuthLog)."""
        return list(self._auth.get((bytes(spi_i), bytes(spi_r)), []))

    def update(self, other: KeyRing) -> None:
        for key in other.all():
            self.add(key)
        for logs in other._auth.values():
            for log in logs:
                self.add_auth(log)

    def ikev1(self, icookie: bytes) -> IkeV1Key | None:
        """The key loaded last for this initiator cookie (`ikev1_all` gives every one)."""
        return next(reversed(self.ikev1_all(icookie)), None)

    def ikev1_all(self, icookie: bytes) -> list[IkeV1Key]:
        """Every distinct key for this cookie, in load order (one per peer when their PSKs differ)."""
        return list(self._v1.get(bytes(icookie), []))

    def ikev2(self, spi_i: bytes, spi_r: bytes) -> IkeV2Keys | None:
        """The key set loaded last for this SPI pair (`ikev2_all` gives every one)."""
        return next(reversed(self.ikev2_all(spi_i, spi_r)), None)

    def ikev2_all(self, spi_i: bytes, spi_r: bytes) -> list[IkeV2Keys]:
        return list(self._v2.get((bytes(spi_i), bytes(spi_r)), []))

    def esp(self, spi: int, src: str, dst: str) -> EspKey | None:
        """The key for this SPI and outer addresses: exact addresses first, then `*` wildcards (a key table
        line with SPI `*` matches any SPI); failing that, the one key known for this SPI (the receiver picks
        SPIs; a daemon logs its own view of the addresses, which a NAT changes; the ICV tells a wrong pick)."""
        src, dst = _addr(src), _addr(dst)
        best = None
        for key in self._esp.get(spi, []) + self._esp.get(None, []):
            if not (_matches(key.src, src) and _matches(key.dst, dst)):
                continue
            rank = (key.spi is not None, key.src != "*", key.dst != "*")
            if best is None or rank > best[0]:
                best = (rank, key)
        if best:
            return best[1]
        same = {(k.encr, k.enc_key, k.integ, k.auth_key): k for k in self._esp.get(spi, [])}
        return next(iter(same.values())) if len(same) == 1 else None

    def all(self) -> list[IkeV1Key | IkeV2Keys | EspKey]:
        return [k for table in (self._v1, self._v2, self._esp) for ks in table.values() for k in ks]

    @property
    def counts(self) -> dict[str, int]:
        """How many distinct keys of each kind: {"ikev1": n, "ikev2": n, "esp": n}."""
        return {kind: sum(len(ks) for ks in table.values())
                for kind, table in (("ikev1", self._v1), ("ikev2", self._v2), ("esp", self._esp))}

    def __bool__(self) -> bool:
        return any(self.counts.values())
