"""The ``backprop-bench`` command line: the parser, the streams and the exit statuses.

Every subcommand is one module of ``harness.commands`` that defines ``COMMAND`` (a
``commands.base.Command``: name, help, description, examples, its arguments, and how to call
its function with typed values); ``COMMANDS`` lists them, in the order ``--help`` shows. A new
subcommand is one module and one line here. Every user error ends as one line on stderr and
exit status 2; a check or a case that fails exits 1. Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import codecs
import os
import signal
import sys
import textwrap
from collections.abc import Sequence

from harness import PROG, __version__, starting  # starting first: a Ctrl-C is one line now
from harness.commands import (
    check,
    compare,
    demo,
    explain,
    export,
    listing,
    report,
    run,
    scale,
    sweep,
)
from harness.commands.base import EXIT_OUTPUT_CLOSED, OutputClosed, check_environment
from harness.commands.options import UsageError
from implementations import registry
from implementations.problem import BenchError

starting.done()  # imported: main handles a Ctrl-C or SIGTERM from here on

COMMANDS = tuple(m.COMMAND for m in (demo, check, explain, run, sweep, scale, report, compare,
                                      export, listing))


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2, with no usage dump, and no
    abbreviated flags (``--out`` must never be read as ``--output-activation``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Are this framework's gradients right, and what does one "
               "training step really cost? The backprop worked example and wider MLPs in every "
               "registered framework: " + ", ".join(f.label for f in registry.FRAMEWORKS.values())
               + ".")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for c in COMMANDS:
        examples = "\n".join(f"  {PROG} {e}" for e in c.examples)
        s = sub.add_parser(c.name, help=c.help, description=f"{textwrap.fill(c.description, 79)}"
                           f"\n\nexamples:\n{examples}")
        c.arguments(s)
        s.set_defaults(call=c.call)
    return p


def interrupt(signum, frame):
    """SIGTERM (from `timeout`, a scheduler) ends a run like Ctrl-C: finished cases are kept."""
    raise KeyboardInterrupt


ASCII = {"×": "x", "µ": "u", "–": "-", "—": "-", "−": "-", "≥": ">=", "≤": "<=", "²": "^2",
         "ᵀ": "^T", "·": "*", "…": "...", "‖": "||", "φ": "phi", "∂": "d", "η": "eta",
         "→": "->", "½": "1/2", "≈": "~", "’": "'", "“": '"', "”": '"', "δ": "delta",
         "⊙": "*", "′": "'", "Σ": "sum", "ŷ": "y_hat", "←": "<-",
         **{chr(0x2080 + d): str(d) for d in range(10)}}  # subscript digits


def degrade(error: UnicodeEncodeError) -> tuple[str, int]:
    """What a stream that cannot encode a character writes instead: x for ×, us for µs..."""
    text = error.object[error.start:error.end]
    return "".join(ASCII.get(c, "?") for c in text), error.end


codecs.register_error("backprop-bench", degrade)


def plain_streams() -> None:
    """Let stdout and stderr degrade to ASCII where their encoding lacks a character, rather
    than raise (PYTHONIOENCODING=ascii, LC_ALL=C)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backprop-bench")
            except (ValueError, OSError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    try:
        signal.signal(signal.SIGTERM, interrupt)
        plain_streams()
        for problem in registry.PROBLEMS:  # a framework file that could not be read: once
            print(f"{PROG}: warning: {problem}", file=sys.stderr)
        parser = build_parser()
        args = parser.parse_args(argv)
        check_environment()
        if not getattr(args, "call", None):
            parser.print_help()
            return 2
        return args.call(args)
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (OutputClosed, BrokenPipeError) as exc:
        return output_closed(getattr(exc, "where", ""))


def output_closed(where: str) -> int:
    """Our stdout was closed by its reader (``| head``): one line on stderr, no traceback,
    and nothing more written to the pipe (not even at exit, when Python flushes stdout)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    said = f": {where}" if where else ""
    print(f"{PROG}: error: stdout was closed before the output was written{said}",
          file=sys.stderr)
    return EXIT_OUTPUT_CLOSED


if __name__ == "__main__":
    sys.exit(main())
