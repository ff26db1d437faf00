#!/usr/bin/env bash
# `hearth template`: renders fixture templates from a file (output byte-exact against
# fixtures/templates, compared with cmp), honours --now, renders a vocab file's own
# tokenizer.chat_template (MODEL form; the template is extracted independently by a small
# GGUF reader here), and fails with exit 1 and one "hearth:" line on bad input.
set -u
: "${HEARTH:?HEARTH must point to the hearth binary}"
shared=${HEARTH_TEST_SHARED:-../shared}
fx="$shared/fixtures/templates"
if [ ! -d "$fx" ]; then
  echo "template.sh: fixtures not found at $fx (set HEARTH_TEST_SHARED)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Writes <dir>/<case>.jinja, .json (vars), .want (expected or error text), .now
split_case() { # fixture-file case-name out-prefix
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
f, name, pre = sys.argv[1:]
d = json.load(open(f, encoding="utf-8"))
c = next(c for c in d["cases"] if c["name"] == name)
open(pre + ".jinja", "w", encoding="utf-8", newline="").write(d["template"])
json.dump(c["vars"], open(pre + ".json", "w", encoding="utf-8"), ensure_ascii=False)
open(pre + ".want", "w", encoding="utf-8", newline="").write(c.get("expected", c.get("error", "")))
open(pre + ".now", "w").write(d["strftime_now"])
EOF
}

# 1. byte-exact rendering of fixture cases (Llama 3.2 uses strftime_now; d_ has unicode/CRLF)
for c in a_single_user_gen d_multiline_unicode_quotes e1_tools_hf_style; do
  p="$tmp/llama32-$c"
  split_case "$fx/meta-llama-Llama-3.2-3B-Instruct.json" "$c" "$p" || { fail "fixture $c"; continue; }
  if ! "$HEARTH" template --file "$p.jinja" --vars "$p.json" --now "$(cat "$p.now")" >"$p.out" 2>"$p.err"; then
    fail "template $c: $(cat "$p.err")"; continue
  fi
  cmp -s "$p.out" "$p.want" || fail "template $c: output differs from the fixture"
  [ -s "$p.err" ] && fail "template $c wrote to stderr"
done

# 2. --now is honoured: same case at another instant gives the fixture text with that date
p="$tmp/llama32-a_single_user_gen"
"$HEARTH" template --file "$p.jinja" --vars "$p.json" --now 2024-03-09T08:30:00 >"$tmp/now.out" 2>/dev/null \
  || fail "--now 2024-03-09"
sed 's/15 Jan 2025/09 Mar 2024/' "$p.want" >"$tmp/now.want"
cmp -s "$tmp/now.out" "$tmp/now.want" || fail "--now: date not applied"
cmp -s "$tmp/now.out" "$p.want" && fail "--now: output did not change"

# 3. raise_exception -> exit 1, the template's message after "hearth: "
p="$tmp/gemma-b"
split_case "$fx/google-gemma-2-2b-it.json" b_system_multi_turn_gen "$p"
"$HEARTH" template --file "$p.jinja" --vars "$p.json" >"$tmp/o" 2>"$tmp/e"; rc=$?
[ "$rc" -eq 1 ] || fail "raise_exception: exit $rc, want 1"
[ "$(cat "$tmp/e")" = "hearth: $(cat "$p.want")" ] || fail "raise_exception: stderr '$(cat "$tmp/e")'"
[ -s "$tmp/o" ] && fail "raise_exception: wrote to stdout"

# 4. MODEL form: the vocab file's own template, extracted here independently
model="$shared/vocab/ggml-vocab-llama-bpe.gguf"
if [ -f "$model" ]; then
  python3 - "$model" "$tmp/model.jinja" <<'EOF' || fail "could not extract the chat template from $model"
import struct, sys
f = open(sys.argv[1], "rb")
assert f.read(4) == b"GGUF"
ver, = struct.unpack("<I", f.read(4))
n_t, n_kv = struct.unpack("<QQ", f.read(16))
sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def rstr():
    n, = struct.unpack("<Q", f.read(8)); return f.read(n)
def skip(t):
    if t == 8: rstr()
    elif t == 9:
        et, n = struct.unpack("<IQ", f.read(12))
        for _ in range(n): skip(et)
    else: f.read(sizes[t])
for _ in range(n_kv):
    k = rstr().decode(); t, = struct.unpack("<I", f.read(4))
    if k == "tokenizer.chat_template" and t == 8:
        open(sys.argv[2], "wb").write(rstr()); sys.exit(0)
    skip(t)
sys.exit(1)
EOF
  printf '%s' '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "add_generation_prompt": true, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tools": null}' >"$tmp/m.json"
  if "$HEARTH" template "$model" --vars "$tmp/m.json" --now 2025-01-15T12:00:00 >"$tmp/m.out" 2>"$tmp/m.err"; then
    "$HEARTH" template --file "$tmp/model.jinja" --vars "$tmp/m.json" --now 2025-01-15T12:00:00 >"$tmp/m.want" 2>/dev/null
    cmp -s "$tmp/m.out" "$tmp/m.want" || fail "MODEL form differs from rendering the extracted template"
    grep -q "Be brief." "$tmp/m.out" || fail "MODEL form: system message missing"
  else
    fail "MODEL form: $(cat "$tmp/m.err")"
  fi
fi

# 5. bad input: exit 1 and exactly one stderr line starting "hearth:"
printf '{{ x | nosuchfilter }}' >"$tmp/bad.jinja"
printf '{"messages": [' >"$tmp/bad.json"
printf '{}' >"$tmp/empty.json"
check_err() { # description, args...
  local what=$1; shift
  "$HEARTH" template "$@" >"$tmp/o" 2>"$tmp/e"; local rc=$?
  [ "$rc" -eq 1 ] || fail "$what: exit $rc, want 1"
  [ "$(wc -l <"$tmp/e")" -eq 1 ] && grep -q '^hearth: ' "$tmp/e" || fail "$what: stderr '$(cat "$tmp/e")'"
  [ -s "$tmp/o" ] && fail "$what: wrote to stdout"
}
check_err "unknown filter" --file "$tmp/bad.jinja" --vars "$tmp/empty.json"
grep -q "template line 1: unknown filter 'nosuchfilter'" "$tmp/e" || fail "unknown filter message: $(cat "$tmp/e")"
check_err "bad vars JSON" --file "$p.jinja" --vars "$tmp/bad.json"
check_err "missing template file" --file "$tmp/none.jinja" --vars "$tmp/empty.json"
check_err "missing vars" --file "$p.jinja"
check_err "bad --now" --file "$p.jinja" --vars "$tmp/empty.json" --now yesterday
check_err "both --file and MODEL" "$model" --file "$p.jinja" --vars "$tmp/empty.json"
check_err "neither --file nor MODEL" --vars "$tmp/empty.json"
check_err "missing model" "$tmp/none.gguf" --vars "$tmp/empty.json"
check_err "--file and --vars both from stdin" --file - --vars - </dev/null
# '-' reads the template from stdin
printf 'x={{ 1 + 2 }}' | "$HEARTH" template --file - --vars "$tmp/empty.json" >"$tmp/o" 2>"$tmp/e" || fail "--file -: $(cat "$tmp/e")"
[ "$(cat "$tmp/o")" = "x=3" ] || fail "--file - rendered '$(cat "$tmp/o")'"
"$HEARTH" template --help >/dev/null 2>&1 || fail "--help"

[ "$fails" -eq 0 ] && echo "template.sh: all checks passed"
[ "$fails" -eq 0 ]
