"""Reading what `backprop-bench check` printed, for the tests of the check."""

from __future__ import annotations


def results(out: str) -> dict[str, set[str]]:
    """{subject: its results ('ok', 'FAIL') over every table of the output}."""
    got: dict[str, set[str]] = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) > 2 and cells[-1] in ("ok", "FAIL") and not line.startswith(" "):
            got.setdefault(cells[0], set()).add(cells[-1])
    return got


def diagnoses(out: str, subject: str) -> list[str]:
    """The verdict's lines about one subject."""
    verdict = out.split("\nFAILED: ", 1)[1]
    return [line for line in verdict.splitlines() if line.startswith(f"  {subject}: ")]
