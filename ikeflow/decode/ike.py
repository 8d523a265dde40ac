"""ISAKMP / IKEv1 / IKEv2 message decoder.

`decode_isakmp(data)` takes the bytes of one message starting at the ISAKMP
header (the 4-byte non-ESP marker already stripped) and never raises: faults
are reported in `IkeMessage.malformed` as a short reason, and every payload
decoded before the fault is kept.

Payload `info` keys by short name (both versions unless noted):
  SA       proposals: [Proposal]; v1 also doi, situation
  KE       key_length; v2 also group, group_name
  ID/IDi/IDr  id_type, id_type_name, value; v1 also protocol, port
  CERT/CR/CERTREQ  encoding, encoding_name, data
  HASH/SIG/NONCE   length
  AUTH (v2)        method, method_name, length, data
  N        notify_type, notify_name, protocol, spi, data; v1 also doi;
           accepted_group (v2 INVALID_KE_PAYLOAD), sequence (v1 DPD)
  D        protocol, protocol_name, spis; v1 also doi
  VID/V    vendor (str | None), hex
  NAT-D    hash
  NAT-OA   id_type, address
  TSi/TSr  selectors: [{type, protocol, start_port, end_port, start, end}]
  ATTR/CP  cfg_type, cfg_type_name, attributes: [(type, name, value bytes)];
           v1 also identifier
  FRAG (v1 132)    fragment_id, number, last, data_length, data (a piece of the whole
                   message, ISAKMP header included; the model reassembles them)
  SK/SKF (v2)      first_payload, first_payload_type, encrypted_length;
                   SKF also fragment, total
  EAP (v2)         code, code_name, identifier, eap_type (None unless Request/Response)
  ENC (v1, E flag) first_payload, first_payload_type, encrypted_length
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from ikeflow.decode import names

HEADER_LEN = 28

# IKEv1 header flags (RFC 2408 3.1)
FLAG_ENCRYPTION = 0x01
FLAG_COMMIT = 0x02
# IKEv2 header flags (RFC 7296 3.1)
FLAG_INITIATOR = 0x08
FLAG_RESPONSE = 0x20
# IKEv2 generic payload header critical bit
CRITICAL = 0x80


@dataclass(slots=True)
class V1Transform:
    """IKEv1 transform: id in the proposal protocol's namespace, SA attributes.

    `attributes` maps short names (phase 1: encryption, hash, auth, group,
    life_type, life_duration, key_length, prf...; IPsec DOI: life_type,
    life_duration, group, encap_mode, auth_alg, key_length, esn...) to int,
    or bytes for long variable-length values; unknown types appear as
    "attr_N". `attrs` keeps the raw (type, value) list in wire order.
    """

    number: int
    id: int
    name: str
    attributes: dict[str, int | bytes]
    attrs: list[tuple[int, int | bytes]]
    protocol: int = 1


@dataclass(slots=True)
class V2Transform:
    """IKEv2 transform: type (1 ENCR, 2 PRF, 3 INTEG, 4 DH, 5 ESN), id, key length."""

    type: int
    type_name: str
    id: int
    name: str
    key_length: int | None = None


Transform = V1Transform | V2Transform


@dataclass(slots=True)
class Proposal:
    """SA proposal; `transforms` holds V1Transform or V2Transform by IKE version."""

    number: int
    protocol: int
    protocol_name: str
    spi: bytes
    transforms: list = field(default_factory=list)
    version: int = 1


@dataclass(slots=True)
class Payload:
    """One payload: wire type, short name, generic-header length, body, decoded info."""

    type: int
    name: str
    length: int
    body: bytes
    info: dict = field(default_factory=dict)
    flags: int = 0  # byte after next-payload (IKEv2 critical bit)

    @property
    def critical(self) -> bool:
        return bool(self.flags & CRITICAL)


@dataclass(slots=True)
class IkeMessage:
    """Decoded ISAKMP header plus payload list."""

    ispi: bytes
    rspi: bytes
    next_payload: int
    version: int
    minor_version: int
    exchange_type: int
    flags: int
    message_id: int
    length: int
    payloads: list[Payload] = field(default_factory=list)
    malformed: str | None = None
    size: int = 0
    # set by the model when keys are given (model.decryption): True decrypted and verified, False keys given
    # that do not verify, None no keys; `inner` the payloads inside SK/SKF or the IKEv1 encrypted body
    decrypted: bool | None = None
    inner: list[Payload] = field(default_factory=list)
    decrypt_note: str | None = None  # why the keys did not verify, or how it decrypted where that is unusual

    @property
    def initiator(self) -> bool:
        """IKEv2 I flag; always False for IKEv1 (roles are inferred elsewhere)."""
        return self.version == 2 and bool(self.flags & FLAG_INITIATOR)

    @property
    def response(self) -> bool:
        """IKEv2 R flag; always False for IKEv1."""
        return self.version == 2 and bool(self.flags & FLAG_RESPONSE)

    @property
    def encrypted(self) -> bool:
        """IKEv1 E flag; IKEv2: an SK or SKF payload is present."""
        if self.version == 2:
            for p in self.payloads:  # a loop: asked several times a message
                if p.type == 46 or p.type == 53:
                    return True
            return False
        return bool(self.flags & FLAG_ENCRYPTION)

    @property
    def commit(self) -> bool:
        """IKEv1 C flag."""
        return self.version != 2 and bool(self.flags & FLAG_COMMIT)

    @property
    def exchange(self) -> str:
        return names.exchange_name(self.version, self.exchange_type)

    @property
    def notifies(self) -> list[tuple[int, str]]:
        """(type, name) of every Notify payload in clear, then of every decrypted one, in order."""
        return [
            (p.info["notify_type"], p.info["notify_name"])
            for p in (*self.payloads, *self.inner) if p.name == "N" and "notify_type" in p.info
        ]

    def inner_payload(self, name: str) -> Payload | None:
        """First decrypted payload with this short name, or None."""
        for p in self.inner:
            if p.name == name:
                return p
        return None

    def payload(self, name: str) -> Payload | None:
        """First payload with this short name, or None (a loop: the model asks several times a message)."""
        for p in self.payloads:
            if p.name == name:
                return p
        return None

    @property
    def encrypted_first(self) -> str | None:
        """IKEv2: the name of the first encrypted payload, in clear in the SK header (and in the first SKF
        fragment's, RFC 7383 2.5); "NONE" when nothing is inside; None without SK."""
        sk = self.payload("SK")
        if sk is None:
            sk = self.payload("SKF")
            if sk is None or sk.info.get("fragment") != 1:
                return None
        return sk.info.get("first_payload")


class _Bad(Exception):
    """Structural fault inside a payload body."""


def _need(buf: bytes, off: int, n: int, what: str) -> None:
    if off + n > len(buf):
        raise _Bad(f"{what} needs {n} bytes at offset {off}, {max(0, len(buf) - off)} left")


def decode_isakmp(data: bytes) -> IkeMessage:
    """Decode one ISAKMP/IKE message; never raises."""
    data = bytes(data)
    size = len(data)
    if size < HEADER_LEN:
        return IkeMessage(
            ispi=data[0:8], rspi=data[8:16],
            next_payload=data[16] if size > 16 else 0,
            version=data[17] >> 4 if size > 17 else 0,
            minor_version=data[17] & 0x0F if size > 17 else 0,
            exchange_type=data[18] if size > 18 else 0,
            flags=data[19] if size > 19 else 0,
            message_id=0, length=0,
            malformed=f"truncated header: {size} bytes < {HEADER_LEN}", size=size,
        )
    ispi, rspi, nxt, version, kind, flags, msg_id, length = _HEADER(data)
    msg = IkeMessage(ispi, rspi, nxt, version >> 4, version & 0x0F, kind, flags, msg_id, length, [], None, size)
    if length < HEADER_LEN:
        msg.malformed = f"header length {length} < {HEADER_LEN}"
        end = size
    elif length > size:
        msg.malformed = f"truncated: header says {length} bytes, {size} present"
        end = size
    else:
        end = length  # bytes past the header length (seen as padding) are ignored
    if msg.version not in (1, 2):
        msg.malformed = msg.malformed or f"unknown IKE version {msg.version}.{msg.minor_version}"
        return msg
    if msg.version == 1 and msg.flags & FLAG_ENCRYPTION:
        body = data[HEADER_LEN:end]
        msg.payloads.append(Payload(
            type=msg.next_payload, name="ENC", length=len(body), body=body,
            info={
                "first_payload": names.payload_name(1, msg.next_payload),
                "first_payload_type": msg.next_payload,
                "encrypted_length": len(body),
            },
        ))
        return msg
    fault = _chain(data, HEADER_LEN, end, msg.version, msg.next_payload, msg.payloads, outer=True)
    if fault and not msg.malformed:
        msg.malformed = fault
    return msg


def decode_inner(version: int, first: int, plaintext: bytes) -> tuple[list[Payload], str | None]:
    """The payload chain inside an SK/SKF payload (its padding already removed) or an IKEv1 encrypted
    body (bytes after the last payload are its CBC padding, RFC 2408 3.5): (payloads, first fault).
    Never raises; an IKEv2 SK cannot nest."""
    out: list[Payload] = []
    fault = _chain(bytes(plaintext), 0, len(plaintext), version, first, out, outer=False)
    return out, fault


def _chain(data: bytes, off: int, end: int, version: int, ptype: int, out: list[Payload], outer: bool) -> str | None:
    """Decode payloads from `off` following next-payload from `ptype` into `out`; return the first fault."""
    table = names.PAYLOADS_V2 if version == 2 else names.PAYLOADS_V1
    decoders = _DECODERS[version]
    index, fault = 0, None
    while ptype != 0:
        index += 1
        pname = table.get(ptype) or names.payload_name(version, ptype)
        if off + 4 > end:
            left = end - off
            return fault or (f"{_label(index, pname)} missing: message ends at offset {off}" if left <= 0
                             else f"{_label(index, pname)} header truncated: {left} bytes left")
        nxt, pflags, plen = _PAYLOAD_HEADER(data, off)
        if plen < 4:
            return fault or f"{_label(index, pname)} length {plen} < 4"
        if off + plen > end:
            return fault or f"{_label(index, pname)} length {plen} runs past end ({end - off} bytes left)"
        body = data[off + 4:off + plen]
        payload = Payload(ptype, pname, plen, body, {}, pflags)
        out.append(payload)
        if ptype not in table or ptype in (2, 3):
            if version == 1 or pflags & CRITICAL:
                fault = fault or (f"{_label(index, pname)}: unknown{' critical' if version == 2 else ''} "
                                  f"payload type {ptype}")
        elif not outer and ptype in (46, 53):
            fault = fault or f"{_label(index, pname)} inside an encrypted payload"
        else:
            try:
                payload.info = decoders.get(ptype, _no_info)(body, nxt)
            except (_Bad, ValueError, struct.error) as exc:
                fault = fault or f"{_label(index, pname)} {exc}"
        off += plen
        if outer and version == 2 and ptype in (46, 53):
            if off < end:
                fault = fault or f"{end - off} bytes after {pname} payload"
            return fault
        ptype = nxt
    if off < end and (outer or version == 2):
        fault = fault or f"{end - off} bytes after last payload"
    return fault


_PAYLOAD_HEADER = struct.Struct("!BBH").unpack_from  # next payload, flags, length
# initiator SPI, responder SPI, next payload, version byte, exchange type, flags, message ID, length
_HEADER = struct.Struct("!8s8sBBBBII").unpack_from


def _label(index: int, name: str) -> str:
    """How a fault names the payload it is in (written only when there is a fault)."""
    return f"payload {index} ({name})"


# --- shared helpers --------------------------------------------------------

def _attributes(buf: bytes, off: int) -> list[tuple[int, int | bytes, bool]]:
    """Parse ISAKMP data attributes (TV when AF bit set, else TLV): (type, value, is_tv)."""
    out = []
    while off < len(buf):
        _need(buf, off, 4, "attribute")
        atype, val = struct.unpack_from("!HH", buf, off)
        if atype & 0x8000:
            out.append((atype & 0x7FFF, val, True))
            off += 4
        else:
            _need(buf, off + 4, val, f"attribute {atype} value")
            out.append((atype, buf[off + 4:off + 4 + val], False))
            off += 4 + val
    return out


def _address(raw: bytes) -> str:
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return raw.hex()


def _prefix(mask: bytes) -> str:
    bits = int.from_bytes(mask, "big")
    width = len(mask) * 8
    n = bin(bits).count("1")
    contiguous = bits == ((1 << width) - 1) ^ ((1 << (width - n)) - 1)
    return str(n) if contiguous else _address(mask)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _id_value(id_type: int, raw: bytes, version: int) -> str:
    """Human text for identification data (RFC 2407 4.6.2, RFC 7296 3.5)."""
    if id_type in (1, 5) and len(raw) == (4 if id_type == 1 else 16):
        return _address(raw)
    if id_type in (2, 3):
        return _text(raw)
    if version == 1 and id_type in (4, 6, 7, 8):
        half = len(raw) // 2
        if len(raw) in (8, 32):
            a, b = raw[:half], raw[half:]
            if id_type in (4, 6):
                return f"{_address(a)}/{_prefix(b)}"
            return f"{_address(a)}-{_address(b)}"
    if id_type == 11 and raw.isascii() and raw.decode("ascii").isprintable():
        return raw.decode("ascii")
    return raw.hex()


def _no_info(body: bytes, nxt: int) -> dict:
    return {}


def _length_info(body: bytes, nxt: int) -> dict:
    return {"length": len(body)}


def _vid(body: bytes, nxt: int) -> dict:
    return {"vendor": names.vendor_name(body), "hex": body.hex()}


def _nat_d(body: bytes, nxt: int) -> dict:
    return {"hash": body}


def _nat_oa(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "NAT-OA header")
    return {"id_type": body[0], "address": _address(body[4:])}


def draft_natt(p: Payload) -> Payload:
    """IKEv1 payload 15 or 16 read as NAT-D or NAT-OA, the numbers of draft-ietf-ipsec-nat-t-ike-04..08
    (ipsec-tools' NATD_BADDRAFT/NATOA_BADDRAFT) that RFC 6407 gives GDOI's SAK/SAT: only the NAT-T vendor
    IDs both peers sent tell which, so the model decides when to call this."""
    rfc = 20 if p.type == 15 else 21
    out = Payload(type=p.type, name=names.payload_name(1, rfc), length=p.length, body=p.body, flags=p.flags)
    try:
        out.info = _DECODERS[1][rfc](p.body, 0)
    except _Bad:
        pass
    return out


def _cert(body: bytes, nxt: int) -> dict:
    _need(body, 0, 1, "encoding")
    return {
        "encoding": body[0],
        "encoding_name": names.CERT_ENCODINGS.get(body[0], f"type {body[0]}"),
        "data": body[1:],
    }


# --- SA payloads -----------------------------------------------------------

def _proposals(buf: bytes, off: int, version: int) -> list[Proposal]:
    """Walk the proposal substructures (next 2 = more, 0 = last)."""
    out, more = [], True
    while more and off < len(buf):
        _need(buf, off, 8, f"proposal {len(out) + 1}")
        nxt, plen, number, proto, spi_size, count = struct.unpack_from("!BxHBBBB", buf, off)
        if plen < 8 + spi_size:
            raise _Bad(f"proposal {number} length {plen} too short")
        _need(buf, off, plen, f"proposal {number}")
        sub = buf[off:off + plen]
        prop = Proposal(
            number=number, protocol=proto,
            protocol_name=names.protocol_name(version, proto),
            spi=sub[8:8 + spi_size], version=version,
        )
        out.append(prop)
        toff = 8 + spi_size
        for _ in range(count):
            _need(sub, toff, 8, f"proposal {number} transform")
            tnext, tlen = struct.unpack_from("!BxH", sub, toff)
            if tlen < 8:
                raise _Bad(f"proposal {number} transform length {tlen} < 8")
            _need(sub, toff, tlen, f"proposal {number} transform")
            tbuf = sub[toff:toff + tlen]
            prop.transforms.append(_transform_v2(tbuf) if version == 2 else _transform_v1(tbuf, proto))
            toff += tlen
            if tnext != 3:
                break
        more = nxt == 2
        off += plen
    return out


def _transform_v1(t: bytes, proto: int) -> V1Transform:
    number, tid = t[4], t[5]
    table = names.IKE_ATTRIBUTES if proto == 1 else names.IPSEC_ATTRIBUTES
    attributes: dict[str, int | bytes] = {}
    attrs: list[tuple[int, int | bytes]] = []
    for atype, val, _tv in _attributes(t, 8):
        if isinstance(val, bytes) and len(val) <= 8:
            val = int.from_bytes(val, "big")
        attrs.append((atype, val))
        attributes.setdefault(table.get(atype, f"attr_{atype}"), val)
    return V1Transform(number=number, id=tid, name=names.v1_transform_name(proto, tid),
                       attributes=attributes, attrs=attrs, protocol=proto)


def _transform_v2(t: bytes) -> V2Transform:
    ttype, tid = t[4], struct.unpack_from("!H", t, 6)[0]
    key_length = None
    for atype, val, tv in _attributes(t, 8):
        if atype == 14 and tv:
            key_length = val
    return V2Transform(type=ttype, type_name=names.V2_TRANSFORM_TYPES.get(ttype, f"type {ttype}"),
                       id=tid, name=names.v2_transform_name(ttype, tid), key_length=key_length)


def _sa_v1(body: bytes, nxt: int) -> dict:
    _need(body, 0, 8, "DOI/situation")
    doi, situation = struct.unpack_from("!II", body, 0)
    info = {"doi": doi, "situation": situation, "proposals": []}
    if doi == 1:
        info["proposals"] = _proposals(body, 8, 1)
    return info


def _sa_v2(body: bytes, nxt: int) -> dict:
    return {"proposals": _proposals(body, 0, 2)}


# --- IKEv1 bodies ----------------------------------------------------------

def _ke_v1(body: bytes, nxt: int) -> dict:
    return {"key_length": len(body)}


def _id_v1(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "ID header")
    id_type, proto, port = struct.unpack_from("!BBH", body, 0)
    return {
        "id_type": id_type, "id_type_name": names.id_type_name(1, id_type),
        "value": _id_value(id_type, body[4:], 1), "protocol": proto, "port": port,
    }


def _notify_v1(body: bytes, nxt: int) -> dict:
    _need(body, 0, 8, "notify header")
    doi, proto, spi_size, ntype = struct.unpack_from("!IBBH", body, 0)
    _need(body, 8, spi_size, "notify SPI")
    info = {
        "notify_type": ntype, "notify_name": names.notify_name(1, ntype),
        "protocol": proto, "spi": body[8:8 + spi_size], "data": body[8 + spi_size:], "doi": doi,
    }
    if ntype in (36136, 36137) and len(info["data"]) == 4:
        info["sequence"] = int.from_bytes(info["data"], "big")
    return info


def _delete_v1(body: bytes, nxt: int) -> dict:
    _need(body, 0, 8, "delete header")
    doi, proto, spi_size, count = struct.unpack_from("!IBBH", body, 0)
    return {"doi": doi, **_spis(body, 8, proto, spi_size, count, 1)}


def _spis(body: bytes, off: int, proto: int, spi_size: int, count: int, version: int) -> dict:
    _need(body, off, spi_size * count, f"{count} SPIs of {spi_size} bytes")
    return {
        "protocol": proto, "protocol_name": names.protocol_name(version, proto),
        "spis": [body[off + i * spi_size:off + (i + 1) * spi_size] for i in range(count)],
    }


def _cfg_attributes(version: int, attrs) -> list[tuple[int, str, bytes]]:
    table = names.CFG_ATTRIBUTES_V2 if version == 2 else names.CFG_ATTRIBUTES_V1
    return [
        (atype, table.get(atype, f"type {atype}"), val.to_bytes(2, "big") if tv else val)
        for atype, val, tv in attrs
    ]


def _attr_v1(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "ATTR header")
    cfg_type, identifier = body[0], struct.unpack_from("!H", body, 2)[0]
    return {
        "cfg_type": cfg_type,
        "cfg_type_name": names.CFG_TYPES_V1.get(cfg_type, f"type {cfg_type}"),
        "identifier": identifier,
        "attributes": _cfg_attributes(1, _attributes(body, 4)),
    }


def _frag_v1(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "fragment header")
    frag_id, number, flags = struct.unpack_from("!HBB", body, 0)
    return {"fragment_id": frag_id, "number": number, "last": bool(flags & 1), "data_length": len(body) - 4,
            "data": body[4:]}


def _seq_v1(body: bytes, nxt: int) -> dict:
    return {"sequence": int.from_bytes(body, "big")} if len(body) == 4 else {}


# --- IKEv2 bodies ----------------------------------------------------------

def _ke_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "KE header")
    group = struct.unpack_from("!H", body, 0)[0]
    return {"group": group, "group_name": names.group_name(group), "key_length": len(body) - 4}


def _id_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "ID header")
    id_type = body[0]
    return {"id_type": id_type, "id_type_name": names.id_type_name(2, id_type),
            "value": _id_value(id_type, body[4:], 2)}


def _auth_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "AUTH header")
    return {"method": body[0], "method_name": names.AUTH_METHODS_V2.get(body[0], f"method {body[0]}"),
            "length": len(body) - 4, "data": body[4:]}


def _notify_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "notify header")
    proto, spi_size, ntype = struct.unpack_from("!BBH", body, 0)
    _need(body, 4, spi_size, "notify SPI")
    data = body[4 + spi_size:]
    info = {"notify_type": ntype, "notify_name": names.notify_name(2, ntype),
            "protocol": proto, "spi": body[4:4 + spi_size], "data": data}
    if ntype == 17 and len(data) == 2:
        info["accepted_group"] = int.from_bytes(data, "big")
    return info


def _delete_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "delete header")
    proto, spi_size, count = struct.unpack_from("!BBH", body, 0)
    return _spis(body, 4, proto, spi_size, count, 2)


def _ts_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "TS header")
    count, off, selectors = body[0], 4, []
    for i in range(count):
        _need(body, off, 8, f"selector {i + 1}")
        stype, proto, slen, sport, eport = struct.unpack_from("!BBHHH", body, off)
        if slen < 8:
            raise _Bad(f"selector {i + 1} length {slen} < 8")
        _need(body, off, slen, f"selector {i + 1}")
        addrs = body[off + 8:off + slen]
        half = len(addrs) // 2
        selectors.append({
            "type": stype, "protocol": proto, "start_port": sport, "end_port": eport,
            "start": _address(addrs[:half]), "end": _address(addrs[half:]),
        })
        off += slen
    return {"selectors": selectors}


def _sk(body: bytes, nxt: int) -> dict:
    return {"first_payload": names.payload_name(2, nxt), "first_payload_type": nxt,
            "encrypted_length": len(body)}


def _skf(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "SKF header")
    number, total = struct.unpack_from("!HH", body, 0)
    return {"fragment": number, "total": total, "first_payload": names.payload_name(2, nxt),
            "first_payload_type": nxt, "encrypted_length": len(body) - 4}


def _cp_v2(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "CP header")
    attrs, off = [], 4
    while off < len(body):
        _need(body, off, 4, "CP attribute")
        atype, alen = struct.unpack_from("!HH", body, off)
        _need(body, off + 4, alen, f"CP attribute {atype & 0x7FFF} value")
        attrs.append((atype & 0x7FFF, body[off + 4:off + 4 + alen], False))
        off += 4 + alen
    return {"cfg_type": body[0], "cfg_type_name": names.CFG_TYPES_V2.get(body[0], f"type {body[0]}"),
            "attributes": _cfg_attributes(2, attrs)}


def _eap(body: bytes, nxt: int) -> dict:
    _need(body, 0, 4, "EAP header")
    code, ident = body[0], body[1]
    eap_type = body[4] if code in (1, 2) and len(body) > 4 else None
    return {"code": code, "code_name": names.EAP_CODES.get(code, f"code {code}"),
            "identifier": ident, "eap_type": eap_type}


_DECODERS = {
    1: {
        1: _sa_v1, 4: _ke_v1, 5: _id_v1, 6: _cert, 7: _cert, 8: _length_info, 9: _length_info,
        10: _length_info, 11: _notify_v1, 12: _delete_v1, 13: _vid, 14: _attr_v1, 18: _seq_v1,
        20: _nat_d, 21: _nat_oa, 130: _nat_d, 131: _nat_oa, 132: _frag_v1,
    },
    2: {
        33: _sa_v2, 34: _ke_v2, 35: _id_v2, 36: _id_v2, 37: _cert, 38: _cert, 39: _auth_v2,
        40: _length_info, 41: _notify_v2, 42: _delete_v2, 43: _vid, 44: _ts_v2, 45: _ts_v2,
        46: _sk, 47: _cp_v2, 48: _eap, 53: _skf,
    },
}
