"""backprop-bench's harness: check, time, store and report the implementations' training steps.

Its packages, each importing only the ones listed above it (and ``implementations``):

* ``measure``: the timing engine and its measurement, memory, the machine's state and
  environment, the ceilings: what is measured, and how;
* ``check``: are the gradients right? The check's one home: the references, the judge, the
  diagnosis, the learner's and the published example's readers, and the check itself;
* ``record``: the typed results and their schema, the results files, the derived columns and
  flat rows, ``compare`` and ``export``;
* ``procs``: work in child processes: the runner and its workers, their protocol, the
  isolated and data-parallel checks, the launch of ranks, the all-reduce timing;
* ``analysis``: the cost and scaling models fitted to stored results;
* ``report``: REPORT.md and its plots, from stored results only;
* ``commands``: the subcommands, their defaults and their options;
* ``cli`` and ``api`` (the command line, and the Python API imported as ``backprop_bench``).

``tables`` (text tables and number formats) imports nothing of the harness: any layer may use
it. ``starting`` is the command line's first import (a Ctrl-C while the rest imports is one
line).
"""

__version__ = "0.2.0"
PROG = "backprop-bench"
