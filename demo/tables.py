"""How the demo prints a table: a title, then right-aligned columns."""

from __future__ import annotations


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        print("  " + "  ".join(str(v).rjust(w) for v, w in zip(line, widths, strict=True)))
