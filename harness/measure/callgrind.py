"""Instructions executed, counted by Valgrind's Callgrind: a clock for the timing engine.

A process that counts runs as ``valgrind --tool=callgrind --instr-atstart=no ... COMMAND``
(``command``): Valgrind runs it uninstrumented (imports, compiling, warm-up cost about 3-5×
their native time, not 50×) until ``Counter.start`` switches instrumentation on. From then
on the ``Counter`` is a clock whose unit is instructions: each call asks Callgrind for a
dump (``CALLGRIND_DUMP_STATS``), reads the dump's ``summary:`` line — the instructions every
thread executed since the last zero — adds it to its total and zeroes the counters again
(``CALLGRIND_ZERO_STATS``), so that reading the file is never counted. ``timing.timed(t, k,
counter)`` is then the instructions of one ``t.run(k)`` block plus the counter's own few
thousand per call (``timing.engine_overhead`` measures that empty block).

Why these choices (measured with Valgrind 3.19 on the 2-core VM, see
results/NOTES-instructions.md):

- Callgrind, because Cachegrind 3.19 has no client requests (3.22 added them); without
  cache simulation Callgrind counts only instructions (``Ir``).
- ``summary:``, not ``totals:``: the summary is the counter of executed instructions of all
  threads; the totals add up the dump's cost centres, which are wrong when instrumentation
  started mid-run (Callgrind never saw the calls already on the stack).
- Zero and dump count every thread, so a framework that runs its step on a thread of its own
  (XLA runs a while loop on one) is counted whole.
- ``--smc-check``: Valgrind's default on x86-64 (``all-non-file``) already re-translates
  code written at run time outside mapped files, which is where XLA, numba and Inductor's
  JITs put it; ``SMC_CHECK`` names it explicitly.
- Address-space randomisation off (``setarch -R``, where the kernel allows it: a container's
  seccomp profile may not), ``PYTHONHASHSEED`` fixed, one malloc arena (``PINNED``) and, for
  the runner's workers, an environment of fixed content (``fixed_environment``): with them,
  identical processes count within a few hundredths of a percent of each other; with ASLR
  on, one NumPy process in four counted 0.01% less.

The client requests live in ``callgrind.c``, built by gcc on first use into the user's cache
(``library``); outside Valgrind they do nothing. ``unavailable()`` says, in one line with
how to fix it, why counting cannot work here (no valgrind, no headers, no C compiler).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.measure.environment import result_variables  # it reads the registry
from harness.tables import printable
from implementations.problem import BenchError

TOOL = "callgrind"
INSTALL = "apt-get install valgrind"
SOURCE = Path(__file__).with_name("callgrind.c")
HEADER = "valgrind/callgrind.h"
OUT_ENV = "BACKPROP_BENCH_CALLGRIND_OUT"  # the dump file's base name, for the Counter
LIBRARY_ENV = "BACKPROP_BENCH_CALLGRIND_LIB"  # the built helper, so a worker needs no gcc
# Set in a counting process: a framework that would hand its work to a thread of its own may
# read it and run inline (jax_backprop turns JAX's asynchronous CPU dispatch off)
COUNTING = "BACKPROP_BENCH_COUNTING"
SMC_CHECK = "all-non-file"
KEPT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH",
        "PYTHONPATH", "PYTHONUNBUFFERED", "XDG_CACHE_HOME")  # what a counting worker keeps
HASH_SEED = "0"  # PYTHONHASHSEED of a counting process: dict probes the same in every run
# A counting process's pinned environment: string hashes, and one malloc arena (with glibc's
# arena per thread, a block of jax's 1-1-1 step moved by 0.3-1.2% from one block to the
# next, in malloc_consolidate and _int_free; with one arena, by 0.035%)
PINNED = {"PYTHONHASHSEED": HASH_SEED, "MALLOC_ARENA_MAX": "1"}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
OPTIONS = ("--tool=callgrind", "--instr-atstart=no", "--dump-instr=no", "--dump-line=no",
           f"--smc-check={SMC_CHECK}", "--quiet")


class CallgrindError(BenchError):
    """Counting cannot work here (the message says why, in one line)."""


def valgrind() -> str | None:
    return shutil.which("valgrind")


@functools.cache
def version() -> str | None:
    """'3.19.0', or None without a valgrind that says its version (one whose --version fails,
    or prints something else, does not start: it is not used)."""
    exe = valgrind()
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    said = printable(out.stdout, 40)
    if out.returncode != 0 or not said.startswith("valgrind-"):
        return None
    return said.removeprefix("valgrind-") or None


def compiler() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def header_dirs() -> list[Path]:
    """Where valgrind/callgrind.h may be: beside the valgrind found, then /usr/include."""
    dirs = []
    exe = valgrind()
    if exe:
        dirs.append(Path(exe).resolve().parent.parent / "include")
    return dirs + [Path("/usr/include"), Path("/usr/local/include")]


def unavailable() -> str | None:
    """Why instructions cannot be counted here, with how to fix it; None when they can."""
    if valgrind() is None:
        return f"valgrind is not installed: {INSTALL}"
    if version() is None:
        return "valgrind does not start (valgrind --version failed)"
    if not any((d / HEADER).is_file() for d in header_dirs()):
        return f"valgrind's headers ({HEADER}) are missing: {INSTALL}"
    if compiler() is None:
        return "no C compiler (gcc) to build the Callgrind helper: apt-get install gcc"
    return None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = os.path.join(Path.home(), ".cache")
        except RuntimeError:  # no HOME, and no entry in the password database
            raise CallgrindError("no home folder to keep the Callgrind helper in: set "
                                 "XDG_CACHE_HOME to a folder you can write") from None
    return Path(base) / "backprop-bench"


def library() -> Path:
    """The built helper (``callgrind.c``), built once per source and compiler and cached;
    CallgrindError (one line) when it cannot be."""
    given = os.environ.get(LIBRARY_ENV)
    if given and Path(given).is_file():
        return Path(given)
    reason = unavailable()
    if reason:
        raise CallgrindError(reason)
    cc = compiler()
    key = hashlib.sha256(SOURCE.read_bytes() + cc.encode()).hexdigest()[:16]
    target = cache_dir() / f"libbb_callgrind-{key}.so"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            build(cc, Path(tmp) / target.name)
            os.replace(Path(tmp) / target.name, target)  # atomic: two builders both succeed
    except OSError as exc:
        raise CallgrindError(f"cannot keep the Callgrind helper in {target.parent} "
                             f"({exc.strerror or exc}): set XDG_CACHE_HOME to a folder you "
                             f"can write") from None
    return target


def build(cc: str, out: Path) -> None:
    """gcc the helper (``callgrind.c``) into ``out``; CallgrindError when it fails."""
    includes = [f"-I{d}" for d in header_dirs() if (d / HEADER).is_file()][:1]
    try:
        subprocess.run([cc, "-O2", "-shared", "-fPIC", *includes, "-o", str(out),
                        str(SOURCE)], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CallgrindError(f"cannot build the Callgrind helper: {printable(exc, 300)}"
                             ) from None


@functools.cache
def requests() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library()))
    for name in ("bb_start", "bb_stop", "bb_zero", "bb_dump"):
        getattr(lib, name).restype = None
    return lib


def on_valgrind() -> bool:
    """True inside a process that Valgrind runs."""
    return bool(requests().bb_on_valgrind())


@functools.cache
def no_aslr() -> tuple[str, ...]:
    """The prefix that runs a command without address-space randomisation, where this
    kernel allows it; () where it does not (or setarch is missing)."""
    exe = shutil.which("setarch")
    if exe is None:
        return ()
    prefix = (exe, platform.machine(), "-R")
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return prefix if ok else ()


def options(smc_check: str = SMC_CHECK) -> list[str]:
    """What a counting process runs under, as recorded with its counts."""
    aslr = ["setarch -R"] if no_aslr() else ["aslr on"]
    pinned = [f"{k}={v}" for k, v in PINNED.items()]
    return pinned + aslr + [o if not o.startswith("--smc-check=") else
                            f"--smc-check={smc_check}" for o in OPTIONS]


def command(argv: list[str], out_dir: Path, smc_check: str = SMC_CHECK) -> list[str]:
    """``argv`` run under Callgrind as a counting process, its dumps in ``out_dir``."""
    exe = valgrind()
    if exe is None:
        raise CallgrindError(f"valgrind is not installed: {INSTALL}")
    valgrind_options = [o for o in options(smc_check) if o.startswith("--")]
    return [*no_aslr(), exe, *valgrind_options, f"--callgrind-out-file={out_file(out_dir)}",
            *argv]


def out_file(out_dir: Path) -> Path:
    return Path(out_dir).resolve() / "callgrind.out"


def environment(out_dir: Path) -> dict[str, str]:
    """What a counting process needs in its environment (added to its parent's)."""
    return {OUT_ENV: str(out_file(out_dir)), LIBRARY_ENV: str(library()), COUNTING: "1",
            **PINNED}


def fixed_environment(env: dict[str, str], out_dir: Path) -> dict[str, str]:
    """A counting worker's whole environment, from the one it would have had (``env``): only
    what it needs (``KEPT``, the harness's own ``BACKPROP_BENCH_*``, none of which holds a
    process id, the variables that change results), and ``environment(out_dir)``.

    Valgrind copies the environment onto the client's stack, so its size moves every address
    on the stack: with ASLR off, a 14-character longer environment moved NumPy's 1-1-1 count
    by 0.015%, and a run's own (a shell's, a CI job's, the runner's pid) differs each time.
    """
    kept = {k: v for k, v in env.items() if k in KEPT or k.startswith("BACKPROP_BENCH_")}
    return {**kept, **result_variables(env), **environment(out_dir)}


def why_it_died(lines: list[str]) -> str | None:
    """Valgrind's own account of a client it stopped (``==PID== Process terminating ...``
    and the line after it), from a worker's log; None when there is none."""
    said = [line.split("==", 2)[-1].strip() for line in lines if line.startswith("==")]
    for i, line in enumerate(said):
        if line.startswith("Process terminating"):
            detail = said[i + 1] if i + 1 < len(said) and said[i + 1] else ""
            if detail.startswith("Illegal opcode"):
                detail += " (an instruction Valgrind does not emulate: code built for AVX-512?)"
            return f"valgrind: {line}" + (f": {detail}" if detail else "")
    return None


def summary_of(path: Path) -> int:
    """The ``summary:`` of one dump file (in its header, before the cost lines)."""
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
            if line.startswith(("fl=", "fn=", "ob=")):
                break
    raise CallgrindError(f"{path}: a Callgrind dump without a summary line")


class Counter:
    """Instructions every thread executed while counted: a clock for ``harness.measure.timing``.

    Only a process started by ``command`` can count (``start`` raises CallgrindError in any
    other). Between ``stop`` and the next ``start`` its total stands still.
    """

    def __init__(self, out: str | None = None, name: str = "counter"):
        self.__name__ = name  # how pytest-benchmark names a timer
        self.given = out
        self.out = Path()
        self.total = 0
        self.running = False

    def start(self) -> None:
        """Instrument and count from here on."""
        out = self.given or os.environ.get(OUT_ENV)
        if not out or not on_valgrind():
            raise CallgrindError("not a counting process: run it under "
                                 "'python -m harness.measure.callgrind -- COMMAND'")
        self.out = Path(out)
        self.clear()
        requests().bb_start()
        requests().bb_zero()
        self.running = True

    def stop(self) -> None:
        """Stop instrumenting (the rest runs at Valgrind's uninstrumented speed)."""
        if self.running:
            requests().bb_stop()
            self.running = False
            self.clear()

    def __call__(self) -> float:
        if not self.running:
            return float(self.total)
        lib = requests()
        lib.bb_dump()
        self.total += self.collect()
        lib.bb_zero()
        return float(self.total)

    def dumps(self) -> list[Path]:
        return sorted(self.out.parent.glob(self.out.name + ".*"))

    def collect(self) -> int:
        """The summary of the one dump written since the last call; the file is removed."""
        found = self.dumps()
        if len(found) != 1:
            raise CallgrindError(f"expected one Callgrind dump in {self.out.parent}, "
                                 f"found {len(found)}")
        count = summary_of(found[0])
        found[0].unlink()
        return count

    def clear(self) -> None:
        for path in self.dumps():
            path.unlink()


# The process's counter, for pytest-benchmark:
# ``--benchmark-timer harness.measure.callgrind.counter``
# in a pytest run under ``python -m harness.measure.callgrind -- python -m pytest tests/bench ...``.
counter = Counter()


def main(argv: list[str]) -> int:
    """``python -m harness.measure.callgrind [--smc-check=MODE] -- COMMAND ...``: COMMAND as a
    counting process on one core with one thread per pool, its dumps in a temporary folder;
    COMMAND's exit status."""
    smc = SMC_CHECK
    while argv and argv[0] != "--":
        option = argv.pop(0)
        if not option.startswith("--smc-check="):
            print(f"harness.measure.callgrind: unknown option {option!r} (usage: python -m "
                  f"harness.measure.callgrind [--smc-check=MODE] -- COMMAND ...)", file=sys.stderr)
            return 2
        smc = option.split("=", 1)[1]
    if len(argv) < 2:
        print("harness.measure.callgrind: no command after --", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="bb-callgrind-") as out_dir:
            env = {**os.environ, **environment(Path(out_dir)), **ONE_THREAD}
            if hasattr(os, "sched_setaffinity"):  # XLA sizes its pools by the affinity mask
                os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
            return subprocess.run(command(argv[1:], Path(out_dir), smc), env=env).returncode
    except CallgrindError as exc:
        print(f"harness.measure.callgrind: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
