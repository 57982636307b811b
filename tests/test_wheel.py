"""The wheel works: built from the committed tree, installed into a fresh venv, it checks and
counts outside the checkout.

`make` installs in editable mode, so no other test sees what a wheel leaves out: the
Callgrind helper's source (callgrind.c) was not shipped, and a non-editable install could not
run `run --measure instructions`. The venv gets this environment's packages (numpy, ...)
through a .pth file and the wheel with --no-deps, so that nothing is downloaded; its
commands run from a folder outside the checkout, with no PYTHONPATH, and build the helper
into a cache folder of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from harness.measure import callgrind
from harness.record import store

ROOT = Path(__file__).resolve().parents[1]


def sh(*argv, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300
       ) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict, Path]:
    """(the folder of a fresh venv with the wheel installed, the environment to run it in,
    the wheel)."""
    if sh("git", "rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("needs a git checkout: the wheel is built from the committed tree")
    tmp = tmp_path_factory.mktemp("wheel")
    (tmp / "src").mkdir()
    sh("git", "archive", "--format=tar", "-o", tmp / "src.tar", "HEAD")
    sh("tar", "-xf", tmp / "src.tar", "-C", tmp / "src")
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
       "-q", "-w", tmp / "dist", tmp / "src")
    wheel, = (tmp / "dist").glob("backprop_bench-*.whl")
    sh(sys.executable, "-m", "venv", "--without-pip", tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    sh(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
       "-q", wheel)
    site = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                   ).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(XDG_CACHE_HOME=str(tmp / "cache"), TMPDIR=str(tmp))
    return tmp, env, wheel


def test_the_wheel_holds_every_package_and_the_c_it_compiles(installed):
    names = set(zipfile.ZipFile(installed[2]).namelist())
    for package in ("harness", "harness/check", "harness/procs", "implementations",
                    "backprop_bench"):
        assert f"{package}/__init__.py" in names, package
    assert {"harness/measure/callgrind.c", "harness/measure/limit.c"} <= names
    assert not any(n.startswith(("tests/", "scripts/", "results/")) for n in names)


def test_the_installed_command_checks_numpy_outside_the_checkout(installed):
    tmp, env, _ = installed
    where = sh(tmp / "venv" / "bin" / "python", "-c", "import harness; print(harness.__file__)",
               cwd=tmp, env=env).stdout
    assert where.startswith(str(tmp / "venv"))  # the wheel's copy, not the checkout
    out = sh(tmp / "venv" / "bin" / "backprop-bench", "check", "--framework", "numpy", cwd=tmp,
             env=env).stdout
    assert "PASSED: all" in out


@pytest.mark.skipif(callgrind.unavailable() is not None,
                    reason=f"cannot count here: {callgrind.unavailable()}")
def test_the_installed_command_counts_instructions(installed):
    tmp, env, _ = installed
    out = tmp / "r.json"
    sh(tmp / "venv" / "bin" / "backprop-bench", "run", "--measure", "instructions", "--widths",
       "1,1,1", "--variants", "numpy", "--no-peak", "--time-per-case", "0.05",
       "--count-target", "2e6", "--out", out, cwd=tmp, env=env, timeout=600)
    counted = store.read_run(out).cases[0].instructions
    assert counted.ok and 50_000 < counted.per_step < 200_000, counted.error
    assert list((tmp / "cache" / "backprop-bench").glob("libbb_callgrind-*.so"))  # built here
