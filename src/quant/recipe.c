/* recipe.c: parsing and applying quantization recipes. */
#define _POSIX_C_SOURCE 200809L
#include "quant/recipe.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/status.h"

static qn_status parse_scheme(const char* name, const char* where, qn_qtype* out) {
  int t = qn_qtype_from_name(name);
  if (t < 0)
    return qn_error(QN_EINVAL, "%s: unknown scheme '%s' (see 'quench quantize --list')", where,
                    name);
  *out = (qn_qtype)t;
  return QN_OK;
}

qn_status qn_recipe_init(qn_recipe* r, const char* scheme) {
  memset(r, 0, sizeof *r);
  return parse_scheme(scheme ? scheme : "", "--scheme", &r->def);
}

qn_status qn_recipe_add(qn_recipe* r, const char* rule, const char* where) {
  char buf[256];
  if (strlen(rule) >= sizeof buf)
    return qn_error(QN_EINVAL, "%s: rule '%.40s...' too long", where, rule);
  snprintf(buf, sizeof buf, "%s", rule);
  char* p = buf;
  while (isspace((unsigned char)*p)) p++;
  char* sep = strpbrk(p, "= \t");
  if (!sep) return qn_error(QN_EINVAL, "%s: rule '%s' is not PATTERN=SCHEME", where, rule);
  char* pat_end = sep;
  while (*sep == '=' || isspace((unsigned char)*sep)) sep++;
  *pat_end = '\0';
  char* scheme = sep;
  char* e = scheme + strlen(scheme);
  while (e > scheme && isspace((unsigned char)e[-1])) *--e = '\0';
  if (!*p || !*scheme)
    return qn_error(QN_EINVAL, "%s: rule '%s' is not PATTERN=SCHEME", where, rule);
  qn_qtype t = QN_QTYPE_F32;
  QN_TRY(parse_scheme(scheme, where, &t));
  if (strcmp(p, "default") == 0) {
    r->def = t;
    return QN_OK;
  }
  if (r->n_rules == QN_RECIPE_MAX_RULES)
    return qn_error(QN_EINVAL, "%s: more than %d rules", where, QN_RECIPE_MAX_RULES);
  size_t plen = strlen(p);
  if (plen >= sizeof r->rules[0].pattern)
    return qn_error(QN_EINVAL, "%s: pattern '%s' too long", where, p);
  memcpy(r->rules[r->n_rules].pattern, p, plen + 1);
  r->rules[r->n_rules++].scheme = t;
  return QN_OK;
}

qn_status qn_recipe_load(qn_recipe* r, const char* path) {
  char* text;
  QN_TRY(qn_read_text_file(path, &text, NULL));
  qn_status st = QN_OK;
  int line = 0;
  for (char* s = text; s && *s && st == QN_OK;) {
    char* nl = strchr(s, '\n');
    if (nl) *nl = '\0';
    line++;
    char* hash = strchr(s, '#');
    if (hash) *hash = '\0';
    char* p = s;
    while (isspace((unsigned char)*p)) p++;
    if (*p) {
      char where[1100];
      snprintf(where, sizeof where, "%s:%d", path, line);
      st = qn_recipe_add(r, p, where);
    }
    s = nl ? nl + 1 : NULL;
  }
  free(text);
  return st;
}

qn_qtype qn_recipe_pick(const qn_recipe* r, const char* name) {
  qn_qtype t = r->def;
  for (int i = 0; i < r->n_rules; i++)
    if (fnmatch(r->rules[i].pattern, name, 0) == 0) t = r->rules[i].scheme;
  return t;
}

char* qn_recipe_text(const qn_recipe* r) {
  size_t cap = 64 + (size_t)r->n_rules * 128;
  char* s = malloc(cap);
  if (!s) return NULL;
  int o = snprintf(s, cap, "default %s\n", qn_qtype_traits_of(r->def)->name);
  for (int i = 0; i < r->n_rules; i++)
    o += snprintf(s + o, cap - (size_t)o, "%s %s\n", r->rules[i].pattern,
                  qn_qtype_traits_of(r->rules[i].scheme)->name);
  return s;
}
