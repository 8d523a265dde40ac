"""libreswan pluto log with plutodebug including `private`.

What pluto 4.x prints (programs/pluto/state.c DBG_tcpdump_ike_sa_keys, called from ikev2_parent.c
v2_ike_sa_established and ikev1.c): the tcpdump -E style lines `| ikev2 I 0xSPIi 0xSPIr sha256:0x... aes128:0x...`
and `| ikev2 R ...`, once an IKE SA is established. So a failed IKE_AUTH leaves no keys in the log; the IKEv1
line has no encryption key (IKEv1 phase 1 keys are not printed); AEAD/CTR keys come without their salt. The
`ESP enckey:`/`ESP authkey:` dumps of programs/pluto/kernel.c do not name their SPI and are not used.
"""

from __future__ import annotations

import re

from ikeflow.keys.ring import KeyRing, KeySourceError
from ikeflow.keys.tcpdump import ike_lines

# A pluto line: a debug line ("| ...") after pluto's time stamp or syslog prefix, or a state line ("conn"[n] ... #n:)
# with or without one; a bare "| " line is not enough (a Markdown table starts its rows so).
_PLUTO = re.compile(r"^(?:(?:\w{3} +\d+ [\d:.]+: |\S+ pluto\[\d+\]: )(?:\| |\"[^\"]+\"(?:\[\d+\])? .*#\d+: )"
                    r"|\"[^\"]+\"(?:\[\d+\])? .*#\d+: )", re.M)


def parse(name: str, text: str, where: str) -> KeyRing | None:
    """Keys in a pluto log; None if the text is not a pluto log."""
    if not _PLUTO.search(text) or "Sk_ei secret" in text:
        return None
    keys, unusable = ike_lines(text, where)
    if not keys:
        why = "; ".join(unusable) or ("it prints IKEv2 keys only with plutodebug including private and only once "
                                      "an IKE SA is established, and no IKEv1 phase 1 keys")
        raise KeySourceError(f"{where}: a pluto log without usable IKE keys ({why})", keyless=True)
    ring = KeyRing()
    for key in keys:
        ring.add(key)
    return ring
