"""The sweep grid and its up-front budget fitting."""

from __future__ import annotations

import pytest

from harness import cli
from harness.commands import sweep
from harness.measure.timing import TimingConfig
from harness.record import store
from implementations.problem import BenchError


def test_grid_makes_d_d_d_networks_for_every_point():
    grid = sweep.Grid(widths=(1, 8), depths=(2, 3), batches=(4,), dtypes=("float32",))
    problems = grid.problems(0.1, 0)
    assert grid.size() == len(problems) == 4
    assert {p.spec.widths for p in problems} == {(1, 1, 1), (8, 8, 8), (1, 1, 1, 1),
                                                (8, 8, 8, 8)}
    assert all(p.batch == 4 and p.spec.activation == "tanh" for p in problems)


@pytest.mark.parametrize("field", ["widths", "depths", "batches", "dtypes"])
def test_an_empty_grid_is_an_error(field):
    with pytest.raises(BenchError, match="empty grid"):
        sweep.Grid(**{field: ()})


def test_thin_keeps_both_ends():
    assert sweep.thin((1, 2, 4, 8, 16, 32)) == (1, 4, 16, 32)
    assert sweep.thin((1, 2)) == (1, 2)


def fake_estimate(grid, timing):
    return len(grid.widths) * (1 + timing.budget_s)


def test_a_plan_within_budget_is_left_alone():
    grid = sweep.Grid(widths=(1, 2, 4))
    g, t, msg = sweep.fit_budget(grid, TimingConfig(), 100.0, fake_estimate)
    assert (g, t, msg) == (grid, TimingConfig(), None)


def test_the_budget_cuts_repetitions_first_then_widths_and_says_so():
    grid = sweep.Grid(widths=tuple(2**i for i in range(12)))  # 12 × 2 s = 24 s
    g, t, msg = sweep.fit_budget(grid, TimingConfig(), 16.0, fake_estimate)
    assert t.budget_s == 0.25 and g.widths == grid.widths  # 12 × 1.25 = 15 s: fits
    assert "time per case cut to 0.25 s" in msg and "fits" in msg
    g, t, msg = sweep.fit_budget(grid, TimingConfig(), 8.0, fake_estimate)
    assert len(g.widths) < 12 and g.widths[0] == 1 and g.widths[-1] == 2048
    assert "widths thinned to" in msg


def test_a_negative_budget_is_an_error():
    with pytest.raises(BenchError, match="positive"):
        sweep.fit_budget(sweep.Grid(), TimingConfig(), -5.0, fake_estimate)


@pytest.mark.parametrize(
    "args, message",
    [(["--budget", "-1"], "must be a finite number above 0"),
     (["--sizes", ""], "empty grid"),
     (["--depths", "100000000"], "over the limit of 1000"),
     (["--widths", "a,b"], "expected comma-separated integers"),
     (["--variants", "limit"], "cannot run any point")],
)
def test_bad_sweep_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert cli.main(["sweep", *args, "--out", str(tmp_path / "s.json"), "--no-peak"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "s.json").exists()


def test_a_small_sweep_writes_results_with_the_limit_ceiling(tmp_path):
    out = tmp_path / "s.json"
    code = cli.main(["sweep", "--widths", "1,2", "--variants", "numpy", "--time-per-case",
                     "0.05", "--no-peak", "--out", str(out)])
    assert code == 0
    run = store.read_run(out)
    assert run.command == "sweep" and run.config.grid["widths"] == [1, 2]
    assert {c.variant for c in run.cases} == {"numpy", "limit"}
    assert all(c.ok for c in run.cases)


def test_the_old_widths_flag_still_works_with_a_note(tmp_path, capsys):
    assert cli.main(["sweep", "--widths", "", "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "sweep --widths is now --sizes" in err and "empty grid" in err
