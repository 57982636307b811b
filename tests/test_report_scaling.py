"""The report's scaling section, on a synthetic `scale` file whose times follow the model."""

from __future__ import annotations

from pathlib import Path

import helpers_results as h
import helpers_scale as hs
import pytest

from harness import report
from harness.record import store
from harness.report import scaling

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale")
    store.write(hs.scale_file(), folder / "scale-cpu-cpu-box.json")
    store.write(hs.gpu_model_file(), folder / "run-cuda-gpu-box.json")  # GPU cost models
    out = report.build_report([folder], folder / "REPORT.md")
    text = out.read_text()
    start = text.index("\n## Scaling: ")
    return folder, text[start:text.find("\n## ", start + 1)]


def test_strong_and_weak_tables_with_measured_and_predicted(built):
    _, text = built
    assert "### Strong scaling, global batch 64 · cpu" in text
    assert "### Weak scaling, 64 per worker · cpu" in text
    for header in ("speed-up", "efficiency", "predicted", "pred. efficiency", "compute(b)",
                   "all-reduce (fit)"):
        assert f" {header} |" in text
    row = next(line for line in text.splitlines()
               if line.startswith("| 256-256-256 tanh float32 | `torch-ddp` | 2 | 32 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6] == cells[9]  # measured and predicted efficiency agree: times follow it
    assert cells[11] == "1.52 ms"  # 1 ms + 2·256²·4 bytes at 1 GB/s


def test_the_alpha_beta_table(built):
    _, text = built
    rows = [line for line in text.splitlines() if line.startswith("| torch-ddp | gloo |")]
    assert len(rows) == 1 and "| 1 ms | 1 GB/s |" in rows[0] and "| ok |" in rows[0]
    assert "| jax-sharded | xla-cpu in-process | cpu | 2 | 30 µs | 4 GB/s |" in text


def test_the_efficiency_plot(built):
    folder, text = built
    assert "![efficiency against workers](plots/scale-cpu-cpu-box-scaling.png)" in text
    assert (folder / "plots" / "scale-cpu-cpu-box-scaling.png").read_bytes()[:8] == PNG_MAGIC


def test_on_paper_everything_is_labelled_predicted_with_sources(built):
    _, text = built
    paper = text[text.index("### On paper: predicted, not measured"):]
    assert "Every figure here is **predicted**" in paper
    assert "8 GPUs over NVLink 4" in paper and "400 Gb/s InfiniBand NDR" in paper
    assert "`torch` float32 tanh b64 depth 2 from `run-cuda-gpu-box.json`" in paper
    assert "<https://github.com/NVIDIA/nccl-tests>" in paper
    assert "DGX H100 datasheet" in paper


def test_a_scale_file_without_a_gpu_model_says_how_to_get_one():
    text = scaling.on_paper(hs.scale_file(), [])
    assert "no GPU cost model of `torch` among the files" in text


def test_other_files_have_no_scaling_section():
    assert scaling.section(report.sources_of([(Path("r.json"), h.run_file())])[0], [], None,
                           None) == ""
