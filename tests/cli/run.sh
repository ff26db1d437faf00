#!/usr/bin/env bash
# hearth run: the greedy fixture byte for byte, seeded sampling reproducible across runs and
# thread counts, stop strings, and bad input -> exit 1 with one clear message.
set -u
H=${HEARTH:?HEARTH must point to the hearth binary}
S=${HEARTH_TEST_SHARED:?}
M=$S/models/stories260K.gguf
[ -f "$M" ] || { echo "missing $M"; exit 1; }
fail=0
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

"$H" run "$M" --raw "" --temp 0 -n 200 >"$t/greedy.txt" 2>"$t/err"
check "greedy 200 tokens from BOS equals the fixture" "cmp -s '$t/greedy.txt' '$S/fixtures/generation/stories260K.greedy.txt'"

{ printf 'Once upon a'; "$H" run "$M" --raw "Once upon a" --temp 0 -n 40 2>/dev/null; } >"$t/cont.txt"
check "a continuation keeps its first token's space (prompt + reply = the fixture's text)" \
  "[ \"\$(head -c \$(stat -c %s '$t/cont.txt') '$S/fixtures/generation/stories260K.greedy.txt')\" = \"\$(cat '$t/cont.txt')\" ]"

"$H" run "$M" --raw "Once upon a time" --seed 7 --temp 1.0 -n 60 -t 1 >"$t/s1" 2>/dev/null
"$H" run "$M" --raw "Once upon a time" --seed 7 --temp 1.0 -n 60 -t 1 >"$t/s2" 2>/dev/null
"$H" run "$M" --raw "Once upon a time" --seed 7 --temp 1.0 -n 60 -t 2 >"$t/s3" 2>/dev/null
"$H" run "$M" --raw "Once upon a time" --seed 8 --temp 1.0 -n 60 -t 2 >"$t/s4" 2>/dev/null
check "same seed, same output" "[ -s '$t/s1' ] && cmp -s '$t/s1' '$t/s2'"
check "same seed on 1 vs 2 threads" "cmp -s '$t/s1' '$t/s3'"
check "another seed differs" "! cmp -s '$t/s1' '$t/s4'"

"$H" run "$M" --raw "" --temp 0 -n 200 --stop "Lily" >"$t/stop" 2>/dev/null
check "stop string ends output and never leaks" "[ \"\$(cat '$t/stop')\" = 'Once upon a time, there was a little girl named ' ]"

"$H" run "$M" --raw "" --temp 0 -n 5 --verbose >/dev/null 2>"$t/v"
check "--verbose prints speeds to stderr" "grep -q 'tokens/s' '$t/v'"

"$H" run "$M" --raw "" --temp 0 -n 5 --backend cuda >/dev/null 2>"$t/note"; rc=$?
check "--backend cuda without a usable GPU: a note, then the CPU" "[ $rc -eq 0 ] && grep -q 'CPU' '$t/note'"

# A stored model name works like its file (store in a temp dir).
printf 'FROM %s\n' "$M" >"$t/Modelfile"
HEARTH_MODELS="$t/store" "$H" create tiny -f "$t/Modelfile" >/dev/null 2>&1
HEARTH_MODELS="$t/store" "$H" run tiny --raw "" --temp 0 -n 200 >"$t/byname" 2>/dev/null
check "run by stored name equals the file" "cmp -s '$t/byname' '$S/fixtures/generation/stories260K.greedy.txt'"
HEARTH_MODELS="$t/store" "$H" show tiny >"$t/show" 2>&1
check "show by stored name" "grep -q 'architecture *llama' '$t/show'"

# Bad input: exit code 1, exactly one line on stderr starting with 'hearth:'
bad() {
  local name=$1; shift
  "$H" "$@" >"$t/out" 2>"$t/err" </dev/null; local rc=$?
  check "$name -> exit 1, one message" "[ $rc -eq 1 ] && [ \$(wc -l <'$t/err') -eq 1 ] && grep -q '^hearth: ' '$t/err' && ! grep -qi 'sanitizer' '$t/err'"
}
echo "Once" | "$H" run "$M" --raw --ctx 64 -n -1 >/dev/null 2>"$t/err"
check "a full context is reported with its real size" "grep -q 'the context of 64 tokens is full' '$t/err'"
bad "missing model" run /nonexistent.gguf "hi"
check "a missing file is named as a file, not parsed as a store name" "grep -q 'cannot open /nonexistent.gguf: No such file' '$t/err'"
bad "a directory as the model" run "$t" "hi"
check "a directory is not a regular file" "grep -q 'is not a regular file' '$t/err'"
HEARTH_MODELS="$t/store" bad "unknown stored model" run nosuchmodel "hi"
head -c 100000 "$M" >"$t/trunc.gguf"
bad "truncated model" run "$t/trunc.gguf" "hi"
printf 'GGUF\x03\x00\x00\x00' >"$t/tiny.gguf"
bad "corrupt header" run "$t/tiny.gguf" "hi"
bad "--ctx 0" run "$M" --ctx 0 "hi"
bad "-n -5" run "$M" -n -5 "hi"
bad "--threads 10000" run "$M" --threads 10000 "hi"
bad "unknown flag" run "$M" --bogus "hi"
bad "a flag with a value that is not a boolean" run "$M" --raw=maybe "hi"
"$H" run "$M" --raw=false --temp 0 -n 3 "Once" >"$t/f0" 2>/dev/null; "$H" run "$M" --temp 0 -n 3 "Once" >"$t/f1" 2>/dev/null
check "--raw=false is the flag off" "cmp -s '$t/f0' '$t/f1'"
bad "a verb without arguments given one" list extra
check "its message says what it expects" "grep -q 'expected no arguments' '$t/err'"
bad "unknown backend" run "$M" --backend tpu "hi"
bad "prompt longer than the context" run "$M" --raw --ctx 16 "Once upon a time there was a little girl who liked to play in the park every day with her dog"
# serve refuses a keep-alive whose milliseconds do not fit (before it binds anything)
bad "serve --keep-alive too long" serve --host 127.0.0.1:0 --keep-alive 1e300h
bad "serve --keep-alive nan" serve --host 127.0.0.1:0 --keep-alive nan
bad "serve --sample-threads 65" serve --host 127.0.0.1:0 --sample-threads 65
bad "serve --sample-threads -2" serve --host 127.0.0.1:0 --sample-threads -2
# ... and takes Ollama's compound durations (the parser of the API's keep_alive)
HEARTH_MODELS="$t/store" "$H" serve --host 127.0.0.1:0 --keep-alive 1h30m >"$t/serve.log" 2>&1 &
sp=$!
sleep 1
check "serve --keep-alive 1h30m starts" "kill -0 $sp 2>/dev/null"
kill $sp 2>/dev/null; wait $sp 2>/dev/null
# text held back as a possible stop string is printed when the reply ends another way (EOS,
# the token limit): a stop string that never completes changes nothing
R=$S/models/random/llama.Q8_0.gguf
for seed in 4 5 6; do
  "$H" run "$R" --raw Lily --temp 1 -s $seed -n 40 >"$t/ns" 2>/dev/null
  tail2=$(tail -c 2 "$t/ns" | od -An -c | tr -d ' ')
  "$H" run "$R" --raw Lily --temp 1 -s $seed -n 40 --stop "$(tail -c 1 "$t/ns")QQ#" --stop "$(tail -c 2 "$t/ns")QQ#" >"$t/ws" 2>/dev/null
  check "seed $seed: an unmatched stop string leaves the output whole ($tail2)" "[ -s '$t/ns' ] && cmp -s '$t/ns' '$t/ws'"
done
# prompts a chat message cannot hold are refused, not silently dropped
bad "prompt not valid UTF-8" run "$M" "$(printf 'Once upon a \xff time')"
check "  ... says so" "grep -q 'not valid UTF-8' '$t/err'"
bad "system prompt not valid UTF-8" run "$M" --system "$(printf 'be \xe9')" "hi"
printf 'Once\0 upon a time' | "$H" run "$M" --raw -n 3 >/dev/null 2>"$t/err"; rc=$?
check "a NUL byte in a piped prompt -> exit 1 and says so" "[ $rc -eq 1 ] && grep -q 'NUL byte' '$t/err'"
"$H" run "$M" --raw "Once" -n 5 >/dev/full 2>"$t/err"; rc=$?
check "a reply that cannot be written -> exit 1" "[ $rc -eq 1 ] && grep -q 'cannot write' '$t/err'"
# Ctrl-C cuts a one-shot run: exit 130, as a shell reports SIGINT (whether the handler or the
# default action caught it)
"$H" run "$M" --raw "Once" -n -1 --ctx 4096 --temp 0 >/dev/null 2>/dev/null & rp=$! # greedy from "Once": 4094 tokens, no early end
sleep 0.05; kill -INT $rp; wait $rp; rc=$?
check "SIGINT during a one-shot run -> exit 130" "[ $rc -eq 130 ]"
"$H" run --help >/dev/null 2>&1
check "--help exits 0" "[ $? -eq 0 ]"
exit $fail
