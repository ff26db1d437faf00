/* utf8.c — UTF-8 validation / coding, the White_Space set, the byte-level BPE alphabet and
 * the growable id array shared by the tokenizers. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

size_t tok_utf8_len(uint8_t c) {
    static const uint8_t lens[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return lens[c >> 4];
}

bool tok_utf8_valid(const char *str, size_t len, size_t *bad_off) {
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t min, cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 2; min = 0x80; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 3; min = 0x800; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 4; min = 0x10000; cp = c & 0x07; }
        else goto bad;
        if (len - i < n) goto bad;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        i += n;
    }
    return true;
bad:
    if (bad_off) *bad_off = i;
    return false;
}

size_t tok_utf8_decode(const char *str, size_t n, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)str;
    size_t len = tok_utf8_len(s[0]);
    if (len > n) len = n;
    if (len == 1) { *cp = s[0]; return 1; }
    uint32_t v = s[0] & (0x7F >> len);
    for (size_t k = 1; k < len; k++) v = (v << 6) | (s[k] & 0x3F);
    *cp = v;
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The Unicode White_Space property: a fixed, short list (stable since Unicode 6.3). */
bool tok_cp_is_space(uint32_t cp) {
    if (cp == 0x20 || (cp >= 0x09 && cp <= 0x0D)) return true;
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves; the other 68 bytes
 * (controls, space, DEL, NBSP..., soft hyphen) map in byte order to U+0100 upwards, so
 * every byte has a visible, non-space character. */
static bool byte_is_direct(uint8_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

/* The 68 remapped bytes are 0x00-0x20 (33), 0x7F-0xA0 (34) and 0xAD, numbered in order. */
uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_direct(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 67u; /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_direct((uint8_t)cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 0x7F);
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

int tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return HEARTH_E_NOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return HEARTH_OK;
}
