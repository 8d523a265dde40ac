"""Policy rules: what the negotiated algorithms and modes say about an SA's security, whether or not it came up.

- `weak-crypto`: offered or chosen algorithms RFC 8247 / RFC 8221 rank low (the table in
  `diagnose.algorithms`), with what the responder's implementation refuses by default (`diagnose.defaults`);
- `aggressive-psk`: IKEv1 Aggressive Mode authenticated by a pre-shared key;
- `proposal-malformed`: an attribute or transform repeated within one proposal.
"""

from __future__ import annotations

from ikeflow.decode.ike import Payload
from ikeflow.decode.proposals import attribute_problems, keyword, swanctl_string, transform_ids
from ikeflow.diagnose import algorithms, defaults
from ikeflow.diagnose.finding import WARNING, Finding, merge_alike
from ikeflow.model import sequences
from ikeflow.model.analysis import Analyzer
from ikeflow.model.events import pair_key
from ikeflow.model.ikesa import IkeSa, Seen

# IKEv1 authentication methods keyed by a pre-shared key (RFC 2409 appendix A; XAUTH draft)
PSK_METHODS = {1: "pre-shared key", 65001: "XAUTH with pre-shared key", 65002: "XAUTH with pre-shared key"}


def _sa_payloads(sa: IkeSa) -> list[tuple[Seen, Payload, str, str]]:
    """(message, SA payload, "offered"/"chosen", scope "IKE"/"ESP") for each SA payload in clear: the phase-1 or
    IKE_SA_INIT pair the model kept, and those of IKEv1 Quick Modes sent unencrypted (first of each kind)."""
    out, kinds = [], set()
    for seen in sa.messages:
        if seen.retransmission or seen.msg.encrypted:
            continue
        for p in seen.msg.payloads:
            if p.name != "SA" or not p.info.get("proposals"):
                continue
            if p is sa.offered or p is sa.chosen:
                kind = ("offered" if p is sa.offered else "chosen", "IKE")
            elif seen.msg.exchange_type == sequences.QUICK_MODE:
                kind = ("offered" if seen.request else "chosen", "ESP")
            else:
                continue
            if kind not in kinds:
                kinds.add(kind)
                out.append((seen, p, *kind))
    return out


def _suites(payload: Payload, scope: str) -> list[tuple[str, dict[int, list[int]]]]:
    """(admin string, IKEv2 IDs by type) of each suite of an SA payload (ESP suites only for scope "ESP")."""
    out = []
    for prop in payload.info["proposals"]:
        if scope == "ESP" and prop.protocol_name != "ESP":
            continue
        for item in prop.transforms if prop.version == 1 else [prop]:
            if prop.version == 2 or item.protocol in (1, 3):
                out.append((swanctl_string(item), transform_ids(item)))
    return out


def _named(version: int, ttype: int, tid: int, row: algorithms.Level) -> str:
    kw = keyword(ttype, tid)
    kw = kw.removeprefix("prf") if version == 1 and ttype == algorithms.PRF else kw
    return f"{kw} ({row.name}, {row.quote()})"


def weak_crypto(an: Analyzer, files):
    """One warning per peer pair and wording: the IKE SAs whose offered or chosen proposals hold algorithms
    RFC 8247 / 8221 rank low (a gateway's many SAs with the same proposals are one finding that counts them)."""
    alike: dict[tuple, list[Finding]] = {}
    for f in weak_per_sa(an):
        alike.setdefault((pair_key(f.sa.initiator[0], f.sa.responder[0]) if f.sa.initiator else None, f.summary),
                         []).append(f)
    for found in alike.values():
        yield merge_alike(found)


def weak_per_sa(an: Analyzer):
    """The weak-crypto finding of each IKE SA, before alike ones are merged."""
    for sa in an.sas.values():
        parts, frames, at = [], [], None
        chosen_weak: set[str] = set()
        for seen, payload, kind, scope in sorted(_sa_payloads(sa), key=lambda x: x[2] != "chosen"):
            found: dict[str, None] = {}
            used = []
            for text, ids in _suites(payload, scope):
                hits = algorithms.weak(scope, ids)
                if hits:
                    used.append(text)
                    found.update(dict.fromkeys(_named(sa.version, t, i, row) for t, i, row in hits))
            if kind == "offered":
                found = {k: None for k in found if k not in chosen_weak}
            else:
                chosen_weak.update(found)
            if not found:
                continue
            frames.append(seen.ref)
            at = at or seen.label
            what = "IKE SA" if scope == "IKE" else "child SA (Quick Mode in clear)"
            if kind == "chosen":
                parts.append(f"{what} chosen {', '.join(used)}: {'; '.join(found)}")
            else:
                also = "also offered" if chosen_weak else "offered"
                unit = "transforms" if sa.version == 1 else "proposals"
                parts.append(f"{what} {also} ({len(used)} of {len(_suites(payload, scope))} {unit}): "
                             f"{'; '.join(found)}")
        if parts:
            extra = [x for x in (defaults.refused_by_default(sa), defaults.initiator_advice(sa)) if x]
            hint = ("Use AES (GCM or CBC) with SHA-256 or stronger and modp2048, ecp256 or curve25519 or stronger "
                    "(RFC 8247: MUST/SHOULD), e.g. `ike=aes256-sha256-modp2048` and `esp=aes256-sha256` on both sides.")
            yield Finding(WARNING, "weak-crypto", at, "; ".join(parts),
                          " ".join([hint] + [x[0].upper() + x[1:] + "." for x in extra]), sorted(frames), [], sa)


def aggressive_psk(an: Analyzer, files):
    """IKEv1 Aggressive Mode authenticated by a pre-shared key: chosen, or offered and never answered."""
    for sa in an.sas.values():
        if sa.version != 1:
            continue
        found = [(seen, payload, kind) for seen, payload, kind, scope in _sa_payloads(sa)
                 if scope == "IKE" and seen.msg.exchange_type == sequences.AGGRESSIVE_MODE]
        chosen = [x for x in found if x[2] == "chosen"]
        for seen, payload, kind in chosen or found:
            methods = [t.attributes.get("auth") for p in payload.info["proposals"] for t in p.transforms]
            psk = [PSK_METHODS[m] for m in methods if m in PSK_METHODS]
            if not psk or (kind == "chosen" and len(psk) < len(methods)):
                continue
            how = ("chosen: the initiator's identity went in clear in AM1, and the responder's AM2 hash can be "
                   "cracked offline" if kind == "chosen" else
                   "offered (no AM2 chose it in the capture): the initiator's identity went in clear in AM1, and "
                   "a responder's AM2 would carry a hash that can be cracked offline")
            yield Finding(WARNING, "aggressive-psk", seen.label,
                          f"IKEv1 Aggressive Mode with {psk[0]} authentication {how} to recover the pre-shared key "
                          f"(ike-scan / psk-crack)",
                          "Use Main Mode (aggressive=no) or IKEv2, or certificates instead of a pre-shared key; if "
                          "Aggressive Mode must stay, use a long random PSK.", [seen.ref], [], sa)
            break


def proposal_malformed(an: Analyzer, files):
    """Attributes or transforms repeated within one proposal: warned about, never resolved silently."""
    for sa in an.sas.values():
        for seen, payload, kind, _ in _sa_payloads(sa):
            problems = [f"proposal {p.number}: {text}" for p in payload.info["proposals"]
                        for text in attribute_problems(p)]
            if problems:
                yield Finding(WARNING, "proposal-malformed", seen.label,
                              f"{kind} SA payload repeats within one proposal: {'; '.join(problems)}",
                              "Implementations resolve a repeated attribute differently (the first or the last wins, "
                              "or the proposal is refused), so the peers may disagree on what was negotiated; ikeflow's "
                              "proposal summary shows one of the values. Fix the sender's configuration or software.",
                              [seen.ref], [], sa)


RULES = [weak_crypto, aggressive_psk, proposal_malformed]
