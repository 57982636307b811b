"""One JSON file per run under results/, written atomically and case by case.

Schema (``SCHEMA_VERSION``):

```
{"schema": "backprop-bench/results", "schema_version": 1,
 "command": "run" | "sweep", "created": ISO time, "finished": ISO time | null,
 "interrupted": bool,
 "machine": {hostname, cpu, cores, usable_cores, memory_gb, os, gpu: {name, driver, ...} | null},
 "software": {python, numpy, torch, jax, jaxlib, numba, ...: version | null},
 "commit": {id, branch, dirty},
 "config": {device, variants, problems: [...], threads, timing: {...}, ...},
 "frameworks": {name: {"settings": {...}, "pinning": {...}} | {"error": "..."}},
 "ceilings": {"matmul_peak": [{framework, device, dtype, n, gflops, samples_s}],
              "engine_overhead": {per_block_s, fraction_of_block}},
 "cases": [{id, variant, framework, kind, device, problem: {...}, n_weights,
            flops_per_step, status: ok | failed | unavailable, reason,
            timing: {first_call_s, compile_s, block_steps, samples_s, per_step: {...}, ...},
            check: {passed, rows: [...]}, first_in_process: bool}]}
```

``load`` validates a file and raises ResultsError with one line naming the file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from pathlib import Path

from implementations.problem import BenchError

SCHEMA = "backprop-bench/results"
SCHEMA_VERSION = 1
REQUIRED = ("schema", "schema_version", "command", "machine", "software", "config", "cases")
CASE_REQUIRED = ("id", "variant", "framework", "device", "problem", "status")
STATUSES = ("ok", "failed", "unavailable")


class ResultsError(BenchError):
    """A results file that cannot be read or written."""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run(command: str, machine: dict, software: dict, commit: dict, config: dict) -> dict:
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "command": command,
        "created": now(), "finished": None, "interrupted": False,
        "machine": machine, "software": software, "commit": commit, "config": config,
        "frameworks": {}, "ceilings": {"matmul_peak": []}, "cases": [],
    }


def case_id(device: str, variant: str, problem: dict) -> str:
    """A stable key for a case: device, variant, network, batch."""
    widths = "-".join(map(str, problem["widths"]))
    bias = "+b" if problem.get("bias") else ""
    return (f"{device}/{variant}/{widths} {problem['activation']}{bias} "
            f"{problem['dtype']}/b{problem['batch']}")


def default_path(command: str, device: str, machine: dict, directory: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in machine.get("hostname", "host"))
    return directory / f"{command}-{device}-{host}-{stamp}.json"


def ensure_writable(path: Path, overwrite: bool = False) -> Path:
    """Create the folder and prove a file can be written there, before any measuring.

    An existing file is never overwritten unless ``overwrite`` (``--force``) says so: a typo
    in ``--out`` must not destroy a committed reference run.
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ResultsError(f"cannot write results to {path}: it is a directory")
    if path.exists() and not overwrite:
        raise ResultsError(f"{path} already exists: choose another --out, or add --force")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".probe-", delete=True):
            pass
    except OSError as exc:
        raise ResultsError(f"cannot write results to {path}: {exc.strerror or exc}") from None
    return path


def write(run: dict, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(run, f, indent=1, allow_nan=False, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load(path: Path) -> dict:
    """Read and validate one results file; ResultsError names the file and the problem."""
    path = Path(path)
    try:
        with open(path) as f:
            run = json.load(f)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    validate(run, str(path))
    return run


def validate(run, name: str) -> None:
    if not isinstance(run, dict) or run.get("schema") != SCHEMA:
        raise ResultsError(f"{name}: not a backprop-bench results file")
    if run.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{name}: schema version {run.get('schema_version')!r}, "
                           f"this backprop-bench reads version {SCHEMA_VERSION}")
    missing = [k for k in REQUIRED if k not in run]
    if missing:
        raise ResultsError(f"{name}: missing field(s) {', '.join(missing)}")
    if not isinstance(run["cases"], list):
        raise ResultsError(f"{name}: 'cases' is not a list")
    for i, case in enumerate(run["cases"]):
        lacking = [k for k in CASE_REQUIRED if not isinstance(case, dict) or k not in case]
        if lacking:
            raise ResultsError(f"{name}: case {i} lacks {', '.join(lacking)}")
        if case["status"] not in STATUSES:
            raise ResultsError(f"{name}: case {i} has unknown status {case['status']!r}")
        if case["status"] == "ok" and not positive_median(case):
            raise ResultsError(f"{name}: case {i} ({case['id']}) is ok but has no positive "
                               f"per-step median")


SKIPPED_FOLDERS = ("pytest-bench", "tmp")  # pytest-benchmark's own JSON; scratch runs


def positive_median(case: dict) -> bool:
    """True if the case carries a finite, positive per-step median time."""
    per_step = (case.get("timing") or {}).get("per_step") or {}
    median = per_step.get("median_s")
    return isinstance(median, (int, float)) and math.isfinite(median) and median > 0


def find_files(paths: list[str]) -> list[Path]:
    """Expand folders into the *.json files under them (sorted); keep files as given.

    Hidden files and the folders in SKIPPED_FOLDERS are left out of a folder's expansion.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")
                          and not set(q.relative_to(p).parts[:-1]) & set(SKIPPED_FOLDERS))
        else:
            out.append(p)
    return out


def load_many(paths: list[str]) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Load every file that is valid; the others become one-line problems, not exceptions."""
    good, problems = [], []
    for path in find_files(paths):
        try:
            good.append((path, load(path)))
        except ResultsError as exc:
            problems.append(str(exc))
    return good, problems
