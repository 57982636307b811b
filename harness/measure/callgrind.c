/* Callgrind's client requests as plain C functions, for harness/measure/callgrind.py (ctypes).
 * Built on first use: gcc -O2 -shared -fPIC -o libbb_callgrind.so harness/callgrind.c
 * Outside Valgrind every request is a no-op and bb_on_valgrind() returns 0. */
#include <valgrind/callgrind.h>

int bb_on_valgrind(void) { return RUNNING_ON_VALGRIND; }

/* Instrument from here on (the process runs uninstrumented until then: --instr-atstart=no). */
void bb_start(void) { CALLGRIND_START_INSTRUMENTATION; }

void bb_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }

/* Every thread's counters to zero. */
void bb_zero(void) { CALLGRIND_ZERO_STATS; }

/* A dump file whose "summary:" line is what every thread executed since the last zero or
 * dump. */
void bb_dump(void) { CALLGRIND_DUMP_STATS; }
