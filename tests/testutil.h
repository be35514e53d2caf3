/* testutil.h: helpers shared by the test programs (cmocka). */
#ifndef QN_TESTUTIL_H
#define QN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Path of a file under ../shared, or NULL (after printing "SKIPPED: ...") if absent. */
const char* qt_shared(const char* rel);
/* Exit code ctest reads as "skipped". */
#define QT_SKIP_CODE 77
/* Prints "SKIPPED: <why>" and exits with QT_SKIP_CODE. */
void qt_skip(const char* why);
/* Writes n bytes to a fresh temporary file; returns its path (static buffer per call slot). */
const char* qt_write_temp(const void* data, size_t n, const char* suffix);
/* Reads a whole file (malloc'ed, NUL-terminated). */
char* qt_read_file(const char* path, size_t* len);

#endif
