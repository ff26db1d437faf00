#!/usr/bin/env bash
# sass.sh — the Hopper machine code (SASS) of one CUDA source file, without a GPU.
#
#   scripts/sass.sh src/backend/cuda/cu_mvf_ps.cu [KERNEL_REGEX] [OUT.sass]
#
# Compiles the file for sm_90 only (the flags of cuda.mk), disassembles it and prints, per
# kernel whose mangled name matches KERNEL_REGEX (default: all), its instruction count; the
# listing goes to OUT.sass (default /tmp/hearth_sass/<file>.sass). Static counts are a guide
# for instruction cuts in issue-limited kernels (docs/cuda.md, "Reading the machine code");
# only a timing on the device says whether a cut pays.
#
# Needs a disassembler: $NVDISASM, else nvdisasm from the CUDA toolkit or PATH. A toolkit
# without one (the CI image's nvcc 13 has none) can borrow Debian's: `apt-get download
# nvidia-cuda-toolkit` (bookworm non-free, CUDA 11.8), `dpkg-deb -x` it somewhere and point
# NVDISASM at its usr/bin/nvdisasm. That older disassembler reads sm_90 code but not the
# newer ELF header of nvcc 13's cubins, so a copy gets the old header (OS/ABI 0x21, ABI
# version 7, flags 0x5a055a = sm_90) before it is disassembled; the code is untouched.
set -euo pipefail

src=${1:?usage: scripts/sass.sh FILE.cu [KERNEL_REGEX] [OUT.sass]}
re=${2:-.}
out=${3:-/tmp/hearth_sass/$(basename "$src" .cu).sass}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
dis=${NVDISASM:-$(command -v nvdisasm || echo "$(dirname "$nvcc")/nvdisasm")}
[ -x "$dis" ] || { echo "sass.sh: no nvdisasm (set NVDISASM; see the comment at the top)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"
"$nvcc" -std=c++17 -O3 -arch=sm_90 -cubin -Iinclude -Isrc --expt-relaxed-constexpr "$src" -o "$work/k.cubin"
if ! "$dis" -c "$work/k.cubin" > "$out" 2> "$work/err"; then
    grep -q "architecture information" "$work/err" || { cat "$work/err" >&2; exit 1; }
    cp "$work/k.cubin" "$work/k7.cubin"
    printf '\x21\x07' | dd of="$work/k7.cubin" bs=1 seek=7 conv=notrunc status=none
    printf '\x5a\x05\x5a\x00' | dd of="$work/k7.cubin" bs=1 seek=48 conv=notrunc status=none
    "$dis" -c "$work/k7.cubin" > "$out"
fi
# Per kernel: instructions (lines with an address comment) between its .text header and the next.
# With LOOPS=1 also every backward branch (a loop): its label and the instructions it spans.
awk -v re="$re" -v loops="${LOOPS:-0}" '
    function addr(s,  v, i) { sub(/^[^\/]*\/\*/, "", s); sub(/\*\/.*/, "", s); v = 0
        for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
        return v }
    /^\/\/-+ \.text\./ { if (name != "" && name ~ re) printf "%6d  %s\n", n, name; name = $2; sub(/^\.text\./, "", name); n = 0; next }
    /^\.L_x_[0-9]+:/ { lab = $1; sub(/:$/, "", lab); pend[lab] = 1; next }
    /\/\*[0-9a-f][0-9a-f][0-9a-f][0-9a-f]+\*\// {
        n++; a = addr($0)
        for (l in pend) { at[l] = a; delete pend[l] }
        if (loops && name ~ re && match($0, /BRA[^`]*`\(\.L_x_[0-9]+\)/)) {
            t = substr($0, RSTART, RLENGTH); sub(/.*`\(/, "", t); sub(/\)$/, "", t)
            if (t in at && at[t] <= a) printf "        loop %s: %d instructions (%s)\n", t, (a - at[t]) / 16 + 1, name
        }
    }
    END { if (name != "" && name ~ re) printf "%6d  %s\n", n, name }' "$out"
echo "listing: $out" >&2
