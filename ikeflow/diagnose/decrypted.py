"""With keys: the one cause that the decrypted payloads of a stalled negotiation prove, quoted.

Without keys several causes look alike on the wire (README "Diagnosis"); decrypted, the answer names its
refusal and the request shows what was asked:

  IKEv1 PSK           the keys derive from the pre-shared key (RFC 2409 5: SKEYID = prf(PSK, Ni_b | Nr_b)):
                      one side's messages decrypt under the keys given and the other side's do not
                      -> psk-mismatch; both decrypt and the refusal is AUTHENTICATION-FAILED or
                      INVALID-ID-INFORMATION -> the same PSK, so peer-id-mismatch
  Aggressive Mode     the initiator's INFO refusing AM2: AUTHENTICATION-FAILED / INVALID-HASH-INFORMATION
                      (HASH_R derives from the PSK) -> psk-mismatch; INVALID-ID-INFORMATION -> peer-id-mismatch
  Quick Mode / CHILD  TS_UNACCEPTABLE (IKEv2), INVALID-ID-INFORMATION (IKEv1 QM, RFC 2407 4.6.3) -> subnet-mismatch;
                      INVALID_KE_PAYLOAD -> pfs-mismatch; NO_PROPOSAL_CHOSEN to a request without a KE payload
                      -> proposal-mismatch, with one (PFS on) -> pfs-mismatch
  IKEv2 EAP           an EAP-Failure (RFC 3748 4.2) in the last IKE_AUTH answer -> eap-failed

  IKEv2 PSK           AUTHENTICATION_FAILED to a PSK IKE_AUTH: charon answers an unknown identity ("no matching
                      peer config found") and a wrong PSK with the same lone notify, and the IKEv2 keys do not
                      derive from the PSK, so the payloads alone cannot tell.  The responder's own log can
                      (keys.AuthLog, charon level 4): the AUTH it computed with its PSK differs from the
                      initiator's -> psk-mismatch; it computed none -> it never got to a PSK: peer-id-mismatch.
                      With the initiator's keys only, the request's IDs are quoted (`auth_ids`).
"""

from __future__ import annotations

from ikeflow.decode.ike import IkeMessage
from ikeflow.model import decryption, sequences
from ikeflow.model.ikesa import EAP_FAILURE, IkeSa, Seen

V1_PSK = (1, 65001, 65002)  # Authentication Method: pre-shared key, XAUTHInitPreShared, XAUTHRespPreShared (65003-65006 are XAUTH with DSS/RSA signatures)
NO_PROPOSAL = ("NO-PROPOSAL-CHOSEN", "NO_PROPOSAL_CHOSEN")
AUTH_REFUSED = ("AUTHENTICATION-FAILED", "INVALID-HASH-INFORMATION", "INVALID-SIGNATURE")
BAD_ID = "INVALID-ID-INFORMATION"
SHARED_KEY_MIC = 2  # IKEv2 Authentication Method: Shared Key Message Integrity Code (RFC 7296 3.8)
CHILD_EXCHANGES = (sequences.IKE_AUTH, sequences.CREATE_CHILD_SA, sequences.QUICK_MODE)  # where an SA is accepted


def decide(sa: IkeSa, at: str, frames: list[int]) -> tuple[str, str] | None:
    """(cause, the decrypted payloads that prove it) for a stall at message `at` whose messages are `frames`."""
    if sa.decryption is None:
        return None
    refs = set(frames)
    msgs = [m for m in sa.messages if m.ref in refs]
    request = next((m for m in msgs if m.label == at), None)
    if request is None:
        return None
    answers = [m for m in msgs if m.sender != request.sender and m.msg.decrypted]
    if sa.version == 1:
        return _v1(sa, request, answers)
    return _v2(sa, request, answers)


def _v1(sa: IkeSa, request: Seen, answers: list[Seen]) -> tuple[str, str] | None:
    method = _v1_auth(sa)
    if request.msg.exchange_type in sequences.PHASE1_V1 or not sa.ike_sa_up():
        found = _v1_keys(sa) if method in V1_PSK else None
        if found:
            return found
        refusal = _notify(answers, (*AUTH_REFUSED, BAD_ID))
        if refusal is None:
            return None
        notify, answer = refusal
        phase1 = [p for m in sa.messages if m.msg.exchange_type in sequences.PHASE1_V1
                  for p in (*m.msg.payloads, *m.msg.inner) if p.name == "ID"]
        ids = ", ".join(dict.fromkeys(decryption.describe(p) for p in phase1)) or "no ID seen"
        says = f"the {_who(answer.sender)} says {notify} to {request.label} ({ids})"
        if request.label == "AM2":
            cause = "peer-id-mismatch" if notify == BAD_ID else "psk-mismatch"
            why = "it does not accept the responder's identity" if notify == BAD_ID else \
                "it could not verify the responder's HASH_R, which derives from the PSK"
            return cause, f"{says}: {why}"
        if method not in V1_PSK:
            if notify == BAD_ID:
                return "peer-id-mismatch", f"{says}: with certificate authentication, it refuses the identity"
            return "cert-untrusted", f"{says}: it cannot verify the certificate (certificate authentication, no PSK)"
        if request.msg.decrypted and _same_key(sa, request, answer) and notify in ("AUTHENTICATION-FAILED", BAD_ID):
            return "peer-id-mismatch", (f"{says}; {request.label} and the answer decrypt under the same keys, so both "
                                        "ends hold the same PSK (IKEv1 keys derive from it), and it refuses the "
                                        "identity")
        return None
    refusal = _notify(answers, (BAD_ID, *NO_PROPOSAL, "INVALID-KEY-INFORMATION"))
    return _child(sa, request, *refusal) if refusal else None


def _same_key(sa: IkeSa, a: Seen, b: Seen) -> bool:
    """Both messages opened under the same key given (with both daemons' logs each may open under its own)."""
    x, y = sa.decryption.opener(a.msg), sa.decryption.opener(b.msg)
    return x is not None and y is not None and x.key == y.key


def _v1_keys(sa: IkeSa) -> tuple[str, str] | None:
    """IKEv1 PSK: the phase-1 messages of one side decrypt under the keys given, the other side's do not; or,
    with both daemons' logs, each side's open only under its own log's key (`Decryption.proof`)."""
    proof = sa.decryption.proof(sa.messages)
    if proof:
        return "psk-mismatch", proof
    p1 = [m for m in sa.messages if m.msg.decrypted is not None and not m.retransmission
          and (m.msg.exchange_type in sequences.PHASE1_V1 or m.msg.exchange_type == sequences.INFORMATIONAL_V1)]
    good = {m.sender for m in p1 if m.msg.decrypted}
    bad = {m.sender for m in p1 if m.msg.decrypted is False}
    if len(good) != 1 or len(bad) != 1 or good == bad:
        return None
    ok, fail = good.pop(), bad.pop()
    mine = ", ".join(dict.fromkeys(m.label for m in p1 if m.sender == ok))
    theirs = ", ".join(dict.fromkeys(m.label for m in p1 if m.sender == fail))
    said = _notify([m for m in p1 if m.sender == ok], (*AUTH_REFUSED, "PAYLOAD-MALFORMED", BAD_ID))
    text = (f"under the keys given the {_who(ok)}'s {mine} decrypt{'s' if ',' not in mine else ''} and the "
            f"{_who(fail)}'s {theirs} do{'es' if ',' not in theirs else ''} not: the two ends derived different keys, "
            "and IKEv1 derives them from the pre-shared key (RFC 2409 5), so the PSKs differ")
    if said:
        text += f"; the {_who(ok)} says {said[0]}"
    return "psk-mismatch", text


def _v2(sa: IkeSa, request: Seen, answers: list[Seen]) -> tuple[str, str] | None:
    if not answers:
        return None
    answer = answers[-1]
    if request.msg.exchange_type == sequences.IKE_AUTH:
        eap = answer.msg.inner_payload("EAP")
        if eap is not None and eap.info.get("code") == EAP_FAILURE:
            rounds = len({m.msg.message_id for m in sa.messages
                          if m.request and m.msg.exchange_type == sequences.IKE_AUTH})
            return "eap-failed", (f"the responder's last IKE_AUTH answer (round {rounds}) carries an EAP-Failure: "
                                  f"the user's credentials were refused ({auth_ids(sa)})")
        psk = _v2_psk(sa, request, answer)
        if psk:
            return psk
    refusal = _notify([answer], ("TS_UNACCEPTABLE", *NO_PROPOSAL, "INVALID_KE_PAYLOAD"))
    return _child(sa, request, *refusal) if refusal else None


def _v2_psk(sa: IkeSa, request: Seen, answer: Seen) -> tuple[str, str] | None:
    """IKEv2 AUTHENTICATION_FAILED to a PSK IKE_AUTH, decided by the responder's own log (keys.AuthLog): it computed
    the initiator's AUTH with its PSK and got another value (the PSKs differ), or it derived the SA's keys but
    computed no AUTH at all (no configuration for these identities: it never got to a PSK)."""
    auth = request.msg.inner_payload("AUTH")
    if auth is None or auth.info.get("method") != SHARED_KEY_MIC or not _notify([answer], ("AUTHENTICATION_FAILED",)):
        return None
    logs = [log for log in sa.decryption.ring.auth_logs(sa.ispi, sa.rspi) if log.role == "responder"]
    if not logs:
        return None
    log, where = logs[-1], logs[-1].source.rsplit("/", 1)[-1]
    says = f"the responder says AUTHENTICATION_FAILED to IKE_AUTH ({auth_ids(sa)})"
    if not log.values:
        return "peer-id-mismatch", (f"{says}; its log ({where}) holds this IKE SA's keys but no AUTH computed with a "
                                    "pre-shared key: it found no configuration for these identities and never got "
                                    "to a PSK")
    if auth.info.get("data") in log.values:
        return "peer-id-mismatch", (f"{says}; its log ({where}) computed the initiator's AUTH with its pre-shared "
                                    "key and got the same value, so the PSKs match: it refuses the identity")
    return "psk-mismatch", (f"{says}; the AUTH it computed with its pre-shared key (its log, {where}) differs from "
                            "the one the initiator sent over the same octets: the PSKs differ")


def _child(sa: IkeSa, request: Seen, notify: str, answer: Seen) -> tuple[str, str]:
    """A refused Quick Mode / CHILD_SA: the refusal and what the request asked for."""
    asked = request.msg
    says = f"the {_who(answer.sender)} says {notify}"
    if notify in ("TS_UNACCEPTABLE", BAD_ID):
        return "subnet-mismatch", f"{says}; the {_who(request.sender)} asked for {_selectors(asked)}"
    sa_payload = asked.inner_payload("SA")
    offered = decryption.proposal_text(sa_payload) if sa_payload else "?"
    ke = asked.inner_payload("KE")
    if notify == "INVALID_KE_PAYLOAD":
        data = next((p.info.get("data", b"") for p in answer.msg.inner if p.info.get("notify_name") == notify), b"")
        wanted = f"group {int.from_bytes(data[:2], 'big')}" if len(data) >= 2 else "another group"
        return "pfs-mismatch", f"{says} and asks for {wanted}; the request offers {offered} with KE " \
                               f"{ke.info.get('group_name', '') if ke else ''}".rstrip()
    if ke is None:
        where = "; the IKE SA itself is up (IDr and AUTH came back)" if answer.msg.inner_payload("AUTH") else ""
        return "proposal-mismatch", f"{says} to {offered} (no PFS asked){where}"
    accepted = _accepted_without_dh(sa, sa_payload)
    if accepted:
        return "pfs-mismatch", (f"{says} to {offered} with a KE payload (PFS), and {accepted} was accepted without a "
                                "DH group: only the PFS group differs")
    return "pfs-mismatch", (f"{says} to {offered} with a KE payload (PFS), which a responder without PFS or with "
                            "another PFS group refuses (if it lacks these ciphers too, fix the ESP proposal as well)")


def _accepted_without_dh(sa: IkeSa, offered) -> str:
    """An accepted child proposal of this IKE SA equal to an offered one but for the DH group, as text."""
    if offered is None:
        return ""
    want = {_no_dh(p) for p in offered.info.get("proposals", [])}
    for m in sa.messages:
        if m.request or not m.msg.decrypted:
            continue
        chosen = m.msg.inner_payload("SA")
        if chosen is None or m.msg.exchange_type not in CHILD_EXCHANGES:
            continue
        for p in chosen.info.get("proposals", []):
            if _no_dh(p) in want:
                return decryption.proposal_text(chosen)
    return ""


def _no_dh(proposal) -> tuple:
    """A proposal's algorithms without its DH group (IKEv2 transform type 4, IKEv1 attribute group)."""
    out = []
    for t in proposal.transforms:
        if getattr(t, "type", None) == 4:
            continue
        attrs = tuple(sorted((k, v) for k, v in getattr(t, "attributes", {}).items()
                             if k not in ("group", "life_type", "life_duration")))
        out.append((getattr(t, "type", None), t.id, getattr(t, "key_length", None), attrs))
    return proposal.protocol, tuple(sorted(out, key=repr))


def _notify(answers: list[Seen], names: tuple[str, ...]) -> tuple[str, Seen] | None:
    """The first decrypted notify of `names` among the answers, with its message."""
    for m in answers:
        for p in m.msg.inner:
            if p.name == "N" and p.info.get("notify_name") in names:
                return p.info["notify_name"], m
    return None


def _selectors(msg: IkeMessage) -> str:
    """What a request asks for: IKEv2 TSi === TSr, IKEv1 Quick Mode IDci === IDcr."""
    tsi, tsr = msg.inner_payload("TSi"), msg.inner_payload("TSr")
    if tsi is not None and tsr is not None:
        return f"{_ts(tsi)} === {_ts(tsr)}"
    ids = [p.info.get("value", "?") for p in msg.inner if p.name == "ID"]
    return " === ".join(ids) if len(ids) == 2 else "the hosts' own addresses (no client IDs)"


def _ts(p) -> str:
    return ", ".join(decryption.selector(s) for s in p.info.get("selectors", [])) or "nothing"


def auth_ids(sa: IkeSa) -> str:
    """The identities an IKE_AUTH request carried, decrypted: "IDi=FQDN:a, IDr=FQDN:b, AUTH=PSK"."""
    for m in sa.messages:
        if m.request and m.msg.exchange_type == sequences.IKE_AUTH and m.msg.decrypted:
            found = [decryption.describe(p) for p in m.msg.inner if p.name in ("IDi", "IDr", "AUTH")]
            if found:
                return ", ".join(found)
    return ""


def _v1_auth(sa: IkeSa) -> int | None:
    """The chosen IKEv1 phase-1 Authentication Method (attribute value), if seen."""
    for prop in sa.chosen.info.get("proposals", [])[:1] if sa.chosen else []:
        for t in prop.transforms[:1]:
            value = t.attributes.get("auth")
            if isinstance(value, int):
                return value
    return None


def _who(role: str) -> str:
    return "initiator" if role == "I" else "responder"
