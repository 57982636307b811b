"""Shared fixtures: the contract frameworks that import here, and the CUDA skip marker."""

from __future__ import annotations

import functools
import signal

import pytest

from implementations import registry
from implementations.problem import NetworkSpec, make_problem

CONTRACT_FRAMEWORKS = [name for name, f in registry.FRAMEWORKS.items() if f.gradients]


@functools.cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def ctrl_c_reaches_the_runs_we_start():
    """A shell that starts pytest in the background (`make test &`, a CI step run with `&`)
    leaves SIGINT ignored, and a library that saves and later restores the handler puts that
    back; an ignored SIGINT stays ignored in every process started from here, and the tests
    that press Ctrl-C on a run would wait for nothing. Each test starts with Python's own
    handler, which its child processes turn back into the default (exec resets handlers)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (cold compiles of a minute or more)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped without a CUDA device, and those marked ``slow``
    without --slow (see pyproject's markers)."""
    slow = config.getoption("--slow")
    for item in items:
        if "gpu" in item.keywords and not cuda_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow: a cold compile of a minute or "
                                                    "more; run with --slow"))


def import_or_skip(framework: str):
    """The framework's implementation module, or skip the test with the registry's reason."""
    try:
        return registry.import_module(framework)
    except registry.Unavailable as exc:
        pytest.skip(str(exc))


def available_modules(names=CONTRACT_FRAMEWORKS) -> dict:
    """The contract modules among ``names`` that import here, by framework name."""
    modules = {}
    for name in names:
        try:
            modules[name] = registry.import_module(name)
        except registry.Unavailable:
            pass
    return modules


@pytest.fixture(params=CONTRACT_FRAMEWORKS)
def framework(request) -> tuple[str, object]:
    """(name, module) for each contract framework: python, numpy, torch, jax; skipped if absent."""
    return request.param, import_or_skip(request.param)


@pytest.fixture
def contract_modules() -> dict:
    """Every contract framework that imports here, by name."""
    return available_modules()


@pytest.fixture(params=["float32", "float64"])
def dtype(request) -> str:
    return request.param


@pytest.fixture
def worked_example(dtype):
    """The default problem (the worked example: 1-1-1 linear, X=1 -> Y=-1) in ``dtype``."""
    return make_problem(NetworkSpec(dtype=dtype))
