"""A learner's file under ``check --impl``: it never touches the judge, its mistakes are named,
and where it gives its intermediates, the first one that is wrong.

The hostile files run as the README shows (``check --impl FILE``), in the child process the
check gives every learner. The catalogue of mistakes runs the same child-side code
(``learner.answer``) in this process, then the same judge, to keep the tests quick: the
isolation itself is what the hostile files test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers_check import results

from harness import cli
from harness.check import learner
from harness.check.evidence import problem_json
from harness.check.judge import judge_evidence
from harness.check.render import render
from harness.check.report import Report, label
from harness.commands import plans

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "learner_backprop.py").read_text()
REFERENCE = "backprop-bench's reference"


# ---- hostile files: the judge is never fooled ---------------------------------------------

GRADS = "def grads(params, x, y):\n"
HOSTILE = {
    "zeroes-the-weights": ("import numpy as np\n" + GRADS + "    for W, b in params:\n"
                           "        W[...] = 0\n    x[...] = 0\n    y[...] = 0\n"
                           "    return 0.0, [(np.zeros_like(W), None) for W, b in params]\n",
                           r"hostile\.py: W1's gradient is zero"),
    "exits-0-at-import": ("import os\nos._exit(0)\n" + GRADS + "    pass\n",
                          r"grads: importing the file: its process exited with status 0"),
    "exits-0-in-grads": ("import os\n" + GRADS + "    os._exit(0)\n",
                         r"grads: its process exited with status 0 .*os\._exit"),
    "exits-3-in-grads": ("import os\n" + GRADS + "    os._exit(3)\n",
                         r"grads: its process exited with status 3"),
    "kills-itself": ("import os\n" + GRADS + "    os.kill(os.getpid(), 9)\n",
                     r"grads: its process was killed by SIGKILL"),
    "loops-at-import": ("while True:\n    pass\n" + GRADS + "    pass\n",
                        r"grads: importing the file: timed out: did not finish within 2 s"),
    "loops-in-grads": (GRADS + "    while True:\n        pass\n",
                       r"grads: timed out: did not finish within 2 s .*\(hostile\.py:[23]\)"),
    "sys-exit-at-import": ("import sys\nsys.exit(0)\n" + GRADS + "    pass\n",
                           r"grads: importing the file: exited: sys\.exit\(0\)"),
    "raises-keyboard-interrupt": (GRADS + "    raise KeyboardInterrupt\n",
                                  r"grads: interrupted: KeyboardInterrupt raised in hostile\.py"),
    "patches-numpy": ("import numpy as np\nnp.tanh = lambda a: 0 * a\nnp.einsum = None\n"
                      + GRADS + "    return 0.0, [(0 * W, None) for W, b in params]\n",
                      r"hostile\.py: W1's gradient is zero"),
    "returns-an-array-for-E": ("import numpy as np\n" + GRADS + "    return np.array([0.5460125,"
                               " 999, -5]), [(0 * W, None) for W, b in params]\n",
                               r"grads: returned E as an array of shape \(3,\): E must be one"),
    "returns-a-complex-E": (GRADS + "    return complex(0.5460125, 1), [(W, None) for W, b in "
                            "params]\n", r"grads: returned a complex E"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_learner_fails_alone_and_the_references_and_numpy_stand(
        tmp_path, capsys, name):
    source, said = HOSTILE[name]
    path = tmp_path / "hostile.py"
    path.write_text(source)
    code = cli.main(["check", "--impl", str(path), "--framework", "numpy", "--timeout", "2",
                     "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 1, out
    got = results(out)
    assert got["hostile.py"] == {"FAIL"} and got["numpy"] == {"ok"}, got
    assert REFERENCE not in out  # the references were computed from numbers of their own
    verdict = out.split("\nFAILED: ", 1)[1]
    assert verdict.splitlines()[0] == "hostile.py"
    assert re.search(said, verdict), verdict


def test_an_in_place_update_of_the_learners_own_copies_is_right(tmp_path, capsys):
    path = tmp_path / "inplace.py"
    path.write_text(EXAMPLE.replace(
        "    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]",
        "    for (W, b), (gW, gb) in zip(params, g):\n        W -= lr * gW\n        b -= lr * gb\n"
        "    return params"))
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 0, (
        capsys.readouterr().out)


@pytest.mark.parametrize("argv, said", [
    (["--example", "examples/worked-example.toml"], "--impl and --example are two checks"),
    (["--workers", "2"], "--workers checks the data-parallel variants"),
])
def test_an_option_impl_cannot_honour_is_refused_in_one_line(capsys, argv, said):
    assert cli.main(["check", "--impl", "examples/learner_backprop.py", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0]


@pytest.mark.parametrize("flag", [["--widths", "2,2,2"], ["--dtype", "float32"],
                                  ["--steps", "5"], ["--activation", "tanh"], ["--batch", "3"]])
def test_an_option_example_cannot_honour_is_refused_in_one_line(capsys, flag):
    assert cli.main(["check", "--example", "examples/worked-example.toml", *flag]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--example brings its own network" in err[0] and flag[0] in err[0]


def test_the_learners_declarations_are_read_without_running_it(tmp_path):
    path = tmp_path / "declared.py"
    path.write_text("raise SystemExit('never run here')\nACTIVATION, BIAS = 'relu', True\n"
                    "OUTPUT_ACTIVATION = 'sigmoid'\nFRAMEWORK = 'torch'\n" + GRADS + "    pass\n")
    file = learner.read_learner(path)
    assert (file.activation, file.bias, file.output_activation, file.framework) == (
        "relu", True, "sigmoid", "torch")


@pytest.mark.parametrize("source, said", [
    ("ACTIVATION = 'ge' + 'lu'\n" + GRADS + "    pass\n", "ACTIVATION must be a literal"),
    ("FRAMEWORK = 'numpyy'\n" + GRADS + "    pass\n", "FRAMEWORK = 'numpyy' is not one of"),
    ("\0", "bad.py"),
    (GRADS + "    pass\nsgd_step = 3\n", "sgd_step is not a function"),
])
def test_a_bad_declaration_is_one_line(tmp_path, capsys, source, said):
    path = tmp_path / "bad.py"
    path.write_text(source)
    assert cli.main(["check", "--impl", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err


def test_a_directory_is_not_a_learner(tmp_path, capsys):
    assert cli.main(["check", "--impl", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err


# ---- the catalogue: each classic mistake, and what the check says of it -------------------------

def mistake(old: str, new: str, *more: tuple[str, str]) -> str:
    text = EXAMPLE.replace('"""\nimport numpy as np', '"""\nimport numpy as np\n\nTOTAL = []', 1)
    for a, b in ((old, new), *more):
        assert a in text, a
        text = text.replace(a, b)
    return text


NO_TRACE = ("def trace(params, x, y):", "def intermediates(params, x, y):"), (
    "    layers = trace(params, x, y)", "    layers = intermediates(params, x, y)")
ACCUMULATE = ("    _, g = grads(params, x, y)\n", "    _, g = grads(params, x, y)\n"
              "    if not TOTAL:\n        TOTAL.extend([0 * gW, 0 * gb] for gW, gb in g)\n"
              "    for t, (gW, gb) in zip(TOTAL, g):\n        t[0] = t[0] + gW\n"
              "        t[1] = t[1] + gb\n    g = TOTAL\n")
SEQUENTIAL = ("def sgd_step(params, x, y, lr):\n    _, g = grads(params, x, y)\n"
              "    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]",
              "def sgd_step(params, x, y, lr):\n    layers = intermediates(params, x, y)\n"
              "    params = [(W.copy(), b.copy()) for W, b in params]\n"
              "    d = (layers[-1]['h'] - y) / len(x)\n"
              "    for i in reversed(range(len(params))):\n"
              "        if i < len(params) - 1:\n            d = d * (1 - layers[i]['h'] ** 2)\n"
              "        W, b = params[i]\n        below = layers[i - 1]['h'] if i else x\n"
              "        W -= lr * below.T @ d\n        b -= lr * d.sum(axis=0)\n"
              "        d = d @ W.T  # through the weights just updated\n    return params")

MISTAKES = {  # name: (the file, what the verdict says of it)
    "the 1/batch dropped": (mistake("d = (h - y) / len(x)", "d = h - y", *NO_TRACE),
                            r"every gradient is 5\.00× the reference \(= batch 5\): the mean "
                            r"over the batch lacks its 1/batch"),
    "the square's 2 not cancelled": (mistake("d = (h - y) / len(x)", "d = 2 * (h - y) / len(x)",
                                             *NO_TRACE), r"2\.00× .*\(= 2\): the 1/2 of E is "
                                                         r"missing from the gradient"),
    "the sign flipped": (mistake("d = (h - y) / len(x)", "d = (y - h) / len(x)", *NO_TRACE),
                         r"-1\.00× .*: the sign is flipped"),
    "a mean over the outputs too": (mistake("d = (h - y) / len(x)", "d = (h - y) / y.size",
                                            *NO_TRACE), r"0\.33× .*\(= 1/out width 3\): the loss "
                                                        r"is averaged over the outputs"),
    "E without its 1/2": (mistake("    return 0.5 * np.sum", "    return np.sum", *NO_TRACE),
                          r"the gradients are right but E is 2\.00× the reference loss \(= 2\): "
                          r"E lacks its 1/2"),
    "W where W^T belongs": (mistake("d = d @ params[i][0].T", "d = d @ params[i][0]", *NO_TRACE),
                            r"the shapes do not fit"),
    "a reshape where the transpose belongs": (
        mistake("d = d @ params[i][0].T", "d = d @ params[i][0].reshape(params[i][0].shape[::-1])",
                *NO_TRACE), r"dE/dh is carried down through W\.reshape\(fan_out, fan_in\) where "
                            r"Wᵀ belongs \(W2, W3\)"),
    "tanh' missing": (mistake('d = d * (1 - layers[i]["h"] ** 2)', "d = d", *NO_TRACE),
                      r"the derivative of tanh is missing from the backward pass"),
    "tanh' taken at h": (mistake('d = d * (1 - layers[i]["h"] ** 2)',
                                 'd = d * (1 - np.tanh(layers[i]["h"]) ** 2)', *NO_TRACE),
                         r"tanh' is evaluated at h = tanh\(a\) instead of at a"),
    "1 - h for tanh'": (mistake('d = d * (1 - layers[i]["h"] ** 2)', 'd = d * (1 - layers[i]["h"])',
                                *NO_TRACE), r"1 - h is used where tanh' = 1 - h² belongs"),
    "tanh' at the linear output too": (
        mistake("        if i < len(params) - 1:\n            d = d * (1", "        if True:\n"
                "            d = d * (1", *NO_TRACE),
        r"tanh' is also applied at the output layer, whose activation is linear"),
    "the net input for the layer input": (
        mistake('below = layers[i - 1]["h"] if i', 'below = layers[i - 1]["a"] if i', *NO_TRACE),
        r"dE/dW uses each layer's net input a where its output h = phi\(a\) belongs"),
    "the bias gradient a mean": (mistake("db=d.sum(axis=0)", "db=d.mean(axis=0)", *NO_TRACE),
                                 r"b1, b2, b3 are 0\.20× the reference \(= 1/batch 5\)"),
    "a layer's gradient left at zero": (mistake("dW=below.T @ d", "dW=(below.T @ d) * (i > 0)",
                                                *NO_TRACE), r"W1's gradient is zero"),
    "a transposed gradient": (mistake("dW=below.T @ d", "dW=d.T @ below", *NO_TRACE),
                              r"W1's gradient is transposed: shape \(4, 3\), W1 is \(3, 4\)"),
    "the learning rate twice": (mistake("(W - lr * gW, b - lr * gb)",
                                        "(W - lr * lr * gW, b - lr * lr * gb)", *NO_TRACE),
                                r"every step is 0\.056× the reference step \(= lr 0\.056\).*: the "
                                r"learning rate is applied twice"),
    "the update climbs": (mistake("(W - lr * gW, b - lr * gb)", "(W + lr * gW, b + lr * gb)",
                                  *NO_TRACE), r"every step is -1\.00× .*: the sign is flipped"),
    "the bias never updated": (mistake("(W - lr * gW, b - lr * gb)", "(W - lr * gW, b)",
                                       *NO_TRACE), r"b1, b2, b3 never moved from the start"),
    "gradients summed over the steps": (mistake(*ACCUMULATE, *NO_TRACE),
                                        r"the gradients accumulate from step to step: each step "
                                        r"adds its gradient to those of the steps before \(a sum "
                                        r"that is never reset"),
    "each layer updated during the backward pass": (
        mistake(*NO_TRACE[0], NO_TRACE[1], SEQUENTIAL),
        r"each layer is updated during the backward pass, before dE/dh is carried down"),
}


def learner_check(tmp_path: Path, source: str, steps: int = 100) -> tuple[Report, list]:
    """The learner's pieces (``learner.answer``, as in its child) and the judge, here."""
    path = tmp_path / "mine.py"
    path.write_text(source)
    file = learner.read_learner(path)
    problems = plans.check_problems(plans.Networks(), file.activation, file.bias,
                                    file.output_activation)
    answers: list[dict] = []
    learner.answer(str(path), file.framework, [problem_json(p) for p in problems], steps,
                   lambda piece: None, answers.append)
    evidence = learner.evidence_of(file, answers, None, None, problems, steps)
    report = Report()
    for p in problems:
        judge_evidence(p, [e for e in evidence if e.problem == label(p)], report)
    return report, problems


@pytest.mark.parametrize("name", list(MISTAKES))
def test_each_classic_mistake_is_caught_and_named(tmp_path, name):
    source, said = MISTAKES[name]
    report, problems = learner_check(tmp_path, source)
    assert not report.passed
    verdict = render(report, problems).split("\nFAILED: ", 1)[1]
    assert verdict.splitlines()[0] == "mine.py"
    assert re.search(said, verdict), verdict
    assert "no known bug class fits" not in verdict and "of no known cause" not in verdict


def test_with_its_trace_a_learner_is_told_the_first_quantity_that_is_wrong(tmp_path):
    source = EXAMPLE.replace('below = layers[i - 1]["h"] if i', 'below = layers[i - 1]["a"] if i')
    report, problems = learner_check(tmp_path, source, steps=0)
    verdict = render(report, problems, 0)
    assert re.search(r"mine\.py: δ₃ is right; ∂E/∂W₃ is not: the chain rule gives ∂E/∂W₃ = h₂ᵀ "
                     r"δ₃ \(-?\d\.\d+ at \[\d, \d\]\), you computed a₂ᵀ δ₃ \(-?\d\.\d+\): the net "
                     r"input where the output h₂ belongs", verdict), verdict


def test_without_its_trace_a_learner_is_told_the_first_wrong_layer_from_the_top(tmp_path):
    source = mistake('d = d * (1 - layers[i]["h"] ** 2)',
                     'd = d * (1 - layers[i]["h"] ** 2) * (1 + layers[i]["a"] ** 4)', *NO_TRACE)
    report, problems = learner_check(tmp_path, source, steps=0)
    verdict = render(report, problems, 0)
    assert "where: the layers above layer 2 are right; layer 2's gradients (W2, b2) are the " \
           "first wrong ones from the top: look at δ₂ = (δ₃ W₃ᵀ) ⊙ tanh′(a₂)" in verdict, verdict


def test_a_right_bias_gradient_of_shape_1_by_n_passes(tmp_path):
    report, _ = learner_check(tmp_path, EXAMPLE.replace("db=d.sum(axis=0)",
                                                        "db=d.sum(axis=0, keepdims=True)"))
    assert report.passed, report.failures()


@pytest.mark.parametrize("template", ["learner_torch.py", "learner_torch_function.py",
                                      "learner_jax.py"])
def test_the_torch_and_jax_templates_pass(capsys, template):
    framework = "torch" if "torch" in template else "jax"
    pytest.importorskip(framework)
    path = ROOT / "examples" / template
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 0, (
        capsys.readouterr().out)


def test_a_torch_learners_mistake_is_named_in_its_own_terms(tmp_path, capsys):
    pytest.importorskip("torch")
    text = (ROOT / "examples" / "learner_torch.py").read_text()
    path = tmp_path / "torchy.py"
    path.write_text(text.replace("d = d * (1 - hs[i + 1] ** 2)", "d = d"))
    assert cli.main(["check", "--impl", str(path), "--framework", "numpy"]) == 1
    assert "torchy.py: the derivative of tanh is missing" in capsys.readouterr().out
