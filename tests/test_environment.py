"""Provenance: the environment variables, JAX's compilation cache and the package freeze."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from harness.measure import environment

ROOT = Path(__file__).resolve().parents[1]


def test_only_the_variables_that_change_results_are_recorded():
    env = {"OMP_NUM_THREADS": "2", "MKL_DYNAMIC": "FALSE", "OPENBLAS_VERBOSE": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "TORCHINDUCTOR_CACHE_DIR": "/c",
           "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "0", "KERAS_BACKEND": "jax",
           "PYTHONHASHSEED": "0", "MALLOC_ARENA_MAX": "2", "HOME": "/root", "PATH": "/bin",
           "AWS_SECRET_ACCESS_KEY": "x", "XLA_FLAGS_EXTRA": "no", "MY_OMP_": "no"}
    got = environment.result_variables(env)
    assert set(got) == {"OMP_NUM_THREADS", "MKL_DYNAMIC", "OPENBLAS_VERBOSE", "XLA_FLAGS",
                        "TORCHINDUCTOR_CACHE_DIR", "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES",
                        "KERAS_BACKEND", "PYTHONHASHSEED", "MALLOC_ARENA_MAX"}
    assert list(got) == sorted(got) and got["XLA_FLAGS"] == env["XLA_FLAGS"]


def test_jax_cache_is_off_without_a_cache_folder():
    cache = environment.jax_compilation_cache({})
    assert cache == {"enabled": False, "dir": None, "warm_at_start": None,
                     "min_compile_time_s": None}


def test_jax_cache_is_on_with_a_folder_and_warm_once_it_holds_entries(tmp_path):
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    cold = environment.jax_compilation_cache(env)
    assert cold["enabled"] and cold["dir"] == str(tmp_path) and cold["warm_at_start"] is False
    assert cold["min_compile_time_s"] == "0"
    (tmp_path / "jit_step-abc123").write_bytes(b"x")
    assert environment.jax_compilation_cache(env)["warm_at_start"] is True


def test_jax_cache_switched_off_by_its_variable_is_off(tmp_path):
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path), "JAX_ENABLE_COMPILATION_CACHE": "false"}
    assert environment.jax_compilation_cache(env)["enabled"] is False


def test_a_missing_cache_folder_is_not_warm(tmp_path):
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "absent")}
    assert environment.jax_compilation_cache(env)["warm_at_start"] is False


def test_the_freeze_holds_every_installed_distribution_with_its_version():
    freeze = environment.package_freeze()
    assert freeze["numpy"] == metadata.version("numpy")
    assert freeze["pytest"] == metadata.version("pytest")
    assert list(freeze) == sorted(freeze, key=str.lower)


def test_environment_info_has_variables_cache_and_packages(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    info = environment.environment_info()
    assert info["variables"]["OMP_NUM_THREADS"] == "3"
    assert set(info) == {"variables", "jax_compilation_cache", "packages"}
    assert "numpy" in info["packages"]


def test_recording_the_environment_imports_no_framework():
    code = ("import sys; from harness.measure import environment; environment.environment_info(); "
            "print(sorted({'jax', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_a_package_installed_under_another_distribution_name_has_its_version(monkeypatch):
    from importlib import metadata

    def version(name):
        if name == "tensorflow-cpu":
            return "2.20.0"
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(environment.metadata, "version", version)
    monkeypatch.setattr(environment.metadata, "metadata", lambda name: {"Name": name})
    monkeypatch.setattr(environment, "distributions_of",
                        lambda: {"tensorflow": ["tensorflow-cpu"]})
    assert environment.version_of("tensorflow") == "2.20.0 (tensorflow-cpu)"
    assert environment.version_of("nothing-here") is None


def test_an_untracked_code_file_makes_the_tree_dirty_and_an_untracked_result_does_not(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "implementations").mkdir()
    (tmp_path / "implementations" / "numpy_backprop.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.json").write_text("{}")
    assert environment.commit_info(tmp_path)["dirty"] is False
    (tmp_path / "implementations" / "tf_backprop.py").write_text("x = 2\n")
    assert environment.commit_info(tmp_path)["dirty"] is True
