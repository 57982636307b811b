"""backprop-bench from Python: ``import backprop_bench as bb``.

A thin package over ``harness.api`` (see there): ``variants``, ``problem``, ``check``,
``check_impl``, ``check_example``, ``time``, ``load``, ``records`` and ``dataframe``, and
``BenchError``, the one-line error of every mistake a user can fix. It is a package of its
own so that ``import backprop_bench`` is the API and nothing else.
"""

from harness import __version__
from harness.api import (
    check,
    check_example,
    check_impl,
    dataframe,
    load,
    problem,
    records,
    time,
    variants,
)
from implementations.problem import BenchError

__all__ = ["BenchError", "__version__", "check", "check_example", "check_impl", "dataframe",
           "load", "problem", "records", "time", "variants"]
