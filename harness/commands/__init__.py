"""The subcommands: the defaults they run with, their options, and the work each composes.

Imports every package below it (``report``, ``analysis``, ``procs``, ``record``, ``measure``).
"""
