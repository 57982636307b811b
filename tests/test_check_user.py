"""harness.check.learner and .example: a learner's own backward pass, and published worked
examples, checked like any framework (``check --impl``, ``check --example``, the API)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import backprop_bench as bb
from harness import cli
from harness.check import example_file

ROOT = Path(__file__).resolve().parent.parent
LEARNER = ROOT / "examples" / "learner_backprop.py"
WORKED = ROOT / "examples" / "worked-example.toml"
MAZUR = ROOT / "examples" / "mazur-2015.toml"
ERROR = "backprop-bench: error:"


def buggy_learner(tmp_path: Path, old: str, new: str, name: str = "mine.py") -> Path:
    text = LEARNER.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def one_line_error(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(ERROR), err
    return err[0]


# ---- check --impl ------------------------------------------------------------------------------

def test_the_shipped_learner_file_passes(capsys):
    assert cli.main(["check", "--impl", str(LEARNER), "--framework", "numpy"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^learner_backprop\.py\s.*\sok$", out, re.M) and "PASSED" in out
    assert "3-4-4-3 tanh+b f64, batch 5" in out  # its ACTIVATION and BIAS, the default batch


def test_a_learner_file_without_its_1_over_batch_fails_with_the_diagnosis(tmp_path, capsys):
    path = buggy_learner(tmp_path, "d = r / len(x)", "d = r")
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    verdict = out.split("\nFAILED: ")[1]
    assert verdict.splitlines()[0] == "mine.py"  # numpy passes beside it
    assert re.search(r"mine\.py: every gradient is 5\.00× the reference \(= batch 5\): the mean "
                     r"over the batch lacks its 1/batch", verdict)


def test_a_learner_whose_sgd_step_alone_is_wrong_fails_on_its_trajectory(tmp_path, capsys):
    path = buggy_learner(tmp_path, "(W - lr * gW, b - lr * gb)", "(W - lr * gW, b)")
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "mine.py: b1, b2, b3 never moved from the start: frozen" in out


def test_a_learner_that_crashes_is_a_failure_naming_its_line(tmp_path, capsys):
    path = buggy_learner(tmp_path, "d = d @ params[i][0].T", "d = d @ params[i][0]")
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"mine\.py float64 - vs run: .*crashed: ValueError: .*\(mine\.py:\d+\)",
                     out) or "the shapes do not fit" in out


def test_a_learner_returning_wrong_shapes_is_named(tmp_path, capsys):
    path = buggy_learner(tmp_path, "g.insert(0, (hs[i].T @ d,", "g.insert(0, (d.T @ hs[i],")
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "mine.py: W1's gradient is transposed: shape (4, 3), W1 is (3, 4)" in out


@pytest.mark.parametrize("text, fragment", [
    ("import numpy as np\n", "defines no grads(params, x, y) function"),
    ("def grads(params, x, y:\n    pass\n", "SyntaxError"),
    ("grads = 3\n", "defines no grads(params, x, y) function"),
    ("def grads(p, x, y): pass\nsgd_step = 1\n", "sgd_step is not a function"),
    ("def grads(p, x, y): pass\nACTIVATION = 'gelu'\n", "ACTIVATION = 'gelu' is not one of"),
    ("def grads(p, x, y): pass\nBIAS = 'yes'\n", "BIAS must be True or False"),
])
def test_a_bad_learner_file_is_one_line(tmp_path, capsys, text, fragment):
    path = tmp_path / "bad.py"
    path.write_text(text)
    assert fragment in one_line_error(["check", "--impl", str(path)], capsys)


def test_a_missing_learner_file_is_one_line(tmp_path, capsys):
    assert "no such file" in one_line_error(["check", "--impl", str(tmp_path / "no.py")], capsys)


def test_a_learner_whose_grads_returns_nonsense_fails_with_the_reason(tmp_path, capsys):
    path = tmp_path / "odd.py"
    path.write_text("ACTIVATION = 'tanh'\nBIAS = True\ndef grads(params, x, y):\n"
                    "    return 1.0\n")
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 1
    assert "grads must return (E, grads)" in capsys.readouterr().out


def test_check_impl_in_the_api_returns_the_report(tmp_path):
    report = bb.check_impl(buggy_learner(tmp_path, "d = r / len(x)", "d = r"), frameworks=[])
    assert report.failed() == ["mine.py"]
    assert any("5.00× the reference (= batch 5)" in line
               for lines in report.diagnoses.values() for line in lines)
    assert bb.check_impl(LEARNER, frameworks=["numpy"]).passed


# ---- check --example ----------------------------------------------------------------------------

def test_the_worked_example_is_reproduced_to_its_printed_digits(capsys):
    assert cli.main(["check", "--example", str(WORKED), "--framework",
                     "numpy,torch,jax,python"]) == 0
    out = capsys.readouterr().out
    for value in ("0.5460125", "0.3135", "0.15675", "-0.98661309459782", "1.01356846211392",
                  "-0.39999997", "199.99998"):
        assert re.search(rf"\s{re.escape(value)}\s.*\sok$", out, re.M), value
    assert "PASSED: every subject reproduces all 11 published values" in out


def test_mazurs_example_is_reproduced_by_every_available_framework(capsys):
    assert cli.main(["check", "--example", str(MAZUR)]) == 0
    out = capsys.readouterr().out
    assert "A Step by Step Backpropagation Example (Matt Mazur, 2015" in out
    assert re.search(r"^w5\+\s+weight after 1\s+0\.35891648\s.*\sok$", out, re.M)
    rows = [line for line in out.splitlines() if re.search(r"\s(ok|FAIL)$", line)]
    assert len(rows) == 13 and all(line.endswith("ok") for line in rows)
    assert "keras-jax" not in out or "keras-jax:" not in out  # ran, not left out


def edited(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text
    path = tmp_path / source.name
    path.write_text(text.replace(old, new))
    return path


def test_a_published_value_that_no_framework_reproduces_is_diagnosed(tmp_path, capsys):
    path = edited(tmp_path, MAZUR, 'value = "0.082167041"', 'value = "0.164334081"')
    assert cli.main(["check", "--example", str(path), "--framework", "numpy,torch"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"dE_total/dw5: no framework reproduces the published 0\.164334081; they "
                     r"compute 0\.08216704056.*2× that \(= 2, or out width 2\): in the "
                     r"publication, the 1/2 of E is missing", out), out


@pytest.mark.parametrize("old, new, fragment", [
    ('widths = [2, 2, 2]', 'widths = "2,2,2"', "[network] widths must be a list of integers"),
    ('lr = 0.5', '', "[data] lr is missing"),
    ('value = "0.75136507"', 'value = "0.75x"', "out_o1: '0.75x' is not a number"),
    ('b1 = [0.35, 0.35]', 'b1 = [0.35]', "[start] b1 has shape (1,), the network needs 2"),
    ('tensor = "W2"\nentry = [0, 0]', 'tensor = "W9"\nentry = [0, 0]',
     "tensor 'W9' is not one of W1, b1, W2, b2"),
    ('entry = [0, 1]\nvalue = "0.772928465"', 'entry = [0, 2]\nvalue = "0.772928465"',
     "entry [0, 2] is not an index into shape (1, 2)"),
    ('what = "loss"', 'what = "hessian"', "what 'hessian' is not one of"),
    ('[network]', '[networks]', "the [network] table is missing"),
    ('x = [[0.05, 0.10]]', 'x = [[0.05, 0.10, 0.2]]', "data x has shape (1, 3)"),
])
def test_a_bad_example_file_is_one_line(tmp_path, capsys, old, new, fragment):
    path = edited(tmp_path, MAZUR, old, new)
    assert fragment in one_line_error(["check", "--example", str(path)], capsys)


def test_an_example_may_be_json_with_any_data(tmp_path, capsys):
    d = {"title": "a 2-3-1 network with its own data", "network": {
        "widths": [2, 3, 1], "activation": "tanh", "bias": True},
        "start": {"W1": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], "b1": [0.0, 0.1, -0.1],
                  "W2": [[0.7], [-0.8], [0.9]], "b2": [0.05]},
        "data": {"x": [[1.0, 2.0], [-1.0, 0.5]], "y": [[3.0], [-2.0]], "lr": 0.1},
        "published": [{"name": "E", "what": "loss", "value": "0", "tolerance": 1e9}]}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(d))
    outcome = bb.check_example(path, frameworks=["numpy", "torch"])
    E = outcome.results(outcome.example.published[0])
    assert set(E) >= {"numpy", "torch"} and len({round(v, 12) for v in E.values()}) == 1
    assert outcome.passed
    d["published"][0].update(value=repr(E["numpy"]), tolerance=1e-12)
    path.write_text(json.dumps(d))
    assert cli.main(["check", "--example", str(path), "--framework", "numpy,torch"]) == 0


def test_printed_digits_set_the_tolerance():
    assert example_file.digits("0.3135", "f", "v") == pytest.approx(5e-5)
    assert example_file.digits("3.4e-15", "f", "v") == pytest.approx(5e-17)
    assert example_file.digits("199.99998", "f", "v") == pytest.approx(5e-6)
    assert example_file.digits("200", "f", "v") == pytest.approx(0.5)
