"""Results files on disk: one writer policy for every command, atomic writes, validated loads.

Writing (``run``, ``sweep``):

* ``claim(path, force)`` takes a results path for one run before anything is measured: it
  refuses a path that exists (unless ``--force``) or that another live run has claimed, and
  holds a lock file (``.NAME.lock``, created exclusively, holding the pid) until ``release``.
  Two runs given the same ``--out`` cannot both write it: the second is refused at once.
* ``claim_default`` picks ``COMMAND-DEVICE-HOST-TIME.json`` and adds ``-2``, ``-3``, ... when
  that name is taken, so two runs started in the same second get two files.
* ``write`` is atomic (a temporary file in the same folder, fsync, rename) and leaves the file
  readable by others, as a results file in a shared folder should be.

Reading (``report``, ``compare``): ``load`` reads one regular file and validates it whole
(``results.Run.from_dict``); ``load_many`` keeps the good files of a folder and turns the
others into one-line problems.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path

from harness.record.results import ResultsError, Run

SKIPPED_FOLDERS = ("pytest-bench", "tmp", "evidence")  # pytest-benchmark's own JSON; scratch
# runs; runs kept as evidence for NOTES.md (repeats, the false-alarm pairs), not for the report


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def started(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (/proc/PID/stat), or None: with the
    pid, it tells a lock's process from a later one that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def holder(lock: Path) -> int | None:
    """The pid of the live process holding a lock file, or None (no lock, or a stale one:
    its process is gone, or its pid now belongs to a process that started later)."""
    try:
        parts = lock.read_text().split()
        pid, start = int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    now = started(pid)
    if start is not None and now is not None and now != start:
        return None  # the pid was reused
    return pid


def claim(path: Path, force: bool = False) -> Path:
    """Lock ``path`` for this run, or raise ResultsError (one line) saying why not.

    The folder is created only once the path is known to be usable.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ResultsError(f"cannot write results to {str(path)!r}: not a file name")
    if path.is_dir():
        raise ResultsError(f"cannot write results to {path}: it is a directory")
    if path.exists() and not force:
        raise ResultsError(f"{path} already exists: choose another --out, or add --force")
    if path.exists() and not path.is_file():
        raise ResultsError(f"cannot write results to {path}: not a regular file")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ResultsError(f"cannot write results to {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot write results to {path}: {exc.strerror or exc}") from None
    try:
        with claiming(path.parent):
            take_lock(lock_path(path))
    except FileExistsError:
        raise ResultsError(f"{path} is being written by another run (pid "
                           f"{holder(lock_path(path))}, lock {lock_path(path)}): choose another "
                           f"--out, or remove the lock if that process is not ours") from None
    except OSError as exc:
        raise ResultsError(f"cannot write results to {path}: {exc.strerror or exc}") from None
    if path.exists() and not force:  # written by a run that held the lock since the check
        release(path)
        raise ResultsError(f"{path} already exists: choose another --out, or add --force")
    return path


@contextlib.contextmanager
def claiming(folder: Path):
    """One claim at a time in a folder (an flock on the folder itself, dropped by the kernel
    if its holder dies): a lock file is read, judged stale or created by one process only,
    never seen half-written (empty) by another that would take it over."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def take_lock(lock: Path) -> None:
    """Create the lock file exclusively; a stale one (its process is gone) is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if holder(lock) is not None:
                raise
            lock.unlink(missing_ok=True)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {started(os.getpid()) or ''}".strip())
        except OSError:
            lock.unlink(missing_ok=True)  # a full disk leaves no empty lock behind
            raise
        return
    raise FileExistsError(lock)


def release(path: Path) -> None:
    """Drop this process's lock on ``path`` (never another process's)."""
    lock = lock_path(Path(path))
    if holder(lock) == os.getpid():
        lock.unlink(missing_ok=True)


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text) or "host"


def claim_default(command: str, device: str, hostname: str, directory: Path) -> Path:
    """Claim COMMAND-DEVICE-HOST-TIME.json in ``directory``, with -2, -3, ... if taken."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{command}-{device}-{safe_name(hostname)}-{stamp}"
    for n in range(1, 1000):
        path = Path(directory) / (base + ("" if n == 1 else f"-{n}") + ".json")
        try:
            return claim(path)
        except ResultsError:
            if not (path.exists() or lock_path(path).exists()):
                raise
    raise ResultsError(f"cannot find a free results file name like {base}.json")


def write(run: Run, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    write_text(json.dumps(run.to_dict(), indent=1, allow_nan=False), path)


class WriteError(ResultsError):
    """A file that could not be written (a full disk, no permission); the old one is whole."""


def write_text(text: str, path: Path) -> None:
    """Write any text atomically, as ``write`` writes a results file (``export`` uses it);
    WriteError (one line, naming the file) where it cannot, with the old file left whole."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a results file is for readers
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def read_run(path: Path) -> Run:
    """Read and validate one results file; ResultsError names the file and the problem."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ResultsError(f"{path}: not a regular file")
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({str(exc)[:100]})") from None
    return Run.from_dict(data, str(path))


def find_files(paths: list[str]) -> list[Path]:
    """Expand folders into the regular *.json files under them (sorted); keep files as given.

    Hidden files and the folders in SKIPPED_FOLDERS are left out of a folder's expansion.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")
                          and q.is_file()
                          and not set(q.relative_to(p).parts[:-1]) & set(SKIPPED_FOLDERS))
        else:
            out.append(p)
    return out


def read_runs(paths: list[str]) -> tuple[list[tuple[Path, Run]], list[str]]:
    """Load every file that is valid; the others become one-line problems, not exceptions."""
    good, problems = [], []
    for path in find_files(paths):
        try:
            good.append((path, read_run(path)))
        except ResultsError as exc:
            problems.append(str(exc))
    return good, problems


def check_overwrite(path: Path, ours, force: bool, what: str) -> None:
    """Refuse to overwrite a file that this program did not write (``ours(path)`` is False),
    unless ``force``: a report must not replace a README or someone's plot."""
    path = Path(path)
    if path.exists() and not force and not ours(path):
        raise ResultsError(f"{path} exists and was not written by {what}: choose another "
                           f"--out, or add --force")
