"""What one TensorFlow call costs here, against torch's and JAX's floors: each configuration in
a fresh process, many repetitions, medians.

    .venv/bin/python scripts/tf_overhead.py [--rounds 2] [--calls 2000] [--json out.json]

Measured per call, on float64 scalars:
  * ``eager t + u``: one eager add of two tensors (no Python scalar to convert);
  * ``eager t + 1.0``: the same with a Python float, as ``loss`` writes ``0.5 * ...``;
  * ``tf.function``: a traced ``t + 0`` called once, the floor under every graph call;
  * ``tf.function(jit_compile)``: the same compiled by XLA;
  * ``1-1-1 step``: ``run(1)`` of the tf, tf-function and tf-xla Trainers (its sync included).
TF runs with oneDNN on and off (``TF_ENABLE_ONEDNN_OPTS``) and with 1 and 2 intra-op threads
(``--inter`` sets the inter-op pool, 0 for TF's default); torch and JAX run the same floors
in processes of their own. Each figure is the median over ``--samples`` samples of
``--calls`` calls, reported with the samples' min and max; ``--rounds`` repeats every
configuration in a new process, interleaved, to show the drift between processes.

``--child`` runs one configuration in this process and prints one JSON line: for ``strace
-f -c`` or ``perf`` of one figure, add ``--only NAME`` (e.g. ``--only tf.function``).
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


def per_call(fn, calls: int, samples: int) -> dict:
    """Seconds per call of fn(): median, min and max over samples of ``calls`` calls, by the
    wall clock and by this process's CPU time (which a busy machine's waiting leaves out), and
    the Python function calls it makes (counted by cProfile, the same on a busy machine)."""
    fn()  # trace, compile, warm up
    times, cpu = [], []
    for _ in range(samples):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
        cpu.append((time.process_time() - c0) / calls)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "cpu_median": statistics.median(cpu), "python_calls": python_calls(fn)}


def python_calls(fn, calls: int = 50) -> float:
    """Python-level function calls per call of fn() (cProfile's count, C builtins included)."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        fn()
    profile.disable()
    return sum(s[1] for s in pstats.Stats(profile).stats.values()) / calls


def tf_figures(intra: int, inter: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    from implementations import registry
    from implementations.problem import NetworkSpec, make_problem

    t, u = tf.constant(1.0, tf.float64), tf.constant(2.0, tf.float64)
    graph = tf.function(lambda a: a + 0.0)
    xla = tf.function(lambda a: a + 0.0, jit_compile=True)
    figures = {"eager t + u": lambda: t + u, "eager t + 1.0": lambda: t + 1.0,
               "tf.function": lambda: graph(t), "tf.function(jit_compile)": lambda: xla(t)}
    problem = make_problem(NetworkSpec(dtype="float64"))
    for variant in ("tf", "tf-function", "tf-xla"):  # made only when measured
        figures[f"1-1-1 step {variant}"] = lambda v=variant: registry.get(v).make(problem).run
    return figures


def torch_figures() -> dict:
    import torch

    torch.set_num_threads(1)
    t, u = torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    return {"eager t + u": lambda: t + u, "eager t + 1.0": lambda: t + 1.0}


def jax_figures() -> dict:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    t, u = jnp.float64(1.0), jnp.float64(2.0)
    trivial = jax.jit(lambda a: a + 0.0)
    return {"eager t + u": lambda: (t + u).block_until_ready(),
            "jit call": lambda: trivial(t).block_until_ready()}


def child(args) -> dict:
    if args.framework == "tf":
        figures = tf_figures(args.intra, args.inter)
    elif args.framework == "torch":
        figures = torch_figures()
    else:
        figures = jax_figures()
    out = {}
    for name, fn in figures.items():
        if args.only and args.only != name:
            continue
        if name.startswith("1-1-1 step"):  # a step costs some 20-100 calls
            run, calls = fn(), max(1, args.calls // 20)
            fn = lambda run=run: run(1)  # noqa: E731
        else:
            calls = args.calls
        out[name] = per_call(fn, calls, args.samples)
    return out


def configurations(inter: int) -> list[dict]:
    tf = [{"framework": "tf", "onednn": d, "intra": n, "inter": inter}
          for d in ("1", "0") for n in (1, 2)]
    return tf + [{"framework": "torch"}, {"framework": "jax"}]


def spawn(config: dict, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if "onednn" in config:
        env["TF_ENABLE_ONEDNN_OPTS"] = config["onednn"]
    argv = [sys.executable, __file__, "--child", "--framework", config["framework"],
            "--calls", str(args.calls), "--samples", str(args.samples),
            "--intra", str(config.get("intra", 1)), "--inter", str(config.get("inter", 0))]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"tf_overhead: {config} failed: {done.stderr.strip()[-500:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {**config, "process_s": time.perf_counter() - started, "figures": figures}


def label(config: dict) -> str:
    if config["framework"] != "tf":
        return config["framework"]
    return f"tf oneDNN={config['onednn']} intra={config['intra']} inter={config['inter']}"


def table(rounds: list[list[dict]]) -> str:
    """Per configuration and figure: the median of the per-process medians, and the
    per-process medians themselves."""
    lines = [f"{'configuration':34} {'figure':26} {'µs/call':>8} {'CPU µs':>8} {'py calls':>8}"
             f"  per process: wall (min–max of samples)"]
    for i, config in enumerate(rounds[0]):
        runs = [r[i] for r in rounds]
        for name in config["figures"]:
            figs = [r["figures"][name] for r in runs]
            wall = statistics.median(f["median"] for f in figs) * 1e6
            cpu = statistics.median(f["cpu_median"] for f in figs) * 1e6
            each = ", ".join(f"{f['median'] * 1e6:.1f} ({f['min'] * 1e6:.1f}–{f['max'] * 1e6:.1f})"
                             for f in figs)
            lines.append(f"{label(config):34} {name:26} {wall:8.1f} {cpu:8.1f} "
                         f"{figs[0]['python_calls']:8.0f}  {each}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--inter", type=int, default=0, help="TF inter-op threads (0: TF's choice)")
    p.add_argument("--json", help="write every process's figures here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", default="tf", choices=("tf", "torch", "jax"))
    p.add_argument("--intra", type=int, default=1)
    p.add_argument("--only")
    args = p.parse_args(argv)
    for name in ("rounds", "calls", "samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be 1 or more")
    if args.inter < 0 or args.intra < 1:
        p.error("--intra must be 1 or more and --inter 0 or more")
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child(args)))
        return 0
    rounds = [[spawn(c, args) for c in configurations(args.inter)] for _ in range(args.rounds)]
    print(f"{os.cpu_count()} CPUs; {args.samples} samples of {args.calls} calls per figure "
          f"(steps: {max(1, args.calls // 20)}); {args.rounds} processes per configuration")
    print(table(rounds))
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
