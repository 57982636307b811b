"""torch-loop's compiled package: one that cannot be loaded is built again, once, and named."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from implementations import registry, torch_compiled  # noqa: E402
from implementations.problem import make_problem  # noqa: E402


class Loaded:
    class loader:
        @staticmethod
        def run(args):
            return args[2:4]  # the leaves as they came: nothing is trained here


def test_a_package_that_cannot_be_loaded_is_built_again_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    loads, builds = [], []

    def load(p):
        loads.append(p)
        if len(loads) == 1:
            raise RuntimeError("Failed to initialize zip archive")
        return Loaded()

    monkeypatch.setattr(torch_compiled.torch._inductor, "aoti_load_package", load)
    monkeypatch.setattr(torch_compiled, "build_package", lambda m, ex, p: builds.append(p))
    monkeypatch.setattr(torch_compiled, "step_graph", lambda net, example: None)
    problem = make_problem()  # the package's name hashes the source the fakes replaced
    path = torch_compiled.package_path(torch_compiled.loop_key(problem.spec, problem.batch))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip archive")
    trainer = registry.get("torch-loop").make(problem)
    trainer.run(3)
    assert builds == [path] and len(loads) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "building it again" in err


def test_a_package_that_still_cannot_be_loaded_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))

    def load(p):
        raise RuntimeError("Failed to initialize zip archive")

    monkeypatch.setattr(torch_compiled.torch._inductor, "aoti_load_package", load)
    monkeypatch.setattr(torch_compiled, "build_package", lambda m, ex, p: None)
    monkeypatch.setattr(torch_compiled, "step_graph", lambda net, example: None)
    trainer = registry.get("torch-loop").make(make_problem())
    with pytest.raises(RuntimeError, match="just built, cannot be loaded"):
        trainer.run(1)
