"""torch.compile's disk cache (Inductor's): where it is, whether it held compiled graphs when
a process started, and a marker per compiled loop and network, so that ``built`` can tell
whether a compiling variant's code is already there (``check`` skips a cold compile unless
given ``--all``; clearing the cache clears the markers too).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import tempfile
from pathlib import Path

import torch

from implementations.problem import NetworkSpec, Problem


def inductor_dir() -> Path:
    """Where torch.compile keeps its disk cache."""
    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}"))


def inductor_cache_state() -> dict:
    """Where torch.compile keeps its disk cache, and whether it already held compiled graphs."""
    graphs = inductor_dir() / "fxgraph"
    return {"dir": str(inductor_dir()),
            "warm_at_start": graphs.is_dir() and any(os.scandir(graphs))}


def built_marker(loop: str, net: NetworkSpec, batch: int, device: str) -> Path:
    """A file in the Inductor cache that says a loop compiled this network there before (so
    that clearing the cache clears it too): what ``built`` reads."""
    key = repr((torch.__version__, loop, net.as_dict(), batch, device))
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return inductor_dir() / "backprop-bench-built" / f"{loop}-{digest}"


def mark_built(marker: Path | None) -> None:
    """Leave the marker once the first compiled call has succeeded (never fails the call)."""
    if marker is None:
        return
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass


def built(variant, problem: Problem, device: str) -> bool:
    """Whether a compiling variant's code for this problem is in the Inductor cache."""
    return variant.loop is not None and built_marker(
        variant.loop, problem.spec, problem.batch, device).exists()
