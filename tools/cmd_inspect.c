/* cmd_inspect.c: `quench inspect`: architecture, tokenizer and tensor table (with the packed
 * layout of w8a8-* / w4a8 payloads). */
#include <string.h>

#include "cli.h"

static void print_shape(FILE* f, const qn_tensor_info* t) {
  fputc('[', f);
  for (int d = 0; d < t->ndim; d++) fprintf(f, d ? ", %lld" : "%lld", (long long)t->shape[d]);
  fputc(']', f);
}

static void print_json(const qn_model* m, const qn_model_info* in, bool meta) {
  printf(
      "{\"format\": \"%s\", \"arch\": \"%s\", \"dim\": %d, \"hidden_dim\": %d, "
      "\"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, "
      "\"vocab_size\": %d, \"max_seq_len\": %d, \"rope_theta\": %g, \"norm_eps\": %g, "
      "\"rope_style\": \"%s\", \"tied_embeddings\": %s, \"qkv_bias\": %s, "
      "\"n_params\": %lld, \"weight_bytes\": %llu, \"tokenizer\": {\"kind\": \"%s\", "
      "\"bos_id\": %d, \"eos_id\": %d}, \"tensors\": [",
      in->format, in->arch, in->dim, in->hidden_dim, in->n_layers, in->n_heads, in->n_kv_heads,
      in->head_dim, in->vocab_size, in->max_seq_len, in->rope_theta, in->norm_eps, in->rope_style,
      in->tied_embeddings ? "true" : "false", in->qkv_bias ? "true" : "false",
      (long long)in->n_params, (unsigned long long)in->weight_bytes, in->tokenizer_kind, in->bos_id,
      in->eos_id);
  for (int i = 0; i < qn_model_n_tensors(m); i++) {
    qn_tensor_info t;
    qn_model_tensor(m, i, &t);
    printf("%s{\"name\": ", i ? ", " : "");
    cli_json_str(stdout, t.name);
    printf(", \"dtype\": \"%s\", \"scheme\": ", t.dtype);
    if (t.scheme)
      cli_json_str(stdout, t.scheme);
    else
      printf("null");
    printf(", \"layout\": ");
    if (t.layout)
      cli_json_str(stdout, t.layout);
    else
      printf("null");
    printf(", \"shape\": ");
    print_shape(stdout, &t);
    printf(", \"bytes\": %llu}", (unsigned long long)t.nbytes);
  }
  printf("]");
  const char* md = qn_model_metadata(m);
  if (meta && md) printf(", \"metadata\": %s", md);
  printf("}\n");
}

int cmd_inspect(int argc, char** argv) {
  const char* C = "inspect";
  const char *path = NULL, *tok = NULL;
  bool json = false, meta = false;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      cli_print_help(C);
      return 0;
    } else if (!strcmp(argv[i], "--json")) {
      json = true;
    } else if (!strcmp(argv[i], "--metadata")) {
      meta = true;
    } else if (!strcmp(argv[i], "--tokenizer")) {
      if (!(tok = cli_value(C, argc, argv, &i))) return 2;
    } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
      if (!(path = cli_value(C, argc, argv, &i))) return 2;
    } else if (argv[i][0] == '-') {
      return cli_usage_error(C, "unknown option '%s'", argv[i]);
    } else if (!path) {
      path = argv[i];
    } else {
      return cli_usage_error(C, "more than one model given ('%s')", argv[i]);
    }
  }
  if (!path) return cli_usage_error(C, "no model given");
  qn_model_opts mo = {tok, 1};
  qn_model* m = NULL;
  qn_status st = qn_model_open(path, &mo, &m);
  if (st != QN_OK) return cli_fail(C, st);
  qn_model_info in;
  qn_model_get_info(m, &in);
  if (json) {
    print_json(m, &in, meta);
    qn_model_free(m);
    return 0;
  }
  printf("model        %s (%s)\n", path, in.format);
  printf("arch         %s: dim %d, hidden %d, %d layers, %d heads, %d kv heads, head_dim %d\n",
         in.arch, in.dim, in.hidden_dim, in.n_layers, in.n_heads, in.n_kv_heads, in.head_dim);
  printf("context      %d tokens; RoPE theta %g (%s pairs); RMSNorm eps %g\n", in.max_seq_len,
         in.rope_theta, in.rope_style, in.norm_eps);
  printf("head         %s; qkv bias: %s\n",
         in.tied_embeddings ? "tied to the embedding" : "separate", in.qkv_bias ? "yes" : "no");
  printf("tokenizer    %s, %d tokens, bos %d, eos %d\n",
         !strcmp(in.tokenizer_kind, "spm") ? "SentencePiece BPE" : "byte-level BPE", in.vocab_size,
         in.bos_id, in.eos_id);
  printf("parameters   %lld (%.2f M); %llu bytes of tensors (%.2f MiB)\n\n", (long long)in.n_params,
         in.n_params / 1e6, (unsigned long long)in.weight_bytes, in.weight_bytes / 1048576.0);
  printf("%-36s %-13s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
  bool any_packed = false;
  for (int i = 0; i < qn_model_n_tensors(m); i++) {
    qn_tensor_info t;
    qn_model_tensor(m, i, &t);
    char shape[64];
    int o = snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t.ndim; d++)
      o += snprintf(shape + o, sizeof shape - (size_t)o, d ? ", %lld" : "%lld",
                    (long long)t.shape[d]);
    snprintf(shape + o, sizeof shape - (size_t)o, "]");
    printf("%-36s %-13s %-16s %12llu%s%s\n", t.name, t.scheme ? t.scheme : t.dtype, shape,
           (unsigned long long)t.nbytes, t.layout ? "  packed " : "", t.layout ? t.layout : "");
    any_packed |= t.layout != NULL;
  }
  if (any_packed)
    printf(
        "\npacked: payload stored for the integer kernels as [row blocks of 16, bytes per "
        "block]\n(docs/FORMAT.md, \"Packed layouts\"); the logical shape is in quench.hparams\n");
  const char* md = qn_model_metadata(m);
  if (meta && md) printf("\nmetadata: %s\n", md);
  qn_model_free(m);
  return 0;
}
