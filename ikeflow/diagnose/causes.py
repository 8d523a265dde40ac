"""The cause vocabulary: every cause a finding can name, what it means, how it shows
on the wire, what the admin checks next, what tells two look-alike causes apart,
and which causes an error notify points to.  `ikeflow explain` prints these and
README "Diagnosis" holds the same table (tests/test_explain.py compares them).

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

# What each cause means, in one sentence.
MEANS = {
    "path-blocked": "something between the peers (a firewall, an ACL, a security group) drops IKE on its way to the "
                    "peer",
    "peer-down": "the peer host or its IKE daemon is not there: nothing listens on UDP 500/4500, or no IPsec stack "
                 "takes ESP",
    "peer-ignores": "the requests reach the peer, which does not answer them: no connection matches this address, "
                    "or the daemon hangs",
    "reply-path-lost": "the peer answers, but its answers are lost on the way back (return route, firewall or NAT "
                       "state)",
    "udp4500-blocked": "UDP 500 passes but UDP 4500, where NAT-T moves IKE and ESP, is dropped on the path",
    "fragments-dropped": "an IKE message too large for one packet leaves as IP fragments, and a hop drops them",
    "proposal-mismatch": "the two ends have no cipher, integrity, PRF or DH group combination in common",
    "ike-version-mismatch": "one end speaks IKEv1, the other IKEv2 only (or the other way round)",
    "dh-group-mismatch": "the two ends have no Diffie-Hellman group in common",
    "pfs-mismatch": "one end wants a fresh DH exchange (PFS) for the CHILD SA / Quick Mode, the other does not, or "
                    "they want different groups",
    "psk-mismatch": "the two ends hold different pre-shared keys, so neither can check (IKEv1: decrypt) the other's "
                    "authentication",
    "peer-id-mismatch": "an end sends an identity (ID payload) that the other has no connection or secret for",
    "subnet-mismatch": "the traffic selectors (protected subnets) of the two ends do not mirror each other",
    "aggressive-mode-refused": "the responder refuses IKEv1 Aggressive Mode (with a pre-shared key) outright",
    "esp-blocked": "the tunnel is up but ESP (IP protocol 50, or UDP 4500) is dropped one way, or the peer does "
                   "not install or use its SA",
    "peer-dead": "a peer that was up stops answering liveness checks (DPD): gone, rebooted or cut off",
    "mtu-blackhole": "large ESP packets are dropped on the path and no ICMP 'fragmentation needed' comes back, so the "
                     "senders never learn to send smaller ones",
    "nat-mapping-expired": "the NAT in front of one end forgot its UDP mapping while the end was quiet, so packets "
                           "towards it bounce",
    "cert-untrusted": "authentication by certificate is refused: an unknown or untrusted CA, an expired or revoked "
                      "certificate, or an identity it does not hold",
    "xauth-failed": "IKEv1 phase 1 worked but the user authentication (XAUTH) that follows was refused",
    "eap-failed": "IKEv2 EAP authentication of the client was refused by the EAP server",
}

# How each cause shows on the wire (the "on the wire" column of README "Diagnosis"; `ikeflow explain`).
WIRE = {
    "path-blocked": (
        'the first request (MM1/AM1/IKE_SA_INIT) is re-sent and nothing comes back, not even ICMP; or'
        ' ICMP "administratively prohibited" from a router'),
    "peer-down": (
        "ICMP port unreachable from the peer's own address for every request (the host is up, no IKE "
        'daemon); ICMP host/network unreachable from a router; one-way ESP that the far end answers '
        'with ICMP protocol unreachable (no IPsec stack takes ESP there), with or without IKE in the '
        'capture'),
    "peer-ignores": (
        'requests re-sent, no answer and no ICMP, although the peer answered earlier messages on the '
        'same path (ranked second after `path-blocked` for a first request: only a capture at the '
        'peer tells them apart)'),
    "reply-path-lost": (
        "the peer's answer is in the capture, yet the requester keeps re-sending its request (and the"
        ' peer re-sends its answer)'),
    "udp4500-blocked": (
        'the first message after the NAT-T float (MM5, AM3, IKE_AUTH on UDP 4500) is re-sent and '
        'never answered after a clean exchange on UDP 500; seen past the NAT: NAT-D found a NAT and '
        'nothing follows MM4 / IKE_SA_INIT'),
    "fragments-dropped": (
        'the unanswered message left as IP fragments (or is larger than a 1500-byte packet), '
        'incomplete datagrams, ICMP "fragmentation needed"; seen past the fragment-dropping hop: '
        'certificate authentication without IKE fragmentation and MM5/IKE_AUTH never arrives'),
    "proposal-mismatch": (
        'an unencrypted NO_PROPOSAL_CHOSEN to MM1/AM1/IKE_SA_INIT; QM1 answered with an encrypted '
        'INFO instead of QM2; an IKE_AUTH response with room for IDr + AUTH but not SA + TS; an '
        'error-only CREATE_CHILD_SA response'),
    "ike-version-mismatch": (
        'INVALID_MAJOR_VERSION, an answer in the other IKE version, or an IKEv1 NO_PROPOSAL_CHOSEN '
        'without SPI (refused before any SA state: no IKEv1 connection for this peer)'),
    "dh-group-mismatch": (
        'INVALID_KE_PAYLOAD with no retry in the requested group; a NO_PROPOSAL_CHOSEN to '
        'IKE_SA_INIT/MM1 when only the group differs (ranked second: same answer as a cipher '
        "mismatch); ranked first when the responder's Vendor ID names a daemon whose default "
        'proposals refuse only the offered DH groups (e.g. modp1024 in strongSwan since 5.6.1, '
        '`diagnose/defaults.py`), and the summary says what to configure on both sides '
        '(`proposal-mismatch` likewise when a cipher or hash is what the defaults refuse)'),
    "pfs-mismatch": (
        'a refused QM1 / CREATE_CHILD_SA whose request is large enough to carry a KE payload of the '
        "SA's DH size; for IKEv2 only a rekey (its encrypted part starts with N(REKEY_SA)): a refused"
        ' new CHILD_SA (starting with SA) ranks `subnet-mismatch` first'),
    "psk-mismatch": (
        "IKEv1: the initiator keeps re-sending MM5 after the responder's encrypted INFO (neither can "
        'decrypt the other; the INFO often comes from UDP 500; strongSwan); the responder keeps '
        're-sending MM4 although MM5 reached the capture point, with no INFO (libreswan; ranked with '
        '`reply-path-lost`, MM5 lost after the capture point, which looks the same); the initiator '
        'answers AM2 with an encrypted INFO instead of AM3; IKEv2: an error-only IKE_AUTH response '
        '(AUTHENTICATION_FAILED)'),
    "peer-id-mismatch": (
        'IKEv1: MM5 answered once with an encrypted INFO that the initiator accepts (same keys, so '
        'the PSK matches; strongSwan); every MM5 answered at once with an encrypted INFO while the '
        'responder keeps re-sending MM4 (it decrypted MM5: libreswan); INVALID_ID_INFORMATION in '
        'phase 1; IKEv2: the same error-only IKE_AUTH response as a wrong PSK (ranked second)'),
    "subnet-mismatch": (
        'TS_UNACCEPTABLE / INVALID_ID_INFORMATION in Quick Mode; encrypted: the same signatures as a '
        'phase-2 proposal mismatch (ranked second)'),
    "aggressive-mode-refused": (
        'AM1 answered with an unencrypted AUTHENTICATION_FAILED, before any authentication data could'
        ' be checked'),
    "esp-blocked": (
        'the IKE SA is up and ESP flows in one direction only'),
    "mtu-blackhole": (
        'found by `compare` only: packet by packet, every ESP packet lost between the two capture '
        'points is larger than every one of the same SA that arrived (2 or more lost), and no ICMP '
        '"fragmentation needed" came back. `read` keeps no size per ESP packet, so one capture shows '
        'a sequence gap (`esp-loss`) at most'),
    "nat-mapping-expired": (
        'the side behind a NAT (by NAT-D) sent nothing for 5 s or more, not even a NAT-T keepalive, '
        "and then packets to it are answered with ICMP port unreachable from its NAT's address, with "
        "nothing from it afterwards (`peer-down` second: the NAT passes on its host's ICMP when the "
        'daemon is gone)'),
    "cert-untrusted": (
        'authentication by certificate refused: IKEv1 with a certificate method chosen in MM1/MM2 and'
        ' MM5 answered with an encrypted INFO; IKEv2 with an IKE_AUTH request of 700 bytes or more (a'
        ' certificate; a PSK request is near 300) answered error-only. With certificates, '
        '`psk-mismatch` is never a candidate; `peer-id-mismatch` comes second'),
    "xauth-failed": (
        'IKEv1: phase 1 up, the responder (the XAUTH server) starts Transaction exchanges asking for '
        "the user's credentials, and neither a Quick Mode nor the client's own Mode Config request "
        'follows'),
    "eap-failed": (
        "IKEv2: IKE_AUTH went several rounds (EAP after the responder's own AUTH) and the last answer"
        ' is error-only (EAP-Failure); `psk-mismatch` and `peer-id-mismatch` are no candidates, the '
        'responder already authenticated'),
    "peer-dead": (
        'after the tunnel was up, the peer stops answering liveness checks (see "DPD and liveness" '
        'below) and nothing else comes from it; with ICMP port unreachable from the peer for the '
        'checks, `peer-down` comes first (its IKE daemon is gone)'),
}

# Captures that show each cause (pcaps/lab/ unless "public": ../shared/pcaps/public/).
EXAMPLES = {
    "path-blocked": (
        '`pcaps/lab/ikev1-udp500-blocked.inside.pcap`, `ikev2-udp500-blocked.inside.pcap`'),
    "peer-down": (
        '`pcaps/lab/ikev1-responder-down.*.pcap`, `ikev2-responder-down.*.pcap`'),
    "peer-ignores": (
        '`pcaps/lab/ikev2-responder-hung.*.pcap`'),
    "reply-path-lost": (
        '`pcaps/lab/ikev1-replies-dropped.outside.pcap`, `ikev2-replies-dropped.outside.pcap`; public'
        ' `tcpdump/tests/isakmp4500.pcap` (QM2 re-sent after QM3)'),
    "udp4500-blocked": (
        '`pcaps/lab/ikev1-udp4500-blocked.*.pcap`, `ikev2-udp4500-blocked.*.pcap`'),
    "fragments-dropped": (
        '`pcaps/lab/ikev1-fragments-dropped.*.pcap`, `ikev2-fragments-dropped.*.pcap`; public '
        '`zeek-spicy-ipsec/tests/traces/ipsec_client.pcap`'),
    "proposal-mismatch": (
        '`pcaps/lab/ikev1-p1-proposal-mismatch.*.pcap`, `ikev2-ike-proposal-mismatch.*.pcap`, '
        '`ikev1-p2-proposal-mismatch.*.pcap`, `ikev2-child-proposal-mismatch.*.pcap`; public '
        '`scapy/test/pcaps/ikev2_notify_redirect.pcap`'),
    "ike-version-mismatch": (
        '`pcaps/lab/ikev1-vs-ikev2-only.*.pcap`'),
    "dh-group-mismatch": (
        '`pcaps/lab/ikev2-dh-group-mismatch.*.pcap` (tie with `proposal-mismatch`)'),
    "pfs-mismatch": (
        '`pcaps/lab/ikev1-pfs-mismatch.*.pcap`, `ikev2-pfs-mismatch.*.pcap`'),
    "psk-mismatch": (
        '`pcaps/lab/ikev1-main-psk-mismatch.*.pcap`, `ikev1-aggr-psk-mismatch.*.pcap`, '
        '`ikev2-psk-mismatch.*.pcap`, `ikev*-libreswan-psk-mismatch.*.pcap`'),
    "peer-id-mismatch": (
        '`pcaps/lab/ikev1-peerid-mismatch.*.pcap`, `ikev2-peerid-mismatch.*.pcap` (tie with '
        '`psk-mismatch`), `ikev*-libreswan-peerid-mismatch.*.pcap`'),
    "subnet-mismatch": (
        '`pcaps/lab/ikev1-subnet-mismatch.*.pcap`, `ikev2-subnet-mismatch.*.pcap` (tie with '
        '`proposal-mismatch`)'),
    "aggressive-mode-refused": (
        '`pcaps/lab/ikev1-aggr-refused.*.pcap`'),
    "esp-blocked": (
        '`pcaps/lab/ikev1-esp-oneway.inside.pcap`, `ikev2-esp-oneway.inside.pcap`'),
    "mtu-blackhole": (
        '`pcaps/lab/ikev2-mtu-blackhole.*.pcap` (the router drops UDP 4500 datagrams over 1200 bytes:'
        ' 1300-byte pings vanish, small ones pass)'),
    "nat-mapping-expired": (
        '`pcaps/lab/ikev1-nat-mapping-expired.outside.pcap`, `ikev2-nat-mapping-expired.outside.pcap`'
        ' (the inside captures cannot show it: nothing arrives there)'),
    "cert-untrusted": (
        '`pcaps/lab/ikev1-cert-untrusted.*.pcap`, `ikev2-cert-untrusted.*.pcap`; public '
        '`zeek-plugin-ikev2/tests/Traces/ikev2.pcap`'),
    "xauth-failed": (
        '`pcaps/lab/ikev1-xauth-failed.*.pcap` (public '
        '`wireshark/test/captures/ikev1-bug-12620.pcapng.gz` is a success: the client pulls Mode '
        'Config after XAUTH)'),
    "eap-failed": (
        '`pcaps/lab/ikev2-eap-failed.*.pcap`'),
    "peer-dead": (
        '`pcaps/lab/ikev1-dpd-dead-peer.*.pcap`, `ikev2-dpd-dead-peer.*.pcap`, '
        '`ikev*-dpd-answered-then-silent.*.pcap`; `peer-down`: `ikev*-dpd-answered-then-gone.*.pcap`'),
}

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
