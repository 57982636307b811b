"""The subcommands: one module each (demo, check, run, sweep, scale, report, compare, export,
listing), defining ``COMMAND`` (``base.Command``: its arguments and how to call it) beside the
work it composes; plus what they share: ``base``, ``options``, ``plans``, ``progress``, and
check's parts (``check_example``, ``check_workers``).

Imports every package below it (``report``, ``analysis``, ``procs``, ``record``, ``measure``).
"""
