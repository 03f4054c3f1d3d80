"""How the commands print: JSON, aligned `name  value` fields, tables, sizes and counts for people."""

import json
from typing import Any, Dict, Optional, Sequence, Tuple

Report = Dict[str, Any]
Field = Tuple[str, str]


def to_json(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(report, indent=2)


def one_line(message: object) -> str:
    """A message on one line (pyarrow and fsspec messages may span several)."""
    return " ".join(str(message).split())


def plural(count: int, noun: str) -> str:
    """'1 problem', '3 problems'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def human_bytes(size: Optional[float]) -> str:
    """1536000000 -> '1.54 GB' (decimal units, as GB/s)."""
    if size is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            break
        size /= 1000
    return f"{size:.0f} B" if unit == "B" else f"{size:.2f} {unit}"


def render_fields(fields: Sequence[Field]) -> str:
    """'name   value' lines, values aligned; multi-line values indented."""
    width = max(len(name) for name, _ in fields) + 2
    return "\n".join(f"{name:<{width}}" + value.replace("\n", "\n" + " " * width) for name, value in fields)


def render_table(rows: Sequence[Report]) -> str:
    """Rows of equal keys as an aligned table: numbers right-aligned, with thousands separators."""
    columns = list(rows[0])
    cells = [[table_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [isinstance(rows[0][column], (int, float)) for column in columns]
    lines = [[column.replace("_", " ") for column in columns], *cells]
    return "\n".join(_table_line(line, widths, numeric) for line in lines)


def _table_line(line: Sequence[str], widths: Sequence[int], numeric: Sequence[bool]) -> str:
    """One aligned table line, without trailing spaces."""
    cells = (cell.rjust(width) if right else cell.ljust(width) for cell, width, right in zip(line, widths, numeric))
    return "  ".join(cells).rstrip()


def table_cell(value: Any) -> str:
    """A table cell: 12,345 for integers, 1.234 for other numbers, else the value as text."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.3f}" if isinstance(value, float) else str(value)
