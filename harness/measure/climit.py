"""The serial chain's physical limit in C (gcc -O2), measured beside the numba ``limit``.

``limit.c`` runs the worked example's SGD loop with every input read from argv, so nothing
is constant-folded. Its ns/step is stored in a run's ceilings; where no C compiler is
installed the ceiling is recorded as missing, with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("limit.c")
ARGS = ("0.15", "0.3", "1", "-1", "0.1")


def measure_c_limit(steps: int = 5_000_000) -> dict:
    """{"ns_per_step" (the median of 7 repetitions, as the harness reports medians),
    "best_ns_per_step", "compiler", "steps"} or {"error": reason}."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not SOURCE.exists():
        return {"error": "no C compiler (gcc) or no limit.c source"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            exe = Path(tmp) / "limit"
            subprocess.run([cc, "-O2", "-o", str(exe), str(SOURCE)], check=True,
                           capture_output=True, timeout=60)
            out = subprocess.run([str(exe), *ARGS, str(steps)], check=True,
                                 capture_output=True, text=True, timeout=120).stdout
            version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"C limit loop failed: {exc}"}
    words = out.split()
    return {"ns_per_step": float(words[0]), "best_ns_per_step": float(words[3]),
            "compiler": f"{version} -O2", "steps": steps, "output": out.strip()}
