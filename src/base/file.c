/* file.c — read-only mmap of model files, whole-file reads, monotonic clock. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base.h"

int hb_map_file(const char *path, hb_map *out, hb_err *err) {
    int rc = HEARTH_OK;
    int fd = -1;
    struct stat st;
    out->data = NULL;
    out->size = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever;
     * the S_ISREG check below then refuses it (no effect on regular files). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    HB_CHECK(fd >= 0, HEARTH_E_IO, "%s: cannot open: %s", path, strerror(errno));
    HB_CHECK(fstat(fd, &st) == 0, HEARTH_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    HB_CHECK(S_ISREG(st.st_mode), HEARTH_E_IO, "%s: not a regular file", path);
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        HB_CHECK(p != MAP_FAILED, HEARTH_E_IO, "%s: cannot map: %s", path, strerror(errno));
        out->data = p;
    }
out:
    if (fd >= 0) close(fd);
    if (rc) out->size = 0;
    return rc;
}

void hb_unmap(hb_map *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

void hb_map_release(hb_map *m, size_t off, size_t len) {
    if (!m || !m->data || off >= m->size) return;
    long pg = sysconf(_SC_PAGESIZE);
    size_t start = (off + (size_t)pg - 1) & ~((size_t)pg - 1);
    size_t end = off + len > m->size ? m->size : off + len;
    end &= ~((size_t)pg - 1);
    if (end > start) madvise((void *)(m->data + start), end - start, MADV_DONTNEED);
}

int hb_read_file(const char *path, size_t max_bytes, char **out, size_t *len, hb_err *err) {
    int rc = HEARTH_OK;
    FILE *f = NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    *out = NULL;
    if (len) *len = 0;
    f = (path && strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
    HB_CHECK(f, HEARTH_E_IO, "%s: cannot open: %s", path, strerror(errno));
    for (;;) {
        if (n + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, ncap);
            HB_CHECK(nb, HEARTH_E_NOMEM, "%s: out of memory", path);
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        HB_CHECK(n <= max_bytes, HEARTH_E_INVALID, "%s: larger than %zu bytes", path, max_bytes);
        if (got == 0) break;
    }
    HB_CHECK(!ferror(f), HEARTH_E_IO, "%s: read error", path);
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (len) *len = n;
out:
    if (f && f != stdin) fclose(f);
    free(buf);
    return rc;
}

uint64_t hb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
