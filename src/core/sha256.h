/* sha256.h: SHA-256 of a byte range (OpenSSL's libcrypto), as lowercase hex. */
#ifndef QN_CORE_SHA256_H
#define QN_CORE_SHA256_H

#include <stddef.h>

#include "quench.h"

/* hex receives 64 hex digits and a NUL. */
qn_status qn_sha256_hex(const void* data, size_t n, char hex[65]);

#endif
