"""Provenance and pinning: what machine, what software, what commit, which threads.

``pin_threads`` is called once at the start of every worker process, before any framework
is imported, and returns what it set so that the results file can record it.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE_PACKAGES = ("numpy", "scipy", "threadpoolctl", "matplotlib")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def meminfo(field: str, text: str | None = None) -> int | None:
    """A /proc/meminfo field in bytes (MemTotal, MemAvailable), or None where unknown."""
    try:
        text = Path("/proc/meminfo").read_text() if text is None else text
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def memory_gb() -> float | None:
    total = meminfo("MemTotal")
    return None if total is None else round(total / 2**30, 1)


def gpu_info() -> dict | None:
    """Name, driver, memory of the first NVIDIA GPU by nvidia-smi, or None."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, driver, mem = (s.strip() for s in out[0].split(",", 2))
    return {"name": name, "driver": driver, "memory": mem, "count": len(out)}


def machine_info() -> dict:
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": memory_gb(),
        "os": platform.platform(),
        "gpu": gpu_info(),
    }


def packages() -> list[str]:
    """The packages whose versions a results file records: ours, then every framework's."""
    from implementations import registry

    return list(dict.fromkeys(
        [*BASE_PACKAGES, *(p for f in registry.FRAMEWORKS.values() for p in f.packages)]))


def software_info() -> dict:
    versions = {"python": platform.python_version()}
    for name in packages():
        if name in sys.stdlib_module_names:
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git(*args: str, repo: Path = REPO) -> subprocess.CompletedProcess | None:
    """``git -C repo ARGS``, or None where git or the checkout is missing."""
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def git_out(*args: str, repo: Path = REPO) -> str | None:
    """What a successful git command printed (stripped), or None."""
    done = git(*args, repo=repo)
    return done.stdout.strip() if done is not None and done.returncode == 0 else None


def commit_info(repo: Path = REPO) -> dict:
    status = git_out("status", "--porcelain", "--untracked-files=no", repo=repo)
    commit = {"id": git_out("rev-parse", "HEAD", repo=repo),
              "branch": git_out("rev-parse", "--abbrev-ref", "HEAD", repo=repo),
              "dirty": None if status is None else bool(status)}
    if commit["id"] is None and os.environ.get("BACKPROP_BENCH_COMMIT"):
        # a copy of the tree without .git (a lent GPU machine): the caller says which commit
        commit.update(id=os.environ["BACKPROP_BENCH_COMMIT"], source="BACKPROP_BENCH_COMMIT")
    return commit


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def pin_threads(threads: int) -> dict:
    """Pin this process to ``threads`` cores and every thread pool to ``threads`` threads.

    Must run before numpy/torch/jax are imported: the environment variables are read at
    import. Returns the settings made.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    affinity = None
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cores)
        affinity = cores
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU politely
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    return {"threads": threads, "affinity": affinity}

