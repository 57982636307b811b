"""Results files of schema versions 1 to 3 as version 4 dicts, before they are validated.

Version 4 stores each measurement as it was measured (``timing.Measurement``: the first call,
K and the raw block times) and derives every statistic on load. Versions 1 to 3 stored the
statistics beside the samples. Upgrading them:

* a case's ``timing`` is unchanged: its ``per_step`` and ``compile_s`` were derived from the
  samples it holds, and are derived again (keys a version does not know are ignored); so are
  a matmul peak's ``median_s`` and ``gflops``;
* each of a pooled case's ``processes`` kept its median, IQR and number of blocks, and the
  pooled samples are its blocks in process order, so its own samples are that slice again;
  where the blocks do not add up, the process keeps its status and no measurement;
* a ``phases`` entry kept only its statistics, not its samples: it becomes one block of one
  step at its median (the only figure the report reads), with no first call;
* a variant renamed since (``registry.RENAMED``: ``jax-scan`` is ``jax-fori``) takes its name
  now, in its cases, their ids and the run's lists of variants and extra cases, so that an
  old file and a new one compare case by case.

Nothing here validates: ``harness.record.schema`` checks the upgraded dict as it checks a new
one, so a corrupt old file is refused with the same one line.
"""

from __future__ import annotations

import copy

from implementations.registry import RENAMED

VERSION = 4


def to_current(data: dict) -> dict:
    """A copy of a version 1-3 results dict in version 4's shape (a newer one as it is)."""
    if not isinstance(data.get("schema_version"), int) or data["schema_version"] >= VERSION:
        return data
    data = copy.deepcopy(data)
    for case in data.get("cases") if isinstance(data.get("cases"), list) else []:
        if isinstance(case, dict):
            upgrade_case(case)
    config = data.get("config")
    config = config if isinstance(config, dict) else {}
    if isinstance(config.get("variants"), list):
        config["variants"] = [new_name(v) for v in config["variants"]]
    if isinstance(config.get("extra_cases"), list):
        for extra in config["extra_cases"]:
            if isinstance(extra, dict) and "variant" in extra:
                extra["variant"] = new_name(extra["variant"])
    return data


def new_name(variant):
    return RENAMED[variant][0] if isinstance(variant, str) and variant in RENAMED else variant


def upgrade_case(case: dict) -> None:
    old, new = case.get("variant"), new_name(case.get("variant"))
    if old != new:
        case["variant"] = new
        if isinstance(case.get("id"), str):
            case["id"] = case["id"].replace(f"/{old}/", f"/{new}/", 1)
    timing = case.get("timing")
    if isinstance(case.get("processes"), list):
        case["processes"] = split_processes(case["processes"], timing)
    if isinstance(case.get("phases"), dict):
        case["phases"] = {name: phase(stats) for name, stats in case["phases"].items()}


def split_processes(processes: list, timing) -> list:
    """Each old process record with its own slice of the pooled samples, where they add up."""
    samples = timing.get("samples_s") if isinstance(timing, dict) else None
    counts = [p.get("blocks") if isinstance(p, dict) and p.get("status") == "ok" else 0
              for p in processes]
    fits = (isinstance(samples, list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
            and sum(counts) == len(samples))
    out, start = [], 0
    for p, n in zip(processes, counts):
        if not isinstance(p, dict):
            out.append(p)  # not an object: the schema refuses it
            continue
        record = {"status": p.get("status")}
        if fits and n:
            record["timing"] = {**{k: timing[k] for k in ("block_steps", "first_call_steps",
                                                          "first_calls") if k in timing},
                                "first_call_s": p.get("first_call_s") or 0.0,
                                "samples_s": samples[start:start + n]}
            start += n
        out.append(record)
    return out


def phase(stats):
    """An old phase's statistics as a measurement of one block at its median."""
    if not isinstance(stats, dict) or "median_s" not in stats:
        return stats  # the schema says what is wrong with it
    return {"first_call_s": 0.0, "first_call_steps": 0, "block_steps": 1,
            "samples_s": [stats["median_s"]]}
