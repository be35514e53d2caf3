/* status.c: the per-thread error message behind qn_last_error(). */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char g_msg[1024];

qn_status qn_error(qn_status code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return code;
}

void qn_error_clear(void) { g_msg[0] = '\0'; }

const char* qn_last_error(void) { return g_msg; }

const char* qn_status_name(qn_status st) {
  switch (st) {
    case QN_OK: return "QN_OK";
    case QN_EINVAL: return "QN_EINVAL";
    case QN_EIO: return "QN_EIO";
    case QN_EFORMAT: return "QN_EFORMAT";
    case QN_EUNSUPPORTED: return "QN_EUNSUPPORTED";
    case QN_ENOMEM: return "QN_ENOMEM";
    case QN_ERANGE: return "QN_ERANGE";
  }
  return "QN_E?";
}
