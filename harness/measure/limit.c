/* The physical limit of the worked example's serial SGD chain, in C.
 * Build and run: gcc -O2 -o /tmp/limit harness/limit.c && /tmp/limit 0.15 0.3 1 -1 0.1 100000000
 * Inputs come from argv so that the compiler cannot fold them; prints ns per step (the median
 * and the best of 7 repetitions) and the final weights. After 100 steps they are
 * w_ih = -0.98661309459782 and w_ho = 1.01356846211392 (the worked example). */
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
    double times[7], w_ih = 0, w_ho = 0;
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
        times[rep] = now() - t0;
    }
    for (int i = 1; i < 7; i++)  /* insertion sort: the median and the best */
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t;
        }
    printf("%.3f ns/step median, %.3f best  w_ih=%.14f  w_ho=%.14f\n",
           times[3] / steps * 1e9, times[0] / steps * 1e9, w_ih, w_ho);
    return 0;
}
