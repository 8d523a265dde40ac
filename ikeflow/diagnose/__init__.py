"""What is wrong and why: the cause vocabulary (causes), findings (finding, findings) and where a
negotiation stalls with its causes ranked by a table of rules (stalls)."""
