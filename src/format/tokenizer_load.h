/* tokenizer_load.h: readers that fill a qn_vocab from a tokenizer file: llama2.c's
 * tokenizer.bin and Hugging Face's tokenizer.json (+ tokenizer_config.json). */
#ifndef QN_FORMAT_TOKENIZER_LOAD_H
#define QN_FORMAT_TOKENIZER_LOAD_H

#include "format/vocab.h"

/* Reads a llama2.c tokenizer.bin (int32 max_token_len; per token: f32 score, int32 len,
 * bytes) holding at least vocab_size tokens into v (kind SPM; ' ' stored as U+2581; 0 = <unk>,
 * 1 = <s> (BOS), 2 = </s> (EOS), <0xNN> byte tokens). Errors: QN_EIO (missing/unreadable),
 * QN_EFORMAT (truncated or malformed), QN_EINVAL (vocab_size <= 0). v is zeroed on error. */
qn_status qn_l2c_tokenizer_load(const char* path, int vocab_size, qn_vocab* v);

/* Reads DIR/tokenizer.json (model.type "BPE": byte-level BPE -> QN_VOCAB_BPE, or
 * SentencePiece-style BPE with byte fallback / Metaspace -> QN_VOCAB_SPM) and, when present,
 * DIR/tokenizer_config.json (bos_token, eos_token, add_bos_token) into v. Errors: QN_EIO,
 * QN_EFORMAT, QN_EUNSUPPORTED (another model type or pre-tokenizer). v is zeroed on error. */
qn_status qn_hf_tokenizer_load(const char* dir, qn_vocab* v);

#endif
