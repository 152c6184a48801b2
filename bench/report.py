"""Raw benchmark results on disk: the rows plus what a reader needs to judge them.

Every bench writes the same ``meta`` (date, machine, cores, load average, command line) so a
number copied into docs/benchmarks.md can be traced to its run and to how busy the machine was,
and prints its summary as a markdown table in the same layout, ready to paste there.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final


def write_results(out: Path, rows: Any, *, key: str = "rows", **meta: Any) -> None:
    """Write ``{"meta": {...}, key: rows}`` as indented JSON; ``meta`` adds run-specific fields."""
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "command": " ".join(sys.argv),
        **meta,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": header, key: rows}, indent=2) + "\n")


BLANK: Final = object()
"""A table cell with nothing to report: prints as ``| |`` (any value, ``""`` and None included, prints
with a space either side of it)."""


def print_table(header: str, rows: Iterable[Sequence[object]]) -> None:
    """Print a markdown table after a blank line, so each bench's summary pastes the same way.

    ``header`` is the header row as printed (``"| a | b |"``): it reads like the table it heads.
    """
    print(f"\n{header}\n|" + "---|" * (header.count("|") - 1))
    for row in rows:
        print("|" + "".join(" |" if cell is BLANK else f" {cell} |" for cell in row))
