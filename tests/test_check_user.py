"""harness.check.learner and .example: a learner's own backward pass, and published worked
examples, checked like any framework (``check --impl``, ``check --example``, the API)."""

from __future__ import annotations

import json
import os
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
    path = buggy_learner(tmp_path, "d = (h - y) / len(x)", "d = h - y")
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
    assert re.search(r"mine\.py: grads: crashed: ValueError: .*\(mine\.py:\d+\)", out)
    assert "the shapes do not fit" in out


def test_a_learner_returning_wrong_shapes_is_named(tmp_path, capsys):
    path = buggy_learner(tmp_path, "dW=below.T @ d", "dW=d.T @ below")
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
    report = bb.check_impl(buggy_learner(tmp_path, "d = (h - y) / len(x)", "d = h - y"),
                           frameworks=[])
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
    assert "shared bias, frozen b1, b2" in out  # as the post: one bias a layer, never trained
    assert re.search(r"^w5\+\s+weight after 1\s+0\.35891648\s.*\sok$", out, re.M)
    assert re.search(r"^out_h1\s+activation of layer 1\s+0\.593269992\s.*\sok$", out, re.M)
    assert re.search(r"^dE_o1/dnet_o1 \(delta_o1\)\s+delta of layer 2\s+0\.138498562\s.*\sok$",
                     out, re.M)
    rows = [line for line in out.splitlines() if re.search(r"\s(ok|FAIL|erratum)$", line)]
    assert len(rows) == 21 and sum(line.endswith("ok") for line in rows) == 20
    assert "erratum: E_total after the first round = 0.291027924: the described algorithm" in out
    assert "PASSED: every subject reproduces all 20 published values (1 errata noted)" in out


@pytest.mark.parametrize("name, values", [("hmkcode-2018.toml", 20), ("schiendorfer-2020.toml", 30),
                                          ("quantlet-osterrieder.toml", 8)])
def test_each_shipped_example_is_reproduced(capsys, name, values):
    assert cli.main(["check", "--example", str(ROOT / "examples" / name), "--framework",
                     "numpy,torch,jax"]) == 0, capsys.readouterr().out
    assert f"reproduces all {values} published values" in capsys.readouterr().out


def edited(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, old
    path = tmp_path / source.name
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, said", [
    ('value = "0.082167041"', 'value = "0.164334082"',  # twice: a convention
     r"dE_total/dw5: no framework reproduces the published 0\.164334082; they compute "
     r"0\.08216704056, and the published value is 2\.00× that \(= 2, or out width 2\): in "
     r"the publication, its E has no 1/2 \(half = false in the file's \[loss\]\)"),
    ('value = "0.082167041"', 'value = "0.082167042"',  # the last digit: a rounded value
     r"dE_total/dw5: .*0\.082167041 to the digits printed: the last digit is off by one"),
    ('value = "0.082167041"', 'value = "0.082176041"',  # a misprint: two digits swapped
     r"dE_total/dw5: .*0\.082167041 to the digits printed: a misprint \(printed 0\.082176041 "
     r"where the calculation gives 0\.082167041"),
    ('value = "0.082167041"', 'value = "0.08228"',  # 0.14% off: a rounded intermediate
     r"dE_total/dw5: .*1\.001× that: a rounded intermediate value carried forward"),
    ('value = "0.082167041"', 'value = "-0.082167041"',  # the sign
     r"dE_total/dw5: .*-1\.00× that \(= -1\): in the publication, a sign convention"),
    ('value = "0.082167041"', 'value = "0.041083521"',  # 1/2, or 1/out width 2
     r"dE_total/dw5: .*0\.50× that \(= 1/2, or 1/out width 2\): in the publication, its E "
     r"has a 1/2 more"),
])
def test_a_published_value_no_framework_reproduces_is_pinned_on_the_source(
        tmp_path, capsys, old, new, said):
    path = edited(tmp_path, MAZUR, old, new)
    assert cli.main(["check", "--example", str(path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert re.search(said, out), out[-1500:]


PUBLISHED = '[[published]]\nname = "E_total"\nwhat = "loss"\n'


@pytest.mark.parametrize("old, new, fragment", [
    ('widths = [2, 2, 2]', 'widths = "2,2,2"', "[network] widths must be a list of integers"),
    ('lr = 0.5', '', "[data] lr is missing"),
    ('lr = 0.5', 'lr = true', "[data] lr must be a number, not True"),
    ('value = "0.75136507"', 'value = "0.75x"', "out_o1: '0.75x' is not a number"),
    ('value = "0.75136507"', 'value = "1e400"', "out_o1: '1e400' is out of the range of a float"),
    ('b1 = 0.35', 'b1 = [0.35, 0.35]', "[start] b1 is one number: the bias is shared"),
    ('W1 = [[0.15, 0.25], [0.20, 0.30]]', 'W1 = [[true, 0.25], [0.20, 0.30]]',
     "[start] W1 holds True, not a number"),
    ('tensor = "W2"\nentry = [0, 0]', 'tensor = "W9"\nentry = [0, 0]',
     "tensor 'W9' is not one of W1, b1, W2, b2"),
    ('entry = [0, 1]\nvalue = "0.772928465"', 'entry = [0, 2]\nvalue = "0.772928465"',
     "entry [0, 2] is not an index into shape (1, 2)"),
    ('entry = [0, 1]\nvalue = "0.772928465"', 'entri = [0, 1]\nvalue = "0.772928465"',
     "out_o2: entri is not a key of the format"),
    ('what = "loss"\nvalue = "0.298371109"', 'what = "hessian"\nvalue = "0.298371109"',
     "what 'hessian' is not one of"),
    ('[network]', '[networks]', "networks is not a key of the format"),
    ('bias = "shared"', 'bias = "shared"\nshared_bias = true',
     "[network] shared_bias is not a key of the format"),
    ('bias = "shared"', 'bias = "shared"\nfrozen_bias = true',
     "[network] frozen_bias is not a key of the format"),
    ('[loss]\nhalf = true', '[loss]\nhalf = true\nloss = "sum, no 1/2"',
     "[loss] loss is not a key of the format"),
    ('half = true', 'half = "no"', "[loss] half must be true or false"),
    ('outputs = "sum"', 'outputs = "median"', "[loss] outputs 'median' is not one of"),
    ('frozen = ["b1", "b2"]', 'frozen = ["b3"]', "[network] frozen must list tensors"),
    ('x = [[0.05, 0.10]]', 'x = [[0.05, 0.10, 0.2]]', "[data] x has shape (1, 3)"),
    ('value = "0.298371109"', 'value = "0.298371109"\ntolerance = inf', "tolerance must be a"),
    ('value = "0.298371109"', 'value = "0.298371109"\ntolerance = nan', "tolerance must be a"),
    ('value = "0.298371109"', 'value = "0.298371109"\ntolerance = -1', "tolerance must be a"),
    ('value = "0.298371109"', 'value = "0.298371109"\nlayer = 1',
     "layer does not apply to a loss value"),
    ('name = "E_total"', 'name = "E\\ntotal"', "name must be one line of printable text"),
    ('widths = [2, 2, 2]', 'widths = [2, 200, 2]', "at most 64 units"),
    ('what = "net_input"\nlayer = 1', 'what = "net_input"\nlayer = 3', "layer must be 1 to 2"),
    ('tensor = "W2"\nentry = [0, 0]\nvalue = "0.082167041"', 'tensor = "W2"\n'
     'value = "0.082167041"', "entry is missing: which of the 2×2 numbers is it?"),
])
def test_a_bad_example_file_is_one_line(tmp_path, capsys, old, new, fragment):
    path = edited(tmp_path, MAZUR, old, new)
    assert fragment in one_line_error(["check", "--example", str(path)], capsys)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.write_bytes(b"title = 'x'\0"), "holds a NUL byte"),
    (lambda p: p.write_text("a = " + "[" * 100_000 + "]" * 100_000), "nested too deep"),
])
def test_a_file_that_is_no_example_is_one_line(tmp_path, capsys, make, fragment):
    path = tmp_path / "odd.toml"
    make(path)
    assert fragment in one_line_error(["check", "--example", str(path)], capsys)


def test_a_json_example_with_unknown_keys_or_constants_is_one_line(tmp_path, capsys):
    path = tmp_path / "odd.json"
    path.write_text('{"title": "x", "network": {"widths": [1, 1, 1]}, "start": {}, "data": {},'
                    ' "published": [], "extra": NaN}')
    assert "NaN is not a number a publication prints" in one_line_error(
        ["check", "--example", str(path)], capsys)


def test_an_example_that_differentiates_the_output_itself(tmp_path, capsys):
    d = {"title": "d y_hat / d w", "network": {"widths": [1, 1, 1], "activation": "sigmoid",
                                               "output_activation": "sigmoid"},
         "start": {"W1": [[0.5]], "W2": [[0.8]]}, "data": {"x": [[2.0]], "y": [[1.0]],
                                                            "lr": 0.1},
         "loss": {"of": "output", "output": 0},
         "published": [{"name": "dy/dw2", "what": "gradient", "tensor": "W2", "value": "0.17"},
                       {"name": "dy/da2", "what": "delta", "layer": 2, "value": "0.23"}]}
    path = tmp_path / "output.json"
    path.write_text(json.dumps(d))
    assert cli.main(["check", "--example", str(path), "--framework", "numpy,torch"]) == 0, (
        capsys.readouterr().out)
    d["published"].append({"name": "w2 after", "what": "weight", "tensor": "W2", "after": 1,
                           "value": "0.8"})
    path.write_text(json.dumps(d))
    assert "has no loss and takes no step" in one_line_error(["check", "--example", str(path)],
                                                             capsys)


def test_explain_writes_out_the_worked_example_by_hand(capsys):
    assert cli.main(["explain"]) == 0
    out = capsys.readouterr().out
    for line in ("a₁ = x W₁ = 1 × 0.15 = 0.15", "ŷ = h₂ = a₂ = 0.045",
                 "E = ½ · (0.045 − (−1))² = 0.5460125", "δ₂ = (ŷ − y) = (0.045 − (−1)) = 1.045",
                 "∂E/∂W₂ = h₁ δ₂ = 0.15 × 1.045 = 0.15675", "δ₁ = δ₂ W₂ = 1.045 × 0.3 = 0.3135",
                 "W₁ ← W₁ − η ∂E/∂W₁ = 0.15 − 0.1 × 0.3135 = 0.11865",
                 "W₂ ← W₂ − η ∂E/∂W₂ = 0.3 − 0.1 × 0.15675 = 0.284325"):
        assert line in out, line


def test_explain_of_a_published_example_keeps_its_conventions(capsys):
    assert cli.main(["explain", "--example", str(MAZUR)]) == 0
    out = capsys.readouterr().out
    assert "W₂[0, 0] ← W₂[0, 0] − η ∂E/∂W₂[0, 0] = 0.4 − 0.5 × 0.08216704056 = 0.3589164797" in out
    assert "b₁ is frozen: the step leaves it as it is" in out
    assert cli.main(["explain", "--example", str(ROOT / "examples" / "quantlet-osterrieder.toml")
                     ]) == 0
    assert "as the publication writes it (E = (1/B) Σ_batch ‖ŷ − y‖²): 2 × 0.06401689448 = " \
           "0.128033789" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["--widths", "8,8,8"], "widths up to 6 and a batch of at most 4"),
    (["--widths", "2,2,2", "--batch", "9"], "widths up to 6 and a batch of at most 4"),
    (["--dtype", "float32"], "explain works in float64"),
    (["--example", "examples/worked-example.toml", "--batch", "2"], "--example brings its own"),
])
def test_explain_refuses_what_it_cannot_write_out_in_one_line(capsys, argv, fragment):
    assert fragment in one_line_error(["explain", *argv], capsys)


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
