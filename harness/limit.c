/* The physical limit of the worked example's serial SGD chain, in C.
 * Build and run: gcc -O2 -o /tmp/limit harness/limit.c && /tmp/limit 0.15 0.3 1 -1 0.1 100000000
 * Inputs come from argv so that the compiler cannot fold them; prints ns per step (best of 7
 * repetitions) and the final weights, which must match ANCHORS.md after 100 steps. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s w_ih w_ho x y lr steps\n", argv[0]);
        return 2;
    }
    double w_ih0 = atof(argv[1]), w_ho0 = atof(argv[2]), x = atof(argv[3]), y = atof(argv[4]);
    double lr = atof(argv[5]);
    long steps = atol(argv[6]);
    double best = 1e30, w_ih = 0, w_ho = 0;
    for (int rep = 0; rep < 7; rep++) {
        w_ih = w_ih0; w_ho = w_ho0;
        double t0 = now();
        for (long i = 0; i < steps; i++) {
            double a_h = x * w_ih;
            double r = a_h * w_ho - y;                 /* phi(a_o) - Y */
            double g_ih = r * w_ho * x, g_ho = r * a_h; /* dE/dw_ih, dE/dw_ho */
            w_ih -= lr * g_ih;
            w_ho -= lr * g_ho;
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("%.3f ns/step  w_ih=%.14f  w_ho=%.14f\n", best / steps * 1e9, w_ih, w_ho);
    return 0;
}
