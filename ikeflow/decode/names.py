"""IKE/ISAKMP protocol constants and name tables.

Sources: RFC 2407/2408/2409 (IKEv1), RFC 7296 and the IANA "IKEv2 Parameters"
and "ISAKMP/IPsec" registries, cross-checked with Wireshark 4.0 value strings,
strongSwan and libreswan. Notify names follow Wireshark spelling: IKEv1 with
hyphens (NO-PROPOSAL-CHOSEN), IKEv2 with underscores (NO_PROPOSAL_CHOSEN).
"""

from __future__ import annotations

import hashlib

# --- exchanges -------------------------------------------------------------

EXCHANGES_V1 = {
    0: "NONE",
    1: "Base",
    2: "Main Mode",
    3: "Authentication Only",
    4: "Aggressive Mode",
    5: "Informational",
    6: "Transaction",
    32: "Quick Mode",
    33: "New Group Mode",
}

EXCHANGES_V2 = {
    34: "IKE_SA_INIT",
    35: "IKE_AUTH",
    36: "CREATE_CHILD_SA",
    37: "INFORMATIONAL",
    38: "IKE_SESSION_RESUME",
    39: "GSA_AUTH",
    40: "GSA_REGISTRATION",
    41: "GSA_REKEY",
    43: "IKE_INTERMEDIATE",
    44: "IKE_FOLLOWUP_KE",
}


# Microsoft AuthIP ([MS-AIPS] 2.2.1): ISAKMP version 1.0 headers with private-use exchange types; not IKE.
AUTHIP_EXCHANGES = {
    243: "Main Mode",
    244: "Quick Mode",
    245: "Extended Mode",
    246: "Notify",
}


def exchange_name(version: int, n: int) -> str:
    """Short exchange name ("Main Mode", "IKE_AUTH"), or "type N"."""
    table = EXCHANGES_V2 if version == 2 else EXCHANGES_V1
    return table.get(n) or f"type {n}"


# --- payload types ---------------------------------------------------------

PAYLOADS_V1 = {
    0: "NONE",
    1: "SA",
    2: "P",
    3: "T",
    4: "KE",
    5: "ID",
    6: "CERT",
    7: "CR",
    8: "HASH",
    9: "SIG",
    10: "NONCE",
    11: "N",
    12: "D",
    13: "VID",
    14: "ATTR",
    15: "SAK",
    16: "SAT",
    17: "KD",
    18: "SEQ",
    19: "POP",
    20: "NAT-D",
    21: "NAT-OA",
    22: "GAP",
    130: "NAT-D",   # draft-ietf-ipsec-nat-t-ike-00..03 (ipsec-tools racoon)
    131: "NAT-OA",  # draft-ietf-ipsec-nat-t-ike-00..03 (ipsec-tools racoon)
    132: "FRAG",    # Cisco / IKEv1 fragmentation
}

PAYLOADS_V2 = {
    0: "NONE",
    2: "P",
    3: "T",
    33: "SA",
    34: "KE",
    35: "IDi",
    36: "IDr",
    37: "CERT",
    38: "CERTREQ",
    39: "AUTH",
    40: "NONCE",
    41: "N",
    42: "D",
    43: "V",
    44: "TSi",
    45: "TSr",
    46: "SK",
    47: "CP",
    48: "EAP",
    49: "GSPM",
    50: "IDg",
    51: "GSA",
    52: "KD",
    53: "SKF",
    54: "PS",
}


def payload_name(version: int, n: int) -> str:
    """Short payload name ("SA", "VID", "IDi"), or "type N"."""
    table = PAYLOADS_V2 if version == 2 else PAYLOADS_V1
    return table.get(n) or f"type {n}"


# --- notify message types --------------------------------------------------

NOTIFY_V1 = {
    1: "INVALID-PAYLOAD-TYPE",
    2: "DOI-NOT-SUPPORTED",
    3: "SITUATION-NOT-SUPPORTED",
    4: "INVALID-COOKIE",
    5: "INVALID-MAJOR-VERSION",
    6: "INVALID-MINOR-VERSION",
    7: "INVALID-EXCHANGE-TYPE",
    8: "INVALID-FLAGS",
    9: "INVALID-MESSAGE-ID",
    10: "INVALID-PROTOCOL-ID",
    11: "INVALID-SPI",
    12: "INVALID-TRANSFORM-ID",
    13: "ATTRIBUTES-NOT-SUPPORTED",
    14: "NO-PROPOSAL-CHOSEN",
    15: "BAD-PROPOSAL-SYNTAX",
    16: "PAYLOAD-MALFORMED",
    17: "INVALID-KEY-INFORMATION",
    18: "INVALID-ID-INFORMATION",
    19: "INVALID-CERT-ENCODING",
    20: "INVALID-CERTIFICATE",
    21: "CERT-TYPE-UNSUPPORTED",
    22: "INVALID-CERT-AUTHORITY",
    23: "INVALID-HASH-INFORMATION",
    24: "AUTHENTICATION-FAILED",
    25: "INVALID-SIGNATURE",
    26: "ADDRESS-NOTIFICATION",
    27: "NOTIFY-SA-LIFETIME",
    28: "CERTIFICATE-UNAVAILABLE",
    29: "UNSUPPORTED-EXCHANGE-TYPE",
    30: "UNEQUAL-PAYLOAD-LENGTHS",
    16384: "CONNECTED",
    24576: "RESPONDER-LIFETIME",   # RFC 2407 (IPsec DOI status)
    24577: "REPLAY-STATUS",
    24578: "INITIAL-CONTACT",
    36136: "R-U-THERE",            # RFC 3706 DPD
    36137: "R-U-THERE-ACK",
    40501: "UNITY-LOAD-BALANCE",   # Cisco
    40502: "UNITY-UNKNOWN",
    40503: "UNITY-GROUP-HASH",
}

NOTIFY_V2 = {
    1: "UNSUPPORTED_CRITICAL_PAYLOAD",
    4: "INVALID_IKE_SPI",
    5: "INVALID_MAJOR_VERSION",
    7: "INVALID_SYNTAX",
    9: "INVALID_MESSAGE_ID",
    11: "INVALID_SPI",
    14: "NO_PROPOSAL_CHOSEN",
    17: "INVALID_KE_PAYLOAD",
    24: "AUTHENTICATION_FAILED",
    34: "SINGLE_PAIR_REQUIRED",
    35: "NO_ADDITIONAL_SAS",
    36: "INTERNAL_ADDRESS_FAILURE",
    37: "FAILED_CP_REQUIRED",
    38: "TS_UNACCEPTABLE",
    39: "INVALID_SELECTORS",
    40: "UNACCEPTABLE_ADDRESSES",
    41: "UNEXPECTED_NAT_DETECTED",
    42: "USE_ASSIGNED_HoA",
    43: "TEMPORARY_FAILURE",
    44: "CHILD_SA_NOT_FOUND",
    45: "INVALID_GROUP_ID",
    46: "AUTHORIZATION_FAILED",
    47: "STATE_NOT_FOUND",
    48: "TS_MAX_QUEUE",
    49: "REGISTRATION_FAILED",
    16384: "INITIAL_CONTACT",
    16385: "SET_WINDOW_SIZE",
    16386: "ADDITIONAL_TS_POSSIBLE",
    16387: "IPCOMP_SUPPORTED",
    16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP",
    16390: "COOKIE",
    16391: "USE_TRANSPORT_MODE",
    16392: "HTTP_CERT_LOOKUP_SUPPORTED",
    16393: "REKEY_SA",
    16394: "ESP_TFC_PADDING_NOT_SUPPORTED",
    16395: "NON_FIRST_FRAGMENTS_ALSO",
    16396: "MOBIKE_SUPPORTED",
    16397: "ADDITIONAL_IP4_ADDRESS",
    16398: "ADDITIONAL_IP6_ADDRESS",
    16399: "NO_ADDITIONAL_ADDRESSES",
    16400: "UPDATE_SA_ADDRESSES",
    16401: "COOKIE2",
    16402: "NO_NATS_ALLOWED",
    16403: "AUTH_LIFETIME",
    16404: "MULTIPLE_AUTH_SUPPORTED",
    16405: "ANOTHER_AUTH_FOLLOWS",
    16406: "REDIRECT_SUPPORTED",
    16407: "REDIRECT",
    16408: "REDIRECTED_FROM",
    16409: "TICKET_LT_OPAQUE",
    16410: "TICKET_REQUEST",
    16411: "TICKET_ACK",
    16412: "TICKET_NACK",
    16413: "TICKET_OPAQUE",
    16414: "LINK_ID",
    16415: "USE_WESP_MODE",
    16416: "ROHC_SUPPORTED",
    16417: "EAP_ONLY_AUTHENTICATION",
    16418: "CHILDLESS_IKEV2_SUPPORTED",
    16419: "QUICK_CRASH_DETECTION",
    16420: "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
    16421: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
    16422: "IKEV2_MESSAGE_ID_SYNC",
    16423: "IPSEC_REPLAY_COUNTER_SYNC",
    16424: "SECURE_PASSWORD_METHODS",
    16425: "PSK_PERSIST",
    16426: "PSK_CONFIRM",
    16427: "ERX_SUPPORTED",
    16428: "IFOM_CAPABILITY",
    16429: "SENDER_REQUEST_ID",
    16430: "IKEV2_FRAGMENTATION_SUPPORTED",
    16431: "SIGNATURE_HASH_ALGORITHMS",
    16432: "CLONE_IKE_SA_SUPPORTED",
    16433: "CLONE_IKE_SA",
    16434: "PUZZLE",
    16435: "USE_PPK",
    16436: "PPK_IDENTITY",
    16437: "NO_PPK_AUTH",
    16438: "INTERMEDIATE_EXCHANGE_SUPPORTED",
    16439: "IP4_ALLOWED",
    16440: "IP6_ALLOWED",
    16441: "ADDITIONAL_KEY_EXCHANGE",
    16442: "USE_AGGFRAG",
    16443: "SUPPORTED_AUTH_METHODS",
    16444: "SA_RESOURCE_INFO",
    16445: "USE_PPK_INT",
    16446: "PPK_IDENTITY_KEY",
    16447: "IKE_SA_INIT_FULL_TRANSCRIPT_AUTH",
}


def notify_name(version: int, n: int) -> str:
    """Notify message type name, or "type N"."""
    table = NOTIFY_V2 if version == 2 else NOTIFY_V1
    return table.get(n) or f"type {n}"


# --- protocols, DOI, identities --------------------------------------------

PROTOCOLS_V1 = {1: "ISAKMP", 2: "AH", 3: "ESP", 4: "IPCOMP"}
PROTOCOLS_V2 = {1: "IKE", 2: "AH", 3: "ESP"}


def protocol_name(version: int, n: int) -> str:
    """Security protocol id name ("ISAKMP"/"IKE", "AH", "ESP", "IPCOMP")."""
    table = PROTOCOLS_V2 if version == 2 else PROTOCOLS_V1
    return table.get(n) or f"proto {n}"


ID_TYPES_V1 = {
    1: "IPV4_ADDR",
    2: "FQDN",
    3: "USER_FQDN",
    4: "IPV4_ADDR_SUBNET",
    5: "IPV6_ADDR",
    6: "IPV6_ADDR_SUBNET",
    7: "IPV4_ADDR_RANGE",
    8: "IPV6_ADDR_RANGE",
    9: "DER_ASN1_DN",
    10: "DER_ASN1_GN",
    11: "KEY_ID",
    12: "LIST",
}

ID_TYPES_V2 = {
    1: "ID_IPV4_ADDR",
    2: "ID_FQDN",
    3: "ID_RFC822_ADDR",
    5: "ID_IPV6_ADDR",
    9: "ID_DER_ASN1_DN",
    10: "ID_DER_ASN1_GN",
    11: "ID_KEY_ID",
    12: "ID_FC_NAME",
    13: "ID_NULL",
}


def id_type_name(version: int, n: int) -> str:
    """Identification type name, or "type N"."""
    table = ID_TYPES_V2 if version == 2 else ID_TYPES_V1
    return table.get(n) or f"type {n}"


CERT_ENCODINGS = {
    1: "PKCS #7 wrapped X.509",
    2: "PGP",
    3: "DNS Signed Key",
    4: "X.509 Signature",
    5: "X.509 Key Exchange",
    6: "Kerberos Token",
    7: "CRL",
    8: "ARL",
    9: "SPKI",
    10: "X.509 Attribute",
    11: "Raw RSA Key",
    12: "Hash and URL of X.509 certificate",
    13: "Hash and URL of X.509 bundle",
    14: "OCSP Content",
    15: "Raw Public Key",
}

AUTH_METHODS_V2 = {
    1: "RSA_SIG",
    2: "PSK",
    3: "DSS_SIG",
    9: "ECDSA_SHA256_P256",
    10: "ECDSA_SHA384_P384",
    11: "ECDSA_SHA512_P521",
    12: "GSPAM",
    13: "NULL",
    14: "DIGITAL_SIGNATURE",
}

CFG_TYPES_V1 = {1: "ISAKMP_CFG_REQUEST", 2: "ISAKMP_CFG_REPLY", 3: "ISAKMP_CFG_SET", 4: "ISAKMP_CFG_ACK"}
CFG_TYPES_V2 = {1: "CFG_REQUEST", 2: "CFG_REPLY", 3: "CFG_SET", 4: "CFG_ACK"}

# Mode-Config (IKEv1, draft-dukes-ike-mode-cfg) and IKEv2 CP attributes share 1-15.
CFG_ATTRIBUTES = {
    1: "INTERNAL_IP4_ADDRESS",
    2: "INTERNAL_IP4_NETMASK",
    3: "INTERNAL_IP4_DNS",
    4: "INTERNAL_IP4_NBNS",
    5: "INTERNAL_ADDRESS_EXPIRY",
    6: "INTERNAL_IP4_DHCP",
    7: "APPLICATION_VERSION",
    8: "INTERNAL_IP6_ADDRESS",
    9: "INTERNAL_IP6_NETMASK",
    10: "INTERNAL_IP6_DNS",
    11: "INTERNAL_IP6_NBNS",
    12: "INTERNAL_IP6_DHCP",
    13: "INTERNAL_IP4_SUBNET",
    14: "SUPPORTED_ATTRIBUTES",
    15: "INTERNAL_IP6_SUBNET",
}

CFG_ATTRIBUTES_V1 = CFG_ATTRIBUTES | {
    16520: "XAUTH_TYPE",
    16521: "XAUTH_USER_NAME",
    16522: "XAUTH_USER_PASSWORD",
    16523: "XAUTH_PASSCODE",
    16524: "XAUTH_MESSAGE",
    16525: "XAUTH_CHALLENGE",
    16526: "XAUTH_DOMAIN",
    16527: "XAUTH_STATUS",
    16528: "XAUTH_NEXT_PIN",
    16529: "XAUTH_ANSWER",
    28672: "UNITY_BANNER",
    28673: "UNITY_SAVE_PASSWD",
    28674: "UNITY_DEF_DOMAIN",
    28675: "UNITY_SPLIT_DNS",
    28676: "UNITY_SPLIT_INCLUDE",
    28677: "UNITY_NATT_PORT",
    28678: "UNITY_LOCAL_LAN",
    28679: "UNITY_PFS",
    28680: "UNITY_FW_TYPE",
    28681: "UNITY_BACKUP_SERVERS",
    28682: "UNITY_DDNS_HOSTNAME",
}

CFG_ATTRIBUTES_V2 = CFG_ATTRIBUTES | {
    16: "MIP6_HOME_PREFIX",
    17: "INTERNAL_IP6_LINK",
    18: "INTERNAL_IP6_PREFIX",
    19: "HOME_AGENT_ADDRESS",
    20: "P_CSCF_IP4_ADDRESS",
    21: "P_CSCF_IP6_ADDRESS",
    22: "FTT_KAT",
    23: "EXTERNAL_SOURCE_IP4_NAT_INFO",
    24: "TIMEOUT_PERIOD_FOR_LIVENESS_CHECK",
    25: "INTERNAL_DNS_DOMAIN",
    26: "INTERNAL_DNSSEC_TA",
}

TS_TYPES = {7: "TS_IPV4_ADDR_RANGE", 8: "TS_IPV6_ADDR_RANGE", 9: "TS_FC_ADDR_RANGE"}

EAP_CODES = {1: "Request", 2: "Response", 3: "Success", 4: "Failure"}

# --- Diffie-Hellman groups (shared registry, IKEv1 Group-Description and IKEv2 KE) ---

DH_GROUPS = {
    0: "none",
    1: "modp768",
    2: "modp1024",
    3: "ec2n155",
    4: "ec2n185",
    5: "modp1536",
    14: "modp2048",
    15: "modp3072",
    16: "modp4096",
    17: "modp6144",
    18: "modp8192",
    19: "ecp256",
    20: "ecp384",
    21: "ecp521",
    22: "modp1024s160",
    23: "modp2048s224",
    24: "modp2048s256",
    25: "ecp192",
    26: "ecp224",
    27: "brainpool224",
    28: "brainpool256",
    29: "brainpool384",
    30: "brainpool512",
    31: "curve25519",
    32: "curve448",
    33: "gost256",
    34: "gost512",
}


def group_name(n: int) -> str:
    """Short DH group name ("modp2048", "ecp256", "curve25519"), or "group N"."""
    return DH_GROUPS.get(n) or f"group {n}"


# --- IKEv2 transforms (RFC 7296 3.3.2, IANA) --------------------------------

V2_TRANSFORM_TYPES = {
    1: "ENCR",
    2: "PRF",
    3: "INTEG",
    4: "DH",
    5: "ESN",
    6: "ADDKE1",
    7: "ADDKE2",
    8: "ADDKE3",
    9: "ADDKE4",
    10: "ADDKE5",
    11: "ADDKE6",
    12: "ADDKE7",
}

V2_ENCR = {
    1: "DES_IV64",
    2: "DES",
    3: "3DES",
    4: "RC5",
    5: "IDEA",
    6: "CAST",
    7: "BLOWFISH",
    8: "3IDEA",
    9: "DES_IV32",
    11: "NULL",
    12: "AES_CBC",
    13: "AES_CTR",
    14: "AES_CCM_8",
    15: "AES_CCM_12",
    16: "AES_CCM_16",
    18: "AES_GCM_8",
    19: "AES_GCM_12",
    20: "AES_GCM_16",
    21: "NULL_AUTH_AES_GMAC",
    23: "CAMELLIA_CBC",
    24: "CAMELLIA_CTR",
    25: "CAMELLIA_CCM_8",
    26: "CAMELLIA_CCM_12",
    27: "CAMELLIA_CCM_16",
    28: "CHACHA20_POLY1305",
    29: "AES_CCM_8_IIV",
    30: "AES_GCM_16_IIV",
    31: "CHACHA20_POLY1305_IIV",
    32: "KUZNYECHIK_MGM_KTREE",
    33: "MAGMA_MGM_KTREE",
    34: "KUZNYECHIK_MGM_MAC_KTREE",
    35: "MAGMA_MGM_MAC_KTREE",
}

V2_PRF = {
    1: "HMAC_MD5",
    2: "HMAC_SHA1",
    3: "HMAC_TIGER",
    4: "AES128_XCBC",
    5: "HMAC_SHA2_256",
    6: "HMAC_SHA2_384",
    7: "HMAC_SHA2_512",
    8: "AES128_CMAC",
    9: "HMAC_STREEBOG_512",
}

V2_INTEG = {
    0: "NONE",
    1: "HMAC_MD5_96",
    2: "HMAC_SHA1_96",
    3: "DES_MAC",
    4: "KPDK_MD5",
    5: "AES_XCBC_96",
    6: "HMAC_MD5_128",
    7: "HMAC_SHA1_160",
    8: "AES_CMAC_96",
    9: "AES_128_GMAC",
    10: "AES_192_GMAC",
    11: "AES_256_GMAC",
    12: "HMAC_SHA2_256_128",
    13: "HMAC_SHA2_384_192",
    14: "HMAC_SHA2_512_256",
}

V2_DH = {
    0: "NONE",
    1: "MODP_768",
    2: "MODP_1024",
    5: "MODP_1536",
    14: "MODP_2048",
    15: "MODP_3072",
    16: "MODP_4096",
    17: "MODP_6144",
    18: "MODP_8192",
    19: "ECP_256",
    20: "ECP_384",
    21: "ECP_521",
    22: "MODP_1024_160",
    23: "MODP_2048_224",
    24: "MODP_2048_256",
    25: "ECP_192",
    26: "ECP_224",
    27: "BRAINPOOL_P224",
    28: "BRAINPOOL_P256",
    29: "BRAINPOOL_P384",
    30: "BRAINPOOL_P512",
    31: "CURVE25519",
    32: "CURVE448",
    33: "GOST3410_2012_256",
    34: "GOST3410_2012_512",
}

V2_ESN = {0: "NO_ESN", 1: "ESN"}

V2_TRANSFORM_IDS = {1: V2_ENCR, 2: V2_PRF, 3: V2_INTEG, 4: V2_DH, 5: V2_ESN}


def v2_transform_name(ttype: int, tid: int) -> str:
    """IKEv2 transform id name within its type ("AES_CBC", "MODP_2048")."""
    table = V2_TRANSFORM_IDS.get(ttype, V2_DH if 6 <= ttype <= 12 else {})
    return table.get(tid) or f"id {tid}"


# --- IKEv1 transforms and SA attributes (RFC 2407, RFC 2409) ---------------

V1_TRANSFORM_IDS = {
    1: {1: "KEY_IKE"},
    2: {
        2: "AH_MD5",
        3: "AH_SHA",
        4: "AH_DES",
        5: "AH_SHA2-256",
        6: "AH_SHA2-384",
        7: "AH_SHA2-512",
        8: "AH_RIPEMD",
        9: "AH_AES-XCBC-MAC",
        10: "AH_RSA",
        11: "AH_AES-128-GMAC",
        12: "AH_AES-192-GMAC",
        13: "AH_AES-256-GMAC",
    },
    3: {
        1: "ESP_DES_IV64",
        2: "ESP_DES",
        3: "ESP_3DES",
        4: "ESP_RC5",
        5: "ESP_IDEA",
        6: "ESP_CAST",
        7: "ESP_BLOWFISH",
        8: "ESP_3IDEA",
        9: "ESP_DES_IV32",
        10: "ESP_RC4",
        11: "ESP_NULL",
        12: "ESP_AES-CBC",
        13: "ESP_AES-CTR",
        14: "ESP_AES-CCM_8",
        15: "ESP_AES-CCM_12",
        16: "ESP_AES-CCM_16",
        18: "ESP_AES-GCM_8",
        19: "ESP_AES-GCM_12",
        20: "ESP_AES-GCM_16",
        21: "ESP_SEED_CBC",
        22: "ESP_CAMELLIA",
        23: "ESP_NULL_AUTH_AES-GMAC",
    },
    4: {1: "IPCOMP_OUI", 2: "IPCOMP_DEFLATE", 3: "IPCOMP_LZS", 4: "IPCOMP_LZJH"},
}


def v1_transform_name(protocol: int, tid: int) -> str:
    """IKEv1 transform id name for the proposal's protocol ("KEY_IKE", "ESP_3DES")."""
    return V1_TRANSFORM_IDS.get(protocol, {}).get(tid, f"id {tid}")


# Phase-1 (ISAKMP, RFC 2409 appendix A) attribute short names.
IKE_ATTRIBUTES = {
    1: "encryption",
    2: "hash",
    3: "auth",
    4: "group",
    5: "group_type",
    6: "group_prime",
    7: "group_generator_one",
    8: "group_generator_two",
    9: "group_curve_a",
    10: "group_curve_b",
    11: "life_type",
    12: "life_duration",
    13: "prf",
    14: "key_length",
    15: "field_size",
    16: "group_order",
    17: "block_size",
}

# Phase-2 (IPsec DOI, RFC 2407 4.5) attribute short names.
IPSEC_ATTRIBUTES = {
    1: "life_type",
    2: "life_duration",
    3: "group",
    4: "encap_mode",
    5: "auth_alg",
    6: "key_length",
    7: "key_rounds",
    8: "compress_dict_size",
    9: "compress_private_alg",
    10: "ecn_tunnel",
    11: "esn",
    12: "auth_key_length",
    13: "sig_encoding",
    14: "addr_preservation",
    15: "sa_direction",
}

V1_ENCRYPTION = {
    1: "DES-CBC",
    2: "IDEA-CBC",
    3: "Blowfish-CBC",
    4: "RC5-R16-B64-CBC",
    5: "3DES-CBC",
    6: "CAST-CBC",
    7: "AES-CBC",
    8: "Camellia-CBC",
}

V1_HASH = {1: "MD5", 2: "SHA1", 3: "Tiger", 4: "SHA256", 5: "SHA384", 6: "SHA512"}

V1_AUTH_METHODS = {
    1: "PSK",
    2: "DSS",
    3: "RSA-SIG",
    4: "RSA-ENC",
    5: "RSA-ENC-REV",
    6: "ElGamal-ENC",
    7: "ElGamal-ENC-REV",
    8: "ECDSA",
    9: "ECDSA-P256-SHA256",
    10: "ECDSA-P384-SHA384",
    11: "ECDSA-P521-SHA512",
    64221: "HybridInitRSA",
    64222: "HybridRespRSA",
    64223: "HybridInitDSS",
    64224: "HybridRespDSS",
    65001: "XAUTHInitPreShared",
    65002: "XAUTHRespPreShared",
    65003: "XAUTHInitDSS",
    65004: "XAUTHRespDSS",
    65005: "XAUTHInitRSA",
    65006: "XAUTHRespRSA",
    65007: "XAUTHInitRSAEncryption",
    65008: "XAUTHRespRSAEncryption",
    65009: "XAUTHInitRSARevisedEncryption",
    65010: "XAUTHRespRSARevisedEncryption",
}

LIFE_TYPES = {1: "seconds", 2: "kilobytes"}

ENCAP_MODES = {
    1: "Tunnel",
    2: "Transport",
    3: "UDP-Encapsulated-Tunnel",
    4: "UDP-Encapsulated-Transport",
    61443: "UDP-Encapsulated-Tunnel (draft)",
    61444: "UDP-Encapsulated-Transport (draft)",
}

V1_AUTH_ALGORITHMS = {
    1: "HMAC-MD5",
    2: "HMAC-SHA1",
    3: "DES-MAC",
    4: "KPDK",
    5: "HMAC-SHA256",
    6: "HMAC-SHA384",
    7: "HMAC-SHA512",
    8: "HMAC-RIPEMD",
    9: "AES-XCBC-MAC",
    10: "SIG-RSA",
    11: "AES-128-GMAC",
    12: "AES-192-GMAC",
    13: "AES-256-GMAC",
}

# --- vendor IDs ------------------------------------------------------------


def _md5(s: str) -> bytes:
    return hashlib.md5(s.encode()).digest()


# Exact matches: MD5 of the public string, or the literal value where the VID
# is not an MD5 of a known string.
_VENDOR_EXACT: dict[bytes, str] = {
    _md5("RFC 3947"): "RFC 3947 NAT-T",
    _md5("draft-ietf-ipsec-nat-t-ike"): "draft-ietf-ipsec-nat-t-ike",
    **{_md5(f"draft-ietf-ipsec-nat-t-ike-{i:02d}"): f"draft-ietf-ipsec-nat-t-ike-{i:02d}" for i in range(9)},
    _md5("draft-ietf-ipsec-nat-t-ike-02\n"): "draft-ietf-ipsec-nat-t-ike-02\\n",
    _md5("draft-stenberg-ipsec-nat-traversal-01"): "draft-stenberg-ipsec-nat-traversal-01",
    _md5("draft-stenberg-ipsec-nat-traversal-02"): "draft-stenberg-ipsec-nat-traversal-02",
    _md5("draft-huttunen-ipsec-esp-in-udp-00.txt"): "draft-huttunen-ipsec-esp-in-udp-00",
    _md5("ESPThruNAT"): "ESPThruNAT",
    # RFC 3706 section 5.1 fixed value (not an MD5 of a simple string).
    bytes.fromhex("afcad71368a1f1c96b8696fc77570100"): "DPD",
    _md5("strongSwan"): "strongSwan",
    _md5("KAME/racoon"): "KAME/racoon",
    _md5("GSSAPI"): "GSSAPI",
    _md5("A GSS-API Authentication Method for IKE"): "GSS-API",
    _md5("Vid-Initial-Contact"): "Vid-Initial-Contact",
    _md5("MS-Negotiation Discovery Capable"): "MS Negotiation Discovery Capable",
    _md5("MS-MamieExists"): "MS AuthIP supported",
    _md5("Fortinet Endpoint Control"): "Fortinet Endpoint Control",
    _md5("forticlient connect license"): "FortiClient connect license",
    # Shrew Soft DPDv1_NG, literal from libreswan vendorid.c.
    bytes.fromhex("3b9031dce4fcf88b489a923963dd0c49"): "DPDv1_NG",
    b"CISCO-DELETE-REASON": "Cisco Delete Reason",
    b"CISCO-DYNAMIC-ROUTE": "Cisco Dynamic Route",
    b"FLEXVPN-SUPPORTED": "Cisco FlexVPN Supported",
    b"CISCOVPN-REV-02": "Cisco VPN rev 02",
    b"CISCO(COPYRIGHT)&Copyright (c) 2009 Cisco Systems, Inc.": "Cisco Copyright (c) 2009",
    b"IKEv2": "CAN-IKEv2",
}

_MS_WINDOWS = {
    2: "Windows 2000",
    3: "Windows XP",
    4: "Windows Server 2003",
    5: "Windows Vista",
    6: "Windows Server 2008",
    7: "Windows 7",
    8: "Windows Server 2008 R2",
    9: "Windows 8 or later",
}


def _ms_nt5(vid: bytes) -> str:
    if len(vid) == 20:
        v = int.from_bytes(vid[16:20], "big")
        return f"Microsoft {_MS_WINDOWS.get(v, f'v{v}')} (MS NT5 ISAKMPOAKLEY)"
    return "Microsoft (MS NT5 ISAKMPOAKLEY)"


def _versioned(label: str):
    return lambda vid: f"{label} {vid[14]}.{vid[15]}" if len(vid) == 16 else label


# Prefix matches for VIDs that carry version/capability bytes after a fixed
# part, longest prefix first. Each entry: (prefix, name or callable(vid) -> name).
_VENDOR_PREFIX = [
    (_md5("MS NT5 ISAKMPOAKLEY"), _ms_nt5),
    (_md5("FRAGMENTATION"), "FRAGMENTATION"),
    (_md5("RFC 3947"), "RFC 3947 NAT-T"),
    # Check Point: 20-byte literal followed by product/version fields (Wireshark, libreswan).
    (bytes.fromhex("f4ed19e0c114eb516faaac0ee37daf2807b4381f"), "Check Point"),
    # MD5("CISCO-UNITY") with the last two bytes replaced by major/minor version.
    (_md5("CISCO-UNITY")[:14], _versioned("Cisco Unity")),
    # MD5("ALTIGA GATEWAY") truncated, last two bytes are the version.
    (_md5("ALTIGA GATEWAY")[:14], _versioned("Cisco VPN 3000")),
    # Windows KEY_MODS / AuthIP KE, literal prefixes from libreswan vendorid.c.
    (bytes.fromhex("01528bbbc00696121849ab9a1c5b2a51"), "Microsoft KEY_MODS"),
    (bytes.fromhex("7bb93867d76c8d80df0f40fae8fc3b19"), "Microsoft AuthIP KE"),
    (b"HeartBeat_Notify", "HeartBeat Notify"),
    (b"OE-Libreswan-", "Libreswan"),
    (b"OpenIKED", "OpenIKED"),
    (b"TIMESTEP", "Timestep"),
    # XAUTH: MD5("draft-ietf-ipsra-isakmp-xauth-06.txt"), sent truncated to 8 bytes.
    (_md5("draft-ietf-ipsra-isakmp-xauth-06.txt")[:8], "XAUTH"),
    (b"OEN", "Libreswan 3.0-3.5"),
    (b"OSW", "Openswan"),
    (b"OE", "Openswan"),
]


def vendor_name(vid: bytes) -> str | None:
    """Name a vendor ID payload body, or None when it is not recognised."""
    name = _VENDOR_EXACT.get(bytes(vid))
    if name:
        return name
    for prefix, label in _VENDOR_PREFIX:
        if vid.startswith(prefix):
            return label(vid) if callable(label) else label
    return None
