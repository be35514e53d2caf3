/* cli.h: helpers shared by the quench subcommands: argument parsing, the progress bar,
 * error printing. The CLI only parses and prints; all work is library calls. */
#ifndef QN_CLI_H
#define QN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "quench.h"

/* Subcommand entry points: argc/argv start at the subcommand's own arguments. */
int cmd_run(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_report(int argc, char** argv);
int cmd_sensitivity(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_synth(int argc, char** argv);
int cmd_bench(int argc, char** argv);

/* Prints the help text of a subcommand on stdout. */
void cli_print_help(const char* name);

/* Prints "quench CMD: <message>" for the last library error; returns exit code 1. */
int cli_fail(const char* cmd, qn_status st);
/* Prints "quench CMD: <formatted message>"; returns exit code 2 (usage error). */
int cli_usage_error(const char* cmd, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fetches the value of option argv[*i] (advancing *i); NULL and a message if missing. */
const char* cli_value(const char* cmd, int argc, char** argv, int* i);
/* Parses an integer / float option value; false and a message if malformed or out of range. */
bool cli_int(const char* cmd, const char* opt, const char* v, long lo, long hi, long* out);
bool cli_float(const char* cmd, const char* opt, const char* v, double lo, double hi, double* out);

/* Progress bar on stderr when it is a terminal (a final newline when done). */
int cli_progress(void* user, const char* stage, int64_t done, int64_t total);

/* Reads a whole regular file (malloc'ed, NUL-terminated); NULL and a message on failure. */
char* cli_read_text(const char* cmd, const char* path, size_t* len);
/* mkdir -p; false and a message on failure. */
bool cli_make_dirs(const char* cmd, const char* path);
/* "dir/name", malloc'ed. */
char* cli_join_path(const char* dir, const char* name);
/* Writes an output file's contents to f; false on failure. */
typedef bool (*cli_writer_fn)(FILE* f, const void* doc);
/* Writes dir/name through a temporary file in dir, fsync'ed and renamed when complete. */
bool cli_write_atomic(const char* cmd, const char* dir, const char* name, cli_writer_fn fn,
                      const void* doc);

/* Writes s as a JSON string literal (quotes and escapes) to f. */
void cli_json_str(FILE* f, const char* s);

/* Default paths of the shared test material, relative to the working directory. */
#define CLI_DEFAULT_MODEL "../shared/models/stories260K/stories260K.bin"
#define CLI_DEFAULT_TEXT "../shared/text/tinystories-valid-head80k.txt"

#endif
