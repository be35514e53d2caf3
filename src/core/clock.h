/* clock.h: monotonic wall-clock seconds for timing. */
#ifndef QN_CORE_CLOCK_H
#define QN_CORE_CLOCK_H

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double qn_now(void);

#endif
