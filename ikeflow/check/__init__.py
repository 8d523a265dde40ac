"""`ikeflow check`: read both ends' IPsec configurations, resolve what each daemon will propose and accept,
and name the mismatch with the cause vocabulary and the `at` label the capture would show.

`config.py` (settings with their file:line), `ipsec_conf.py`, `swanctl.py`, `secrets.py` (the dialects),
`suites.py` (proposal strings), `defaults.py` (each daemon's defaults, cited), `resolve.py` (the effective
settings of a conn), `compare.py` (pairing and findings), `capture.py` (a capture beside the configurations: the
wire against the conns, the causes explained, ruled out and settled), `command.py` (the click command, and `beside`
for `read --config`).
"""
