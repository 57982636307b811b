#!/usr/bin/env bash
# The prepared GPU check, for a lent CUDA machine that cannot install anything.
#
#   PYTHONPATH=. BACKPROP_BENCH_COMMIT=<sha> bash scripts/gpu_check.sh OUTDIR
#
# The device tool brings back at most 8 files from $OUT, so on the lent machine use a scratch
# OUTDIR and copy the archive and the log:
#   bash scripts/gpu_check.sh /tmp/gc; cp /tmp/gc/gpu-check.tar.gz /tmp/gc/gpu_check.log $OUT/
#
# (a copy of the tree without .git cannot tell its commit: BACKPROP_BENCH_COMMIT records it)
# Runs from the repository root with that machine's python3 (override with PYTHON=...).
# Writes into OUTDIR: the GPU test log, `run --device cuda` results for the worked example
# and widths up to 4096 (functional, idiomatic tier, CUDA-graph blocks, the GPU's serial
# limit), torch.compile, a cuda sweep, the data-parallel check and scale on one GPU,
# nvidia-smi output, gpu_check.log, and all of it again in gpu-check.tar.gz. Each step has
# its own time limit (together 9.7 minutes; the whole ran in 5 before the idiomatic, graph and
# data-parallel steps were added, which should add about 2); a step cut short still
# leaves a valid results file with every case it finished. A variant whose packages that
# machine lacks (flax, equinox, keras, cupy) is left out of its step, and the log says so.
set -u
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
START=$(date +%s)

log() { echo "== [$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_check.log"; }
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    log "$name: $*"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    log "$name: exit status $?"
    tail -n 25 "$OUT/$name.log" | tee -a "$OUT/gpu_check.log"
}

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY - <<'PY' 2>&1 | tee -a "$OUT/gpu_check.log"
import platform, torch, jax
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print("jax", jax.__version__, jax.devices())
PY
# available V,V,...: those of the variants that `list` finds runnable here
available() {
    $PY -m harness.cli list 2>/dev/null | awk -v want=",$1," '
        index(want, "," $1 ",") && $NF == "installed" && $(NF-1) != "not" { out = out (out ? "," : "") $1 }
        END { print out }'
}
log "commit ${BACKPROP_BENCH_COMMIT:-unknown}; variants runnable here:" \
    "$(available limit-gpu,torch-cudagraph,torch-cudagraph-block,torch-block-graphs,jax-flax,jax-flax-split,jax-equinox,keras-jax,cupy)"
# torch-block is left out on the GPU: its 16-step graph is the CPU's answer to dispatch cost,
# and the CUDA graph is the GPU's. torch-compile has a step of its own, last but one, so that a
# slow cold Triton compile cannot cost the other variants their results.
step tests 60 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py
step run-worked-example 40 $PY -m harness.cli run --device cuda --widths 1,1,1 \
    --variants numpy,limit,torch,torch-cudagraph,jax-eager,jax,jax-fori \
    --time-per-case 0.5 --out "$OUT/run-cuda-worked-example.json"
step run-wide 90 $PY -m harness.cli run --device cuda --widths 256,256,256 1024,1024,1024 \
    4096,4096,4096 --activation tanh --variants numpy,torch,torch-cudagraph,jax,jax-fori \
    --time-per-case 0.5 --out "$OUT/run-cuda-wide.json"
step run-compile 40 $PY -m harness.cli run --device cuda --widths 1,1,1 \
    --variants torch,torch-compile --time-per-case 0.5 --no-peak \
    --out "$OUT/run-cuda-compile.json"
step run-compile-wide 40 $PY -m harness.cli run --device cuda --widths 1024,1024,1024 \
    --activation tanh --variants torch,torch-compile --time-per-case 0.5 --no-peak \
    --out "$OUT/run-cuda-compile-wide.json"
# the idiomatic tier and the CUDA-graph blocks, where this machine has their packages
# (jax-equinox needs equinox; tf, keras-tf, mlx and autograd run on the CPU only, so a GPU
# run has nothing of theirs to time)
IDIOMATIC=$(available torch,torch-optim,torch-nn,jax,jax-flax,jax-flax-split,jax-equinox)
[ -n "$IDIOMATIC" ] && step run-idiomatic 60 $PY -m harness.cli run --device cuda --widths 1,1,1 1024,1024,1024 \
    --activation tanh --variants "$IDIOMATIC" --time-per-case 0.3 \
    --out "$OUT/run-cuda-idiomatic.json"
GRAPHS=$(available limit,limit-gpu,torch-cudagraph,torch-cudagraph-block,torch-block-graphs)
[ -n "$GRAPHS" ] && step run-graphs 50 $PY -m harness.cli run --device cuda --widths 1,1,1 \
    --variants "$GRAPHS" --time-per-case 0.3 --out "$OUT/run-cuda-graphs.json"
step sweep 100 $PY -m harness.cli sweep --device cuda --sizes 1,16,256,1024,2048,4096 \
    --variants numpy,torch,torch-cudagraph,jax,jax-fori --budget 85 \
    --out "$OUT/sweep-cuda.json"
# data parallel on one GPU: the check of NCCL's path, and scale's compute and all-reduce terms
step check-ddp 50 $PY -m harness.cli check --device cuda --workers 1 --widths 16,16,16 \
    --activation tanh
step scale 60 $PY -m harness.cli scale --device cuda --workers 1 --sizes 256,4096 \
    --scaling strong --time-per-case 0.2 --out "$OUT/scale-cuda.json"
log "done in $(( $(date +%s) - START ))s; results:"
ls -l "$OUT" | tee -a "$OUT/gpu_check.log"
# one archive, so that a tool that fetches only a few files still gets everything
(cd "$OUT" && tar czf gpu-check.tar.gz --exclude=gpu-check.tar.gz ./*.json ./*.log ./*.txt)
