"""Results files on disk: claims and locks, atomic writes, validated loads."""

from __future__ import annotations

import copy
import json
import os
import stat

import helpers_results as h
import pytest

from harness.record import store
from harness.record.results import ResultsError


def test_write_then_load_round_trips(tmp_path):
    path = tmp_path / "r.json"
    store.write(h.run_file(), path)
    assert store.read_run(path) == h.run_file()


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "r.json"
    run = h.run_file()
    written = copy.deepcopy(run)  # (a second h.run_file() may be stamped a second later)
    store.write(run, path)
    run.cases[0].timing.samples_s[0] = float("nan")  # not valid JSON: the write must fail
    with pytest.raises(ValueError):
        store.write(run, path)
    assert store.read_run(path) == written  # the old file is intact
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_results_file_is_readable_by_others(tmp_path):
    path = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        store.write(h.run_file(), path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"schema": "something else"}), "not a backprop-bench results file"),
])
def test_bad_files_give_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultsError) as err:
        store.read_run(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_fifo_is_not_read(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    store.write(h.run_file(), tmp_path / "good.json")
    assert store.find_files([str(tmp_path)]) == [tmp_path / "good.json"]
    with pytest.raises(ResultsError, match="not a regular file"):
        store.read_run(fifo)


def test_load_many_keeps_good_files_and_reports_bad_ones(tmp_path):
    store.write(h.run_file(), tmp_path / "good.json")
    (tmp_path / "bad.json").write_text("[]")
    good, problems = store.read_runs([str(tmp_path)])
    assert [p.name for p, _ in good] == ["good.json"]
    assert len(problems) == 1 and "bad.json" in problems[0]


def test_claim_refuses_a_path_it_cannot_write(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ResultsError, match="cannot write results"):
        store.claim(blocker / "sub" / "r.json")
    with pytest.raises(ResultsError, match="is a directory"):
        store.claim(tmp_path)


def test_an_existing_results_file_is_never_overwritten_without_force(tmp_path):
    path = tmp_path / "r.json"
    store.write(h.run_file(), path)
    with pytest.raises(ResultsError, match="already exists"):
        store.claim(path)
    assert store.claim(path, force=True) == path
    store.release(path)


def test_a_path_claimed_by_a_live_run_is_refused_even_with_force(tmp_path):
    path = tmp_path / "r.json"
    store.lock_path(path).write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(ResultsError, match="being written by another run"):
        store.claim(path, force=True)


def test_a_stale_lock_is_taken_over(tmp_path):
    path = tmp_path / "r.json"
    store.lock_path(path).write_text("999999999")
    assert store.claim(path) == path
    store.release(path)
    assert not store.lock_path(path).exists()


def test_default_names_do_not_collide_within_a_second(tmp_path):
    a = store.claim_default("run", "cpu", "host/x", tmp_path)
    b = store.claim_default("run", "cpu", "host/x", tmp_path)
    assert a != b and a.name.startswith("run-cpu-host-x-") and b.name.endswith("-2.json")
    store.release(a)
    store.release(b)


def test_a_lock_whose_pid_was_reused_is_stale(tmp_path):
    path = tmp_path / "r.json"
    store.lock_path(path).write_text("1 0")  # pid 1 is alive, but did not start at tick 0
    assert store.holder(store.lock_path(path)) is None
    assert store.claim(path) == path
    store.release(path)


def test_a_lock_held_by_a_live_run_is_named_in_the_refusal(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "r.json"
    store.claim(path)
    try:
        done = subprocess.run([sys.executable, "-c", "import pathlib; from harness.record import "
                               f"store; store.claim(pathlib.Path({str(path)!r}))"],
                              capture_output=True, text=True)
        assert done.returncode != 0 and str(store.lock_path(path)) in done.stderr
    finally:
        store.release(path)
