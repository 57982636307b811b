"""What a check found: one ``Row`` per comparison, gathered in a ``Report``.

A row compares one tensor of one *subject* (a framework's functions, a variant's Trainer, a
learner's file) with one reference. Rows of the subject's own evidence (the finite
differences, the exact float64 gradient, the closed form, the reference trajectory, a crash)
decide whether it passed; the comparison with the other subjects (``OTHERS``) is shown beside
them but never fails a subject on its own: one wrong framework must not fail the right ones.
"""

from __future__ import annotations

import math
import os
import traceback
from dataclasses import asdict, dataclass, field

from harness.check import deadline
from implementations.problem import Problem

LOSS = "reference loss"
FD = "finite differences"
EXACT = "exact"
CLOSED = "closed form"
OTHERS = "frameworks"
TRAJECTORY = "trajectory"
RUN = "run"


@dataclass(frozen=True)
class Tolerances:
    """Largest normalised error accepted against each reference."""

    finite_differences: float
    closed_form: float
    frameworks: float
    trajectory: float

    @property
    def exact(self) -> float:
        """Against the exact float64 gradient: as tight as between frameworks."""
        return self.frameworks


TOLERANCES = {
    # float64: FD truncation and rounding error is ~1e-9 relative with the step used here.
    "float64": Tolerances(finite_differences=1e-6, closed_form=1e-12, frameworks=1e-10,
                          trajectory=1e-8),
    # float32: ~1e-7 per operation, grown by sums of up to a few thousand terms.
    "float32": Tolerances(finite_differences=1e-4, closed_form=1e-5, frameworks=1e-4,
                          trajectory=1e-3),
    # bfloat16 and float16: each subject's verdict comes from the error model of
    # harness.check.precision, tensor by tensor; these, 64 unit roundoffs, are only the coarse
    # line the diagnosis draws between a tensor that is off and one that is right
    "bfloat16": Tolerances(*(64 * 2.0 ** -8,) * 4),
    "float16": Tolerances(*(64 * 2.0 ** -11,) * 4),
}


def label(problem: Problem) -> str:
    """How rows name a problem: its network label and batch (and its inputs' scale, where
    it is not 1)."""
    scale = f" x·2^{math.log2(problem.input_scale):g}" if problem.input_scale != 1.0 else ""
    return f"{problem.spec.label()} b{problem.batch}{scale}"


@dataclass
class Row:
    """One comparison: a tensor of one subject against one reference."""

    subject: str  # framework, variant or learner's file
    dtype: str
    tensor: str
    reference: str  # LOSS, FD, EXACT, CLOSED, OTHERS, TRAJECTORY or RUN
    error: float
    tolerance: float
    detail: str = ""
    problem: str = ""  # label(problem), so that a check of several networks stays apart

    @property
    def passed(self) -> bool:
        return math.isfinite(self.error) and self.error <= self.tolerance

    @property
    def evidence(self) -> bool:
        """Whether this row can fail its subject (the comparison with the others cannot)."""
        return self.reference != OTHERS

    def failure(self) -> str:
        detail = f" {self.detail}" if self.detail else ""
        return (f"{self.subject} {self.dtype} {self.tensor} vs {self.reference}: error "
                f"{self.error:.2e} > tolerance {self.tolerance:.0e}{detail}")


@dataclass
class Report:
    """All rows of a check, the notes, and one diagnosis per failing (subject, problem).

    ``passed`` only if every row of evidence passed. ``settings`` holds each framework's
    settings (threads, precision) as applied for the check.
    """

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    diagnoses: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    disagreements: list[str] = field(default_factory=list)
    settings: dict[str, dict] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows if r.evidence)

    def failures(self) -> list[str]:
        """One line per failing row of evidence."""
        return [r.failure() for r in self.rows if r.evidence and not r.passed]

    def failed(self, problem: str | None = None) -> list[str]:
        """The subjects with a failing row of evidence (on ``problem``, if given), in order."""
        return list(dict.fromkeys(r.subject for r in self.rows if r.evidence and not r.passed
                                  and (problem is None or r.problem == problem)))

    def diagnose(self, subject: str, problem: str, lines: list[str]) -> None:
        if lines:
            self.diagnoses.setdefault((subject, problem), [])
            self.diagnoses[(subject, problem)] += [t for t in lines
                                                   if t not in self.diagnoses[(subject, problem)]]

    def merge(self, other: Report) -> None:
        self.rows += other.rows
        self.notes += other.notes
        self.disagreements += other.disagreements
        self.settings.update(other.settings)
        for (subject, problem), lines in other.diagnoses.items():
            self.diagnose(subject, problem, lines)

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "rows": [{**asdict(r), "passed": r.passed} for r in self.rows],
            "notes": self.notes,
            "diagnoses": [{"subject": s, "problem": p, "lines": lines}
                          for (s, p), lines in self.diagnoses.items()],
            "disagreements": self.disagreements,
            "settings": self.settings,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        """The inverse of as_dict (a report sent back by another process)."""
        report = cls(rows=[Row(**{k: v for k, v in r.items() if k != "passed"})
                           for r in d.get("rows", [])], notes=list(d.get("notes", [])),
                     disagreements=list(d.get("disagreements", [])),
                     settings=dict(d.get("settings", {})))
        for item in d.get("diagnoses", []):
            report.diagnose(item["subject"], item["problem"], list(item["lines"]))
        return report


def crash_reason(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """'crashed: ValueError: ... (file.py:12)', one line: the exception and where it was
    raised. The place is the innermost line of ``path`` (a learner's file) if given, else the
    innermost line of code that is neither the harness's nor an installed package's (a
    framework file), else the innermost line. A timeout raised inside another exception (a
    compiler that wraps what interrupted it) is said as the timeout it is."""
    timeout = cause(exc, deadline.CaseTimeout)
    where = place(exc, path)
    if timeout is not None:
        return f"timed out: {timeout}{where}".replace("\n", " ")[:500]
    return f"crashed: {type(exc).__name__}: {exc}{where}".replace("\n", " ")[:500]


def cause(exc: BaseException, kind: type) -> BaseException | None:
    """``exc`` or the first exception of ``kind`` in its chain of causes and contexts."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def place(exc: BaseException, path: str | os.PathLike | None) -> str:
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return ""
    if path is not None:
        mine = [f for f in frames if os.path.basename(f.filename) == os.path.basename(path)]
    else:
        mine = [f for f in frames if not (os.path.abspath(f.filename).startswith(HARNESS)
                                          or "-packages" + os.sep in f.filename
                                          or f.filename.startswith(STDLIB))]
    last = (mine or frames)[-1]
    return f" ({os.path.basename(last.filename)}:{last.lineno})"


STDLIB = os.path.dirname(os.__file__)
