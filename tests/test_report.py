"""The report: built from stored results only, merging machines, surviving bad files."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import helpers_results as h
import numpy as np
import pytest

from harness import cli, report
from harness.measure import environment
from harness.record import rows as records
from harness.record import store, summary
from harness.record.results import ResultsError
from harness.report import ceilings, code, fits, glance, gpu_cpu, provenance, sources
from implementations import registry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def write_results(folder: Path, sweep: bool = True) -> Path:
    """A CPU run and a GPU run (and a GPU sweep) written as results files into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    store.write(h.run_file(), folder / "run-cpu-cpu-box.json")
    store.write(h.gpu_run_file(), folder / "run-cuda-gpu-box.json")
    if sweep:  # its plots are the slow part of a report
        store.write(h.sweep_file(), folder / "sweep-cuda-gpu-box.json")
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


def test_the_report_leads_with_the_summary_and_contents_and_ends_with_provenance(built):
    _, text = built
    order = [line for line in text.splitlines() if line.startswith("## ")]
    assert order[:2] == ["## At a glance", "## Contents"]
    assert order[-2:] == ["## Where the numbers come from", "## Ceilings"]
    glance = section(text, "At a glance")
    assert "| `limit` | 5.7" in glance.replace("5.70", "5.7") or "`limit`" in glance
    contents = section(text, "Contents")
    for heading in order[2:]:
        assert f"(#{report.slug(heading[3:])})" in contents


def test_the_slug_is_githubs_anchor():
    assert report.slug("Run: `a-b.json` · vm (Intel(R) ×2)") == "run-a-bjson--vm-intelr-2"


def test_readme_block_is_generated_between_its_markers(tmp_path):
    from harness.report import glance

    folder = write_results(tmp_path / "results", sweep=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{glance.START}\nold numbers\n{glance.END}\nafter\n")
    report.build_report([folder], tmp_path / "R.md", readme=readme)
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# x\n\nbefore\n")
    assert text.endswith(f"{glance.END}\nafter\n") and "| `numpy` |" in text


def test_the_committed_readme_is_generated_from_the_committed_results():
    from harness.report import glance

    loaded, _ = store.read_runs([str(ROOT / "results")])
    body = glance.body(sources.sources_of(loaded))
    readme = (ROOT / "README.md").read_text()
    assert f"{glance.START}\n{body}\n{glance.END}" in readme, \
        "regenerate it: backprop-bench report results/ --readme README.md"


def test_runs_from_two_machines_merge_with_device_labels(built):
    _, text = built
    assert "cpu · Intel(R) Xeon(R) Processor ×2" in text
    assert "cuda · NVIDIA H200" in text and "cpu · AMD EPYC 9654 ×16" in text
    assert "cpu-box" in text and "gpu-box" in text
    assert text.count("\n## Run: ") == 2 and text.count("\n## Sweep: ") == 1


def test_header_records_provenance_and_how_flops_are_counted(built):
    _, text = built
    head = section(text, "Where the numbers come from")
    for expected in ("`0123456789`", "2.13.0", "0.10.2", "internal_api openblas; version 0.3.31",
                     "tf32_matmul no; tf32_cudnn no", "highest", "blocks of ≥ 20 ms", "0.0004",
                     "6 · batch · weights"):
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
    assert ("| network | variant | kind | per step | IQR | between rounds | min | × limit | "
            "× numpy |") in run
    assert "### cpu · Intel(R) Xeon(R) Processor ×2" in run
    assert "**failed**: check failed: W1 error 3e-2" in run
    assert "**unavailable**: torch: Inductor missing" in run
    gpu_run = section(text, "Run: `run-cuda-gpu-box.json`")
    assert "### cpu · AMD EPYC 9654 ×16" in gpu_run and "### cuda · NVIDIA H200" in gpu_run


def test_sweep_section_has_width_by_variant_tables_and_the_model(built):
    _, text = built
    sweep = section(text, "Sweep")
    assert "| d | `numpy` | `torch` | `jax` | `jax-fori` |" in sweep
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


def test_api_section_shows_every_functional_framework_from_its_source(built):
    _, text = built
    api = section(text, "The API side by side")
    labels = list(code.files())  # from the registry: each framework that shows its core
    assert {"NumPy", "PyTorch", "JAX"} <= set(labels)
    assert "".join(f"<th>{name}</th>" for name in labels) in api
    for fn in ("forward", "grads", "sgd_step"):
        assert api.count(f"def {fn}(") == len(labels), fn
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
    old = h.run_file().to_dict()
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
    bad = h.run_file().to_dict()
    del bad["machine"]
    (folder / "nomachine.json").write_text(json.dumps(bad))
    report.build_report([folder], tmp_path / "REPORT.md")
    assert "nomachine.json: missing field 'machine'" in capsys.readouterr().err


def test_cases_lacking_fields_the_report_reads_are_a_warning(tmp_path, capsys):
    folder = write_results(tmp_path, sweep=False)
    bad = h.run_file().to_dict()
    del bad["cases"][0]["timing"]["first_call_s"]
    (folder / "nocompile.json").write_text(json.dumps(bad))
    out = report.build_report([folder], tmp_path / "REPORT.md")
    err = capsys.readouterr().err
    assert "nocompile.json: cases[0].timing: missing field 'first_call_s'; left out" in err
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
    assert cli.main(["report", str(folder), "--out", str(out)]) == 0
    assert out.exists() and str(out) in capsys.readouterr().out


def test_report_with_no_valid_file_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["report", str(tmp_path), "--out", str(tmp_path / "R.md")])
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
    assert code.code_lines(src) == 3


def test_function_sources_reads_functions_and_methods(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\n\ndef forward(x):\n    return x\n\n\nclass Trainer:\n"
                    "    def run(self, steps):\n        return steps\n")
    found = code.function_sources(path)
    assert found == {"forward": "def forward(x):\n    return x",
                     "Trainer.run": "def run(self, steps):\n    return steps"}


# ---- --out must be a Markdown file, checked before anything is written -------------------------

@pytest.mark.parametrize("out", ["folder", "REPORT.txt", "REPORT"])
def test_out_that_is_a_folder_or_not_markdown_is_an_error_before_writing(tmp_path, out):
    folder = write_results(tmp_path / "results", sweep=False)
    target = tmp_path / "site" / out
    if out == "folder":
        target.mkdir(parents=True)
    with pytest.raises(ResultsError, match=r"report --out must be a Markdown file path \(\*\.md\)"):
        report.build_report([folder], target)
    site = tmp_path / "site"  # no plots/, no temporary file, no report
    assert [p.name for p in site.rglob("*")] == (["folder"] if out == "folder" else [])


def test_out_folder_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    folder = write_results(tmp_path / "results", sweep=False)
    code = cli.main(["report", str(folder), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "report --out must be a Markdown file path (*.md), not" in err[0]
    assert not (tmp_path.parent / "plots").exists() and not (tmp_path / "plots").exists()


# ---- results text is escaped, and the report overwrites only its own files ------------------

def test_text_from_a_results_file_cannot_break_a_table_or_inject_html(tmp_path):
    run = h.run_file()
    run.machine = dataclasses.replace(run.machine, hostname="evil|host<script>")
    run.cases[-2].reason = "bad | reason <b>x</b>"
    store.write(run, tmp_path / "run.json")
    text = report.build_report([tmp_path], tmp_path / "R.md").read_text()
    assert "evil\\|host&lt;script&gt;" in text and "<script>" not in text
    assert "bad \\| reason &lt;b&gt;x&lt;/b&gt;" in text


def test_report_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, capsys):
    folder = write_results(tmp_path / "results", sweep=False)
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    assert cli.main(["report", str(folder), "--out", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not written by backprop-bench report" in err[0]
    assert readme.read_text() == "# my project\n" and not (tmp_path / "plots").exists()
    assert cli.main(["report", str(folder), "--out", str(readme), "--force"]) == 0
    assert cli.main(["report", str(folder), "--out", str(readme)]) == 0  # its own file now


def test_report_refuses_to_overwrite_a_plot_it_did_not_write(tmp_path, capsys):
    folder = write_results(tmp_path / "results", sweep=False)
    (tmp_path / "plots").mkdir()
    foreign = tmp_path / "plots" / "run-cpu-cpu-box-worked-example.png"
    foreign.write_bytes(PNG_MAGIC + b"someone else's")
    assert cli.main(["report", str(folder), "--out", str(tmp_path / "R.md")]) == 2
    assert "was not written by backprop-bench report" in capsys.readouterr().err
    assert foreign.read_bytes() == PNG_MAGIC + b"someone else's"


def test_an_unwritable_report_location_is_one_line(tmp_path, capsys):
    folder = write_results(tmp_path / "results", sweep=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["report", str(folder), "--out", str(blocker / "R.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the report" in err[0]


def test_a_killed_run_is_marked_incomplete(tmp_path):
    run = h.run_file()
    run.finished = None
    store.write(run, tmp_path / "run.json")
    text = report.build_report([tmp_path], tmp_path / "R.md").read_text()
    assert "(incomplete: killed, or still running)" in text


# ---- summary: compile only for variants that compile ------------------------------------------

def test_compile_column_only_for_variants_with_a_baseline():
    rows = {(r.case.variant, r.network): r for r in summary.derive(h.run_file())}
    worked = h.WORKED.label()
    col = records.headers().index("compile")
    first = records.headers().index("first call")
    for variant in ("python", "numpy", "torch", "jax-eager"):
        cells = records.row_cells(rows[(variant, worked)])
        assert cells[col] == "—" and cells[first] != "—", variant
    assert records.row_cells(rows[("torch-compile", worked)])[col] == "2.4 s"
    assert records.row_cells(rows[("limit", worked)])[col] == "200 ms"


def test_report_compile_table_lists_only_variants_with_a_baseline(built):
    _, text = built
    comp = section(text, "Compile cost")
    variants = set(re.findall(r"^\| `[^`]+` \| [^|]+ \| [^|]+ \| `([^`]+)` \|", comp, re.M))
    assert variants and all(registry.VARIANTS[v].baseline for v in variants)


# ---- the limit line names the network it ran ---------------------------------------------------

def test_limit_line_labels_the_network_from_the_problem():
    run = h.run_file()
    limit = next(c for c in run.cases if c.variant == "limit")
    limit.problem = dataclasses.replace(limit.problem, activation="tanh", bias=True)
    line = ceilings.limit_lines(run).splitlines()[0]
    assert "(1-1-1 tanh+b float64 b1)" in line and "linear" not in line


def test_limit_line_of_the_worked_example(built):
    _, text = built
    assert "the `limit` loop (1-1-1 linear float64 b1): **" in section(text, "Ceilings")


# ---- the API section says when and from which checkout it was read -----------------------------

def test_api_section_without_a_known_commit_names_the_working_tree_content(built):
    _, text = built  # the synthetic files name a commit this checkout does not have
    api = section(text, "The API side by side")
    assert "as they are in the checkout that built the report (content `" in api
    assert "may differ from the code that ran" in api


def test_api_section_reads_the_code_at_the_commit_the_results_ran(tmp_path):
    head = environment.git_out("rev-parse", "HEAD")
    if head is None:
        pytest.skip("not a git checkout")
    run = h.run_file()
    run.commit.id, run.commit.dirty = head, False
    text = code.section([sources.Source(tmp_path / "r.json", run, "r")])
    assert f"at commit `{head[:10]}`, the commit the newest results" in text
    assert "the code that ran" in text and text.count("def forward(") >= 3


def test_api_section_without_git_names_no_commit(monkeypatch):
    monkeypatch.setattr(environment, "git_out", lambda *args, **kw: None)
    head = code.section([]).split("\n\n")[1]
    assert "content `" in head and "(commit" not in head


def test_git_head_outside_a_checkout_is_none(tmp_path):
    assert environment.git_out("rev-parse", "HEAD", repo=tmp_path) is None


# ---- the model table: d = 1 left out, poor fits and extrapolated widths --------------------------

def test_model_table_marks_left_out_d1_extrapolated_widths(built):
    _, text = built
    sweep = section(text, "Sweep")
    assert "scalar program, not a matmul" in sweep
    rows = {tuple(line.split(" | ")[:2]): line for line in sweep.splitlines()
            if line.startswith("| `")}
    # torch on cuda: 60 µs * 20 TFLOP/s -> d = 1250, above the widest measured network (1024)
    torch = rows[("| `torch`", "cuda · NVIDIA H200")]
    assert "| 1,250 (extrapolated; measured up to 1024) |" in torch
    # jax-fori on cpu: 0.4 µs * 120 GFLOP/s -> d = 8, below the narrowest fitted one (16; d = 1
    # is left out)
    jax_fori = rows[("| `jax-fori`", "cpu · AMD EPYC 9654 ×16")]
    assert "| 4 (d = 1 left out) |" in jax_fori
    assert "| 8 (extrapolated; fitted from 16) |" in jax_fori
    assert "poor fit" not in section(sweep, "Sweep").split("| variant |")[1].split("\n\n")[0]


def test_model_table_marks_poor_fits_and_keeps_their_numbers():
    run = h.sweep_file()
    for c in run.cases:  # zigzag numpy's points by 2× around the line
        if c.variant == "numpy" and c.problem.widths[0] in (16, 256):
            h.scale_times(c, 2.0)
    table = fits.model_table(sources.Source(Path("s.json"), run, "s"))
    numpy_row = next(line for line in table.splitlines() if line.startswith("| `numpy`"))
    assert re.search(r"\| \d+% \(poor fit\) \|$", numpy_row)
    assert "µs |" in numpy_row  # the numbers are still there
    assert all("poor fit" not in line for line in table.splitlines()
               if line.startswith("| `torch`"))


def test_model_table_without_d1_does_not_mention_it():
    run = h.sweep_file(widths=(16, 64, 256, 1024))
    table = fits.model_table(sources.Source(Path("s.json"), run, "s"))
    assert "scalar program" not in table and "left out" not in table


# ---- where a GPU starts beating a CPU: by file, never merged across files ------------------------

def gpu_machine_file(jax_fori_overhead: float):
    """A GPU-machine sweep: numpy on the CPU, torch and jax-fori on the GPU."""
    rng = np.random.default_rng(3)
    laws = {("numpy", "cpu"): (19e-6, 120e9), ("torch", "cuda"): (60e-6, 20e12),
            ("jax-fori", "cuda"): (jax_fori_overhead, 22e12)}
    cases = [h.ok_case(v, dev, h.problem((d, d, d)),
                       o + h.flops(h.problem((d, d, d))) / t, rng, sigma=0.0)
             for (v, dev), (o, t) in laws.items() for d in h.SWEEP_WIDTHS]
    return h.new_run("sweep", "cuda", h.GPU_MACHINE, cases)


def cpu_only_file():
    run = h.sweep_file()
    run.cases = [c for c in run.cases if c.device == "cpu"]
    run.machine = h.CPU_MACHINE
    return run


def gpu_rows(files: list) -> list[list[str]]:
    text = gpu_cpu.section(files)
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in text.splitlines()
            if line.startswith("| ") and "→" in line and "compared" not in line]


def crossover_d(cpu_law, gpu_law) -> float:
    (oc, tc), (og, tg) = cpu_law, gpu_law
    return math.sqrt((og - oc) / (1 / tc - 1 / tg) / (6 * 64 * 2))


@pytest.fixture(scope="module")
def by_file():
    return gpu_rows([sources.Source(Path("gpu-a.json"), gpu_machine_file(25e-6), "gpu-a"),
                     sources.Source(Path("gpu-b.json"), gpu_machine_file(40e-6), "gpu-b"),
                     sources.Source(Path("cpu.json"), cpu_only_file(), "cpu")])


def test_the_same_comparison_under_several_names_is_one_row(by_file):
    keys = [tuple(r[1:]) for r in by_file]
    assert len(keys) == len(set(keys))
    assert any(", " in r[0] and "best of all" in r[0] for r in by_file)


def test_gpu_fits_of_two_files_on_one_machine_are_not_merged(by_file):
    own = {r[2].split("`")[1]: r for r in by_file if r[2].count("`") == 2}
    assert set(own) == {"gpu-a.json", "gpu-b.json"}
    for name, overhead in (("gpu-a.json", 25e-6), ("gpu-b.json", 40e-6)):
        d = crossover_d((19e-6, 120e9), (overhead, 22e12))
        assert own[name][4].strip() == f"{d:,.0f}", name  # each file's own crossover
    assert own["gpu-a.json"][4] != own["gpu-b.json"][4]


def test_a_gpu_machine_file_names_numpy_as_its_cpu_side(by_file):
    own = [r for r in by_file if r[2].count("`") == 2]
    for r in own:
        assert r[0] == "best GPU vs `numpy` (CPU)" and "best of all" not in r[0]
        assert r[1] == "`jax-fori` (GPU) vs `numpy` (CPU)"
        assert ": cpu · AMD EPYC 9654 ×16 → cuda · NVIDIA H200" in r[2]


def test_files_pair_across_only_when_one_cannot_pair_alone(by_file):
    names = [re.findall(r"`([^`]+\.json)`", r[2]) for r in by_file]
    pairs = {(n[0], n[-1]) for n in names}
    assert pairs == {("gpu-a.json", "gpu-a.json"), ("gpu-b.json", "gpu-b.json"),
                     ("cpu.json", "gpu-a.json"), ("cpu.json", "gpu-b.json")}
    cross = [r for r in by_file if r[2].startswith("`cpu.json` (cpu · Intel(R) Xeon(R)")]
    assert all("→ `gpu-" in r[2] and "(cuda · NVIDIA H200)" in r[2] for r in cross)


def test_best_rows_name_the_fastest_variants_at_the_crossover(by_file):
    best = next(r for r in by_file if r[0].endswith("best of all") and "`gpu-a.json`" in r[2])
    # the CPU-only file's jax-fori (0.4 µs) is fastest on the CPU at the crossover
    assert best[1] == "`jax-fori` (GPU) vs `jax-fori` (CPU)"
    d = crossover_d(h.MODEL[("jax-fori", "cpu")], (25e-6, 22e12))
    assert best[4].startswith(f"{d:,.0f}")
    torch = next(r for r in by_file if r[0] == "`torch`" and "`gpu-b.json`" in r[2])
    assert torch[1] == "`torch` (GPU) vs `torch` (CPU) at d = 16"  # GPU faster at every size
    assert torch[4].startswith("GPU faster at every size (extrapolated below d = 16)")


def test_gpu_table_marks_poor_fits_and_extrapolated_crossovers():
    gpu = gpu_machine_file(25e-6)
    for c in gpu.cases:
        if c.variant == "jax-fori" and c.problem.widths[0] in (16, 256):
            h.scale_times(c, 2.0)
    narrow = gpu_machine_file(200e-6)  # torch crosses numpy near d = 80: above its widest point
    narrow.cases = [c for c in narrow.cases if c.problem.widths[0] <= 64]
    rows = gpu_rows([sources.Source(Path("zig.json"), gpu, "zig"),
                     sources.Source(Path("narrow.json"), narrow, "narrow")])
    zig = next(r for r in rows if "`zig.json`" in r[2])
    assert zig[1] == "`jax-fori` (GPU, poor fit) vs `numpy` (CPU)"
    far = next(r for r in rows if "`narrow.json`" in r[2])
    d = crossover_d((19e-6, 120e9), (60e-6, 20e12))
    assert far[1] == "`torch` (GPU) vs `numpy` (CPU)"
    assert far[4] == f"{d:,.0f} (extrapolated; measured up to 64)"


def test_provenance_lists_the_variables_set_and_collapses_the_package_freeze(tmp_path):
    runs = [h.run_file(), h.gpu_run_file(), h.run_file(seed=3)]
    packages = {"numpy": "2.4.6", "torch": "2.13.0"}
    runs[0].environment = {"variables": {"OMP_NUM_THREADS": "2", "XLA_FLAGS": "--x=<y>"},
                           "jax_compilation_cache": {"enabled": True, "warm_at_start": True},
                           "packages": packages}
    runs[1].environment = {"variables": {}, "packages": packages}
    loaded = [(tmp_path / f"run-{i}.json", run) for i, run in enumerate(runs)]
    text = provenance.section(sources.sources_of(loaded), [])
    env = text[text.index("### Environment"):text.index("### Settings")]
    assert "`OMP_NUM_THREADS=2`, `XLA_FLAGS=--x=<y>`; JAX compilation cache on, warm" in env
    assert "no variable that changes results was set" in env
    assert "run-2.json" not in env  # an older file records no environment: no line
    assert env.count("<details>") == 1  # one freeze, shared by two files
    assert "Installed packages (2): run-0.json, run-1.json</summary>" in env
    assert "numpy 2.4.6, torch 2.13.0" in env


def test_provenance_without_any_recorded_environment_has_no_environment_section(built):
    _, text = built
    assert "### Environment" not in text


def test_the_glance_headline_is_the_fullest_cpu_run_not_a_newer_focused_one(tmp_path):
    from harness.report import glance

    full = h.run_file()
    full.created = "2026-01-01T00:00:00+00:00"
    focused = h.run_file(seed=5)
    focused.cases = [c for c in focused.cases if c.variant == "limit"]
    focused.created = "2026-02-01T00:00:00+00:00"
    store.write(full, tmp_path / "run-full.json")
    store.write(focused, tmp_path / "run-limit-only.json")
    loaded, _ = store.read_runs([str(tmp_path)])
    body = glance.body(sources.sources_of(loaded))
    assert "`run-full.json`" in body and "run-limit-only" not in body
    assert "| `torch` |" in body


def test_scale_runs_stay_out_of_the_gpu_and_cpu_crossovers(tmp_path, monkeypatch):
    import helpers_scale as hs

    from harness.report import glance

    monkeypatch.setattr(hs, "SIZES", (16, 64, 256, 1024))  # enough widths for a fit
    write_results(tmp_path, sweep=True)
    store.write(hs.scale_file(), tmp_path / "scale-cpu-box.json")
    loaded, _ = store.read_runs([str(tmp_path)])
    found = sources.sources_of(loaded)
    assert any(s.command == "scale" for s in found)
    assert "scale-cpu-box" not in glance.body(found)
    assert "scale-cpu-box" not in gpu_cpu.section(found)


def test_runs_kept_as_evidence_stay_out_of_a_folders_report(tmp_path):
    write_results(tmp_path, sweep=False)
    (tmp_path / "evidence").mkdir()
    store.write(h.run_file(seed=3), tmp_path / "evidence" / "run-repeat.json")
    assert all("evidence" not in p.parts for p in store.find_files([str(tmp_path)]))
    assert store.find_files([str(tmp_path / "evidence" / "run-repeat.json")])


@pytest.mark.parametrize("x, text", [(2.5, "2.5×"), (1500, "1,500×"), (0.5, "1/2×"),
                                     (1 / 1.17, "1/1.17×"), (0.9996, "1×"), (0.999, "1×"),
                                     (1.0004, "1×"), (0.99, "1/1.01×"), (None, "—")])
def test_one_ratio_notation_and_a_ratio_that_rounds_to_one_is_one(x, text):
    from harness.tables import fmt_ratio

    assert fmt_ratio(x) == text


def test_a_folder_of_many_files_draws_the_newest_and_says_what_it_left_out(tmp_path, capsys):
    from harness import report as reporting
    from harness.record import store

    folder = tmp_path / "runs"
    folder.mkdir()
    n = reporting.MAX_PLOTTED + 8
    for i in range(n):
        run = h.run_file()
        run.cases = run.cases[:1]
        run.created = f"2026-11-01T00:00:{i:02d}+00:00"
        store.write(run, folder / f"run-{i:02d}.json")
    out = tmp_path / "out" / "REPORT.md"
    assert cli.main(["report", str(folder), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Plots left out" in text and "the 8 older ones have their tables only" in text
    drawn = {p.name.split("-worked")[0] for p in (out.parent / "plots").glob("*.png")}
    assert drawn == {f"run-{i:02d}" for i in range(8, n)}  # the newest
    assert f"report: {n} results file(s), plots for {reporting.MAX_PLOTTED}" in (
        capsys.readouterr().err)


PAYLOAD = "x`<img src=x onerror=alert(1)>|$\\undefinedmacro$"


def test_every_stored_string_is_escaped_in_the_report_the_readme_and_the_plots(tmp_path):
    """A hostile string in every free-text field a results file has: the variant, kind and
    framework of a case, its reason, the host, a package name and version, a note, an
    environment variable. No raw HTML and no extra table cell reach REPORT.md or the README's
    table, and the plots (matplotlib mathtext reads "$...$") are drawn without error."""
    run = h.run_file()
    for case in run.cases:
        if case.variant == "torch":
            case.variant = "torch" + PAYLOAD
            case.kind, case.framework = "kind" + PAYLOAD, "fw" + PAYLOAD
    run.cases[-1].reason = "reason" + PAYLOAD
    run.machine = dataclasses.replace(run.machine, hostname="host" + PAYLOAD,
                                      cpu="cpu" + PAYLOAD)  # a copy: run_file shares one
    run.software = {**run.software, "pkg" + PAYLOAD: "1.0" + PAYLOAD}
    run.notes = [*run.notes, "note" + PAYLOAD]
    run.environment = {"variables": {"OMP" + PAYLOAD: "1" + PAYLOAD}}
    store.write(run, tmp_path / "run.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{glance.START}\n{glance.END}\n")
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "R.md"),
                     "--readme", str(readme)]) == 0
    for text in ((tmp_path / "R.md").read_text(), readme.read_text()):
        outside_code = re.sub(r"`[^`\n]*`", "", text)  # a code span shows HTML as text
        assert "<img" not in outside_code and PAYLOAD not in text
        for table in re.findall(r"(?:^\|.*\n)+", text, re.M):  # every row as wide as its header
            widths = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
            assert len(widths) == 1, table
    assert list((tmp_path / "plots").glob("*.png"))
