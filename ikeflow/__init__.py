"""ikeflow: rebuild IKE/ESP negotiations from packet captures and explain where they stall."""

__version__ = "0.1.0"
