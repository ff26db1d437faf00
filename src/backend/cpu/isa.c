/* isa.c — run-time choice of the x86 instruction-set level the CPU kernels may use.
 *
 * A level is usable only when the CPU reports the instructions (cpuid) AND the OS saves the
 * matching register state (xgetbv: XCR0 bits for YMM / ZMM / tile data); for AMX Linux also
 * requires a per-process permission (arch_prctl ARCH_REQ_XCOMP_PERM), requested once. If any
 * step fails the level is simply lower, so no kernel ever executes an instruction the
 * machine or the OS would fault on. HEARTH_CPU_ISA=scalar|avx2|avx512|amx caps the level
 * (never raises it); tests also cap it through cpu_isa_force.
 *
 * The detected level is immutable process-wide state computed once (pthread_once).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "backend/cpu/cpu.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static cpu_features g_feat;
static int g_env_cap = CPU_ISA_AMX;        /* from HEARTH_CPU_ISA */
static atomic_int g_forced = -1;           /* from cpu_isa_force; -1 = none */

#if defined(__x86_64__)
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Linux keeps AMX tile data off until the process asks; a refusal just means no AMX. */
static bool amx_request_permission(void) {
#if defined(__linux__)
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return false;
#endif
}

static void detect_x86(cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
    if (!osxsave || !avx) return;
    uint64_t xcr0 = read_xcr0();
    bool os_ymm = (xcr0 & 0x6) == 0x6;           /* SSE + AVX state */
    bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask + ZMM_Hi256 + Hi16_ZMM */
    bool os_tile = (xcr0 & 0x60000) == 0x60000;  /* XTILECFG + XTILEDATA */
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
    bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30);
    bool avx512vl = b & (1u << 31), vnni = c & (1u << 11);
    bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    f->avx512_bf16 = os_zmm && avx512f && (a1 & (1u << 5));
    f->avx2 = os_ymm && avx2 && fma && f16c && bmi2;
    f->avx512 = f->avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl && vnni;
    f->amx = f->avx512 && os_tile && amx_tile && amx_int8 && amx_bf16 && amx_request_permission();
}
#endif

static int parse_level(const char *s) {
    if (!s || !*s) return CPU_ISA_AMX;
    static const char *names[] = { "scalar", "avx2", "avx512", "amx" };
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return CPU_ISA_AMX; /* unknown values do not cap (documented in docs/performance.md) */
}

static void detect_once(void) {
#if defined(__x86_64__)
    detect_x86(&g_feat);
#endif
    g_feat.level = g_feat.amx ? CPU_ISA_AMX : g_feat.avx512 ? CPU_ISA_AVX512 : g_feat.avx2 ? CPU_ISA_AVX2 : CPU_ISA_SCALAR;
    g_env_cap = parse_level(getenv("HEARTH_CPU_ISA"));
}

const cpu_features *cpu_features_get(void) {
    pthread_once(&g_once, detect_once);
    return &g_feat;
}

int cpu_isa_level(void) {
    const cpu_features *f = cpu_features_get();
    int lv = f->level < g_env_cap ? f->level : g_env_cap;
    int forced = atomic_load(&g_forced);
    if (forced >= 0 && forced < lv) lv = forced;
    return lv;
}

void cpu_isa_force(int level) { atomic_store(&g_forced, level); }

const char *cpu_isa_name(int level) {
    switch (level) {
    case CPU_ISA_SCALAR: return "scalar";
    case CPU_ISA_AVX2: return "avx2";
    case CPU_ISA_AVX512: return "avx512";
    case CPU_ISA_AMX: return "amx";
    default: return "?";
    }
}
