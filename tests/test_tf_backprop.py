"""TensorFlow (tf_backprop) and Keras on TensorFlow (keras_tf): few tests, each in processes of
its own, since importing TensorFlow takes seconds and sizes its thread pools for good.

* its thread pools and call floors (tests/helpers_tf.py; the functional core and every
  Trainer on the worked example are tested as every isolated framework's are, by
  tests/helpers_isolated.py);
* ``check`` of every TF variant on a wider network with bias, both dtypes;
* the planted bugs (tests/fake_buggy_tf.py) fail ``check``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from implementations import registry

ROOT = Path(__file__).resolve().parents[1]
TF_VARIANTS = "tf,tf-function,tf-xla,keras-tf,keras-tf-loop"
BUGS = ("tf-batch-sum", "tf-function-no-watch", "keras-tf-mse")
pytestmark = pytest.mark.skipif(not registry.package_exists("tensorflow"),
                                reason="tf: tensorflow is not installed")


def test_tf_sizes_its_thread_pools_before_its_first_op_and_measures_its_call_floors():
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "helpers_tf.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok ")


def test_every_tf_variant_passes_check_on_a_wider_network_in_both_dtypes(capsys):
    code = cli.main(["check", "--variants", TF_VARIANTS, "--widths", "4,16,16,4",
                     "--activation", "tanh", "--bias", "--batch", "3",
                     "--dtype", "float32,float64", "--steps", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in TF_VARIANTS.split(","):  # their own gradients, and their trajectories
        assert len(re.findall(rf"^{name}\s+\S+\s+\d\S*\s+\d\S*\s.*\s\d\S*\s+ok$", out,
                              re.M)) == 2, name
    assert "FAILED" not in out
    left_out = [line for line in out.splitlines() if "skipped" in line
                and any(name in line for name in TF_VARIANTS.split(","))]
    assert not left_out, left_out


@pytest.fixture
def with_bugs(monkeypatch):
    monkeypatch.setenv(registry.ENV, str(ROOT / "tests" / "fake_buggy_tf.py"))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


def test_a_bug_users_write_in_a_tf_step_fails_check(with_bugs, capsys):
    assert cli.main(["check", "--framework", "numpy", "--variants", ",".join(BUGS),
                     "--widths", "3,4,4,3", "--activation", "tanh", "--bias", "--batch", "5",
                     "--dtype", "float64", "--steps", "5"]) == 1
    verdict = capsys.readouterr().out.split("\nFAILED: ")[1]
    assert set(verdict.splitlines()[0].split(", ")) == set(BUGS)
    for name in BUGS:
        assert f"  {name}: " in verdict and "3-4-4-3 tanh+b f64 b5" in verdict, name
