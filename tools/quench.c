/* quench.c: the command-line entry point: dispatches to subcommands and prints help. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
  const char* name;
  int (*fn)(int, char**);
  const char* summary;
  const char* help;
} command;

static const command k_commands[] = {
    {"run", cmd_run, "generate text from a prompt",
     "usage: quench run -m MODEL [-p PROMPT] [-n N] [options]\n"
     "  -m, --model PATH      model: llama2.c .bin, .gguf, HF directory or .qnz\n"
     "      --tokenizer PATH  llama2.c tokenizer.bin (default: beside the model)\n"
     "  -p, --prompt TEXT     prompt (default: empty = start from BOS alone)\n"
     "  -n, --n-predict N     tokens to generate (default 128)\n"
     "  -t, --threads N       worker threads (default: all cores)\n"
     "      --temp X          temperature; 0 = greedy (default 0.8)\n"
     "      --top-k N         keep the N most likely tokens; 0 = off (default 40)\n"
     "      --top-p X         nucleus sampling mass; 1 = off (default 0.95)\n"
     "      --min-p X         drop tokens below X * p(best); 0 = off (default 0.05)\n"
     "      --repeat-penalty X  divide logits of recent tokens by X (default 1 = off)\n"
     "      --repeat-last-n N   window of the penalty (default 64)\n"
     "  -s, --seed N          random seed (default 42)\n"
     "      --json            print statistics as JSON on stdout after the text\n"
     "Streams the text, then prints prompt tokens/s, generated tokens/s and time to first\n"
     "token on stderr.\n"},
    {"quantize", cmd_quantize, "quantize a model's weights into a .qnz file",
     "usage: quench quantize -m MODEL -o OUT.qnz --scheme S [options]\n"
     "       quench quantize --list\n"
     "  -m, --model PATH     source model (llama2.c .bin, .gguf, HF directory, .qnz)\n"
     "  -o, --output PATH    the .qnz to write (via a temporary file, renamed when complete)\n"
     "  -s, --scheme S       scheme of every 2-D weight (embedding and head included)\n"
     "      --rule PAT=S     override for weights whose name matches the glob PAT, e.g.\n"
     "                       --rule 'output.weight=int8-channel' --rule 'blk.0.*=f16';\n"
     "                       repeatable; the last matching rule wins\n"
     "      --recipe FILE    rules from a file: lines 'PATTERN SCHEME', '#' comments,\n"
     "                       'default SCHEME' sets the default\n"
     "      --search         error-minimising scale search instead of plain absmax\n"
     "  -t, --threads N      worker threads\n"
     "      --list           explain every scheme (bits/weight, kernels, accuracy)\n"
     "      --json           print the report as JSON\n"
     "Prints a table per tensor (scheme, bits/weight, SQNR, max abs error, bytes) and the\n"
     "totals. Norm weights and biases stay f32. Tensor names: see 'quench inspect'.\n"},
    {"eval", cmd_eval, "perplexity (eval ppl) and model comparison (eval cmp)",
     "usage: quench eval ppl -m MODEL -f TEXT [--ctx N [--chunks K] | --sep S] [--json]\n"
     "       quench eval cmp -m BASE -q QUANT -f TEXT [--ctx N [--chunks K] | --sep S] [--json]\n"
     "  -f, --file PATH   evaluation text (UTF-8)\n"
     "  --ctx N           score non-overlapping windows of N tokens, each from position 0\n"
     "                    (no BOS); --chunks K: only the first K windows\n"
     "  --sep S           split the text into documents on S (default <|endoftext|> when\n"
     "                    --ctx is not given); each document gets BOS + full context\n"
     "  -t, --threads N   worker threads\n"
     "  --json            one JSON object on stdout\n"
     "ppl prints perplexity, mean NLL and token count. cmp evaluates both models in one\n"
     "pass: perplexity of each, delta PPL, KL divergence of QUANT from BASE (mean, p99, max),\n"
     "top-1 agreement, file sizes and bits per weight.\n"},
    {"report", cmd_report, "quantize to several schemes, compare each, write a table + plot",
     "usage: quench report -m MODEL -f TEXT --schemes LIST -o DIR\n"
     "                     [--ctx N [--chunks K] | --sep S] [--search] [options]\n"
     "  -m, --model PATH     source model (llama2.c .bin, .gguf, HF directory, .qnz)\n"
     "  -f, --file PATH      evaluation text (UTF-8)\n"
     "  -s, --schemes LIST   comma-separated schemes, e.g. f16,int8-channel,int4-g32;\n"
     "                       append +search to one (int4-g32+search) for the\n"
     "                       error-minimising scale search ('quench quantize --list')\n"
     "  -o, --output DIR     output directory (created if missing)\n"
     "      --search         use the scale search for every scheme\n"
     "      --ctx N          score non-overlapping windows of N tokens (no BOS);\n"
     "                       --chunks K: only the first K windows\n"
     "      --sep S          split the text into documents on S (default <|endoftext|>\n"
     "                       when --ctx is not given); BOS + full context each\n"
     "      --tokenizer PATH llama2.c tokenizer.bin (default: beside the model)\n"
     "  -t, --threads N      worker threads\n"
     "      --json           print report.json on stdout instead of the table\n"
     "Quantizes MODEL to DIR/<scheme>.qnz for each scheme and compares each with MODEL on\n"
     "TEXT (perplexity, delta PPL, KL divergence mean and p99, top-1 agreement). Writes\n"
     "DIR/report.md (a Markdown table with the model, text, convention, date and command),\n"
     "DIR/report.json (the same rows) and DIR/kld_vs_bpw.svg (mean KLD on a log scale\n"
     "against bits per weight, one point per scheme).\n"},
    {"inspect", cmd_inspect, "show a model's architecture, tokenizer and tensors",
     "usage: quench inspect MODEL [--tokenizer PATH] [--json] [--metadata]\n"
     "Prints the architecture, hyper-parameters, tokenizer kind and size, and every tensor\n"
     "with dtype (or quantization scheme), shape and bytes. --metadata adds the file's\n"
     "metadata key/values.\n"},
};

static void usage(FILE* f) {
  fprintf(f,
          "quench %s: quantize Llama-family models and run them at low precision\n\n"
          "usage: quench <command> [options]    (quench help <command> for details)\n\n",
          QUENCH_VERSION);
  for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
    fprintf(f, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
  fprintf(f, "\nEnvironment: QN_ISA=ref forces the scalar reference kernels.\n");
}

static const command* find(const char* name) {
  for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
    if (strcmp(k_commands[i].name, name) == 0) return &k_commands[i];
  return NULL;
}

/* Shown by subcommands for -h/--help. */
void cli_print_help(const char* name) {
  const command* c = find(name);
  if (c) fputs(c->help, stdout);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char* name = argv[1];
  if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(name, "--version")) {
    printf("quench %s\n", QUENCH_VERSION);
    return 0;
  }
  if (!strcmp(name, "help")) {
    if (argc < 3) {
      usage(stdout);
      return 0;
    }
    const command* c = find(argv[2]);
    if (!c) {
      fprintf(stderr, "quench: unknown command '%s'\n", argv[2]);
      return 2;
    }
    fputs(c->help, stdout);
    return 0;
  }
  const command* c = find(name);
  if (!c) {
    fprintf(stderr, "quench: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
  }
  return c->fn(argc - 2, argv + 2);
}
