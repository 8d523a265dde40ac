"""The terminal layout: lines that wrap at spaces without cutting a value, and tables made of them."""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text


def wrap(text: Text | str, width: int | None, indent: int = 0) -> list[Text]:
    """`text` broken at spaces into lines of at most `width` columns (None: one line), the lines after
    the first indented by `indent`.  A word longer than a line gets a line of its own, whole: values
    (addresses, SPIs, proposal strings, file names) are never cut."""
    text = Text(text) if isinstance(text, str) else text
    plain = text.plain
    if width is None or cell_len(plain) <= width:
        return [text]
    lines: list[Text] = []
    start, end, room = 0, None, width
    for m in re.finditer(r"\S+", plain):
        a, b = m.span()
        if end is not None and cell_len(plain[start:b]) > room:
            lines.append(text[start:end])
            start, room = a, width - indent
        end = b
    lines.append(text[start:len(plain) if end is None else end])
    return [line if n == 0 else Text(" " * indent) + line for n, line in enumerate(lines)]


def grid(columns: list[str], rows: list[list], width: int | None, right: tuple[int, ...] = (),
         indent: int = 0, last_min: int = 20, bare_first: bool = False) -> list[Text]:
    """A table as lines: aligned columns when they fit in `width`, or when only the last column needs
    wrapping under itself (in at least `last_min` columns); otherwise each row as `column: value` pairs
    (the first value alone with `bare_first`), wrapped at spaces."""
    cells = [[c if isinstance(c, Text) else Text(str(c)) for c in row] for row in rows]
    head = [Text(c, style="dim") for c in columns]
    widths = [max(cell_len(r[i].plain) for r in [head, *cells]) for i in range(len(columns))]
    lead = indent + sum(widths[:-1]) + 2 * (len(columns) - 1)
    longest_word = max((cell_len(w) for r in cells for w in r[-1].plain.split()), default=0)
    if width is None or lead + widths[-1] <= width or (width - lead >= last_min and longest_word <= width - lead):
        out = []
        for r in [head, *cells]:
            line = Text(" " * indent)
            for i, c in enumerate(r[:-1]):
                pad = Text(" " * (widths[i] - cell_len(c.plain)))
                line += (pad + c if i in right else c + pad) + Text("  ")
            out += wrap(line + r[-1], width, lead)
        for line in out:
            line.rstrip()  # in place: no padding after an empty last cell
        return out
    out = []
    for r in cells:
        pairs = [Text(f"{name}: ", style="dim") + c if name and not (bare_first and n == 0) else c
                 for n, (name, c) in enumerate(zip(columns, r)) if c.plain]
        out += wrap(Text(" " * indent) + Text("  ").join(pairs), width, indent + 2)
    return out
