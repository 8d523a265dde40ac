"""ikeflow: rebuild IKE/ESP negotiations from packet captures and explain where they stall."""

__version__ = "0.1.0"

# Exit codes a script can use: nothing wrong; at least one error finding; usage error, unreadable
# input or an unwritable report; internal error.
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
