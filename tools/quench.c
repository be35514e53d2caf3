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
     "      --method M       weight method (docs/QUANTIZATION.md); all but rtn/search read\n"
     "                       --calib text:\n"
     "                       rtn      absmax round-to-nearest (default)\n"
     "                       search   error-minimising scale search (= --search)\n"
     "                       imp      the search weighted by each input channel's activation\n"
     "                                energy sum x^2 (one FP32 pass, default 100000 tokens)\n"
     "                       gptq     error-compensating GPTQ layer by layer (default 20000\n"
     "                                tokens); int8/int4/int3 symmetric schemes, others RTN\n"
     "                       awq      activation-aware scaling: per layer input, channel\n"
     "                                scales mean|x|^alpha (alpha searched 0..1) folded into\n"
     "                                the norms / preceding weights, then a clipping search\n"
     "                                per group (default 20000 tokens); weight-only schemes\n"
     "                       awq+gptq AWQ's scales, then GPTQ on the scaled weights\n"
     "                       Progress per layer; time and peak memory printed at the end.\n"
     "                       gptq and awq gain from more calibration text: pass\n"
     "                       --calib-tokens 1000000 to use all of FILE (time and memory\n"
     "                       grow with the tokens; docs/BENCHMARKS.md has both)\n"
     "      --act-order      GPTQ: quantize columns by decreasing activation energy\n"
     "      --damp F         GPTQ: dampening, fraction of the mean Hessian diagonal (0.01)\n"
     "  -t, --threads N      worker threads\n"
     "      --list           explain every scheme (bits/weight, kernels, accuracy)\n"
     "      --json           print the report as JSON\n"
     "Calibration (needed by w8a8-static and by --smooth):\n"
     "      --calib FILE     representative UTF-8 text; the FP32 model reads it and the\n"
     "                       input of every linear layer is observed (constant memory)\n"
     "      --calib-tokens N tokens to run (default 100000, or all of FILE)\n"
     "      --calib-ctx N    window length (default 512, capped by the model's context)\n"
     "      --calib-method M how each site's clip threshold T (int8 scale T/127) is chosen:\n"
     "                       minmax (max |x|), percentile (default), mse (least expected\n"
     "                       int8 error), entropy (TensorRT's KL search)\n"
     "      --percentile P   percentile of |x| for the percentile method (default 99.99)\n"
     "      --calib-kv       also observe the cached keys and values (summary only)\n"
     "      --smooth ALPHA   SmoothQuant: move activation outliers into the weights with\n"
     "                       s_j = max|X_j|^ALPHA / max|W_j|^(1-ALPHA), ALPHA in [0, 1]\n"
     "      --smooth auto    choose ALPHA per layer input (0.3..0.8 or none) by the\n"
     "                       quantized layers' output error on a calibration sample\n"
     "                       (evenly spread rows plus the rows with the largest |x|)\n"
     "                       Smoothing is folded into the norms and weights (exact in\n"
     "                       FP32). With massive outlier activations (e.g. on the first\n"
     "                       token) minmax after --smooth auto or 0.8 works best: the\n"
     "                       clipping methods clip those tokens.\n"
     "Mixed precision (instead of --scheme/--recipe/--rule):\n"
     "      --target-kld X   choose a scheme per weight from --candidates minimising size\n"
     "                       with mean KLD vs the source <= X on --mp-text (measured)\n"
     "      --max-ppl-increase P   or: perplexity increase <= P percent\n"
     "      --candidates L   schemes to choose from (default int4-g32,int8-channel,f16)\n"
     "      --mp-text FILE   text the budget is measured on; --mp-ctx N [--mp-chunks K] for\n"
     "                       windows, else documents split on --mp-sep (<|endoftext|>)\n"
     "                       The chosen recipe is printed and written to OUT.recipe.\n"
     "Prints a table per tensor (scheme, bits/weight, SQNR, max abs error, bytes) and the\n"
     "totals; with --calib also the calibration summary (layer, site, range, threshold,\n"
     "clipped %), which is stored in the .qnz metadata (quench.calib). Norm weights and\n"
     "biases stay f32. Tensor names: see 'quench inspect'.\n"},
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
     "                     [--ctx N [--chunks K] | --sep S] [--search] [--calib FILE] [options]\n"
     "  -m, --model PATH     source model (llama2.c .bin, .gguf, HF directory, .qnz)\n"
     "  -f, --file PATH      evaluation text (UTF-8)\n"
     "  -s, --schemes LIST   comma-separated entries SCHEME[+search][:METHOD], e.g.\n"
     "                       f16,int8-channel,int4-g32,int4-g32:gptq,int4-g32:awq,int3-g32:imp;\n"
     "                       +search: error-minimising scale search ('quench quantize --list');\n"
     "                       METHOD: rtn, search, imp, gptq, awq or awq+gptq (see\n"
     "                       'quench help quantize'; imp/gptq/awq need --calib)\n"
     "      --calib FILE     calibration text of the imp, gptq and awq entries\n"
     "      --calib-tokens N their calibration tokens (default: each method's own)\n"
     "      --act-order      GPTQ entries: columns by decreasing Hessian diagonal\n"
     "  -o, --output DIR     output directory (created if missing)\n"
     "      --search         use the scale search for every scheme\n"
     "      --ctx N          score non-overlapping windows of N tokens (no BOS);\n"
     "                       --chunks K: only the first K windows\n"
     "      --sep S          split the text into documents on S (default <|endoftext|>\n"
     "                       when --ctx is not given); BOS + full context each\n"
     "      --tokenizer PATH llama2.c tokenizer.bin (default: beside the model)\n"
     "  -t, --threads N      worker threads\n"
     "      --json           print report.json on stdout instead of the table\n"
     "Quantizes MODEL to DIR/<entry>.qnz for each entry and compares each with MODEL on\n"
     "TEXT (perplexity, delta PPL, KL divergence mean and p99, top-1 agreement). Writes\n"
     "DIR/report.md (a Markdown table with the model, text, convention, date and command),\n"
     "DIR/report.json (the same rows) and DIR/kld_vs_bpw.svg (mean KLD on a log scale\n"
     "against bits per weight, one point per entry, coloured by method when methods are\n"
     "compared).\n"},
    {"sensitivity", cmd_sensitivity, "rank layers by quantization sensitivity; mixed precision",
     "usage: quench sensitivity -m MODEL -f TEXT --scheme S [--by layer|tensor] [options]\n"
     "       quench sensitivity -m MODEL -f TEXT --candidates LIST --target-kld X -o DIR\n"
     "  -m, --model PATH     source model (llama2.c .bin, .gguf, HF directory, .qnz)\n"
     "  -f, --file PATH      evaluation text (UTF-8)\n"
     "  -s, --scheme S       scheme each variant applies (weight-only or dynamic)\n"
     "      --by layer|tensor  quantize one decoder block (its 7 linears) or one 2-D weight\n"
     "                       (embedding and head included) at a time (default layer)\n"
     "      --ctx N          score non-overlapping windows of N tokens (no BOS);\n"
     "                       --chunks K: only the first K windows\n"
     "      --sep S          split the text into documents on S (default <|endoftext|>\n"
     "                       when --ctx is not given); BOS + full context each\n"
     "  -o, --output DIR     write DIR/sensitivity.json and DIR/sensitivity.svg\n"
     "      --linear         linear KLD axis in the chart (default log)\n"
     "      --search         error-minimising scale search instead of plain absmax\n"
     "      --tokenizer PATH llama2.c tokenizer.bin (default: beside the model)\n"
     "  -t, --threads N      worker threads\n"
     "      --json           print the JSON on stdout instead of the table\n"
     "Mixed precision (instead of --scheme):\n"
     "      --candidates LIST  schemes to choose from per weight, e.g.\n"
     "                       int4-g32,int8-channel,f16\n"
     "      --target-kld X   budget: measured mean KLD <= X nats\n"
     "      --max-ppl-increase P  budget: measured PPL increase <= P percent\n"
     "      --rounds N       quantize-and-measure rounds at most (default 4)\n"
     "Each variant is quantized in memory and compared with the full-precision model on\n"
     "TEXT (mean KL divergence, PPL, top-1 agreement); the base model runs once per span.\n"
     "Rows are ranked by mean KLD. The mixed-precision search measures every weight alone\n"
     "in every candidate, picks per weight the smallest scheme set whose summed KLDs fit\n"
     "the budget, quantizes and measures the result, tightens the budget if it missed,\n"
     "and writes DIR/recipe.txt (usable with 'quench quantize --recipe'), DIR/mixed.qnz\n"
     "and DIR/mixed_precision.json.\n"},
    {"bench", cmd_bench, "speed: prefill/decode tokens/s, GB/s, GOPS; machine limits; sweeps",
     "usage: quench bench -m MODEL [-t THREADS] [-p 512] [-n 128] [-r REPS] [--json]\n"
     "       quench bench --membw [--json]\n"
     "       quench bench -m MODEL --sweep SCHEMES [-o DIR] [options]\n"
     "  -m, --model PATH     model: llama2.c .bin, .gguf, HF directory or .qnz\n"
     "  -p, --n-prompt N     prefill: N pseudo-random tokens in one forward call (default 512)\n"
     "  -n, --n-gen N        decode: N greedy single-token steps after it (default 128)\n"
     "  -r, --reps N         repetitions; every figure is the median (default 3)\n"
     "  -t, --threads N      worker threads (default: all cores)\n"
     "      --json           one JSON object on stdout (keys pp_tps, tg_tps, tg_gbps, ttft_ms,\n"
     "                       tpot_p50_ms, tpot_p99_ms, rss_bytes, load_ms, pp_gops...)\n"
     "      --membw          measure the machine limits: read bandwidth (streaming read of a\n"
     "                       1 GiB buffer, all threads, best of 5), int8 VNNI peak (vpdpbusd\n"
     "                       register loop) and FP32 FMA peak; alone it prints just these\n"
     "                       (JSON keys membw_gbps, vnni_gops, fma_gflops); with -m, results\n"
     "                       are also shown as fractions of them\n"
     "      --membw-mib N    bandwidth buffer size in MiB (default 1024)\n"
     "      --limits FILE    take the limits from the JSON of an earlier 'bench --membw --json'\n"
     "      --sweep LIST     quantize MODEL to each comma-separated scheme (DIR/<scheme>.qnz),\n"
     "                       bench each in a fresh process, print one table, and write\n"
     "                       DIR/bench_sweep.json and DIR/bench_sweep.svg (decode and prefill\n"
     "                       tokens/s against bits/weight)\n"
     "  -o, --output DIR     where the sweep keeps its files (default: a new /tmp/quench-sweep-*\n"
     "                       directory; its .qnz files are deleted once measured)\n"
     "Measured: load time (qn_model_open), prefill tokens/s, time to first token (prefill +\n"
     "greedy pick), decode tokens/s, time per output token p50/p99, effective decode GB/s\n"
     "(weight bytes streamed per token -- every tensor but the embedding, head included -- x\n"
     "tokens/s), prefill GOPS (2 x linear-layer weights x tokens / s; attention not counted),\n"
     "peak RSS. A warm-up (short prefill + one decode step) runs first, untimed.\n"},
    {"synth", cmd_synth, "write a synthetic model (random weights, real shapes) for speed tests",
     "usage: quench synth --preset NAME -o DIR [--seed N] [--dtype f32|f16|bf16] [-t N]\n"
     "       quench synth --list\n"
     "      --preset NAME    tiny, llama-110m, tinyllama-1.1b or llama-7b (--list: shapes)\n"
     "  -o, --output DIR     Hugging Face directory to write (config.json, model.safetensors,\n"
     "                       tokenizer.json, tokenizer_config.json)\n"
     "  -s, --seed N         random seed (default 42); the same seed writes the same bytes\n"
     "      --dtype T        storage type of every tensor (default bf16)\n"
     "  -t, --threads N      threads drawing random numbers (default: all cores)\n"
     "RANDOM WEIGHTS, FOR SPEED TESTS ONLY: every matrix (embedding and separate output head\n"
     "included) is Gaussian with std 0.02, norm weights are 1.0; the tokenizer is a byte-level\n"
     "BPE filled to the vocabulary size with generated merges. The text such a model writes is\n"
     "meaningless, but run, eval, quantize, inspect and bench all read it. Written into\n"
     "DIR.tmp.<pid> and renamed when complete; an existing DIR is replaced only if it is an\n"
     "earlier synthetic model. llama-7b in bf16 is 13.5 GB.\n"},
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
  fprintf(f,
          "\nEnvironment: QN_ISA=ref|avx2|avx512 picks the kernel level (default: the best the\n"
          "CPU supports; ref is the scalar reference every SIMD kernel is tested against).\n");
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
