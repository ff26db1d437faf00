/* log.c — formatting front end for the per-handle log callback. */
#include <stdio.h>

#include "base.h"

void hb_logf(const hb_log *log, hearth_log_level lvl, const char *fmt, ...) {
    if (!log || !log->fn || lvl > log->level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log->fn(log->ud, lvl, buf);
}
