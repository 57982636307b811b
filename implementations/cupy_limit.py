"""CuPy: the worked example's loop as one CUDA kernel in one GPU thread, the GPU's floor.

Each SGD step of the 1-1-1 chain depends on the previous one, so a GPU cannot run it faster
than one thread can: this kernel runs K serial steps in a single launch, with the weights in
registers and X, Y and the learning rate passed as arguments (nothing folded). Its time per
step is the GPU's serial limit, and one launch of it (K = 1) the floor that every other GPU
variant's launch overhead is measured against. The kernel is compiled at run time by CuPy
(NVRTC); it covers the linear network without bias, float64, batch 1.

Unverified on a machine without a GPU: there CuPy is not installed, and the variant is
listed as unavailable.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from implementations.contract import FLOAT64_ONLY, Framework, Unavailable, Variant
from implementations.problem import Params, Problem, cast_problem

FRAMEWORK = Framework("cupy", label="CuPy", packages=("cupy",), order=35, gradients=False,
                      arrays=False, api=False)
VARIANTS = (
    Variant("limit-gpu", "optimised",
            "one CUDA thread runs K serial 1-1-1 steps in one launch: the GPU's serial limit",
            devices=("cuda",), dtypes=FLOAT64_ONLY, worked_example_only=True, role="gpu-limit"),
)

SOURCE = r"""
extern "C" __global__ void sgd_steps(double* w, const double x, const double y,
                                     const double lr, const long long steps) {
    double w_ih = w[0], w_ho = w[1];
    for (long long i = 0; i < steps; i++) {
        double a_h = x * w_ih;
        double r = a_h * w_ho - y;  /* phi(a_o) - Y */
        double g_ih = r * w_ho * x, g_ho = r * a_h;
        w_ih -= lr * g_ih;
        w_ho -= lr * g_ho;
    }
    w[0] = w_ih;
    w[1] = w_ho;
}
"""


def check_device(device: str) -> None:
    if device != "cuda":
        raise Unavailable(f"limit-gpu runs on a CUDA device only, not on {device!r}")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise Unavailable(f"cupy: no CUDA device ({exc})") from None
    if count < 1:
        raise Unavailable("cupy: no CUDA device")


def settings(threads: int) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(0)
    return {"cupy": cp.__version__, "device_name": props["name"].decode(), "threads": 1}


class Trainer:
    """limit-gpu: the serial chain in one GPU thread (optimised); linear, no bias."""

    def __init__(self, problem: Problem, device: str = "cuda"):
        check_device(device)
        net = problem.spec
        if net.bias or net.layer_activations() != ("linear", "linear"):
            raise Unavailable("limit-gpu runs the linear network without bias only")
        x, y, params = cast_problem(problem)
        self.x, self.y, self.lr = float(x[0, 0]), float(y[0, 0]), float(problem.lr)
        (w_ih, _), (w_ho, _) = params
        self.w = cp.asarray(np.array([w_ih[0, 0], w_ho[0, 0]], dtype=np.float64))
        self.kernel = cp.RawKernel(SOURCE, "sgd_steps")

    def run(self, steps: int) -> None:
        self.kernel((1,), (1,), (self.w, np.float64(self.x), np.float64(self.y),
                                 np.float64(self.lr), np.int64(steps)))
        cp.cuda.get_current_stream().synchronize()

    def params(self) -> Params:
        w_ih, w_ho = cp.asnumpy(self.w)
        return [(np.full((1, 1), w_ih), None), (np.full((1, 1), w_ho), None)]

    def loss(self) -> float:
        (w_ih, _), (w_ho, _) = self.params()
        r = self.x * float(w_ih[0, 0]) * float(w_ho[0, 0]) - self.y
        return 0.5 * r * r
