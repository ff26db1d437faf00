#!/usr/bin/env bash
# `hearth show` over every GGUF file in the shared dirs (text, --json, --verbose) and over
# hostile files: expected facts come from the file names (models/random/<arch>.<TYPE>.gguf,
# 512-token vocab per fixtures/logits/README.md) and fixtures/tokenizer/vocabs.json.
# Hostile files must give exit code 1 and exactly one stderr line starting "hearth:".
set -u
: "${HEARTH:?HEARTH must point to the hearth binary}"
shared=${HEARTH_TEST_SHARED:-../shared}
if [ ! -d "$shared/models" ]; then
  echo "show.sh: shared data not found at $shared (set HEARTH_TEST_SHARED)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. every shared file: text, JSON and verbose output, checked against independent facts
n=0
for f in "$shared"/models/*.gguf "$shared"/models/random/*.gguf "$shared"/vocab/*.gguf; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  o="$tmp/$n"
  if ! "$HEARTH" show "$f" >"$o.out.txt" 2>"$tmp/err.txt"; then fail "show $f: $(cat "$tmp/err.txt")"; continue; fi
  [ -s "$tmp/err.txt" ] && fail "show $f wrote to stderr: $(head -3 "$tmp/err.txt")"
  if ! "$HEARTH" show --json "$f" >"$o.out.json" 2>"$tmp/err.txt"; then fail "show --json $f"; continue; fi
  if ! "$HEARTH" show --verbose --json "$f" >"$o.outv.json" 2>"$tmp/err.txt"; then fail "show --verbose --json $f"; continue; fi
  if ! "$HEARTH" show --verbose "$f" >"$o.outv.txt" 2>"$tmp/err.txt"; then fail "show --verbose $f"; continue; fi
  printf '%s\t%s\n' "$o" "$f" >>"$tmp/list"
done
# one python run checks every file's outputs (python start-up is slow)
python3 - "$shared" "$tmp/list" <<'EOF' || fail "facts (see above)"
import json, os, sys
shared, listing = sys.argv[1], sys.argv[2]
vocabs = json.load(open(os.path.join(shared, "fixtures/tokenizer/vocabs.json")))["vocabs"]
all_errors = 0
for line in open(listing):
  o, path = line.rstrip("\n").split("\t")
  j = json.load(open(o + ".out.json"))
  jv = json.load(open(o + ".outv.json"))
  text = open(o + ".out.txt", encoding="utf-8", errors="replace").read()
  vtext = open(o + ".outv.txt", encoding="utf-8", errors="replace").read()
  base = os.path.basename(path)
  errors = []
  def want(cond, msg):
    if not cond: errors.append(msg)
  arch = j["architecture"]
  want(isinstance(arch, str) and arch, "no architecture")
  want(("architecture     %s\n" % arch) in text, "text output lacks the architecture")
  if "/random/" in path:
      want(arch == base.split(".")[0], "arch %r, file name says %r" % (arch, base.split(".")[0]))
      if "lora" not in base:
          want(j["vocab_size"] == 512, "vocab_size %r != 512" % j["vocab_size"])
          want("vocab size       512\n" in text, "text vocab size")
  if "/vocab/" in path:
      v = [x for x in vocabs if os.path.basename(x["gguf"]) == base]
      want(len(v) == 1, "not in vocabs.json")
      if v:
          v = v[0]
          want(j["vocab_size"] == v["n_tokens"], "vocab_size %r != %r" % (j["vocab_size"], v["n_tokens"]))
          want(arch == v["general.architecture"], "architecture")
          want(j["tokenizer"]["model"] == v["tokenizer.ggml.model"], "tokenizer model")
          want(j["tokenizer"]["pre"] == v["tokenizer.ggml.pre"], "tokenizer pre")
          want(j["n_tensors"] == 0 and j["parameters"] == 0, "vocab file has tensors?")
          want("parameters       -\n" in text, "missing facts must print as -")
  want(j["file_size"] == os.path.getsize(path), "file_size")
  # verbose JSON: every tensor inside the file, parameters = sum of shapes
  size = os.path.getsize(path)
  total = 0
  for t in jv["tensors"]:
      n = 1
      for d in t["shape"]: n *= d
      total += n
      want(t["offset"] + t["size"] <= size, "tensor %s outside the file" % t["name"])
      want(("  %s  %s  [" % (t["name"], t["type"])) in vtext, "verbose text lacks tensor %s" % t["name"])
  want(total == j["parameters"], "parameters %r != sum of shapes %r" % (j["parameters"], total))
  want(len(jv["metadata"]) == j["n_kv"], "metadata count")
  want(jv["metadata"]["general.architecture"]["value"] == arch, "metadata value")
  tok = jv["metadata"].get("tokenizer.ggml.tokens")
  if tok:
      want(tok["n"] == j["vocab_size"] and len(tok["value"]) <= 8, "abbreviated token array")
      want(("[%d x string] [" % tok["n"]) in vtext, "verbose array abbreviation")
  for e in errors: print(base + ": " + e)
  all_errors += len(errors)
sys.exit(1 if all_errors else 0)
EOF
[ "$n" -ge 50 ] || fail "only $n shared GGUF files found"

# 2. hostile and missing files: exit 1, one line "hearth: ..." on stderr, nothing else
src="$shared/models/stories260K.gguf"
printf 'GGUX\3\0\0\0' >"$tmp/magic.gguf"
printf 'GGUF\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' >"$tmp/v1.gguf"
printf 'GGUF\143\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' >"$tmp/v99.gguf"
printf 'GGUF\3\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1' >"$tmp/nkv.gguf"
: >"$tmp/empty.gguf"
head -c 100 "$src" >"$tmp/trunc100.gguf"
head -c 4000 "$src" >"$tmp/trunc4000.gguf"
head -c $(( $(stat -c %s "$src") - 1 )) "$src" >"$tmp/short1.gguf"
# a tensor name with a newline and an escape byte must not break the one-line rule
printf 'GGUF\3\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\3\0\0\0\0\0\0\0a\n\033\1\0\0\0\4\0\0\0\0\0\0\0\143\0\0\0\0\0\0\0\0\0\0\0' >"$tmp/name.gguf"
mkdir "$tmp/dir.gguf"
for h in magic v1 v99 nkv empty trunc100 trunc4000 short1 name dir missing; do
  "$HEARTH" show "$tmp/$h.gguf" >"$tmp/h.out" 2>"$tmp/h.err"; rc=$?
  lines=$(wc -l <"$tmp/h.err")
  [ "$rc" -eq 1 ] || fail "$h: exit code $rc, expected 1"
  [ "$lines" -eq 1 ] || fail "$h: $lines stderr lines: $(cat "$tmp/h.err")"
  grep -q "^hearth: .*$h.gguf" "$tmp/h.err" || fail "$h: stderr does not start with 'hearth:' and name the file: $(cat "$tmp/h.err")"
  [ -s "$tmp/h.out" ] && fail "$h: wrote to stdout"
  echo "$h: $(cat "$tmp/h.err")"
done
grep -q "version" <("$HEARTH" show "$tmp/v1.gguf" 2>&1) || fail "v1: message does not name the version"
"$HEARTH" show >/dev/null 2>&1 && fail "show without a file must fail"
"$HEARTH" show --help >/dev/null 2>&1 || fail "show --help must succeed"
"$HEARTH" show -v --backend bogus "$shared/models/stories260K.gguf" >/dev/null 2>"$tmp/b.err" && fail "show --backend bogus must fail"
grep -q "unknown backend 'bogus'" "$tmp/b.err" || fail "show --backend bogus: $(cat "$tmp/b.err")"

echo "show.sh: $n files, $fails failures"
[ "$fails" -eq 0 ]
