"""Pure functions of bytes: link types, IP/UDP/ESP/ICMP (packet), ISAKMP/IKE messages (ike), protocol
names and proposal summaries.  No state, no I/O."""
