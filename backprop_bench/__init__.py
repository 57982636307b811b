"""backprop-bench from Python: ``import backprop_bench as bb``.

A thin package over ``harness.api`` (see there): ``variants``, ``problem``, ``check``,
``time``, ``load``, ``records`` and ``dataframe``, and ``BenchError``, the one-line error of
every mistake a user can fix. It is a package of its own because ``harness.check`` is a
module: ``harness`` cannot also export a function of that name.
"""

from harness import __version__
from harness.api import check, dataframe, load, problem, records, time, variants
from implementations.problem import BenchError

__all__ = ["BenchError", "__version__", "check", "dataframe", "load", "problem", "records",
           "time", "variants"]
