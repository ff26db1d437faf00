/* store.h — the model store on disk, in Ollama's layout, so an Ollama model directory can be
 * used as-is:
 *
 *   <root>/manifests/<host>/<namespace>/<model>/<tag>   JSON image manifest (schema 2)
 *   <root>/blobs/sha256-<64 hex>                         content-addressed layers
 *
 * Invariants: a blob's name is the sha256 of its bytes; every file is written to a temporary
 * name in the same directory and renamed into place, so no half-written blob or manifest is
 * ever visible; a manifest is written only after every blob it names exists.
 *
 * Ownership: structs returned here own their strings; free with the matching *_free.
 */
#ifndef HEARTH_STORE_H
#define HEARTH_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

#define STORE_DEFAULT_HOST "registry.ollama.ai"
#define STORE_DEFAULT_NS "library"
#define STORE_DEFAULT_TAG "latest"
#define STORE_NAME_MAX 250
#define STORE_MANIFEST_MAX (4u << 20) /* bytes; real manifests are ~1 KiB */
#define STORE_SMALL_BLOB_MAX (8u << 20) /* template/system/params/license layers */

#define STORE_MT_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define STORE_MT_CONFIG "application/vnd.docker.container.image.v1+json"
#define STORE_MT_MODEL "application/vnd.ollama.image.model"
#define STORE_MT_ADAPTER "application/vnd.ollama.image.adapter"
#define STORE_MT_PROJECTOR "application/vnd.ollama.image.projector"
#define STORE_MT_TEMPLATE "application/vnd.ollama.image.template"
#define STORE_MT_SYSTEM "application/vnd.ollama.image.system"
#define STORE_MT_PARAMS "application/vnd.ollama.image.params"
#define STORE_MT_MESSAGES "application/vnd.ollama.image.messages"
#define STORE_MT_LICENSE "application/vnd.ollama.image.license"

/* A parsed model name: [host/][namespace/]model[:tag]. Each part is validated: letters,
 * digits, '_', '-', '.' (host may also hold ':' + port), no "..", no leading '.' or '-'. */
typedef struct store_name {
    char host[128];
    char ns[128];
    char model[128];
    char tag[128];
} store_name;

/* Parses `s` into n, filling defaults (registry.ollama.ai / library / latest). Accepts
 * "hf.co/user/repo:quant" (host hf.co). HEARTH_E_INVALID with a message on bad names. */
int store_name_parse(const char *s, store_name *n, hb_err *err);
/* Short display form: "model:tag" for the default host+namespace, "ns/model:tag" for the
 * default host, "host/ns/model:tag" otherwise. */
void store_name_display(const store_name *n, char *buf, size_t cap);
/* True for "sha256:<64 lowercase hex>" (also accepts "sha256-" when dash_ok). */
bool store_digest_valid(const char *d, bool dash_ok);

typedef struct store_layer {
    char media_type[96];
    char digest[72];          /* "sha256:<hex>" */
    uint64_t size;
} store_layer;

#define STORE_MAX_LAYERS 64
typedef struct store_manifest {
    store_layer config;
    store_layer layers[STORE_MAX_LAYERS];
    int n_layers;
} store_manifest;

/* Parses and validates manifest JSON (digests, sizes, media types, layer count). */
int store_manifest_parse(const char *json, size_t len, store_manifest *m, hb_err *err);
/* Serialises a manifest; caller frees the result with free(). NULL on allocation failure. */
char *store_manifest_dump(const store_manifest *m);
/* First layer of the media type, or NULL. Borrowed from m. */
const store_layer *store_manifest_find(const store_manifest *m, const char *media_type);

/* ---- paths and files ---- */
/* Root directory: `root` if non-NULL, else $HEARTH_MODELS, else ~/.hearth/models. */
int store_root(const char *root, char *buf, size_t cap, hb_err *err);
int store_manifest_path(const char *root, const store_name *n, char *buf, size_t cap, hb_err *err);
int store_blob_path(const char *root, const char *digest, char *buf, size_t cap, hb_err *err);
/* mkdir -p. */
int store_mkdirs(const char *dir, hb_err *err);

/* sha256 of a whole file, as "sha256:<hex>" into out[72]; also its size. */
int store_sha256_file(const char *path, char out[72], uint64_t *size, hb_err *err);
/* sha256 of a buffer as "sha256:<hex>". */
void store_sha256_buf(const void *data, size_t len, char out[72]);
/* Writes bytes atomically as a blob (temp file + fsync + rename); fills layer. */
int store_blob_put(const char *root, const char *media_type, const void *data, size_t len,
                   store_layer *layer, hb_err *err);
/* Imports a file as a blob: a reflink where the file system can, else a copy (never a hard
 * link, which a later edit of the file would change); the
 * digest is verified against the bytes that land in the store. */
int store_blob_import(const char *root, const char *src, const char *media_type,
                      store_layer *layer, hb_err *err);
/* Writes a file atomically (temp + fsync + rename) creating parent directories. */
int store_write_atomic(const char *path, const void *data, size_t len, hb_err *err);
/* The store-wide lock, <root>/.lock (flock; also between processes and between threads,
 * each call opening its own descriptor). Removing a model holds it exclusive while it
 * deletes the manifest and the blobs no other manifest uses; publishing a manifest holds
 * it shared while it checks that every blob it names exists and writes it. So a copy,
 * create or pull that races a removal either sees the blobs kept or fails, never leaves a
 * manifest pointing at deleted blobs. Returns the descriptor for store_unlock, or -1 when
 * the store cannot be locked (a read-only or lock-less file system): callers then go on
 * unlocked. */
int store_lock(const char *root, bool exclusive);
void store_unlock(int fd);
/* Writes manifest text (parsed as m) to mpath under the shared lock, after checking that
 * m's blobs exist (HEARTH_E_NOT_FOUND when one was removed meanwhile). */
int store_manifest_publish(const char *root, const char *mpath, const store_manifest *m, const void *text,
                           size_t len, hb_err *err);
/* Reads and parses the manifest of a name; HEARTH_E_NOT_FOUND when absent. */
int store_manifest_load(const char *root, const store_name *n, store_manifest *m,
                        hb_err *err);
/* Reads a small blob (template, system, ...) into a NUL-terminated buffer (free()). */
int store_blob_read(const char *root, const char *digest, char **out, size_t *len, hb_err *err);

/* ---- Modelfile ---- */
typedef struct store_kv {
    char *key;
    char *value;
} store_kv;

typedef struct store_modelfile {
    char *from;          /* FROM: a .gguf path or a model name */
    char *tmpl;          /* TEMPLATE, or NULL */
    char *system;        /* SYSTEM, or NULL */
    char *license;       /* LICENSE, or NULL */
    store_kv *params;    /* PARAMETER key value, in order (stop may repeat) */
    int n_params;
    store_kv *messages;  /* MESSAGE role content */
    int n_messages;
} store_modelfile;

#define STORE_MODELFILE_MAX (1u << 20)
#define STORE_MODELFILE_MAX_ITEMS 256
/* Parses Modelfile text. Unknown commands, a missing FROM, unterminated quotes, unknown
 * PARAMETER names and bad values are HEARTH_E_INVALID naming the line. */
int store_modelfile_parse(const char *text, size_t len, store_modelfile *mf, hb_err *err);
void store_modelfile_free(store_modelfile *mf);
/* Kind of a PARAMETER: 'i' int, 'f' float, 's' string (stop), 0 = unknown name. */
char store_param_kind(const char *name);
/* The range a numeric parameter must lie in (false: not a numeric parameter). */
bool store_param_range(const char *name, double *lo, double *hi);
/* Checks one stored value (text as in a Modelfile) against the parameter's kind and range:
 * what the server will accept when it generates with the model. */
int store_param_check(const char *key, const char *val, hb_err *err);
/* Stop sequences a model may store (and a request may give), and their length. */
#define STORE_MAX_STOPS 16
#define STORE_STOP_MAX_LEN 1024

/* ---- operations shared by the public API, the server and pull ---- */
struct json_t;
/* Path of the GGUF behind a name (or, when allow_path, an existing file path as-is; the
 * server never allows paths, so a request cannot name arbitrary files). */
int store_model_path(const char *root, const char *name, bool allow_path, char *buf, size_t cap, hb_err *err);
/* hearth_store_info as a jansson object (caller decrefs). */
int store_info_json(const char *root, const char *name, struct json_t **out, hb_err *err);
int store_copy(const char *root, const char *src, const char *dst, hb_err *err);
int store_remove(const char *root, const char *name, hb_err *err);
/* Creates `name` from a parsed Modelfile. mf->from may also be "sha256:<hex>", a blob
 * already in the store (the server's /api/create with uploaded files). With `paths`, FROM
 * may name a .gguf file (relative to base_dir), imported into the store; without (the
 * server), FROM is only a stored model's name or a blob digest. */
int store_create(const char *root, const char *name, const store_modelfile *mf,
                 const char *base_dir, bool paths, hearth_progress_fn progress, void *ud, hb_err *err);
/* Adds a blob from a complete temporary file (renamed into place) after checking its
 * sha256 against `digest`; on mismatch the file is removed and HEARTH_E_FORMAT returned. */
int store_blob_adopt(const char *root, const char *tmp_path, const char *digest, hb_err *err);

#endif
