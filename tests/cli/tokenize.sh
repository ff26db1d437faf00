#!/usr/bin/env bash
# CLI tests for `hearth tokenize` / `hearth detokenize` against the tokenizer fixtures:
# the modes map to the fixture flags (default --parse-special = (true,true), --no-special =
# (false,false)), stdin is read byte for byte, --json is a JSON array, and errors exit 1
# with one message. Expected values come from the fixture files (read with node).
set -u
S=${HEARTH_TEST_SHARED:?HEARTH_TEST_SHARED must point at the shared dir}
H=${HEARTH:?HEARTH must point at the hearth binary}
FX="$S/fixtures/tokenizer"
[ -f "$FX/vocabs.json" ] || { echo "tokenize.sh: $FX/vocabs.json missing (shared data is required)"; exit 1; }
command -v node >/dev/null || { echo "tokenize.sh: node is required to read the fixtures"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # name expected actual
  if [ "$2" == "$3" ]; then echo "ok   $1"; else echo "FAIL $1"; echo "  want: $2"; echo "  got:  $3"; fail=1; fi
}

# pick VOCAB PREDICATE: writes text.bin, ids.txt (space separated), ids.json, detok.bin for
# the first (false,false) and (true,true) records whose text satisfies the JS predicate.
pick() {
  node -e '
    const fs = require("fs");
    const [file, pred, out] = process.argv.slice(1);
    const f = new Function("t", "return " + pred);
    const recs = fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map(JSON.parse);
    for (const mode of [false, true]) {
      const r = recs.find(r => r.add_special === mode && r.parse_special === mode && f(r.text));
      if (!r) { console.error("no fixture line matches " + pred); process.exit(1); }
      const sfx = mode ? "tt" : "ff";
      fs.writeFileSync(`${out}/text.bin`, r.text);
      fs.writeFileSync(`${out}/ids.${sfx}.txt`, r.ids.join(" "));
      fs.writeFileSync(`${out}/ids.${sfx}.json`, JSON.stringify(r.ids));
      fs.writeFileSync(`${out}/detok.${sfx}.bin`, r.detok);
    }' "$FX/$1.jsonl" "$2" "$tmp"
}

SPM="$S/vocab/ggml-vocab-llama-spm.gguf"
QWEN="$S/vocab/ggml-vocab-qwen3.gguf"

# 1. argument text, both modes (a text with a space inside and a leading space if any).
pick llama-spm 't.includes(" ") && t.length > 3 && !t.includes("\n")' || exit 1
text=$(cat "$tmp/text.bin")
check "spm --parse-special (true,true)" "$(cat "$tmp/ids.tt.txt")" "$("$H" tokenize --parse-special "$SPM" "$text")"
check "spm --no-special (false,false)" "$(cat "$tmp/ids.ff.txt")" "$("$H" tokenize --no-special "$SPM" "$text")"
check "spm --json" "$(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"))))' "$tmp/ids.tt.json")" \
      "$("$H" tokenize --json --parse-special "$SPM" "$text" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.stringify(JSON.parse(s))))')"
"$H" detokenize "$SPM" $(cat "$tmp/ids.tt.txt") > "$tmp/out.bin"
if cmp -s "$tmp/out.bin" "$tmp/detok.tt.bin"; then echo "ok   detokenize matches detok"; else echo "FAIL detokenize"; fail=1; fi

# 2. stdin, byte for byte: a text ending in a newline keeps it.
pick llama-spm 't.length > 1 && t.endsWith("\n") && t.trim().length > 0' || exit 1
check "stdin keeps trailing newline" "$(cat "$tmp/ids.ff.txt")" "$("$H" tokenize --no-special "$SPM" < "$tmp/text.bin")"

# 3. special tokens: qwen3 chat markup is one token only with --parse-special.
pick qwen3 't.includes("<|im_start|>")' || exit 1
check "qwen3 --parse-special" "$(cat "$tmp/ids.tt.txt")" "$("$H" tokenize --parse-special "$QWEN" < "$tmp/text.bin")"
check "qwen3 --no-special" "$(cat "$tmp/ids.ff.txt")" "$("$H" tokenize --no-special "$QWEN" < "$tmp/text.bin")"
"$H" detokenize "$QWEN" $(cat "$tmp/ids.tt.txt") > "$tmp/out.bin"
if cmp -s "$tmp/out.bin" "$tmp/detok.tt.bin"; then echo "ok   qwen3 detokenize"; else echo "FAIL qwen3 detokenize"; fail=1; fi
"$H" tokenize --pieces "$QWEN" < "$tmp/text.bin" > "$tmp/pieces.txt" && [ "$(wc -l < "$tmp/pieces.txt")" -eq "$(wc -w < "$tmp/ids.ff.txt")" ] \
  && echo "ok   --pieces one line per token" || { echo "FAIL --pieces"; fail=1; }

# 4. errors: exit 1 and exactly one message line.
expect_error() { # name cmd...
  local name=$1; shift
  "$@" > "$tmp/o" 2> "$tmp/e" < /dev/null; local rc=$?
  if [ "$rc" -eq 1 ] && [ "$(wc -l < "$tmp/e")" -eq 1 ] && [ ! -s "$tmp/o" ]; then echo "ok   $name: $(cat "$tmp/e")"
  else echo "FAIL $name (rc=$rc)"; cat "$tmp/e"; fail=1; fi
}
expect_error "missing model" "$H" tokenize "$tmp/no-such-model.gguf" "hi"
expect_error "detokenize bad id" "$H" detokenize "$SPM" 1 abc
expect_error "detokenize id out of range" "$H" detokenize "$SPM" 1 32000
expect_error "detokenize missing model" "$H" detokenize "$tmp/none.gguf" 1
expect_error "unknown option" "$H" tokenize --bogus "$SPM" "x"
mkfifo "$tmp/fifo.gguf" # opened without blocking on a writer, then refused
expect_error "a FIFO as the model" timeout 20 "$H" tokenize "$tmp/fifo.gguf" "hi"
expect_error "a FIFO to detokenize" timeout 20 "$H" detokenize "$tmp/fifo.gguf" 1
printf 'bad \xff utf8' > "$tmp/bad.bin"
"$H" tokenize "$SPM" < "$tmp/bad.bin" > "$tmp/o" 2> "$tmp/e"; rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l < "$tmp/e")" -eq 1 ]; then echo "ok   invalid UTF-8: $(cat "$tmp/e")"; else echo "FAIL invalid UTF-8 (rc=$rc)"; fail=1; fi
"$H" tokenize --help > "$tmp/o" && grep -q -- "--parse-special" "$tmp/o" && echo "ok   --help" || { echo "FAIL --help"; fail=1; }
exit $fail
