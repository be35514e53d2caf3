/* test_report.c: runs the built `quench report` on stories260K with the TinyStories text
 * (per-story convention) for int8-channel and int4-g32, then checks what it wrote:
 *  - report.md has a table with exactly 2 data rows, one per scheme, in the order given;
 *  - report.json parses (cJSON) and holds 2 rows with finite PPLs near the base perplexity
 *    of the shared README (3.371) and KLDs where int8-channel's is smaller than int4-g32's
 *    and smaller bits/weight for int4-g32;
 *  - kld_vs_bpw.svg starts with "<svg", holds one <circle> per scheme and both labels;
 *  - no temporary files are left in the directory;
 *  - an unknown scheme fails with a non-zero exit code before anything is written, and so
 *    does an output directory that cannot be created. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

static const char* g_model; /* stories260K.bin under ../shared */
static const char* g_text;  /* the TinyStories text under ../shared */
static char g_dir[64];      /* a fresh temporary directory for the outputs */

/* Runs the CLI with the given arguments (a shell fragment), output to a log; exit code. */
static int run_quench(const char* args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/quench' %s >'%s.log' 2>&1", QN_BINARY_DIR, args, g_dir);
  int st = system(cmd);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static void print_log(void) {
  char path[128];
  snprintf(path, sizeof path, "%s.log", g_dir);
  char* log = qt_read_file(path, NULL);
  if (log) fprintf(stderr, "---- quench output ----\n%s\n", log);
  free(log);
}

/* Reads a file the report wrote into g_dir/out. */
static char* read_out(const char* name) {
  char path[256];
  snprintf(path, sizeof path, "%s/out/%s", g_dir, name);
  return qt_read_file(path, NULL);
}

static bool exists(const char* path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static int count(const char* s, const char* needle) {
  int n = 0;
  for (const char* p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* Lines of the Markdown table after its header and separator rows. */
static int table_rows(const char* md, char rows[][256], int cap) {
  int n = 0, seen = 0;
  for (const char* p = md; *p;) {
    const char* e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len && p[0] == '|') {
      if (seen++ >= 2 && n < cap) snprintf(rows[n++], 256, "%.*s", (int)len, p);
    }
    p += len + (e ? 1 : 0);
  }
  return n;
}

static const cJSON* row_by_scheme(const cJSON* rows, const char* scheme) {
  const cJSON* r;
  cJSON_ArrayForEach(r, rows) {
    const cJSON* s = cJSON_GetObjectItemCaseSensitive(r, "scheme");
    if (cJSON_IsString(s) && !strcmp(s->valuestring, scheme)) return r;
  }
  return NULL;
}

static double num(const cJSON* obj, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, key);
  assert_non_null(v);
  assert_true(cJSON_IsNumber(v));
  return v->valuedouble;
}

static void test_report_two_schemes(void** state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args,
           "report -m '%s' -f '%s' --sep '<|endoftext|>' --schemes int8-channel,int4-g32 "
           "-o '%s/out'",
           g_model, g_text, g_dir);
  int rc = run_quench(args);
  if (rc != 0) print_log();
  assert_int_equal(rc, 0);

  /* report.md: two data rows, in the order given */
  char* md = read_out("report.md");
  assert_non_null(md);
  char rows[8][256];
  assert_int_equal(table_rows(md, rows, 8), 2);
  assert_non_null(strstr(rows[0], "| int8-channel |"));
  assert_non_null(strstr(rows[1], "| int4-g32 |"));
  assert_non_null(strstr(md, "stories260K.bin"));
  assert_non_null(strstr(md, "quench report"));
  free(md);

  /* report.json: rows with numbers that make sense */
  char* js = read_out("report.json");
  assert_non_null(js);
  cJSON* root = cJSON_Parse(js);
  assert_non_null(root);
  const cJSON* jrows = cJSON_GetObjectItemCaseSensitive(root, "rows");
  assert_true(cJSON_IsArray(jrows));
  assert_int_equal(cJSON_GetArraySize(jrows), 2);
  const cJSON* r8 = row_by_scheme(jrows, "int8-channel");
  const cJSON* r4 = row_by_scheme(jrows, "int4-g32");
  assert_non_null(r8);
  assert_non_null(r4);
  double base = num(r8, "ppl_base");
  assert_true(base > 3.35 && base < 3.39); /* the shared README: PPL 3.371 */
  assert_true(num(r8, "ppl") > 3.0 && num(r8, "ppl") < 3.5);
  assert_true(num(r4, "ppl") > num(r8, "ppl"));
  double k8 = num(r8, "kld_mean"), k4 = num(r4, "kld_mean");
  assert_true(k8 > 0 && k4 > 0);
  assert_true(k8 < k4);
  assert_true(num(r8, "kld_p99") >= k8);
  assert_true(num(r4, "bpw") < num(r8, "bpw"));
  assert_true(num(r4, "bytes") < num(r8, "bytes"));
  assert_true(num(r8, "top1_agree") > num(r4, "top1_agree"));
  cJSON_Delete(root);
  free(js);

  /* the plot: one marker per scheme, both labels */
  char* svg = read_out("kld_vs_bpw.svg");
  assert_non_null(svg);
  assert_memory_equal(svg, "<svg", 4);
  assert_int_equal(count(svg, "<circle"), 2);
  assert_non_null(strstr(svg, ">int8-channel</text>"));
  assert_non_null(strstr(svg, ">int4-g32</text>"));
  assert_non_null(strstr(svg, "</svg>"));
  free(svg);

  /* nothing temporary left behind */
  char out[128];
  snprintf(out, sizeof out, "%s/out", g_dir);
  DIR* d = opendir(out);
  assert_non_null(d);
  for (struct dirent* e; (e = readdir(d));)
    if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      fail_msg("temporary file left: %s", e->d_name);
  closedir(d);
}

static void test_report_bad_input(void** state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args,
           "report -m '%s' -f '%s' --sep '<|endoftext|>' --schemes int8-channel,int3-g7 "
           "-o '%s/bad'",
           g_model, g_text, g_dir);
  assert_int_not_equal(run_quench(args), 0);
  char path[256];
  snprintf(path, sizeof path, "%s/bad/report.md", g_dir);
  assert_false(exists(path));
  snprintf(path, sizeof path, "%s/bad/int8-channel.qnz", g_dir);
  assert_false(exists(path));

  /* an output "directory" below a regular file */
  snprintf(path, sizeof path, "%s/file", g_dir);
  FILE* f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(args, sizeof args, "report -m '%s' -f '%s' --schemes int8-channel -o '%s/file/sub'",
           g_model, g_text, g_dir);
  assert_int_not_equal(run_quench(args), 0);
  unlink(path);

  /* a missing text */
  snprintf(args, sizeof args, "report -m '%s' -f '%s/none.txt' --schemes f16 -o '%s/bad'", g_model,
           g_dir, g_dir);
  assert_int_not_equal(run_quench(args), 0);
  snprintf(path, sizeof path, "%s/bad/report.md", g_dir);
  assert_false(exists(path));
}

/* Removes dir and everything below it. */
static void remove_tree(const char* dir) {
  DIR* d = opendir(dir);
  if (!d) return;
  char path[512];
  for (struct dirent* e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
      remove_tree(path);
    else
      unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

int main(void) {
  g_model = qt_shared("models/stories260K/stories260K.bin");
  g_text = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_model || !g_text) qt_skip("stories260K or the TinyStories text is absent");
  if (!qt_shared("models/stories260K/tok512.bin")) qt_skip("tok512.bin is absent");
  snprintf(g_dir, sizeof g_dir, "/tmp/qn_report_XXXXXX");
  if (!mkdtemp(g_dir)) {
    fprintf(stderr, "cannot create a temporary directory\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_report_two_schemes),
      cmocka_unit_test(test_report_bad_input),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char log[128];
  snprintf(log, sizeof log, "%s.log", g_dir);
  unlink(log);
  remove_tree(g_dir);
  return rc;
}
