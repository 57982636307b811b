"""The experiment policy: what each command runs by default, from typed options.

The CLI parses flags into a ``Networks`` (and plain values) and calls these functions; they
never see an argparse namespace. Which variants a default run or sweep leaves out, which are
references, which run where: all of it comes from the registry's declarations, never from a
list of names here.

Every network is checked against the memory this machine has *before* any array is built
(``check_memory``): a case needs its float64 problem in the main process and, in its worker,
the problem again, the framework's copy in its dtype, gradients, activations and the float64
reference trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.measure import environment
from harness.record.results import ProblemRecord
from implementations import registry
from implementations.contract import Variant
from implementations.problem import (
    DTYPES,
    LOW_DTYPES,
    BenchError,
    NetworkSpec,
    Problem,
    SpecError,
    check_inversion,
    default_lr,
    make_problem,
)

# the worked example, then two wider networks: overhead-bound and compute-bound; their names
# are those of contract.RUN_NETWORK_NAMES, which a Variant's default_run lists
RUN_NETWORKS = {
    "worked-example": dict(widths=(1, 1, 1), activation="linear", dtype="float64", batch=1),
    "small": dict(widths=(16, 16, 16), activation="tanh", dtype="float32", batch=64),
    "large": dict(widths=(256, 256, 256), activation="tanh", dtype="float32", batch=64),
}
# the default `check`: the worked example in float64 (with its closed form) and networks that
# no classic backprop bug passes: batch 5 (not a power of two, and apart from 2 and 3, so that
# a factor names its cause), 3 outputs (a mean over the outputs too shows), hidden widths 4
# (a transposed matrix has the wrong shape), a square hidden layer (W where W^T belongs
# computes, wrongly), a bias (a frozen bias shows), every activation the suite supports (its
# derivative matters: tanh in both dtypes; relu hidden layers under a sigmoid output, which
# covers two activations with one network more), and a learning rate of 0.056 = 7/125: 7 is
# no product of 2, 3 and 5, so that no two of the factors the diagnosis knows (2, the batch,
# the out width, the lr, -1, and their products) are the same number (0.1 would be
# 1/(2 × batch 5)), and float32 rounds it by 3.1e-8 (0.07: 4.3e-9), so that a learning rate
# kept in float32 on a float64 network shows
CHECK_NETWORKS = (
    dict(widths=(1, 1, 1), activation="linear", bias=False, batch=1, dtypes=("float64",)),
    dict(widths=(3, 4, 4, 3), activation="tanh", bias=True, batch=5,
         dtypes=("float64", "float32")),
    dict(widths=(3, 4, 4, 3), activation="relu", output_activation="sigmoid", bias=True,
         batch=5, dtypes=("float64",)),
)
# and in bfloat16 or float16, two more: sums of 64 and 256 terms, where a sum accumulated in
# the format instead of float32 shows (the error model allows one rounding per sum, not n),
# and inputs of 2^-10 through a network without bias, whose gradients (about 1e-7) fall below
# float16's smallest normal number (6.1e-5): only a scaled loss keeps a mixed-precision
# float16 step inside its range
LOW_CHECK_NETWORKS = (
    dict(widths=(16, 64, 64, 16), activation="tanh", bias=True, batch=256),
    dict(widths=(3, 4, 4, 3), activation="tanh", bias=False, batch=5, input_scale=2.0 ** -10),
)
CHECK_LR_FACTOR = 0.56  # of the default lr: 0.056 up to width 16, and a 7 in it at any width


def check_lr(widths: tuple[int, ...], batch: int) -> float | None:
    """The learning rate of a checked network: the worked example's 0.1 on it (batch 1),
    else 0.56 × the default (``CHECK_NETWORKS``' comment says why)."""
    if tuple(widths) == (1, 1, 1) and batch == 1:
        return None
    return round(CHECK_LR_FACTOR * default_lr(NetworkSpec(tuple(widths))), 12)
MEMORY_HEADROOM = 0.8  # of MemAvailable: the frameworks, the OS and the other process


@dataclass(frozen=True)
class Networks:
    """What the network options asked for; None: the command's default."""

    widths: tuple[tuple[int, ...], ...] | None = None
    activation: str | None = None
    output_activation: str = "linear"
    bias: bool | None = None
    dtypes: tuple[str, ...] | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int = 0


def held_bytes(spec: NetworkSpec, batch: int) -> int:
    """The float64 problem (parameters, x, y) the main process holds for the whole run."""
    return 8 * (spec.n_weights() + 2 * batch * spec.widths[0])


def bytes_needed(spec: NetworkSpec, batch: int) -> int:
    """A generous estimate of the memory one case of this network needs, in bytes."""
    weights = spec.n_weights()
    activations = batch * sum(spec.widths)
    size = 4 if spec.dtype == "float32" else 8
    float64_copies = 2 * held_bytes(spec, batch)  # main process + worker
    framework = size * (3 * weights + 3 * activations)  # params, grads, update; a, h, dh
    reference = 8 * (4 * weights + 3 * activations)  # the float64 trajectory it is checked on
    return float64_copies + framework + reference


def check_memory(spec: NetworkSpec, batch: int, available: int | None = None) -> None:
    """Raise SpecError (one line) if a case of this network cannot fit in memory here."""
    available = environment.meminfo("MemAvailable") if available is None else available
    need = bytes_needed(spec, batch)
    if available is not None and need > MEMORY_HEADROOM * available:
        raise SpecError(f"{'-'.join(map(str, spec.widths))} with batch {batch} needs about "
                        f"{gib(need)} of memory; this machine has {gib(available)} available")


def check_total_memory(networks: list[tuple[NetworkSpec, int]],
                       available: int | None = None) -> None:
    """Raise SpecError (one line) if these networks, each of which fits, do not fit together:
    the main process holds every problem at once, and one case at a time adds the rest."""
    if len(networks) < 2:
        return
    available = environment.meminfo("MemAvailable") if available is None else available
    need = sum(held_bytes(s, b) for s, b in networks) + max(
        bytes_needed(s, b) - held_bytes(s, b) for s, b in networks)
    if available is not None and need > MEMORY_HEADROOM * available:
        raise SpecError(f"these {len(networks)} networks need about {gib(need)} of memory "
                        f"together; this machine has {gib(available)} available")


# The resident memory of one worker process of a data-parallel case: the framework imported
# (torch or JAX with its runtime), the process group and the replica. Measured: 12 torch-ddp
# workers of 4-16-16-4 held 3.2 GiB together, about 270 MiB each.
WORKER_PROCESS_BYTES = 300 * 2**20


def check_workers_memory(workers: int, networks: list[tuple[NetworkSpec, int]],
                         available: int | None = None) -> None:
    """Raise SpecError (one line) if ``workers`` worker processes of the largest of these
    networks cannot fit here: each holds its framework and a replica, and --oversubscribe lifts
    the one-core-per-worker bound but never this one."""
    if workers < 2 or not networks:
        return
    available = environment.meminfo("MemAvailable") if available is None else available
    need = workers * (WORKER_PROCESS_BYTES + max(bytes_needed(s, b) for s, b in networks))
    if available is not None and need > MEMORY_HEADROOM * available:
        raise SpecError(f"{workers} workers need about {gib(need)} of memory (about "
                        f"{gib(WORKER_PROCESS_BYTES)} per worker process, and its replica); "
                        f"this machine has {gib(available)} available")


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**27 else f"{n / 2**20:.3g} MiB"


def network(widths, activation: str, output_activation: str, bias: bool, dtype: str,
            batch: int) -> tuple[NetworkSpec, int]:
    """(spec, batch), once the network is valid and one case of it fits in memory."""
    spec = NetworkSpec(tuple(widths), activation, output_activation, bias, dtype)
    check_inversion(spec)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0:
        raise SpecError(f"batch {batch!r} must be a positive integer")
    check_memory(spec, batch)
    return spec, batch


def problem(widths, activation: str, output_activation: str, bias: bool, dtype: str,
            batch: int, lr: float | None, seed: int) -> Problem:
    """A problem, once its network is valid and fits in memory."""
    spec, batch = network(widths, activation, output_activation, bias, dtype, batch)
    return make_problem(spec, batch=batch, lr=lr, seed=seed)


def problems(requests: list[tuple]) -> list[Problem]:
    """The problems of ``problem``'s argument tuples, without repeats, once every network is
    valid and they fit in memory together: nothing is built before all are checked."""
    requests = list(dict.fromkeys(requests))
    networks = [network(*r[:6]) for r in requests]
    check_total_memory(list(dict.fromkeys(networks)))
    return unique([make_problem(spec, batch=batch, lr=r[6], seed=r[7],
                                input_scale=r[8] if len(r) > 8 else 1.0)
                   for (spec, batch), r in zip(networks, requests)])


def dtypes_of(n: Networks, default: tuple[str, ...]) -> tuple[str, ...]:
    dtypes = n.dtypes if n.dtypes is not None else default
    for d in dtypes:
        if d not in DTYPES:
            raise SpecError(f"unknown dtype {d!r}: choose from {', '.join(DTYPES)}")
    if not dtypes:
        raise SpecError(f"--dtype is empty: choose from {', '.join(DTYPES)}")
    return tuple(dict.fromkeys(dtypes))


def unique(problems: list[Problem]) -> list[Problem]:
    """Without repeats: a repeated network would be pooled as if it came from another process."""
    return list({(ProblemRecord.of(p), p.input_scale): p for p in problems}.values())


def check_problems(n: Networks, activation: str | None = None, bias: bool | None = None,
                   output_activation: str | None = None) -> list[Problem]:
    """The problems of `check`: each network × dtype (float64 and float32, the worked example
    float64 only, unless --dtype says). Without --widths, CHECK_NETWORKS, with the activations
    and bias given (by the options, or by a learner's file: ``activation``, ``bias``,
    ``output_activation``) in place of theirs; with --widths, batch 5 (1 for 1-1-1) unless
    --batch says otherwise."""
    activation, bias = n.activation or activation, n.bias if n.bias is not None else bias
    if n.widths is None:
        nets = [dict(net, **({"activation": activation} if activation else {}),
                     **({"bias": bias} if bias is not None else {})) for net in CHECK_NETWORKS]
    else:  # a batch of 1 would hide a dropped 1/batch: the default's 5, but for 1-1-1
        nets = [dict(widths=w, activation=activation or "linear", bias=bool(bias),
                     batch=1 if w == (1, 1, 1) else CHECK_NETWORKS[1]["batch"])
                for w in n.widths]
    low = [d for d in (n.dtypes or ()) if d in LOW_DTYPES]
    if n.widths is None and low:
        nets += [dict(net, **({"activation": activation} if activation else {}),
                      **({"bias": bias} if bias is not None else {}), dtypes=tuple(low),
                      low=True) for net in LOW_CHECK_NETWORKS]
    for net in nets:  # --output-activation, or a learner's, or the network's own
        given = output_activation or (n.output_activation if n.output_activation != "linear"
                                      else None)
        net["output_activation"] = given or net.get("output_activation", "linear")
    batch = [net["batch"] if n.batch is None else n.batch for net in nets]
    return problems([(net["widths"], net["activation"], net["output_activation"], net["bias"],
                      d, b, check_lr(net["widths"], b) if n.lr is None else n.lr, n.seed,
                      net.get("input_scale", 1.0))
                     for net, b in zip(nets, batch)
                     for d in (net["dtypes"] if net.get("low") else
                               dtypes_of(n, net.get("dtypes", ("float64", "float32"))))])


def timing_problems(n: Networks) -> list[Problem]:
    """The networks of `run`: RUN_NETWORKS, or the widths asked for, × the dtypes. A
    1-1-1 network defaults to float64 and batch 1, any other to float32 and batch 64."""
    if n.widths is None:
        nets = [dict(net, activation=n.activation or net["activation"], dtype=d,
                     batch=net["batch"] if n.batch is None else n.batch)
                for net in RUN_NETWORKS.values()
                for d in (dtypes_of(n, ()) if n.dtypes is not None else [net["dtype"]])]
    else:
        nets = []
        for widths in n.widths:
            one = widths == (1, 1, 1)
            dtypes = dtypes_of(n, ("float64",) if one else ("float32",))
            nets += [dict(widths=widths, activation=n.activation or "linear", dtype=d,
                          batch=(1 if one else 64) if n.batch is None else n.batch)
                     for d in dtypes]
    return problems([(tuple(net["widths"]), net["activation"], n.output_activation, bool(n.bias),
                      net["dtype"], net["batch"], n.lr, n.seed) for net in nets])


def default_name(problem: Problem) -> str | None:
    """The name of the default network a problem is (by its widths), or None."""
    return next((name for name, net in RUN_NETWORKS.items()
                 if net["widths"] == problem.spec.widths), None)


def default_skip(problems: list[Problem]) -> dict[int, tuple[str, ...]]:
    """The variants a default run leaves out of each network: those whose ``default_run``
    does not list it."""
    skip = {}
    for i, p in enumerate(problems):
        name = default_name(p)
        left_out = tuple(v.name for v in registry.VARIANTS.values()
                         if name is not None and name not in v.default_run)
        if left_out:
            skip[i] = left_out
    return skip


def default_peaks(problems: list[Problem]) -> list[str]:
    """Dtypes whose matmul peak is worth measuring: those of networks that do real matmuls."""
    return sorted({p.spec.dtype for p in problems if p.flops_per_step() > 6 * 64})


def variants(names: tuple[str, ...] | None, frameworks: tuple[str, ...] | None,
             default: list[Variant]) -> tuple[list[Variant], bool]:
    """(the variants asked for, whether they were named explicitly): ``names``, or every
    variant of ``frameworks``, or ``default``."""
    if names is not None:
        if not names:
            raise BenchError(f"--variants is empty: choose from {', '.join(registry.VARIANTS)}")
        chosen = [registry.get(n) for n in names]
        return list({v.name: v for v in chosen}.values()), True
    if frameworks is not None:
        if not frameworks:
            raise BenchError("--framework is empty: name at least one framework")
        for f in frameworks:
            registry.get_framework(f)
        return [v for v in registry.VARIANTS.values() if v.framework in frameworks], True
    return default, False


def run_variants() -> list[Variant]:
    """The default run: every variant but the data-parallel ones (`scale` times those)."""
    return [v for v in registry.VARIANTS.values() if not v.distributed]


def sweep_variants(device: str) -> list[Variant]:
    """The default sweep: the variants that declare this device in ``sweep_devices``."""
    return [v for v in registry.VARIANTS.values() if device in v.sweep_devices]


def ceiling_cases(lr: float | None) -> list[tuple[Problem, Variant]]:
    """The limit loop on the worked example: the machine's serial ceiling, in every sweep."""
    return [(make_problem(lr=lr), v) for v in registry.with_role("limit")]
