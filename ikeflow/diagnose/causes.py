"""The cause vocabulary: every cause a finding can name, what the admin checks next,
what tells two look-alike causes apart, and which causes an error notify points to.

`read`'s stall rules (diagnose.stalls.TABLE) and `compare`'s path-loss rules
name causes from here only; a new cause is an entry in `CHECK` first.
"""

from __future__ import annotations

CHECK = {
    "path-blocked": "allow UDP 500 and 4500 (and IP protocol 50) both ways on every firewall between the peers",
    "peer-down": "check that the peer host is up and its IKE daemon runs (ipsec statusall / swanctl --list-sas; "
                 "ss -ulpn shows who owns UDP 500)",
    "peer-ignores": "read the peer's log for this address: a connection for it (right=, remote_addrs=) and a "
                    "daemon that is not hung",
    "reply-path-lost": "follow the way back: return routes, firewall/NAT state for UDP 500/4500 on the path "
                       "from the peer",
    "udp4500-blocked": "allow UDP 4500 both ways (NAT-T moves IKE and ESP there after MM4 / IKE_SA_INIT)",
    "fragments-dropped": "turn on IKE fragmentation (fragmentation=yes; swanctl fragmentation = yes), or let IP "
                         "fragments through / fix the path MTU; smaller certificates help",
    "proposal-mismatch": "compare the proposals: ipsec.conf ike= (phase 1) and esp=/phase2alg= (phase 2), "
                         "swanctl proposals= / esp_proposals=",
    "ike-version-mismatch": "use one IKE version on both ends (ipsec.conf keyexchange=ikev1|ikev2, swanctl version=)",
    "dh-group-mismatch": "give both ends a common DH group in ike= / proposals= (e.g. modp2048 or ecp256)",
    "pfs-mismatch": "make PFS agree: the DH group in esp=/phase2alg= (pfs=yes, pfsgroup=) or swanctl "
                    "esp_proposals=, on both ends or on neither",
    "psk-mismatch": "compare the pre-shared key for this peer in ipsec.secrets (swanctl secrets) on both ends",
    "peer-id-mismatch": "compare the identities: leftid/rightid (swanctl local/remote id) must match what the "
                        "other end sends",
    "subnet-mismatch": "compare leftsubnet/rightsubnet (swanctl local_ts/remote_ts): each end's must mirror the "
                       "other's",
    "aggressive-mode-refused": "use Main Mode (aggressive=no) or IKEv2, or allow Aggressive Mode with PSK on the "
                               "responder (strongSwan charon.i_dont_care_about_security_and_use_aggressive_mode_psk)",
    "esp-blocked": "allow ESP (IP protocol 50) or UDP 4500 in the silent direction, and check the peer's SA and "
                   "routes for the protected traffic",
    "peer-dead": "check whether the peer is still up and UDP 4500 still passes (NAT mappings expire); "
                 "dpdaction= decides what happens next",
    "mtu-blackhole": "let large packets through or stop sending them: clamp the TCP MSS in the tunnel "
                     "(iptables TCPMSS --clamp-mss-to-pmtu, strongSwan/libreswan mtu=/ipsec-interface MTU), lower the "
                     "MTU, or let ICMP 'fragmentation needed' (type 3 code 4) through every hop",
    "nat-mapping-expired": "keep the NAT mapping alive: NAT-T keepalives on the side behind the NAT (strongSwan "
                           "charon.keep_alive, libreswan nat-keepalive= / keep-alive=, Cisco crypto isakmp "
                           "nat keepalive) more often than the NAT's UDP timeout, or a longer UDP timeout on the NAT",
    "cert-untrusted": "check the certificates: the peer must trust the CA that issued this end's certificate "
                      "(swanctl x509ca/, ipsec.d/cacerts, NSS db for libreswan), and the certificate must be valid "
                      "now, unrevoked and carry the identity (SAN) this end sends",
    "xauth-failed": "check the XAUTH user name and password (ipsec.secrets XAUTH, swanctl secrets xauth-, the "
                    "RADIUS/PAM backend): phase 1 (PSK or certificate) worked, the user authentication did not",
    "eap-failed": "check the EAP user name and password or certificate on the EAP server (swanctl secrets eap-, "
                  "RADIUS) and that both ends use the same EAP method",
}
CAUSES = tuple(CHECK)

# What tells two close causes apart (keys: frozenset of the two causes).
_PEER_SIDE = ("only a capture at the peer tells these apart: nothing arriving there = the path drops it; "
              "arriving but no answer = the peer ignores it (its log says why); an answer leaving = the way back "
              "is lost")
TELL = {
    frozenset({"path-blocked", "peer-ignores"}): _PEER_SIDE,
    frozenset({"path-blocked", "reply-path-lost"}): _PEER_SIDE,
    frozenset({"peer-ignores", "reply-path-lost"}): _PEER_SIDE,
    frozenset({"path-blocked", "peer-down"}): _PEER_SIDE + "; a host that is off answers nothing at all",
    frozenset({"psk-mismatch", "peer-id-mismatch"}): (
        "a wrong PSK and an unknown identity look alike on the wire; the responder's log tells them apart "
        "(strongSwan: 'MAC mismatched' / 'HASH does not match' vs 'no peer config found'; libreswan: 'computed "
        "hash does not match' / 'mismatch of preshared secrets?' vs \"Peer ID '...' mismatched\")"),
    frozenset({"psk-mismatch", "reply-path-lost"}): (
        "the responder's log tells them apart: libreswan logs 'probable authentication failure (mismatch of "
        "preshared secrets?)' for every MM5 it cannot decrypt; if MM5 never appears there, it is lost on the "
        "way (a capture on the responder host shows whether UDP 4500 arrives)"),
    frozenset({"proposal-mismatch", "dh-group-mismatch"}): (
        "the responder's log lists the received and its configured proposals; if only the DH group differs, "
        "add a common group"),
    frozenset({"proposal-mismatch", "ike-version-mismatch"}): (
        "the responder's log says 'no IKE config found' (no connection of this IKE version for this peer) or "
        "lists the proposals it rejected"),
    frozenset({"proposal-mismatch", "subnet-mismatch"}): (
        "the refusal is encrypted and NO_PROPOSAL_CHOSEN, INVALID_ID_INFORMATION and TS_UNACCEPTABLE have the same "
        "size; the initiator's log names the notify"),
    frozenset({"proposal-mismatch", "pfs-mismatch"}): (
        "the refusal is encrypted; the responder's log shows the received proposals, with or without a DH group"),
    frozenset({"subnet-mismatch", "pfs-mismatch"}): (
        "the refusal is encrypted; the initiator's log names the notify (INVALID_ID_INFORMATION/TS_UNACCEPTABLE "
        "for subnets, NO_PROPOSAL_CHOSEN for PFS)"),
    frozenset({"udp4500-blocked", "fragments-dropped"}): (
        "a capture at the sender shows whether the message left as IP fragments; a capture at the peer, whether "
        "anything arrives on UDP 4500"),
    frozenset({"udp4500-blocked", "path-blocked"}): (
        "a capture at the peer shows whether anything arrives on UDP 4500"),
    frozenset({"aggressive-mode-refused", "peer-id-mismatch"}): (
        "the responder's log says 'Aggressive Mode PSK disabled' or 'no peer config found'"),
    frozenset({"peer-dead", "path-blocked"}): (
        "a capture at the peer shows whether the checks arrive there"),
}

# What an error notify points to when it is not part of a diagnosed stall (first = most likely).
NOTIFY_CAUSES = {
    "NO-PROPOSAL-CHOSEN": ["proposal-mismatch"],
    "NO_PROPOSAL_CHOSEN": ["proposal-mismatch"],
    "INVALID-ID-INFORMATION": ["peer-id-mismatch", "subnet-mismatch"],
    "AUTHENTICATION-FAILED": ["psk-mismatch", "peer-id-mismatch"],
    "AUTHENTICATION_FAILED": ["psk-mismatch", "peer-id-mismatch"],
    "INVALID-HASH-INFORMATION": ["psk-mismatch"],
    "PAYLOAD-MALFORMED": ["psk-mismatch"],
    "INVALID-MAJOR-VERSION": ["ike-version-mismatch"],
    "INVALID_MAJOR_VERSION": ["ike-version-mismatch"],
    "TS_UNACCEPTABLE": ["subnet-mismatch"],
    "INVALID_KE_PAYLOAD": ["dh-group-mismatch"],
    "INVALID_SYNTAX": ["proposal-mismatch"],
}
