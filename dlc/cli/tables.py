"""Tables on stdout that survive a pipe: a rich table on a terminal; plain text otherwise (`dlc runs > file`,
`| less`, a CI log): the title, a header row and one row per line, columns padded to their widest cell, never
cut or wrapped whatever the width."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlc import api


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                right: Sequence[str] = (), quiet: bool = False, stderr: bool = False) -> None:
    """`columns` named in `right` are right-aligned (numbers). Every text is shown as it is (a `[bold]` in a
    path or a name is not rich markup). A terminal too narrow for the table gets one block per row (rich would
    fold every cell into columns two letters wide). `stderr`: there instead of stdout (a table that is part of
    a command's display, where stdout is kept for what scripts read)."""
    if quiet:
        return
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        from rich.console import Console
        from rich.measure import Measurement

        console = Console(stderr=stderr)
        table = _rich_table(title, columns, rows, right)
        # (the minimum: every cell wrapped at its words; narrower, rich would cut words into pieces)
        if Measurement.get(console, console.options.update(max_width=10_000), table).minimum <= console.width:
            console.print(table)
        else:
            console.print(_blocks(title, columns, rows))
        return
    from dlc.cli.ascii import encodable

    def shown(text: str) -> str:  # (as the stream will write it, so the columns are measured right)
        return encodable(text, stream)

    print(plain_table(shown(title), [shown(c) for c in columns], [[shown(c) for c in r] for r in rows],
                      [shown(c) for c in right]), file=stream)


def _rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[str]):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title))
    for col in columns:
        table.add_column(Text(col), justify="right" if col in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _blocks(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]):
    """The table for a narrow terminal: the title, then per row its first cell and, indented, each other
    column's name and value (a long value wraps under itself)."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    parts: list = [Text(title, style="bold")]
    for row in rows:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for col, cell in zip(columns[1:], row[1:], strict=True):
            grid.add_row(Text(col), Text(cell))
        parts += [Text(row[0]), Padding(grid, (0, 0, 0, 2))]
    return Group(*parts)


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                right: Sequence[str] = ()) -> str:
    """The table as aligned plain text (two spaces between columns, no trailing spaces), padded by the cells
    a terminal gives each text (a CJK character takes two)."""
    widths = [max([api.text_cells(c)] + [api.text_cells(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(_pad(cell, w, col in right)
                         for col, cell, w in zip(columns, row, widths, strict=True)).rstrip()

    out = [title, line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - api.text_cells(text))
    return fill + text if right else text + fill
