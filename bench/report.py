"""What every bench script writes: ``bench/results/<name>.json`` with the figures, the
goals and when, on how many CPUs, with which Python they were measured."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def write(name: str, results: dict[str, Any], goals: dict[str, Any]) -> Path:
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.write_text(json.dumps({"results": results, "goals": goals,
                               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "cpus": os.cpu_count(), "python": sys.version.split()[0]},
                              indent=2))
    print(f"written {out.relative_to(ROOT)}")
    return out
