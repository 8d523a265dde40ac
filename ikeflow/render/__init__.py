"""One module per output: read, live and compare, each on a terminal and as JSON; common holds what
they share (addresses, clock, frame references, the message/flow/finding JSON objects)."""
