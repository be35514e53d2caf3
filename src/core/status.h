/* status.h: setting and reading the per-thread error message behind qn_status. */
#ifndef QN_CORE_STATUS_H
#define QN_CORE_STATUS_H

#include "quench.h"

/* Records a printf-style message for qn_last_error() and returns code. */
qn_status qn_error(qn_status code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears the message. */
void qn_error_clear(void);

/* Propagates a failing status from an expression. */
#define QN_TRY(expr)                            \
  do {                                          \
    qn_status qn_try_st_ = (expr);              \
    if (qn_try_st_ != QN_OK) return qn_try_st_; \
  } while (0)

#endif
