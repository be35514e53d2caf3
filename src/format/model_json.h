/* model_json.h: hyper-parameters and vocabularies as JSON, for the .qnz metadata. */
#ifndef QN_FORMAT_MODEL_JSON_H
#define QN_FORMAT_MODEL_JSON_H

#include <cjson/cJSON.h>

#include "format/source.h"

/* New cJSON objects (NULL when out of memory). Every vocab token must be valid UTF-8. */
cJSON* qn_hparams_to_json(const qn_hparams* hp);
qn_status qn_vocab_to_json(const qn_vocab* v, cJSON** out);

/* Parse back; errors name `where` (the file) and the key at fault. */
qn_status qn_hparams_from_json(const cJSON* j, const char* where, qn_hparams* hp);
qn_status qn_vocab_from_json(const cJSON* j, const char* where, qn_vocab* v);

#endif
