"""Tables as text: aligned plain text for a terminal, and Markdown.

Both take a header (a list of column titles) and rows (lists of cells that
are already strings), and return the table's lines. The ablation results
and `benchmarks/report.py` render their tables with them.
"""


def markdown_table(header, rows=()):
    """The lines of a Markdown table: the header, `|---|...`, then the rows.

    Args:
        header: The column titles.
        rows: Lists of cells (strings), as many as there are titles.

    Returns:
        A list of strings, one per line.

    Example:

    >>> markdown_table(["layer", "scale"], [["conv1", "2"]])
    ['| layer | scale |', '|---|---|', '| conv1 | 2 |']
    """
    lines = [_markdown_row(header), "|" + "---|" * len(header)]
    lines += [_markdown_row(cells) for cells in rows]
    return lines


def _markdown_row(cells):
    return "| " + " | ".join(cells) + " |"


def text_table(header, rows=()):
    """The lines of a plain-text table with left-aligned columns.

    A line of dashes separates the header from the rows; columns are two
    spaces apart, and trailing spaces are removed.

    Args:
        header: The column titles.
        rows: Lists of cells (strings), as many as there are titles.

    Returns:
        A list of strings, one per line.
    """
    rows = [list(cells) for cells in rows]
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        for cells in [list(header), ["-" * w for w in widths], *rows]
    ]
