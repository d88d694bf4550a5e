"""Tables on stdout that survive a pipe: a rich table on a terminal; plain text otherwise (`dlc runs > file`,
`| less`, a CI log): the title, a header row and one row per line, columns padded to their widest cell, never
cut or wrapped whatever the width."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                right: Sequence[str] = (), quiet: bool = False) -> None:
    """`columns` named in `right` are right-aligned (numbers). Every text is shown as it is (a `[bold]` in a
    path or a name is not rich markup)."""
    if quiet:
        return
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title))
        for col in columns:
            table.add_column(Text(col), justify="right" if col in right else "left", overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        Console().print(table)
        return
    print(plain_table(title, columns, rows, right))


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                right: Sequence[str] = ()) -> str:
    """The table as aligned plain text (two spaces between columns, no trailing spaces)."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if col in right else cell.ljust(w)
                         for col, cell, w in zip(columns, cells, widths, strict=True)).rstrip()

    out = [title, line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)
