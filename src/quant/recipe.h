/* recipe.h: which scheme each weight gets: a default plus ordered PATTERN=SCHEME rules
 * (shell glob patterns over canonical tensor names; the last matching rule wins). */
#ifndef QN_QUANT_RECIPE_H
#define QN_QUANT_RECIPE_H

#include "quant/qtype.h"

#define QN_RECIPE_MAX_RULES 64

typedef struct qn_recipe_rule {
  char pattern[96]; /* fnmatch pattern, e.g. "blk.*.ffn_down.weight", "output.weight" */
  qn_qtype scheme;
} qn_recipe_rule;

typedef struct qn_recipe {
  qn_qtype def;                              /* scheme of weights no rule matches */
  qn_recipe_rule rules[QN_RECIPE_MAX_RULES]; /* in order of application */
  int n_rules;
} qn_recipe;

/* Sets the default from a scheme name. */
qn_status qn_recipe_init(qn_recipe* r, const char* scheme);
/* Adds "PATTERN=SCHEME" (or "PATTERN SCHEME"); `where` names the source in messages. */
qn_status qn_recipe_add(qn_recipe* r, const char* rule, const char* where);
/* Reads a recipe file: one rule per line, '#' comments, "default SCHEME" sets the default. */
qn_status qn_recipe_load(qn_recipe* r, const char* path);
/* Scheme for a 2-D weight. */
qn_qtype qn_recipe_pick(const qn_recipe* r, const char* name);
/* The recipe as text in the file syntax (malloc'ed). */
char* qn_recipe_text(const qn_recipe* r);

#endif
