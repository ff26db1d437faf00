/* libFuzzer target: parse + render arbitrary template text with a small fixed variable
 * set. Every input must end (bounded time and memory through the interpreter's caps) with
 * either text or a clean error; sanitizers catch any memory error or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"

static const char k_vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Hi \\u00e9 {{ x }}\"},"
    " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"42\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, \"required\": [\"a\"]}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"n\": 3, \"f\": 1.5}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64 * 1024) return 0;
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    char *out = NULL, err[256];
    hearth_status st = hearth_template_render(src, k_vars, "2025-01-15T12:00:00", &out, err, sizeof err);
    if (st == HEARTH_OK && !out) abort();
    if (st != HEARTH_OK && (out || err[0] == '\0')) abort();
    hearth_free(out);
    free(src);
    return 0;
}
