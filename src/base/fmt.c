/* fmt.c — small text formatting shared by the store and the server. */
#include <stdio.h>

#include "base/base.h"

void hb_human_count(uint64_t n, char *buf, size_t cap) {
    const char *u[] = { "", "K", "M", "B", "T" };
    double v = (double)n;
    int i = 0;
    while (v >= 1000 && i < 4) v /= 1000, i++;
    snprintf(buf, cap, v >= 100 || i == 0 ? "%.0f%s" : "%.1f%s", v, u[i]);
}
