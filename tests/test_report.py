"""The report: built from stored results only, merging machines, surviving bad files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import helpers_results as h
import pytest

from harness import report, results
from harness.results import ResultsError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def write_results(folder: Path, sweep: bool = True) -> Path:
    """A CPU run and a GPU run (and a GPU sweep) written as results files into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    results.write(h.run_file(), folder / "run-cpu-cpu-box.json")
    results.write(h.gpu_run_file(), folder / "run-cuda-gpu-box.json")
    if sweep:  # its plots are the slow part of a report
        results.write(h.sweep_file(), folder / "sweep-cuda-gpu-box.json")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    folder = write_results(tmp_path_factory.mktemp("results"))
    out = report.build_report([folder], folder / "REPORT.md")
    return out, out.read_text()


def section(text: str, heading: str) -> str:
    """The text from a '## heading' line to the next '## ' line."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_runs_from_two_machines_merge_with_device_labels(built):
    _, text = built
    assert "cpu · Intel(R) Xeon(R) Processor ×2" in text
    assert "cuda · NVIDIA H200" in text and "cpu · AMD EPYC 9654 ×16" in text
    assert "cpu-box" in text and "gpu-box" in text
    assert text.count("\n## Run: ") == 2 and text.count("\n## Sweep: ") == 1


def test_header_records_provenance_and_how_flops_are_counted(built):
    _, text = built
    head = section(text, "Where the numbers come from")
    for expected in ("`0123456789`", "2.13.0", "0.10.2", "openblas 0.3.31", "off / off",
                     "highest", "blocks of ≥ 20 ms", "0.0004", "6 · batch · weights"):
        assert expected in head, expected


def test_ceilings_list_matmul_peaks_and_the_limit_loops(built):
    _, text = built
    ceil = section(text, "Ceilings")
    assert "| numpy | cpu · Intel(R) Xeon(R) Processor ×2 | float32 | 2048 | 198 |" in ceil
    assert "51,000" in ceil and "error: AttributeError" in ceil
    assert "the C loop (gcc -O2): **5.7 ns/step**" in ceil
    assert re.search(r"`limit` loop .*\*\*5\.\d+ ns/step\*\*", ceil)


def test_run_section_has_the_summary_table_per_device_and_the_failures(built):
    _, text = built
    run = section(text, "Run: `run-cpu-cpu-box.json`")
    assert "| network | variant | kind | per step | IQR | min | × limit | × numpy |" in run
    assert "### cpu · Intel(R) Xeon(R) Processor ×2" in run
    assert "**failed**: check failed: W1 error 3e-2" in run
    assert "**unavailable**: torch: Inductor missing" in run
    gpu_run = section(text, "Run: `run-cuda-gpu-box.json`")
    assert "### cpu · AMD EPYC 9654 ×16" in gpu_run and "### cuda · NVIDIA H200" in gpu_run


def test_sweep_section_has_width_by_variant_tables_and_the_model(built):
    _, text = built
    sweep = section(text, "Sweep")
    assert "| d | `numpy` | `torch` | `jax` | `jax-scan` |" in sweep
    assert "| d | `torch` | `torch-cudagraph` | `jax` |" in sweep
    assert "% of the same framework's matmul peak / % of the machine peak" in sweep
    assert "best matmul across frameworks on this device and dtype: 245 GFLOP/s (torch)" in sweep
    numpy_fit = next(line for line in sweep.splitlines() if line.startswith("| `numpy` | cpu"))
    assert "| 19 µs | 120 |" in numpy_fit  # the synthetic overhead and throughput


def test_gpu_against_cpu_per_framework_and_best(built):
    _, text = built
    gpu = section(text, "Where a GPU starts beating a CPU")
    rows = {line.split(" | ")[0].strip("| "): line for line in gpu.splitlines()
            if line.startswith("| ") and "→" in line}
    assert set(rows) >= {"`torch`", "`jax`", "best of all"}
    assert "GPU faster at every size" in rows["`torch`"]  # 220 µs CPU overhead vs 60 µs
    assert re.search(r"\| \d+ \| [\d.e+]+ \|$", rows["`jax`"])


def test_compile_costs_record_the_inductor_cache_and_pay_off(built):
    _, text = built
    comp = section(text, "Compile cost")
    row = next(line for line in comp.splitlines() if "`torch-compile`" in line)
    assert "| 2.4 s |" in row and "| cold |" in row and "steps |" in row
    assert "| warm |" in comp  # the GPU file's cache was warm


def test_api_section_shows_the_three_frameworks_from_their_source(built):
    _, text = built
    api = section(text, "The API side by side")
    assert "<th>NumPy</th><th>PyTorch</th><th>JAX</th>" in api
    for fn in ("forward", "grads", "sgd_step"):
        assert api.count(f"def {fn}(") == 3, fn
    assert api.count("def run(self, steps: int)") == 3
    assert "torch.autograd.grad" in api and "jax.value_and_grad" in api


def test_plots_are_valid_pngs_linked_relative_to_the_report(built):
    out, text = built
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 4  # two worked-example bar charts, time and % of peak
    for link in links:
        assert link.startswith("plots/")
        png = out.parent / link
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_corrupt_and_wrong_schema_files_are_named_and_the_rest_reported(tmp_path, capsys):
    folder = write_results(tmp_path / "results", sweep=False)
    (folder / "broken.json").write_text('{"schema": "backprop-bench/res')
    old = h.run_file()
    old["schema_version"] = 0
    (folder / "old.json").write_text(json.dumps(old))
    out = report.build_report([folder], tmp_path / "out" / "REPORT.md")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert any("broken.json" in line for line in err)
    assert any("old.json" in line and "schema version" in line for line in err)
    text = out.read_text()
    assert "broken.json" in text and "old.json" in text and text.count("## Run:") == 2
    assert (tmp_path / "out" / "plots").is_dir()


def test_missing_fields_are_a_warning(tmp_path, capsys):
    folder = write_results(tmp_path, sweep=False)
    bad = h.run_file()
    del bad["machine"]
    (folder / "nomachine.json").write_text(json.dumps(bad))
    report.build_report([folder], tmp_path / "REPORT.md")
    assert "nomachine.json: missing field(s) machine" in capsys.readouterr().err


def test_cases_lacking_fields_the_report_reads_are_a_warning(tmp_path, capsys):
    folder = write_results(tmp_path, sweep=False)
    bad = h.run_file()
    del bad["cases"][0]["timing"]["compile_s"]
    (folder / "nocompile.json").write_text(json.dumps(bad))
    out = report.build_report([folder], tmp_path / "REPORT.md")
    err = capsys.readouterr().err
    assert "nocompile.json: missing or malformed field timing.compile_s (case 0)" in err
    assert out.read_text().count("## Run:") == 2


def test_no_valid_file_is_an_error(tmp_path):
    (tmp_path / "broken.json").write_text("not json")
    with pytest.raises(ResultsError, match="no valid results file"):
        report.build_report([tmp_path], tmp_path / "REPORT.md")
    with pytest.raises(ResultsError, match="no results files found"):
        report.build_report([tmp_path / "empty"], tmp_path / "REPORT.md")


def test_report_command_writes_the_report(tmp_path, capsys):
    folder = write_results(tmp_path / "results", sweep=False)
    out = tmp_path / "docs" / "REPORT.md"
    assert h.run_cli(["report", str(folder), "--out", str(out)], report.register) == 0
    assert out.exists() and str(out) in capsys.readouterr().out


def test_report_with_no_valid_file_is_one_line_exit_2(tmp_path, capsys):
    code = h.run_cli(["report", str(tmp_path), "--out", str(tmp_path / "R.md")],
                     report.register)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no results files found" in err[0]


def test_building_a_report_imports_neither_torch_nor_jax(tmp_path):
    folder = write_results(tmp_path)
    code = ("import sys; from harness import report; "
            f"report.build_report([{str(folder)!r}], {str(tmp_path / 'R.md')!r}); "
            "bad = [m for m in ('torch', 'jax', 'numba') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_code_lines_leave_out_docstring_comments_and_blank_lines():
    src = 'def f(x):\n    """Doc\n    string."""\n    # why\n\n    y = x  # keep\n    return y\n'
    assert report.code_lines(src) == 3


def test_function_sources_reads_functions_and_methods(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\n\ndef forward(x):\n    return x\n\n\nclass Trainer:\n"
                    "    def run(self, steps):\n        return steps\n")
    found = report.function_sources(path)
    assert found == {"forward": "def forward(x):\n    return x",
                     "Trainer.run": "def run(self, steps):\n    return steps"}
