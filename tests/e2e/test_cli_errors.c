/* test_cli_errors.c: the quench command line refuses bad input cleanly: for each case the
 * process exits (no signal) with a non-zero code, and the first line of stderr is one
 * "quench ...: <message>" line that names the problem (the option, value, file or limit at
 * fault). Covered: unknown command and options, missing -m / -q / option values, missing
 * files, malformed numbers, --ctx with --sep, an unknown quantization scheme (no file left
 * behind), a truncated llama2.c checkpoint, a prompt longer than the context; `quench help
 * run` succeeds. Cases that need stories260K are skipped when ../shared is absent. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char* g_quench = QN_BINARY_DIR "/quench";
static const char* g_model; /* stories260K.bin, or NULL */
static const char* g_tok;   /* tok512.bin, or NULL */
static const char* g_text;  /* the TinyStories text, or NULL */
static char g_tmp[128];     /* scratch directory */

/* What a run of the CLI gave. */
typedef struct result {
  int code;  /* exit code, or -signal */
  char* out; /* stdout (malloc'ed) */
  char* err; /* stderr (malloc'ed) */
} result;

static void result_free(result* r) {
  free(r->out);
  free(r->err);
}

/* Runs quench with the NULL-terminated arguments args. */
static result run(const char* const* args) {
  char outp[256], errp[256];
  snprintf(outp, sizeof outp, "%s/stdout", g_tmp);
  snprintf(errp, sizeof errp, "%s/stderr", g_tmp);
  const char* argv[64];
  int n = 0;
  argv[n++] = g_quench;
  for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) _exit(127);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(g_quench, (char* const*)argv);
    _exit(127);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = qt_read_file(outp, NULL);
  r.err = qt_read_file(errp, NULL);
  assert_non_null(r.out);
  assert_non_null(r.err);
  return r;
}

/* Runs args and expects a clean failure whose first stderr line contains every one of the
 * NULL-terminated words. */
static void expect_error(const char* const* args, ...) {
  result r = run(args);
  char cmd[512];
  int o = 0;
  for (int i = 0; args[i] && o < (int)sizeof cmd - 80; i++)
    o += snprintf(cmd + o, sizeof cmd - (size_t)o, " %.60s", args[i]);
  if (r.code < 0) fail_msg("quench%s: killed by signal %d\n%s", cmd, -r.code, r.err);
  if (r.code == 0) fail_msg("quench%s: exit code 0", cmd);
  char* nl = strchr(r.err, '\n');
  if (!nl) fail_msg("quench%s: stderr '%s' is not a terminated line", cmd, r.err);
  *nl = '\0';
  printf("  [%d] %s\n", r.code, r.err);
  if (strncmp(r.err, "quench", 6) != 0) fail_msg("quench%s: stderr '%s'", cmd, r.err);
  va_list ap;
  va_start(ap, args);
  for (const char* w; (w = va_arg(ap, const char*));)
    if (!strstr(r.err, w)) fail_msg("quench%s: message '%s' does not name '%s'", cmd, r.err, w);
  va_end(ap);
  result_free(&r);
}

/* A model path for cases that fail before the model is read. */
static const char* some_model(void) { return g_model ? g_model : "/nonexistent/model.bin"; }
static const char* some_text(void) { return g_text ? g_text : "/nonexistent/text.txt"; }

static void test_commands_and_options(void** state) {
  (void)state;
  const char* m = some_model();
  expect_error((const char*[]){"frobnicate", NULL}, "unknown command", "frobnicate", NULL);
  expect_error((const char*[]){"help", "frobnicate", NULL}, "frobnicate", NULL);
  expect_error((const char*[]){"run", "-m", m, "--bogus", NULL}, "--bogus", NULL);
  expect_error((const char*[]){"quantize", "--bogus", NULL}, "unknown option", "--bogus", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "--bogus", "x", NULL}, "unknown option",
               "--bogus", NULL);
  expect_error((const char*[]){"eval", "ppl", "-m", m, "--bogus", NULL}, "unknown option",
               "--bogus", NULL);
  expect_error((const char*[]){"inspect", m, "--bogus", NULL}, "--bogus", NULL);
  expect_error((const char*[]){"eval", "perplexity", NULL}, "perplexity", NULL);
  expect_error((const char*[]){"eval", NULL}, "ppl", NULL);
}

static void test_missing_arguments(void** state) {
  (void)state;
  const char* m = some_model();
  const char* t = some_text();
  expect_error((const char*[]){"run", "-p", "hello", NULL}, "no model", "-m", NULL);
  expect_error((const char*[]){"inspect", NULL}, "no model", NULL);
  expect_error((const char*[]){"eval", "ppl", "-f", t, NULL}, "no model", NULL);
  expect_error((const char*[]){"eval", "ppl", "-m", m, NULL}, "-f", NULL);
  expect_error((const char*[]){"eval", "cmp", "-m", m, "-f", t, NULL}, "no quantized model", "-q",
               NULL);
  expect_error((const char*[]){"quantize", "-m", m, "--scheme", "int8-channel", NULL}, "-o", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", "/tmp/x.qnz", NULL}, "--scheme", NULL);
  expect_error((const char*[]){"run", "-m", m, "-n", NULL}, "-n", "needs a value", NULL);
  expect_error((const char*[]){"eval", "ppl", "-m", m, "-f", NULL}, "-f", "needs a value", NULL);
}

static void test_missing_files(void** state) {
  (void)state;
  expect_error((const char*[]){"run", "-m", "/nonexistent/model.bin", NULL},
               "/nonexistent/model.bin", NULL);
  expect_error((const char*[]){"inspect", "/nonexistent/model.gguf", NULL},
               "/nonexistent/model.gguf", NULL);
  expect_error((const char*[]){"quantize", "-m", "/nonexistent/m.bin", "-o", "/tmp/qt_never.qnz",
                               "--scheme", "f16", NULL},
               "/nonexistent/m.bin", NULL);
  assert_int_not_equal(access("/tmp/qt_never.qnz", F_OK), 0);
  if (g_model) {
    expect_error((const char*[]){"eval", "ppl", "-m", g_model, "-f", "/nonexistent/t.txt", NULL},
                 "/nonexistent/t.txt", NULL);
    expect_error((const char*[]){"run", "-m", g_model, "--tokenizer", "/nonexistent/tok.bin", NULL},
                 "/nonexistent/tok.bin", NULL);
  }
}

static void test_bad_numbers(void** state) {
  (void)state;
  const char* m = some_model();
  const char* t = some_text();
  expect_error((const char*[]){"run", "-m", m, "-n", "abc", NULL}, "-n", "abc", NULL);
  expect_error((const char*[]){"run", "-m", m, "-n", "12x", NULL}, "-n", "12x", NULL);
  expect_error((const char*[]){"run", "-m", m, "-n", "-5", NULL}, "-n", "-5", NULL);
  expect_error((const char*[]){"run", "-m", m, "-n", "99999999999999999999", NULL}, "-n", NULL);
  expect_error((const char*[]){"run", "-m", m, "--temp", "-1", NULL}, "--temp", "-1", NULL);
  expect_error((const char*[]){"run", "-m", m, "--temp", "nan", NULL}, "--temp", "nan", NULL);
  expect_error((const char*[]){"run", "-m", m, "--top-p", "1.5", NULL}, "--top-p", "1.5", NULL);
  expect_error((const char*[]){"run", "-m", m, "-t", "0", NULL}, "-t", NULL);
  expect_error((const char*[]){"eval", "ppl", "-m", m, "-f", t, "--ctx", "64", "--sep", "X", NULL},
               "--ctx", "--sep", NULL);
  expect_error((const char*[]){"eval", "ppl", "-m", m, "-f", t, "--ctx", "1", NULL}, "--ctx", NULL);
  expect_error((const char*[]){"eval", "ppl", "-m", m, "-f", t, "--chunks", "3", NULL}, "--chunks",
               NULL);
  expect_error(
      (const char*[]){"quantize", "-m", m, "-o", "/tmp/x.qnz", "-s", "f16", "-t", "x", NULL}, "-t",
      "x", NULL);
}

static void test_unknown_scheme(void** state) {
  (void)state;
  char out[256];
  snprintf(out, sizeof out, "%s/never.qnz", g_tmp);
  const char* m = some_model();
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "--scheme", "int3", NULL},
               "unknown scheme", "'int3'", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "--scheme", "int8-channel", "--rule",
                               "output.weight=q4_0", NULL},
               "unknown scheme", "q4_0", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "--scheme", "int8-channel", "--rule",
                               "output.weight", NULL},
               "output.weight", NULL);
  expect_error(
      (const char*[]){"quantize", "-m", m, "-o", out, "--recipe", "/nonexistent/r.txt", NULL},
      "/nonexistent/r.txt", NULL);
  /* nothing written: the scratch directory holds only the captured output */
  char p[300];
  snprintf(p, sizeof p, "%s/never.qnz", g_tmp);
  assert_int_not_equal(access(p, F_OK), 0);
}

static void test_truncated_checkpoint(void** state) {
  (void)state;
  if (!g_model || !g_tok) {
    printf("  SKIPPED: stories260K is absent\n");
    return;
  }
  size_t size = 0;
  char* bytes = qt_read_file(g_model, &size);
  assert_non_null(bytes);
  char p[256];
  snprintf(p, sizeof p, "%s/trunc.bin", g_tmp);
  size_t cuts[] = {0, 5, 27, 28, 1000, size / 2, size - 4, size - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    FILE* f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, cuts[i], f), cuts[i]);
    fclose(f);
    /* with its tokenizer given, so only the truncation is wrong */
    expect_error((const char*[]){"inspect", p, "--tokenizer", g_tok, NULL}, "trunc.bin", NULL);
    expect_error((const char*[]){"run", "-m", p, "--tokenizer", g_tok, "-n", "4", NULL},
                 "trunc.bin", NULL);
  }
  unlink(p);
  free(bytes);
}

static void test_prompt_longer_than_context(void** state) {
  (void)state;
  if (!g_model) {
    printf("  SKIPPED: stories260K is absent\n");
    return;
  }
  /* ~4,000 characters: far more than the 512-token context */
  char prompt[4100];
  const char* s = "Once upon a time there was a big dog who liked to play in the sun. ";
  size_t n = 0, sl = strlen(s);
  while (n + sl < 4000) {
    memcpy(prompt + n, s, sl);
    n += sl;
  }
  prompt[n] = '\0';
  expect_error((const char*[]){"run", "-m", g_model, "-p", prompt, "-n", "8", NULL}, "512",
               "context", NULL);
}

static void test_help(void** state) {
  (void)state;
  result r = run((const char*[]){"help", "run", NULL});
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "usage: quench run"));
  result_free(&r);
  r = run((const char*[]){"quantize", "--help", NULL});
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "usage: quench quantize"));
  result_free(&r);
  r = run((const char*[]){"quantize", "--list", NULL});
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "int4-g32"));
  assert_non_null(strstr(r.out, "fp8-e4m3"));
  result_free(&r);
  /* no arguments at all: usage on stderr, a usage error code */
  r = run((const char*[]){NULL});
  assert_int_not_equal(r.code, 0);
  assert_true(r.code > 0);
  assert_non_null(strstr(r.err, "usage: quench"));
  result_free(&r);
}

static int setup(void** state) {
  (void)state;
  snprintf(g_tmp, sizeof g_tmp, "/tmp/qt_cli_%d", (int)getpid());
  return mkdir(g_tmp, 0755);
}

static int teardown(void** state) {
  (void)state;
  char p[256];
  static const char* files[] = {"stdout", "stderr", "trunc.bin", "never.qnz"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", g_tmp, files[i]);
    unlink(p);
  }
  return rmdir(g_tmp);
}

int main(void) {
  if (access(g_quench, X_OK) != 0) qt_skip("the quench binary is not built");
  g_model = qt_shared("models/stories260K/stories260K.bin");
  g_tok = qt_shared("models/stories260K/tok512.bin");
  g_text = qt_shared("text/tinystories-valid-head80k.txt");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_commands_and_options),
      cmocka_unit_test(test_missing_arguments),
      cmocka_unit_test(test_missing_files),
      cmocka_unit_test(test_bad_numbers),
      cmocka_unit_test(test_unknown_scheme),
      cmocka_unit_test(test_truncated_checkpoint),
      cmocka_unit_test(test_prompt_longer_than_context),
      cmocka_unit_test(test_help),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
