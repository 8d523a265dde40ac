"""tcpdump filter expressions (pcap-filter(7)) over frames read from files: `read --filter`.

libpcap compiles the expression for a frame's link type (pcap_compile on a dead handle, through
Scapy's compile_filter) and runs the compiled program over the frame's bytes (bpf_filter(3PCAP)),
so a frame matches exactly when tcpdump -r would print it with the same expression.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable


class FilterError(ValueError):
    """A filter expression libpcap cannot compile (for a link type), or no libpcap."""


def compile_filter(expr: str, linktype: int) -> Callable[[bytes], bool]:
    """A matcher of frames of `linktype`: frame bytes -> whether `expr` keeps the frame.  Raises FilterError."""
    try:
        from scapy.arch.common import compile_filter as pcap_compile
        from scapy.error import Scapy_Exception
        from scapy.libs.structures import bpf_insn
        from scapy.libs.winpcapy import _lib as libpcap
    except (ImportError, OSError):
        raise FilterError("--filter needs libpcap (Debian: apt-get install libpcap0.8)") from None
    try:
        program = pcap_compile(expr, linktype=linktype)
    except (Scapy_Exception, OSError, ImportError) as e:
        why = re.search(r"\(([^()]*)\)\s*$", str(e))
        raise FilterError(f"--filter {expr!r}: {why.group(1) if why else e} (link type {linktype})") from None
    run = libpcap.bpf_filter
    run.argtypes = [ctypes.POINTER(bpf_insn), ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
    run.restype = ctypes.c_uint
    insns = program.bf_insns

    def match(frame: bytes) -> bool:
        return run(insns, frame, len(frame), len(frame)) != 0

    match.program = program  # keeps the compiled code alive as long as the matcher
    return match


class FrameFilter:
    """One expression over frames of any link type, compiled once per link type."""

    def __init__(self, expr: str):
        self.expr = expr
        self.matchers: dict[int, Callable[[bytes], bool]] = {}
        self.check()

    def check(self, linktype: int = 1) -> None:
        """Compile for `linktype` now (Ethernet by default), to report a bad expression before reading."""
        if linktype not in self.matchers:
            self.matchers[linktype] = compile_filter(self.expr, linktype)

    def __call__(self, linktype: int, frame: bytes) -> bool:
        """Whether the expression keeps the frame (compiled for its link type on first sight)."""
        match = self.matchers.get(linktype)
        if match is None:
            self.check(linktype)
            match = self.matchers[linktype]
        return match(frame)
