"""Decrypting the messages of one IKE SA with the admin's keys, so that the model sees the payloads
inside exactly as clear ones (`IkeMessage.inner`, `IkeMessage.decrypted`).

IKEv1 (RFC 2409 appendix B): the phase-1 IV is hash(g^xi | g^xr) cut to the cipher's block, taken from
the KE payloads of MM3/MM4 (AM1/AM2); each encrypted phase-1 message (MM5, MM6, AM3) chains on from the
last ciphertext block of the one before.  Every other exchange (Quick Mode, Informational, Transaction)
starts from hash(last phase-1 block | message ID) and chains per message ID.  An Informational sent
before phase 1 completed has an IV that implementations derive differently: from the last phase-1 block
the sender itself took (one that could not decrypt MM5 never took MM5's: strongSwan's iv_manager.c
confirms an IV only once the message verified), hashed with the message ID or used as it is; every
phase-1 IV so far is tried both ways, newest first, then hash(message ID) alone (libreswan: its phase-1 IV
is still empty, `decrypt.v1_new_exchange_ivs`); the one that verified is kept (`variants`).  A re-sent
message (the same bytes) decrypts as it did the first time and leaves the chain alone.

Every distinct key given for the SA is tried on every message (`KeyRing.ikev1_all`/`ikev2_all`): with both
daemons' logs of an IKEv1 PSK mismatch each end's messages open under its own key only.  Which key (and which
IV) opened each message is kept (`opener`), and `proof` says what that shows: the two ends derived different
keys for the same exchange.

IKEv2: SK (RFC 7296 3.14) with the keys of its SPI pair, and SKF fragments (RFC 7383 2.6) each
verified on its own, their plaintexts joined once all are in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import itertools
from dataclasses import dataclass
from pathlib import Path

from ikeflow.decode import decrypt
from ikeflow.decode.ike import FLAG_ENCRYPTION, IkeMessage, Payload, decode_inner, decode_isakmp
from ikeflow.decode.proposals import summarize_sa
from ikeflow.model import sequences

KEEP_OPENED = 256  # messages remembered per SA so that a re-sent one is not decrypted again
# messages per SA whose opening key is remembered (`Decryption.opener`): the first ones and the latest, as the
# SA keeps its messages (ikesa.KEEP at each end)
KEEP_OPENERS_FIRST, KEEP_OPENERS = 64, 256
KEEP_FRAGMENTS = 8  # fragmented messages collected at once per SA
FLAG_BYTE = 19  # offset of the flags in the ISAKMP header
HASH_PAYLOAD = 8
V1_IV_UNKNOWN = "IV unknown: the payloads after the HASH decrypted, the HASH's own first bytes are not readable"
V1_IV_EMPTY = "hash(message ID)"  # libreswan's phase-1 Informational: its phase-1 IV still empty (decrypt.py)
WHO = {"I": "initiator", "R": "responder"}
V1_PSK = (1, 65001, 65002)  # Authentication Method: pre-shared key, XAUTHInitPreShared, XAUTHRespPreShared
PHASE1 = (2, 4)  # IKEv1 Main and Aggressive Mode: message ID 0, the phase-1 IV chain
PHASE1_MESSAGE = {(2, "I"): "MM5", (2, "R"): "MM6", (4, "I"): "AM3", (4, "R"): "AM2"}  # an encrypted one, by sender


@dataclass(frozen=True, slots=True)
class Opener:
    """Which of an SA's keys opened a message: its place among the distinct keys given for the SA (load order),
    where that key was read (a file; "" when not known) and, IKEv1, the IV derivation that verified ("" the
    one RFC 2409 gives: the phase-1 chain, hash(last phase-1 block | message ID), or the exchange's chain)."""

    key: int
    source: str
    iv: str = ""


@dataclass(slots=True)
class Opened:
    """What decrypting one message gave."""

    ok: bool
    inner: list[Payload]
    note: str | None = None  # why it did not verify; or the inner chain's fault, or the IKEv1 IV that verified
    opener: Opener | None = None  # which key opened it (ok only)


class Decryption:
    """Per IKE SA: the keys found for it and the IKEv1 IV chain."""

    __slots__ = ("ring", "rekeys", "gx", "phase1_iv", "phase1_ivs", "phase1_done", "ivs", "opened", "fragments",
                 "pieces", "v2keys", "variants", "openers", "keys", "psk")

    def __init__(self, ring, rekeys: dict):
        self.ring = ring  # keys.KeyRing
        # IKEv2 SPI -> the IKE proposal a decrypted CREATE_CHILD_SA rekeyed an IKE SA with (shared by all SAs):
        # the new SA has no IKE_SA_INIT, so its algorithms come from there when the key source has none
        self.rekeys = rekeys
        self.gx: dict[str, bytes] = {}  # IKEv1 phase 1: "I"/"R" -> its public DH value (KE payload data)
        self.phase1_iv: bytes | None = None  # IKEv1: the running phase-1 IV (the last phase-1 ciphertext block)
        self.phase1_ivs: list[tuple[str, bytes]] = []  # IKEv1: every phase-1 IV so far, (where from, IV)
        self.variants: dict[int, str] = {}  # IKEv1 message ID -> the IV derivation that verified, where several
        self.phase1_done = False  # IKEv1: MM6 or an encrypted AM3 went by
        self.ivs: dict[int, bytes] = {}  # IKEv1 message ID -> IV for its next message
        self.opened: dict[int, Opened] = {}  # hash of the message bytes -> what they gave
        self.fragments: dict[tuple, dict] = {}  # IKEv2 SKF: (sender I flag, response, message ID) -> pieces
        self.pieces: dict[tuple, dict] = {}  # IKEv1 fragments: (sender, fragment ID) -> {number: data, 0: last}
        self.v2keys: tuple[tuple[bytes, bytes], list] | None = None  # IKEv2: SPI pair, its keys with algorithms
        self.openers: dict[int, tuple[IkeMessage, Opener]] = {}  # id(message) -> (it, the key that opened it)
        self.keys: list = []  # the distinct keys given for this SA, in load order (the last IKE SPIs looked up)
        self.psk = False  # IKEv1: the chosen phase-1 authentication is by pre-shared key (the keys derive from it)

    def open(self, msg: IkeMessage, raw: bytes, sender: str, chosen: Payload | None) -> None:
        """Decrypt `msg` (its bytes `raw`, sent by "I" or "R") when it is encrypted and there are keys for it;
        `chosen` is the responder's phase-1 / IKE_SA_INIT SA payload (the algorithms).  Sets msg.decrypted
        and msg.inner; a clear IKEv1 phase-1 KE payload is remembered for the IV."""
        if msg.version == 1 and not msg.encrypted:
            ke = msg.payload("KE")
            if ke is not None and msg.exchange_type in PHASE1 and sender not in self.gx:
                self.gx[sender] = ke.body
            whole = self._v1_fragment(msg, sender)
            if whole is not None:  # the last piece of an encrypted message sent in IKE fragments (payload 132)
                self._open(decode_isakmp(whole), whole, sender, chosen, msg)
            return
        if not msg.encrypted or msg.malformed:
            return
        self._open(msg, raw, sender, chosen, msg)

    def _open(self, msg: IkeMessage, raw: bytes, sender: str, chosen: Payload | None, into: IkeMessage) -> None:
        digest = hash(raw)
        done = self.opened.get(digest)
        if done is None:
            done = self._v1(msg, sender, chosen) if msg.version == 1 else self._v2(msg, raw, chosen)
            if done is None:
                return
            self.opened[digest] = done
            if len(self.opened) > KEEP_OPENED:
                del self.opened[next(iter(self.opened))]
        into.decrypted = done.ok
        into.inner = done.inner
        into.decrypt_note = done.note
        if done.opener is not None:
            self.openers[id(into)] = (into, done.opener)
            if len(self.openers) > KEEP_OPENERS:
                del self.openers[next(itertools.islice(self.openers, KEEP_OPENERS_FIRST, None))]

    def opener(self, msg: IkeMessage) -> Opener | None:
        """Which key (and IKEv1 IV) opened `msg`; None when it did not decrypt or was not tried."""
        held = self.openers.get(id(msg))
        return held[1] if held is not None and held[0] is msg else None

    def proof(self, messages) -> str | None:
        """With several keys given for this SA (both daemons' logs), which messages open under which key, when
        no message opens under two: the keys the two ends derived differ (IKEv1 with a PSK: the pre-shared keys
        differ, RFC 2409 5).  `messages` are the SA's `Seen`; None when there is nothing to prove."""
        if len(self.keys) < 2:
            return None
        opened: dict[int, dict[str, list[str]]] = {}
        for m in messages:
            how = self.opener(m.msg)
            if how is not None:
                labels = opened.setdefault(how.key, {}).setdefault(m.sender, [])
                if m.label not in labels:
                    labels.append(m.label)
        if not opened:
            return None
        said = []
        for index, key in enumerate(self.keys):
            name = _source_name(key.source, index)
            sides = opened.get(index)
            if sides is None:
                said.append(f"the key from {name} opens none of them")
            else:
                said.append(f"the key from {name} opens " + " and ".join(
                    f"the {WHO[sender]}'s {', '.join(labels)}" for sender, labels in sorted(sides.items())))
        split = len(opened) > 1 and all(len(sides) == 1 for sides in opened.values())
        why = "the two ends derived different keys for this IKE SA"
        if self.psk and getattr(self.keys[0], "icookie", None) is not None:
            why += " (IKEv1 derives them from the pre-shared key, RFC 2409 5: the PSKs differ)"
        return "; ".join(said) + (f": each end's messages open only under its own key, {why}" if split else
                                  f": {why}")

    # -- IKEv1 ---------------------------------------------------------------------------

    def _v1_fragment(self, msg: IkeMessage, sender: str) -> bytes | None:
        """IKEv1 fragmentation: keep this piece; the whole message once pieces 1..last are in and it is
        encrypted (the model reads a clear one itself), else None."""
        frag = msg.payload("FRAG")
        if frag is None or "data" not in frag.info or not frag.info["number"]:
            return None
        key = (sender, frag.info["fragment_id"])
        pieces = self.pieces.setdefault(key, {})
        pieces[frag.info["number"]] = frag.info["data"]
        if frag.info["last"]:
            pieces[0] = frag.info["number"]  # where the last piece's number is kept
        if len(self.pieces) > KEEP_FRAGMENTS:
            del self.pieces[next(iter(self.pieces))]
        last = pieces.get(0)
        if not last or any(n not in pieces for n in range(1, last + 1)):
            return None
        whole = b"".join(pieces[n] for n in range(1, last + 1))
        self.pieces.pop(key, None)
        return whole if len(whole) > FLAG_BYTE and whole[FLAG_BYTE] & FLAG_ENCRYPTION else None

    def _v1(self, msg: IkeMessage, sender: str, chosen: Payload | None) -> Opened | None:
        keys = self.ring.ikev1_all(msg.ispi)
        suite = _v1_suite(chosen)
        if not keys or suite is None:
            return None
        self.keys = keys
        self.psk = _v1_auth(chosen) in V1_PSK
        cipher, hash_name, block, size = suite
        body = msg.payloads[0].body
        if not body or len(body) % block:
            return Opened(False, [], f"encrypted body of {len(body)} bytes is not whole {block}-byte blocks")
        if self.phase1_iv is None:
            if len(self.gx) < 2:
                return None  # the KE payloads of phase 1 are not in the capture: no IV
            self.phase1_iv = decrypt.v1_phase1_iv(hash_name, self.gx["I"], self.gx["R"], block)
            self.phase1_ivs.append(("hash(g^xi | g^xr)", self.phase1_iv))
        mid = msg.message_id
        if msg.exchange_type in PHASE1 and mid == 0:
            tries = [("", self.phase1_iv)]
        elif mid in self.ivs:
            tries = [("", self.ivs[mid])]
        else:
            fresh = dict(decrypt.v1_new_exchange_ivs(hash_name, self.phase1_iv, mid, block))
            if msg.exchange_type == 5 and not self.phase1_done:
                tries = [t for where, iv in reversed(self.phase1_ivs) for t in (
                    (f"hash({where} | message ID)", decrypt.v1_phase2_iv(hash_name, iv, mid, block)), (where, iv))]
            else:
                tries = [("", fresh["rfc2409"])]
            tries.append((V1_IV_EMPTY, fresh["empty-phase1-iv"]))
        last = body[-block:]
        if msg.exchange_type in PHASE1 and mid == 0:
            self.phase1_iv = last  # CBC chains on ciphertext: the next IV whether or not this key fits
            self.phase1_ivs.append((f"the last block of {PHASE1_MESSAGE.get((msg.exchange_type, sender), '?')}", last))
            self.phase1_done = self.phase1_done or sender == ("R" if msg.exchange_type == 2 else "I")
        else:
            self.ivs[mid] = last
            if len(self.ivs) > KEEP_OPENED:
                del self.ivs[next(iter(self.ivs))]
        found: list[tuple[int, str, bytes]] = []  # (key index, IV variant, plaintext) of each key that verified
        problems = []
        for index, key in enumerate(keys):
            for variant, iv in tries:
                try:
                    plaintext, _ = decrypt.v1_decrypt(body, key.enc_key[:size], iv, cipher)
                except ValueError as exc:
                    problems.append(_keyed(str(exc), key, index, len(keys)))
                    break
                if decrypt.v1_plausible(plaintext, msg.next_payload):
                    found.append((index, variant, plaintext))
                    break
        if found:
            index, variant, plaintext = found[0]
            inner, fault = decode_inner(1, msg.next_payload, plaintext)
            if variant and len(self.variants) < KEEP_OPENED:
                self.variants[mid] = variant
            opener = Opener(index, keys[index].source, variant)
            return Opened(True, inner, _note(fault, variant, self._which(opener, len(found))), opener)
        for index, key in enumerate(keys):
            tail = self._v1_tail(msg, body, key.enc_key[:size], cipher, hash_name)
            if tail is not None:
                opener = Opener(index, key.source, V1_IV_UNKNOWN)
                return Opened(True, tail.inner, _note(tail.note, self._which(opener, 1)), opener)
        if len(problems) < len(keys):
            problems.append("the key does not decrypt it (padding or payload chain inconsistent)" if len(keys) == 1
                            else f"{'none' if not problems else 'no other'} of the {len(keys)} keys given decrypts it "
                                 "(padding or payload chain inconsistent)")
        return Opened(False, [], "; ".join(problems))

    def _which(self, opener: Opener, verified: int) -> str | None:
        """With several keys for the SA: which one opened the message, for its note."""
        if len(self.keys) < 2:
            return None
        name = _source_name(opener.source, opener.key)
        return f"under the key from {name}" + (" only" if verified == 1 else f" (and {verified - 1} more)")

    def _v1_tail(self, msg: IkeMessage, body: bytes, key: bytes, cipher: str, hash_name: str) -> Opened | None:
        """A message that starts with HASH under an IV none of the variants gives: in CBC the IV touches the
        first block only, which lies inside the HASH, so the payloads after the HASH decrypt all the same.  The
        key fits when they chain to the end; the HASH is not readable."""
        size = 4 + hashlib.new(hash_name).digest_size
        if msg.next_payload != HASH_PAYLOAD or len(body) < size + 4:
            return None
        try:
            plaintext, _ = decrypt.v1_decrypt(body, key, bytes(len(body[:decrypt.ENCR[cipher].block])), cipher)
        except ValueError:
            return None
        for nxt in (11, 12, 14, 1):  # N, D, ATTR, SA: what follows HASH in an Informational, Transaction or QM
            if decrypt.v1_plausible(plaintext[size:], nxt):
                inner, fault = decode_inner(1, nxt, plaintext[size:])
                head = Payload(HASH_PAYLOAD, "HASH", size, b"", {"length": size - 4})
                if len(self.variants) < KEEP_OPENED:
                    self.variants[msg.message_id] = V1_IV_UNKNOWN
                return Opened(True, [head, *inner], fault or V1_IV_UNKNOWN)
        return None

    # -- IKEv2 ---------------------------------------------------------------------------

    def _v2(self, msg: IkeMessage, raw: bytes, chosen: Payload | None) -> Opened | None:
        keys = self._v2_keys(msg, chosen)
        if not keys:
            return None
        sk = msg.payloads[-1]
        end = min(msg.length, len(raw))
        found: list[tuple[int, Opened]] = []
        reasons = []
        for index, key in enumerate(keys):
            if not key.encr:
                reasons.append(_keyed("the cipher is not known (neither the key source nor the negotiated SA "
                                      "names it)", key, index, len(keys)))
                continue
            opened = decrypt.open_sk(raw[:end], end - sk.length, key, msg.initiator, skf=sk.name == "SKF")
            if not opened.ok:
                reasons.append(_keyed(opened.reason, key, index, len(keys)))
                continue
            done = _parsed(sk.info["first_payload_type"], opened.plaintext) if sk.name == "SK" else Opened(True, [])
            if done.ok:
                found.append((index, done, opened.plaintext))
            else:
                reasons.append(_keyed(done.note or "", key, index, len(keys)))
        if not found:
            return Opened(False, [], "; ".join(reasons)) if reasons else None
        index, done, plaintext = found[0]
        if sk.name == "SKF":
            done = self._fragment(msg, sk, plaintext)
        done.opener = Opener(index, keys[index].source)
        done.note = _note(done.note, self._which(done.opener, len(found)))
        if msg.exchange_type == sequences.CREATE_CHILD_SA:
            for p in (x for payload in done.inner if payload.name == "SA" for x in payload.info.get("proposals", [])):
                if p.protocol == 1 and len(self.rekeys) < KEEP_OPENED:
                    self.rekeys[p.spi] = p
        return done

    def _v2_keys(self, msg: IkeMessage, chosen: Payload | None) -> list:
        """The SPI pair's key sets, their algorithms filled from the chosen proposal where the source had none."""
        spis = (msg.ispi, msg.rspi)
        if self.v2keys is None or self.v2keys[0] != spis:
            keys = self.ring.ikev2_all(*spis)
            if not keys:
                return []
            self.keys = keys
            if any(not k.encr or not k.integ for k in keys):
                proposal = (chosen.info.get("proposals") or [None])[0] if chosen is not None else \
                    self.rekeys.get(msg.ispi) or self.rekeys.get(msg.rspi)
                ids = {t.type: t.id for t in proposal.transforms} if proposal is not None else {}
                keys = [dataclasses.replace(k, encr=k.encr or decrypt.encr_from_transform(ids.get(1, -1)),
                                            integ=k.integ or decrypt.integ_from_transform(ids.get(3, 0)))
                        for k in keys]
            self.v2keys = (spis, keys)
        return self.v2keys[1] if any(k.encr for k in self.v2keys[1]) else []

    def _fragment(self, msg: IkeMessage, skf: Payload, plaintext: bytes) -> Opened:
        """One verified SKF fragment; the whole message's payloads once every fragment is in (on the
        message that completes it), none before."""
        key = (msg.initiator, msg.response, msg.message_id)
        number, total = skf.info.get("fragment", 0), skf.info.get("total", 0)
        pieces = self.fragments.setdefault(key, {"parts": {}, "first": None})
        pieces["parts"][number] = plaintext
        if number == 1:
            pieces["first"] = skf.info["first_payload_type"]
        if len(self.fragments) > KEEP_FRAGMENTS:
            del self.fragments[next(iter(self.fragments))]
        parts = pieces["parts"]
        if pieces["first"] is None or any(n not in parts for n in range(1, total + 1)):
            return Opened(True, [])
        del self.fragments[key]
        return _parsed(pieces["first"], b"".join(parts[n] for n in range(1, total + 1)))


def _note(*parts: str | None) -> str | None:
    return "; ".join(p for p in parts if p) or None


def _source_name(source: str, index: int) -> str:
    """A key's source as the admin named it: the file name (the folder is noise), or its place when not known."""
    return Path(source).name if source else f"key source {index + 1}"


def _keyed(reason: str, key, index: int, count: int) -> str:
    """A key's reason for not opening a message, naming the key when several were tried."""
    return reason if count == 1 else f"{_source_name(key.source, index)}: {reason}"


def _parsed(first: int, plaintext: bytes) -> Opened:
    """IKEv2 plaintext that passed the integrity check: its payloads, or not verified when they do not
    parse (with an AEAD the tag covers the key; with a separate integrity key, SK_e may still be wrong)."""
    inner, fault = decode_inner(2, first, plaintext)
    if fault:
        return Opened(False, [], f"the integrity check passes but the decrypted payloads do not parse ({fault}): "
                                 "SK_e does not fit")
    return Opened(True, inner)


def _v1_auth(chosen: Payload | None) -> int | None:
    """The chosen IKEv1 phase-1 Authentication Method (attribute value), if seen."""
    for proposal in chosen.info.get("proposals", [])[:1] if chosen else []:
        for t in proposal.transforms[:1]:
            return t.attributes.get("auth")
    return None


def _v1_suite(chosen: Payload | None) -> tuple[str, str, int, int | None] | None:
    """(cipher, hash, block size, key octets or None for all) of the chosen IKEv1 phase-1 transform, or None
    when not seen or not known.  The key is the first octets of what the source gives (RFC 2409 appendix B:
    SKEYID_e, or Ka where SKEYID_e is too short) when the transform names a key length."""
    for proposal in chosen.info.get("proposals", [])[:1] if chosen else []:
        for t in proposal.transforms[:1]:
            cipher = decrypt.V1_ENCR.get(t.attributes.get("encryption"))
            hash_name = decrypt.V1_HASH.get(t.attributes.get("hash"))
            if cipher and hash_name:
                size = (t.attributes.get("key_length") or 0) // 8
                if not size and cipher != "aes-cbc":
                    size = decrypt.ENCR[cipher].key_sizes[0]  # DES 8, 3DES 24 octets
                return cipher, hash_name, decrypt.ENCR[cipher].block, size or None
    return None


# -- what the decrypted payloads say, in an admin's words ----------------------------------

def describe(p: Payload) -> str:
    """One decrypted payload as a network engineer reads it: "IDi=FQDN:gw.example", "N(TS_UNACCEPTABLE)"."""
    info = p.info
    if p.name in ("ID", "IDi", "IDr") and "value" in info:
        return f"{p.name}={info['id_type_name']}:{info['value']}"
    if p.name in ("TSi", "TSr") and "selectors" in info:
        return f"{p.name}={' '.join(selector(s) for s in info['selectors']) or 'none'}"
    if p.name == "N" and "notify_name" in info:
        return f"N({info['notify_name']})"
    if p.name == "AUTH" and "method_name" in info:
        return f"AUTH={info['method_name']}"
    if p.name == "KE" and "group_name" in info:
        return f"KE={info['group_name']}"
    if p.name == "SA" and info.get("proposals"):
        return "SA=" + proposal_text(p)
    if p.name == "D" and "spis" in info:
        what = info["protocol_name"]
        return f"D({what} {' '.join(s.hex() for s in info['spis'])})" if info["spis"] else f"D({what})"
    if p.name == "EAP" and "code_name" in info:
        return f"EAP={info['code_name']}"
    if p.name in ("ATTR", "CP") and "cfg_type_name" in info:
        return f"{p.name}={info['cfg_type_name']}({', '.join(attribute(a) for a in info['attributes'])})"
    if p.name in ("CERT", "CERTREQ", "CR") and "encoding_name" in info:
        return f"{p.name}={info['encoding_name']}"
    return p.name


def text(msg: IkeMessage) -> str:
    """The decrypted payloads of a message on one line, or why there are none ("" without keys)."""
    if msg.decrypted is None:
        return ""
    if not msg.decrypted:
        return f"keys do not verify ({msg.decrypt_note})" if msg.decrypt_note else "keys do not verify"
    if msg.inner:
        return " ".join(describe(p) for p in msg.inner)
    skf = msg.payload("SKF")
    return f"fragment {skf.info.get('fragment')}/{skf.info.get('total')}" if skf else "empty"


def selector(s: dict) -> str:
    """One traffic selector as a prefix where it is one (198.51.100.0/26), else a range, with the protocol and
    ports if any."""
    where = s["start"] if s["start"] == s["end"] else f"{s['start']}-{s['end']}"
    try:
        nets = list(ipaddress.summarize_address_range(ipaddress.ip_address(s["start"]), ipaddress.ip_address(s["end"])))
        if len(nets) == 1 and s["start"] != s["end"]:
            where = str(nets[0])
    except (ValueError, TypeError):
        pass
    if s["protocol"]:
        where += f" proto {s['protocol']}"
    if (s["start_port"], s["end_port"]) != (0, 65535):
        where += f" port {s['start_port']}" + (f"-{s['end_port']}" if s["end_port"] != s["start_port"] else "")
    return where


def proposal_text(p: Payload) -> str:
    """The proposals of an SA payload in strongSwan's words, "|" between them: "ESP aes128-sha256-modp2048"."""
    return " | ".join(f"{s['protocol']} {s['swanctl']}" for s in summarize_sa(p))


def attribute(a: tuple) -> str:
    """A Mode-Config / XAUTH attribute: its name, and its value where it is a number or an IPv4 address."""
    _type, name, value = a
    if len(value) == 2:
        return f"{name}={int.from_bytes(value, 'big')}"
    if len(value) == 4 and ("ADDRESS" in name or "NETMASK" in name):
        return f"{name}={'.'.join(str(b) for b in value)}"
    return name
