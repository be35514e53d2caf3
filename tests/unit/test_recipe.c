/* test_recipe.c: quantization recipes (src/quant/recipe.h): the default scheme, rules in both
 * spellings (PATTERN=SCHEME and "PATTERN SCHEME"), recipe files with comments, blank lines,
 * CRLF endings and a "default" line, shell-glob patterns, the last matching rule winning,
 * errors that name the file and line (or the --rule) and the unknown scheme, limits, and the
 * text form read back to the same choices. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "quant/recipe.h"

/* The canonical weight names of a 2-layer model with a separate head. */
static const char* k_names[] = {
    "token_embd.weight",     "blk.0.attn_q.weight",      "blk.0.attn_k.weight",
    "blk.0.attn_v.weight",   "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
    "blk.0.ffn_up.weight",   "blk.0.ffn_down.weight",    "blk.1.attn_q.weight",
    "blk.1.ffn_down.weight", "blk.10.ffn_down.weight",   "output.weight",
};
#define N_NAMES (sizeof k_names / sizeof k_names[0])

static qn_qtype q(const char* name) {
  int t = qn_qtype_from_name(name);
  assert_true(t >= 0);
  return (qn_qtype)t;
}

/* Writes text to a temporary recipe file. */
static const char* recipe_file(const char* text) {
  const char* p = qt_write_temp(text, strlen(text), ".recipe");
  assert_non_null(p);
  return p;
}

static void test_default_only(void** state) {
  (void)state;
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "int4-g32"), QN_OK);
  assert_int_equal(r.n_rules, 0);
  for (size_t i = 0; i < N_NAMES; i++)
    assert_int_equal(qn_recipe_pick(&r, k_names[i]), q("int4-g32"));
}

static void test_unknown_default(void** state) {
  (void)state;
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "int2-g32"), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "int2-g32"));
  assert_int_equal(qn_recipe_init(&r, NULL), QN_EINVAL);
  assert_int_equal(qn_recipe_init(&r, ""), QN_EINVAL);
  /* names are exact: no case folding, no stray spaces */
  assert_int_equal(qn_recipe_init(&r, "INT8-CHANNEL"), QN_EINVAL);
  assert_int_equal(qn_recipe_init(&r, "int8-channel "), QN_EINVAL);
}

static void test_rule_spellings(void** state) {
  (void)state;
  static const char* spellings[] = {
      "output.weight=int8-channel",     "output.weight int8-channel",
      "output.weight\tint8-channel",    "  output.weight = int8-channel  ",
      "output.weight   int8-channel\r",
  };
  for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
    qn_recipe r;
    assert_int_equal(qn_recipe_init(&r, "int4-g64"), QN_OK);
    if (qn_recipe_add(&r, spellings[i], "--rule") != QN_OK)
      fail_msg("'%s' refused: %s", spellings[i], qn_last_error());
    assert_int_equal(r.n_rules, 1);
    assert_string_equal(r.rules[0].pattern, "output.weight");
    assert_int_equal(qn_recipe_pick(&r, "output.weight"), q("int8-channel"));
    assert_int_equal(qn_recipe_pick(&r, "token_embd.weight"), q("int4-g64"));
  }
}

static void test_malformed_rules(void** state) {
  (void)state;
  static const char* bad[] = {"output.weight",
                              "=int8-channel",
                              "output.weight=",
                              "   ",
                              "",
                              "output.weight=int8-channel extra"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    qn_recipe r;
    assert_int_equal(qn_recipe_init(&r, "f16"), QN_OK);
    if (qn_recipe_add(&r, bad[i], "--rule") != QN_EINVAL) fail_msg("'%s' accepted", bad[i]);
    assert_non_null(strstr(qn_last_error(), "--rule"));
    assert_int_equal(r.n_rules, 0);
    assert_int_equal(r.def, q("f16"));
  }
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "f16"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "blk.*=int5-g32", "--rule"), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "int5-g32"));
  assert_non_null(strstr(qn_last_error(), "--rule"));
}

static void test_globs(void** state) {
  (void)state;
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "int4-g32"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "blk.*.ffn_down.weight=int8-g32", "t"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "blk.[0].attn_?.weight=f16", "t"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "*embd*=int8-channel", "t"), QN_OK);
  struct {
    const char* name;
    const char* want;
  } cases[] = {
      {"token_embd.weight", "int8-channel"},  {"blk.0.attn_q.weight", "f16"},
      {"blk.0.attn_k.weight", "f16"},         {"blk.0.attn_output.weight", "int4-g32"},
      {"blk.1.attn_q.weight", "int4-g32"},    {"blk.0.ffn_down.weight", "int8-g32"},
      {"blk.10.ffn_down.weight", "int8-g32"}, {"blk.0.ffn_up.weight", "int4-g32"},
      {"output.weight", "int4-g32"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (qn_recipe_pick(&r, cases[i].name) != q(cases[i].want))
      fail_msg("%s: got %s, want %s", cases[i].name,
               qn_qtype_traits_of(qn_recipe_pick(&r, cases[i].name))->name, cases[i].want);
  /* '.' is literal: "blk.1.*" does not match "blk.10.*"'s layer 1 prefix only by accident */
  assert_int_equal(qn_recipe_add(&r, "blk.1.*=bf16", "t"), QN_OK);
  assert_int_equal(qn_recipe_pick(&r, "blk.1.ffn_up.weight"), q("bf16"));
  assert_int_equal(qn_recipe_pick(&r, "blk.10.ffn_up.weight"), q("int4-g32"));
}

static void test_last_match_wins(void** state) {
  (void)state;
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "int4-g32"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "blk.*=int8-channel", "t"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "blk.0.*=f16", "t"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "*=fp8-e4m3", "t"), QN_OK);
  assert_int_equal(qn_recipe_add(&r, "blk.1.ffn_down.weight=bf16", "t"), QN_OK);
  assert_int_equal(qn_recipe_pick(&r, "blk.0.attn_q.weight"), q("fp8-e4m3"));
  assert_int_equal(qn_recipe_pick(&r, "blk.1.ffn_down.weight"), q("bf16"));
  assert_int_equal(qn_recipe_pick(&r, "output.weight"), q("fp8-e4m3"));
  /* a later, narrower rule beats an earlier, broader one, and not the other way round */
  qn_recipe r2;
  assert_int_equal(qn_recipe_init(&r2, "int4-g32"), QN_OK);
  assert_int_equal(qn_recipe_add(&r2, "blk.0.*=f16", "t"), QN_OK);
  assert_int_equal(qn_recipe_add(&r2, "blk.*=int8-channel", "t"), QN_OK);
  assert_int_equal(qn_recipe_pick(&r2, "blk.0.attn_q.weight"), q("int8-channel"));
}

static void test_file(void** state) {
  (void)state;
  const char* text =
      "# recipe for a small model\n"
      "\n"
      "default int4-g64   # most weights\n"
      "token_embd.weight int8-channel\n"
      "   output.weight=int8-channel\r\n"
      "blk.0.*  f16\n"
      "\t# an indented comment\n"
      "blk.*.ffn_down.weight = int8-g32\n"
      "blk.0.ffn_down.weight bf16"; /* no final newline */
  const char* p = recipe_file(text);
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "f32"), QN_OK);
  if (qn_recipe_load(&r, p) != QN_OK) fail_msg("%s", qn_last_error());
  assert_int_equal(r.def, q("int4-g64"));
  assert_int_equal(r.n_rules, 5);
  assert_int_equal(qn_recipe_pick(&r, "token_embd.weight"), q("int8-channel"));
  assert_int_equal(qn_recipe_pick(&r, "output.weight"), q("int8-channel"));
  assert_int_equal(qn_recipe_pick(&r, "blk.0.attn_q.weight"), q("f16"));
  assert_int_equal(qn_recipe_pick(&r, "blk.0.ffn_down.weight"), q("bf16"));
  assert_int_equal(qn_recipe_pick(&r, "blk.1.ffn_down.weight"), q("int8-g32"));
  assert_int_equal(qn_recipe_pick(&r, "blk.1.attn_q.weight"), q("int4-g64"));

  /* rules given after the file (the CLI's --rule) apply on top of it */
  assert_int_equal(qn_recipe_add(&r, "blk.0.*=int4a-g32", "--rule"), QN_OK);
  assert_int_equal(qn_recipe_pick(&r, "blk.0.ffn_down.weight"), q("int4a-g32"));

  /* the text form reads back to the same choices */
  char* t = qn_recipe_text(&r);
  assert_non_null(t);
  const char* p2 = recipe_file(t);
  qn_recipe back;
  assert_int_equal(qn_recipe_init(&back, "f32"), QN_OK);
  if (qn_recipe_load(&back, p2) != QN_OK) fail_msg("%s\n%s", qn_last_error(), t);
  assert_int_equal(back.def, r.def);
  assert_int_equal(back.n_rules, r.n_rules);
  for (size_t i = 0; i < N_NAMES; i++)
    assert_int_equal(qn_recipe_pick(&back, k_names[i]), qn_recipe_pick(&r, k_names[i]));
  free(t);
  unlink(p);
  unlink(p2);
}

static void test_file_errors(void** state) {
  (void)state;
  /* the unknown scheme is on line 5 (comments and blank lines count) */
  const char* text = "# header\n\ndefault int8-channel\n# comment\nblk.*.attn_q.weight int3\n";
  const char* p = recipe_file(text);
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "f32"), QN_OK);
  assert_int_equal(qn_recipe_load(&r, p), QN_EINVAL);
  char want[300];
  snprintf(want, sizeof want, "%s:5:", p);
  if (!strstr(qn_last_error(), want) || !strstr(qn_last_error(), "'int3'"))
    fail_msg("message '%s' lacks '%s' and 'int3'", qn_last_error(), want);
  unlink(p);

  /* an unknown default, with CRLF line ends */
  p = recipe_file("a.weight f16\r\nb.weight f16\r\ndefault q4_0\r\n");
  assert_int_equal(qn_recipe_init(&r, "f32"), QN_OK);
  assert_int_equal(qn_recipe_load(&r, p), QN_EINVAL);
  snprintf(want, sizeof want, "%s:3:", p);
  assert_non_null(strstr(qn_last_error(), want));
  assert_non_null(strstr(qn_last_error(), "q4_0"));
  unlink(p);

  /* a line that is not a rule */
  p = recipe_file("output.weight\n");
  assert_int_equal(qn_recipe_init(&r, "f32"), QN_OK);
  assert_int_equal(qn_recipe_load(&r, p), QN_EINVAL);
  snprintf(want, sizeof want, "%s:1:", p);
  assert_non_null(strstr(qn_last_error(), want));
  unlink(p);

  /* a missing file */
  assert_int_equal(qn_recipe_init(&r, "f32"), QN_OK);
  assert_int_equal(qn_recipe_load(&r, "/nonexistent/x.recipe"), QN_EIO);
  assert_non_null(strstr(qn_last_error(), "/nonexistent/x.recipe"));

  /* an empty file, and one of comments only: no rules, default unchanged */
  p = recipe_file("");
  assert_int_equal(qn_recipe_init(&r, "bf16"), QN_OK);
  assert_int_equal(qn_recipe_load(&r, p), QN_OK);
  assert_int_equal(r.n_rules, 0);
  assert_int_equal(r.def, q("bf16"));
  unlink(p);
  p = recipe_file("# nothing\n   \n\t\n#default f16\n");
  assert_int_equal(qn_recipe_load(&r, p), QN_OK);
  assert_int_equal(r.n_rules, 0);
  assert_int_equal(r.def, q("bf16"));
  unlink(p);
}

static void test_limits(void** state) {
  (void)state;
  qn_recipe r;
  assert_int_equal(qn_recipe_init(&r, "f16"), QN_OK);
  char rule[400];
  for (int i = 0; i < QN_RECIPE_MAX_RULES; i++) {
    snprintf(rule, sizeof rule, "blk.%d.*=int8-channel", i);
    assert_int_equal(qn_recipe_add(&r, rule, "t"), QN_OK);
  }
  assert_int_equal(qn_recipe_add(&r, "output.weight=int8-channel", "t"), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "rules"));
  assert_int_equal(r.n_rules, QN_RECIPE_MAX_RULES);
  /* "default" lines do not count as rules */
  assert_int_equal(qn_recipe_add(&r, "default int4-g32", "t"), QN_OK);
  assert_int_equal(r.def, q("int4-g32"));

  /* a pattern longer than the rule table holds is refused, not cut */
  qn_recipe r2;
  assert_int_equal(qn_recipe_init(&r2, "f16"), QN_OK);
  memset(rule, 'a', 200);
  snprintf(rule + 200, sizeof rule - 200, "=int8-channel");
  assert_int_equal(qn_recipe_add(&r2, rule, "t"), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "too long"));
  memset(rule, 'a', 300);
  snprintf(rule + 300, sizeof rule - 300, "=int8-channel");
  assert_int_equal(qn_recipe_add(&r2, rule, "t"), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "too long"));
  assert_int_equal(r2.n_rules, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_only),   cmocka_unit_test(test_unknown_default),
      cmocka_unit_test(test_rule_spellings), cmocka_unit_test(test_malformed_rules),
      cmocka_unit_test(test_globs),          cmocka_unit_test(test_last_match_wins),
      cmocka_unit_test(test_file),           cmocka_unit_test(test_file_errors),
      cmocka_unit_test(test_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
