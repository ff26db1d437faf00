/* cli_show.c — `hearth show MODEL.gguf`: facts about a model file without loading weights
 * (architecture, size, quant mix, hyper-parameters, tokenizer), `--verbose` for every
 * metadata key and tensor, `--json` for the same as one JSON object.
 *
 * Uses only the public inspection API (hearth_gguf_*). Facts the file lacks print as "-"
 * (JSON null).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "hearth.h"

typedef struct show_opts {
    bool verbose, json;
    long max_array, gpu_layers;
    const char *backend;
} show_opts;

/* llama.cpp's llama_ftype numbering, as stored in general.file_type. */
static const char *ftype_name(int64_t ft) {
    static const struct { int id; const char *name; } k[] = {
        { 0, "F32" }, { 1, "F16" }, { 2, "Q4_0" }, { 3, "Q4_1" }, { 7, "Q8_0" }, { 8, "Q5_0" },
        { 9, "Q5_1" }, { 10, "Q2_K" }, { 11, "Q3_K_S" }, { 12, "Q3_K_M" }, { 13, "Q3_K_L" },
        { 14, "Q4_K_S" }, { 15, "Q4_K_M" }, { 16, "Q5_K_S" }, { 17, "Q5_K_M" }, { 18, "Q6_K" },
        { 19, "IQ2_XXS" }, { 20, "IQ2_XS" }, { 21, "Q2_K_S" }, { 22, "IQ3_XS" }, { 23, "IQ3_XXS" },
        { 24, "IQ1_S" }, { 25, "IQ4_NL" }, { 26, "IQ3_S" }, { 27, "IQ3_M" }, { 28, "IQ2_S" },
        { 29, "IQ2_M" }, { 30, "IQ4_XS" }, { 31, "IQ1_M" }, { 32, "BF16" }, { 36, "TQ1_0" },
        { 37, "TQ2_0" }, { 38, "MXFP4_MOE" },
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (k[i].id == ft) return k[i].name;
    return "unknown";
}

/* "1.10B", "260K", "3.42M": three significant digits. */
static void human_count(char *buf, size_t cap, uint64_t n, const char *const units[4], double base) {
    double x = (double)n;
    int u = 0;
    while (x >= base && u < 3) {
        x /= base;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%llu%s", (unsigned long long)n, units[0]);
    else snprintf(buf, cap, x < 10 ? "%.2f%s" : x < 100 ? "%.1f%s" : "%.0f%s", x, units[u]);
}

static void human_params(char *buf, size_t cap, uint64_t n) {
    static const char *const u[4] = { "", "K", "M", "B" };
    human_count(buf, cap, n, u, 1000.0);
}

static void human_bytes(char *buf, size_t cap, uint64_t n) {
    static const char *const u[4] = { " B", " KiB", " MiB", " GiB" };
    human_count(buf, cap, n, u, 1024.0);
}

/* Prints s with control bytes escaped, so names from a file cannot garble the terminal. */
static void put_clean(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

/* Where a context of this model would run now (--verbose): layers on the GPU and the CPU.
 * False with the reason in why when the file cannot be run (vocab-only, unsupported). */
static bool plan(const char *path, const show_opts *o, hearth_placement *pl, char *why, size_t cap) {
    hearth_model_params mp = hearth_model_default_params();
    hearth_model *m = NULL;
    mp.backend = o->backend;
    mp.n_gpu_layers = (int32_t)o->gpu_layers;
    mp.log = NULL;
    bool ok = hearth_model_load(path, &mp, &m, why, cap) == HEARTH_OK &&
              hearth_model_plan_placement(m, NULL, pl, why, cap) == HEARTH_OK;
    hearth_model_free(m);
    return ok;
}

/* ---- facts ------------------------------------------------------------------------------ */

typedef struct show_facts {
    const char *arch, *name, *tok_model, *tok_pre;
    uint64_t n_params;
    int64_t file_type;          /* -1 when absent */
    uint64_t type_count[64];    /* tensors per type id (ids >= 64 are not valid GGUF types) */
    const char *type_names[64];
    int64_t n_ctx, n_embd, n_layer, n_head, n_head_kv, n_vocab; /* -1 when absent */
    bool kv_default;            /* n_head_kv taken from n_head */
    int64_t chat_template_len;  /* -1 when absent */
} show_facts;

static int64_t arch_int(const hearth_gguf *g, const char *arch, const char *suffix) {
    char key[256];
    int64_t v;
    if (!arch) return -1;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return hearth_gguf_get_int(g, key, &v) ? v : -1;
}

static void gather(const hearth_gguf *g, show_facts *f) {
    memset(f, 0, sizeof *f);
    f->arch = hearth_gguf_get_str(g, "general.architecture");
    f->name = hearth_gguf_get_str(g, "general.name");
    f->tok_model = hearth_gguf_get_str(g, "tokenizer.ggml.model");
    f->tok_pre = hearth_gguf_get_str(g, "tokenizer.ggml.pre");
    if (!hearth_gguf_get_int(g, "general.file_type", &f->file_type)) f->file_type = -1;
    for (uint64_t i = 0; i < hearth_gguf_n_tensors(g); i++) {
        hearth_gguf_tensor_info t;
        if (hearth_gguf_tensor(g, i, &t)) continue;
        f->n_params += t.n_elements;
        if (t.type < 64) {
            f->type_count[t.type]++;
            f->type_names[t.type] = t.type_name;
        }
    }
    f->n_ctx = arch_int(g, f->arch, "context_length");
    f->n_embd = arch_int(g, f->arch, "embedding_length");
    f->n_layer = arch_int(g, f->arch, "block_count");
    f->n_head = arch_int(g, f->arch, "attention.head_count");
    f->n_head_kv = arch_int(g, f->arch, "attention.head_count_kv");
    if (f->n_head_kv < 0 && f->n_head >= 0) {
        f->n_head_kv = f->n_head;
        f->kv_default = true;
    }
    f->n_vocab = hearth_gguf_array_len(g, "tokenizer.ggml.tokens");
    const char *tmpl = hearth_gguf_get_str(g, "tokenizer.chat_template");
    f->chat_template_len = tmpl ? (int64_t)strlen(tmpl) : -1;
}

/* Type ids ordered by tensor count (descending), returned in order[]; returns how many. */
static int type_order(const show_facts *f, int order[64]) {
    int n = 0;
    for (int t = 0; t < 64; t++)
        if (f->type_count[t]) order[n++] = t;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && f->type_count[order[j]] > f->type_count[order[j - 1]]; j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    return n;
}

/* ---- text output ------------------------------------------------------------------------ */

static void row_str(const char *label, const char *v) {
    printf("  %-16s ", label);
    put_clean(v ? v : "-");
    putchar('\n');
}

static void row_int(const char *label, int64_t v, const char *note) {
    if (v < 0) printf("  %-16s -\n", label);
    else printf("  %-16s %lld%s\n", label, (long long)v, note ? note : "");
}

static void print_verbose(const hearth_gguf *g, const show_opts *o) {
    printf("\nmetadata (%llu keys):\n", (unsigned long long)hearth_gguf_n_kv(g));
    for (uint64_t i = 0; i < hearth_gguf_n_kv(g); i++) {
        char *v = hearth_gguf_value_text(g, i, (size_t)o->max_array, 200);
        printf("  ");
        put_clean(hearth_gguf_key(g, i));
        printf("  %s  %s\n", hearth_gguf_type_name(g, i), v ? v : "?");
        hearth_free(v);
    }
    printf("\ntensors (%llu):\n", (unsigned long long)hearth_gguf_n_tensors(g));
    for (uint64_t i = 0; i < hearth_gguf_n_tensors(g); i++) {
        hearth_gguf_tensor_info t;
        if (hearth_gguf_tensor(g, i, &t)) continue;
        printf("  ");
        put_clean(t.name);
        printf("  %s  [", t.type_name);
        for (uint32_t d = 0; d < t.n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t.ne[d]);
        printf("]  offset %llu  size %llu\n", (unsigned long long)t.offset, (unsigned long long)t.size);
    }
}

static void print_text(const char *path, const hearth_gguf *g, const show_facts *f, const show_opts *o) {
    char h[64], b[64];
    int order[64], n = type_order(f, order);
    printf("  %-16s ", "file");
    put_clean(path);
    printf("\n  %-16s GGUF v%u, %llu metadata keys, %llu tensors\n", "format", hearth_gguf_version(g),
           (unsigned long long)hearth_gguf_n_kv(g), (unsigned long long)hearth_gguf_n_tensors(g));
    row_str("architecture", f->arch);
    row_str("name", f->name);
    human_params(h, sizeof h, f->n_params);
    if (hearth_gguf_n_tensors(g)) printf("  %-16s %s (%llu)\n", "parameters", h, (unsigned long long)f->n_params);
    else row_str("parameters", NULL);
    if (f->file_type >= 0) printf("  %-16s %s (%lld)\n", "file type", ftype_name(f->file_type), (long long)f->file_type);
    else row_str("file type", NULL);
    printf("  %-16s ", "tensor types");
    for (int i = 0; i < n; i++)
        printf("%s%s x%llu", i ? ", " : "", f->type_names[order[i]], (unsigned long long)f->type_count[order[i]]);
    printf("%s\n", n ? "" : "-");
    row_int("context length", f->n_ctx, NULL);
    row_int("embedding size", f->n_embd, NULL);
    row_int("layers", f->n_layer, NULL);
    row_int("heads", f->n_head, NULL);
    row_int("kv heads", f->n_head_kv, f->kv_default ? " (= heads)" : NULL);
    row_int("vocab size", f->n_vocab, NULL);
    printf("  %-16s ", "tokenizer");
    put_clean(f->tok_model ? f->tok_model : "-");
    if (f->tok_pre) {
        printf(" (pre: ");
        put_clean(f->tok_pre);
        putchar(')');
    }
    putchar('\n');
    if (f->chat_template_len >= 0) printf("  %-16s yes (%lld bytes)\n", "chat template", (long long)f->chat_template_len);
    else printf("  %-16s no\n", "chat template");
    human_bytes(b, sizeof b, hearth_gguf_file_size(g));
    printf("  %-16s %s (%llu bytes)\n", "file size", b, (unsigned long long)hearth_gguf_file_size(g));
    if (o->verbose) {
        hearth_placement pl;
        char why[512] = "";
        if (plan(path, o, &pl, why, sizeof why)) {
            printf("  %-16s %s", "placement", pl.summary);
            if (pl.n_gpu_layers > 0) printf(" (~%llu MiB on the GPU", (unsigned long long)(pl.gpu_bytes >> 20));
            if (pl.n_gpu_layers > 0 && pl.gpu_free) printf(", %llu MiB free", (unsigned long long)(pl.gpu_free >> 20));
            if (pl.n_gpu_layers > 0) putchar(')');
            putchar('\n');
            if (pl.note[0]) printf("  %-16s %s\n", "", pl.note);
        } else {
            printf("  %-16s - (", "placement");
            put_clean(why);
            printf(")\n");
        }
        print_verbose(g, o);
    }
}

/* ---- JSON output ------------------------------------------------------------------------ */

static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }
static json_t *jint(int64_t v) { return v >= 0 ? json_integer(v) : json_null(); }

static json_t *json_metadata(const hearth_gguf *g, const show_opts *o) {
    json_t *md = json_object();
    for (uint64_t i = 0; md && i < hearth_gguf_n_kv(g); i++) {
        json_t *e = json_object();
        const char *elem;
        uint64_t n;
        char *vj = hearth_gguf_value_json(g, i, (size_t)o->max_array);
        json_t *v = vj ? json_loads(vj, JSON_DECODE_ANY, NULL) : NULL;
        hearth_free(vj);
        json_object_set_new(e, "type", json_string(hearth_gguf_type_name(g, i)));
        if (hearth_gguf_array_info(g, i, &elem, &n)) {
            json_object_set_new(e, "elem_type", json_string(elem));
            json_object_set_new(e, "n", json_integer((json_int_t)n));
        }
        json_object_set_new(e, "value", v ? v : json_null());
        /* keys come from the file: jansson needs valid UTF-8, so fall back to the index */
        if (json_object_set(md, hearth_gguf_key(g, i), e)) {
            char alt[32];
            snprintf(alt, sizeof alt, "#%llu", (unsigned long long)i);
            json_object_set(md, alt, e);
        }
        json_decref(e);
    }
    return md;
}

static json_t *json_tensors(const hearth_gguf *g) {
    json_t *arr = json_array();
    for (uint64_t i = 0; arr && i < hearth_gguf_n_tensors(g); i++) {
        hearth_gguf_tensor_info t;
        if (hearth_gguf_tensor(g, i, &t)) continue;
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t.n_dims; d++) json_array_append_new(shape, json_integer(t.ne[d]));
        json_t *name = json_string(t.name);
        json_array_append_new(arr, json_pack("{s:o, s:s, s:o, s:I, s:I}", "name", name ? name : json_null(),
                                             "type", t.type_name, "shape", shape, "offset", (json_int_t)t.offset,
                                             "size", (json_int_t)t.size));
    }
    return arr;
}

static int print_json(const char *path, const hearth_gguf *g, const show_facts *f, const show_opts *o) {
    char h[64];
    int order[64], n = type_order(f, order);
    json_t *types = json_object();
    for (int i = 0; i < n; i++) json_object_set_new(types, f->type_names[order[i]], json_integer((json_int_t)f->type_count[order[i]]));
    human_params(h, sizeof h, f->n_params);
    json_t *ft = f->file_type >= 0 ? json_pack("{s:I, s:s}", "id", (json_int_t)f->file_type, "name", ftype_name(f->file_type)) : json_null();
    json_t *root = json_object();
    json_object_set_new(root, "file", json_string(path));
    json_object_set_new(root, "gguf_version", json_integer(hearth_gguf_version(g)));
    json_object_set_new(root, "architecture", jstr(f->arch));
    json_object_set_new(root, "name", jstr(f->name));
    json_object_set_new(root, "parameters", json_integer((json_int_t)f->n_params));
    json_object_set_new(root, "parameters_human", json_string(h));
    json_object_set_new(root, "file_type", ft);
    json_object_set_new(root, "tensor_types", types);
    json_object_set_new(root, "context_length", jint(f->n_ctx));
    json_object_set_new(root, "embedding_length", jint(f->n_embd));
    json_object_set_new(root, "block_count", jint(f->n_layer));
    json_object_set_new(root, "head_count", jint(f->n_head));
    json_object_set_new(root, "head_count_kv", jint(f->n_head_kv));
    json_object_set_new(root, "vocab_size", jint(f->n_vocab));
    json_object_set_new(root, "tokenizer", json_pack("{s:o, s:o}", "model", jstr(f->tok_model), "pre", jstr(f->tok_pre)));
    json_object_set_new(root, "chat_template", json_boolean(f->chat_template_len >= 0));
    json_object_set_new(root, "file_size", json_integer((json_int_t)hearth_gguf_file_size(g)));
    json_object_set_new(root, "n_kv", json_integer((json_int_t)hearth_gguf_n_kv(g)));
    json_object_set_new(root, "n_tensors", json_integer((json_int_t)hearth_gguf_n_tensors(g)));
    if (o->verbose) {
        hearth_placement pl;
        char why[512] = "";
        if (plan(path, o, &pl, why, sizeof why))
            json_object_set_new(root, "placement",
                                json_pack("{s:s, s:s, s:i, s:i, s:b, s:I, s:I, s:s, s:s}", "backend", pl.backend,
                                          "device", pl.device, "n_layer", (int)pl.n_layer, "n_gpu_layers",
                                          (int)pl.n_gpu_layers, "output_on_gpu", (int)pl.output_on_gpu, "gpu_bytes",
                                          (json_int_t)pl.gpu_bytes, "gpu_free", (json_int_t)pl.gpu_free, "summary",
                                          pl.summary, "note", pl.note));
        else
            json_object_set_new(root, "placement", json_null());
        json_object_set_new(root, "metadata", json_metadata(g, o));
        json_object_set_new(root, "tensors", json_tensors(g));
    }
    char *s = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!s) {
        cli_error("show: cannot render JSON (out of memory or invalid text in the file)");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

/* Turns the MODEL argument into a file path. Today only paths are accepted; the model
 * store (`hearth pull`/`create`) will plug in here to resolve stored model names. */


int cli_show(int argc, char **argv) {
    show_opts o = { .verbose = false, .json = false, .max_array = 8, .gpu_layers = -1, .backend = NULL };
    const cli_opt opts[] = {
        { "verbose", 'v', CLI_FLAG, &o.verbose, 0, 0, NULL, NULL, "also list every metadata key and tensor" },
        { "json", 0, CLI_FLAG, &o.json, 0, 0, NULL, NULL, "print one JSON object" },
        { "max-array", 0, CLI_INT, &o.max_array, 0, 1e9, NULL, "N", "array elements shown per metadata value" },
        { "backend", 0, CLI_STR, &o.backend, 0, 0, "HEARTH_BACKEND", "NAME", "for the placement (--verbose): cpu, cuda or auto" },
        { "gpu-layers", 0, CLI_INT, &o.gpu_layers, -1, 1e6, NULL, "N", "for the placement (--verbose; -ngl too): -1 = as many as fit" },
    };
    const cli_spec spec = { "show", "MODEL", "show facts about a model file or stored model (without loading weights)",
                            "Facts the file does not hold are shown as '-' (null in JSON).",
                            opts, sizeof opts / sizeof opts[0], 1, 1 };
    char **pos = NULL;
    int n_pos = 0, rc = 1;
    hearth_gguf *g = NULL;
    char *path = NULL; /* a .gguf path as given, or the blob behind a stored model name */
    char err[512];
    show_facts f;
    for (int i = 1; i < argc; i++) /* llama.cpp's spelling */
        if (strcmp(argv[i], "-ngl") == 0) argv[i] = (char *)"--gpu-layers";
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    if (!hearth_backend_name_ok(o.backend)) {
        cli_error("show: unknown backend '%s' (expected cpu, cuda or auto)", o.backend);
        goto out;
    }
    if (hearth_store_resolve(NULL, pos[0], &path, err, sizeof err) != HEARTH_OK) {
        cli_error("%s", err);
        goto out;
    }
    if (hearth_gguf_open(path, &g, err, sizeof err) != HEARTH_OK) {
        cli_error("%s", err);
        goto out;
    }
    gather(g, &f);
    if (o.json) rc = print_json(path, g, &f, &o);
    else {
        print_text(path, g, &f, &o);
        rc = 0;
    }
    if (fflush(stdout) != 0) {
        cli_error("show: cannot write output");
        rc = 1;
    }
out:
    hearth_gguf_close(g);
    hearth_free(path);
    free(pos);
    return rc;
}
