/* duration.c — keep-alive durations as Ollama writes them ("5m", "1h30m", "250ms", a plain
 * number of seconds, a negative value for "forever"), shared by the server's keep_alive
 * field and `hearth serve --keep-alive` (hearth_parse_duration). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

int hb_parse_duration(const char *s, int64_t *ns, hb_err *err) {
    int rc = HEARTH_OK;
    const char *all = s;
    double total = 0;
    *ns = 0;
    HB_CHECK(s && *s, HEARTH_E_INVALID, "the duration is empty");
    if (*s == '-') { /* any negative value: forever */
        *ns = -1;
        goto out;
    }
    while (*s) {
        char *end;
        /* a number with no sign or space of its own ("1h-5m" is not a duration, and its
         * negative total would not fit the int64 nanoseconds either) */
        HB_CHECK((*s >= '0' && *s <= '9') || *s == '.', HEARTH_E_INVALID, "'%s' is not a duration", all);
        double n = strtod(s, &end);
        HB_CHECK(end != s && isfinite(n), HEARTH_E_INVALID, "'%s' is not a duration", all);
        s = end;
        double unit = 1e9; /* no unit: seconds */
        if (strncmp(s, "ns", 2) == 0) unit = 1, s += 2;
        else if (strncmp(s, "us", 2) == 0) unit = 1e3, s += 2;
        else if (strncmp(s, "ms", 2) == 0) unit = 1e6, s += 2;
        else if (*s == 's') unit = 1e9, s++;
        else if (*s == 'm') unit = 60e9, s++;
        else if (*s == 'h') unit = 3600e9, s++;
        else HB_CHECK(*s == '\0', HEARTH_E_INVALID, "'%s' has an unknown unit (ns, us, ms, s, m, h)", all);
        total += n * unit;
    }
    HB_CHECK(total < 9e18, HEARTH_E_INVALID, "the duration '%s' is too long", all);
    *ns = (int64_t)total;
out:
    return rc;
}

hearth_status hearth_parse_duration(const char *s, int64_t *ns, char *err, size_t errlen) {
    hb_err e = { 0 };
    int rc = hb_parse_duration(s, ns, &e);
    if (rc && err && errlen) snprintf(err, errlen, "%s", e.msg);
    return (hearth_status)rc;
}
