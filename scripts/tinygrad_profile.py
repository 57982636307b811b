"""Where a tinygrad step's time goes: each configuration in a fresh process, medians.

    .venv/bin/python scripts/tinygrad_profile.py [--steps 30] [--samples 5] [--json out.json]

Per configuration (a variant of ``implementations/tinygrad_backprop.py`` on a network, on
tinygrad's ``CPU`` device or its ``PYTHON`` one), after a warm-up that compiles and caches
every kernel: the wall time and this process's CPU time per step (``run(steps)``, its sync
included), the Python function calls per step (cProfile's count, the same on a busy
machine), the kernels run per step (``GlobalCounters.kernel_count``; a TinyJit replay runs
the kernels it captured without counting them, so its count is that of the captured call),
the ``clang`` processes started after the warm-up (0: every kernel came from the cache),
and the share of the step's profile under the parts of an eager step: ``backward`` (the
gradient graph built), ``realize`` (all that follows building the graph) and within it the
scheduling (``linear_with_vars``: the graph rewritten into kernels), the lowering and running
(``run_linear``: each kernel looked up by its source, then called) and the kernel calls alone
(``exec_kernel``). What is left of the step is building the forward and update graphs.

``--child CONFIG`` runs one configuration here and prints one JSON line (for ``strace -f -c``
of one figure).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name: (variant, widths, activation, batch, dtype, tinygrad device)
CONFIGS = {
    "tinygrad 1-1-1": ("tinygrad", (1, 1, 1), "linear", 1, "float64", "CPU"),
    "tinygrad-jit 1-1-1": ("tinygrad-jit", (1, 1, 1), "linear", 1, "float64", "CPU"),
    "tinygrad-nn 1-1-1": ("tinygrad-nn", (1, 1, 1), "linear", 1, "float64", "CPU"),
    "tinygrad-nn-jit 1-1-1": ("tinygrad-nn-jit", (1, 1, 1), "linear", 1, "float64", "CPU"),
    "tinygrad 16-16-16": ("tinygrad", (16, 16, 16), "tanh", 64, "float32", "CPU"),
    "tinygrad-jit 16-16-16": ("tinygrad-jit", (16, 16, 16), "tanh", 64, "float32", "CPU"),
    "tinygrad 256-256-256": ("tinygrad", (256, 256, 256), "tanh", 64, "float32", "CPU"),
    "tinygrad 1-1-1 PYTHON": ("tinygrad", (1, 1, 1), "linear", 1, "float64", "PYTHON"),
    "tinygrad 16-16-16 PYTHON": ("tinygrad", (16, 16, 16), "tanh", 64, "float32", "PYTHON"),
}
# a phase: the functions whose cumulative time it is (tinygrad 0.14's names)
PHASES = {"backward": ("backward",), "realize": ("realize",),
          "schedule": ("linear_with_vars",), "lower and run": ("run_linear",),
          "kernel calls": ("exec_kernel",)}


def child(name: str, steps: int, samples: int) -> dict:
    variant, widths, activation, batch, dtype, device = CONFIGS[name]
    if device != "CPU":  # the module pins "CPU": the other device is swapped in for this run
        os.environ["CC"] = "backprop-bench-unused"  # the PYTHON device needs no compiler
    sys.path.insert(0, str(ROOT))
    from tinygrad import Device
    from tinygrad.helpers import GlobalCounters

    from implementations import registry, tinygrad_backprop
    from implementations.problem import NetworkSpec, make_problem

    if device != "CPU":
        tinygrad_backprop.check_device = lambda d: None
        original = tinygrad_backprop.Tensor

        class OnDevice(original):  # every tensor the module makes, on the other device
            def __init__(self, data, device=None, dtype=None):
                super().__init__(data, device=device and ("PYTHON" if device == "CPU"
                                                          else device), dtype=dtype)

        tinygrad_backprop.Tensor = OnDevice
        tinygrad_backprop.Device = {"CPU": Device["PYTHON"]}
    problem = make_problem(NetworkSpec(widths, activation, bias=False, dtype=dtype), batch=batch)
    trainer = registry.get(variant).make(problem)
    trainer.run(3)  # eager, capture, replay: every kernel compiled and cached
    compiles = count_compiles()
    times, cpu = [], []
    for _ in range(samples):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.run(steps)
        times.append((time.perf_counter() - t0) / steps)
        cpu.append((time.process_time() - c0) / steps)
    GlobalCounters.reset()
    trainer.run(1 if "jit" not in variant else 0)
    kernels = GlobalCounters.kernel_count
    if "jit" in variant:
        kernels = captured_kernels(trainer)
    profile = cProfile.Profile()
    profile.enable()
    trainer.run(steps)
    profile.disable()
    stats = pstats.Stats(profile)
    shares = {phase: round(sum(s[3] for (_, _, fn), s in stats.stats.items() if fn in names
                               and s[0] == s[1]) / stats.total_tt, 3)  # outermost calls only
              for phase, names in PHASES.items()}
    return {"name": name, "wall_s": statistics.median(times), "cpu_s": statistics.median(cpu),
            "wall_min_s": min(times), "python_calls": stats.total_calls / steps,
            "kernels": kernels, "compiles": compiles[0], "profile_s": stats.total_tt / steps,
            "shares": shares}


def captured_kernels(trainer) -> int:
    """The kernels a TinyJit replays: the programs in its captured linear."""
    loop = trainer._loop
    jit = loop.step
    linear = jit.captured.linear
    return sum(1 for u in linear.toposort() if u.op.name == "PROGRAM")


def count_compiles() -> list[int]:
    """[compiler processes started from now on]: tinygrad's clang calls, counted."""
    from tinygrad.runtime.support import compiler_cpu

    count, run = [0], compiler_cpu.subprocess.check_output

    def counted(*args, **kwargs):
        count[0] += 1
        return run(*args, **kwargs)

    compiler_cpu.subprocess.check_output = counted
    return count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--only", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--json")
    p.add_argument("--child")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.samples)))
        return 0
    rows = []
    for name in args.only:
        done = subprocess.run([sys.executable, __file__, "--child", name, "--steps",
                               str(args.steps), "--samples", str(args.samples)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode:
            print(f"{name}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.splitlines()[-1])
        rows.append(row)
        print(f"{name:26} wall {row['wall_s'] * 1e6:9.0f} µs  cpu {row['cpu_s'] * 1e6:9.0f} µs"
              f"  calls {row['python_calls']:8.0f}  kernels {row['kernels']:3}  "
              f"clang {row['compiles']}  " + "  ".join(f"{k} {v:.0%}" for k, v in
                                                        row["shares"].items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
