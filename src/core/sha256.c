/* sha256.c: SHA-256 through OpenSSL's EVP interface. */
#include "core/sha256.h"

#include <openssl/evp.h>
#include <stdio.h>

#include "core/status.h"

qn_status qn_sha256_hex(const void* data, size_t n, char hex[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) || len != 32)
    return qn_error(QN_ENOMEM, "sha256: digest failed");
  for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return QN_OK;
}
