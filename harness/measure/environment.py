"""Provenance and pinning: what machine, what software, what commit, which threads.

``pin_threads`` is called once at the start of every worker process, before any framework
is imported, and returns what it set so that the results file can record it.
``environment_info`` records what else changes results: the environment variables that
frameworks, BLAS libraries and allocators read, JAX's persistent compilation cache (read
from the environment, without importing jax) and every installed distribution's version.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from implementations import registry
from implementations.contract import Unavailable

REPO = Path(__file__).resolve().parents[2]
BASE_PACKAGES = ("numpy", "scipy", "threadpoolctl", "matplotlib")
# Variables that change what a run measures: thread pools, allocators, compilers and caches.
# NUMBA_, XLA_PYTHON_CLIENT_ (GPU memory) and NVIDIA_TF32_OVERRIDE (float32 matmul precision
# on a GPU) belong with them for the frameworks here.
# the variables that change results whatever the framework (each framework declares its own:
# ``Framework.variables``)
RESULT_VARIABLE_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "MALLOC_", "GOMP_")
RESULT_VARIABLES = ("CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")
FALSE_WORDS = ("0", "n", "no", "f", "false", "off")  # how JAX reads a false boolean variable


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


# what a CPU offers for each low format, most capable first: (its /proc/cpuinfo flag, how the
# report names it); without any, a framework converts to float32 and back (emulated)
LOW_PRECISION_FLAGS = {
    "bfloat16": (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")),
    "float16": (("amx_fp16", "AMX-FP16"), ("avx512_fp16", "AVX512-FP16"),
                ("f16c", "F16C (conversions only: arithmetic in float32)")),
}


def cpu_flags(text: str | None = None) -> set[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text() if text is None else text
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def low_precision_support(flags: set[str] | None = None) -> dict[str, str]:
    """{format: what this CPU offers for it}, from its flags: 'AVX512-BF16', 'emulated', ..."""
    flags = cpu_flags() if flags is None else flags
    return {fmt: next((name for flag, name in options if flag in flags), "emulated")
            for fmt, options in LOW_PRECISION_FLAGS.items()}


def machine_info() -> dict:
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": memory_gb(),
        "os": platform.platform(),
        "gpu": gpu_info(),
        "low_precision": low_precision_support(),
    }


def packages() -> list[str]:
    """The packages whose versions a results file records: ours, then every framework's."""
    return list(dict.fromkeys(
        [*BASE_PACKAGES, *(p for f in registry.FRAMEWORKS.values() for p in f.packages)]))


def software_info() -> dict:
    """{import name: version} of Python and every package a framework declares; a package
    installed under another distribution name says which ("2.20.0 (tensorflow-cpu)")."""
    versions = {"python": platform.python_version()}
    for name in packages():
        if name not in sys.stdlib_module_names:
            versions[name] = version_of(name)
    return versions


def version_of(package: str) -> str | None:
    """The version of the distribution that provides an import name, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        pass
    for dist in distributions_of().get(package.split(".")[0], []):
        try:
            return f"{metadata.version(dist)} ({metadata.metadata(dist)['Name']})"
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def distributions_of() -> dict[str, list[str]]:
    """{top-level import name: the installed distributions that provide it}."""
    return dict(metadata.packages_distributions())


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


CODE = ("harness", "implementations", "backprop_bench", "scripts", "pyproject.toml")


def commit_info(repo: Path = REPO) -> dict:
    """The commit, its branch, and whether the tree is dirty: a tracked file changed, or a
    file of the code that git does not track (a new framework file) is there."""
    status = git_out("status", "--porcelain", "--untracked-files=no", repo=repo)
    untracked = git_out("ls-files", "--others", "--exclude-standard", "--", *CODE, repo=repo)
    if status is not None and untracked:
        status += "\n" + untracked
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
    from threadpoolctl import (
        threadpool_limits,  # optional: it reports the BLAS threads where it is installed
    )

    threadpool_limits(threads)
    return {"threads": threads, "affinity": affinity}



# ---- what else changes results: variables, caches, installed packages ------------------------

def result_variables(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The set environment variables that change results (``RESULT_VARIABLE_PREFIXES``,
    ``RESULT_VARIABLES`` and every framework's ``variables``), sorted by name."""
    env = os.environ if env is None else env
    declared = [v for f in registry.FRAMEWORKS.values() for v in f.variables]
    prefixes = (*RESULT_VARIABLE_PREFIXES, *(v for v in declared if v.endswith("_")))
    names = {*RESULT_VARIABLES, *(v for v in declared if not v.endswith("_"))}
    return {k: env[k] for k in sorted(env) if k in names or k.startswith(prefixes)}


def holds_entries(path: str | None) -> bool | None:
    """Whether a cache folder exists and holds anything; None when there is no folder."""
    if not path:
        return None
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def jax_compilation_cache(env: Mapping[str, str] | None = None) -> dict:
    """JAX's persistent compilation cache as the environment configures it, read without
    importing jax: on only with a cache folder (``JAX_COMPILATION_CACHE_DIR``) and unless
    ``JAX_ENABLE_COMPILATION_CACHE`` is false; its folder, and whether it already held
    compiled programs before the run (a warm cache makes first calls cheaper)."""
    env = os.environ if env is None else env
    path = env.get("JAX_COMPILATION_CACHE_DIR") or None
    switched_off = env.get("JAX_ENABLE_COMPILATION_CACHE", "true").strip().lower() in FALSE_WORDS
    return {"enabled": bool(path) and not switched_off, "dir": path,
            "warm_at_start": holds_entries(path),
            "min_compile_time_s": env.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}


def package_freeze() -> dict[str, str]:
    """{name: version} of every installed distribution (importlib.metadata), sorted by name;
    where one name is installed twice, the first on the path (the one imported) is kept."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in found:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def environment_info(env: Mapping[str, str] | None = None) -> dict:
    """What a results file records besides machine, software and commit: the variables that
    change results, JAX's compilation cache and the package freeze (``Run.environment``)."""
    return {"variables": result_variables(env),
            "jax_compilation_cache": jax_compilation_cache(env),
            "packages": package_freeze()}


def apply_settings(frameworks, threads: int) -> tuple[dict, list[str]]:
    """({"pinning": ..., framework: its settings(threads)}, notes): threads pinned and each
    framework's settings applied in this process, as a run's worker applies them."""
    settings, notes = {"pinning": pin_threads(threads)}, []
    for name in dict.fromkeys(frameworks):
        try:
            settings[name] = registry.import_module(name).settings(threads)
        except Unavailable:
            continue  # said when its variants run
        except Exception as exc:  # recorded, and the work goes on with the settings as they are
            notes.append(f"{name}: its settings() failed ({type(exc).__name__}: {exc})")
    return settings, notes
