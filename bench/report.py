"""Raw benchmark results on disk: the rows plus what a reader needs to judge them.

Every bench writes the same ``meta`` (date, machine, cores, load average, command line) so a
number copied into docs/benchmarks.md can be traced to its run and to how busy the machine was.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


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
