#!/usr/bin/env bash
# hearth logits: stories260K on fixture sequence a gives n_tokens x 512 float32 and the
# fixture's greedy continuation; bad input exits 1 with one message.
set -u
S=${HEARTH_TEST_SHARED:?}
H=${HEARTH:?}
M=$S/models/stories260K.gguf
F=$S/fixtures/logits
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=$(cat "$F/seqs/a.txt")
n=$(echo $ids | wc -w)
got=$("$H" logits "$M" --tokens "$ids" --out "$tmp/o.f32" --kv f32 --threads 2 --greedy 32) || { echo "logits failed"; exit 1; }
[ "$got" = "$(cat "$F/stories260K.a.greedy.txt")" ] || { echo "greedy mismatch: $got"; exit 1; }
size=$(stat -c %s "$tmp/o.f32")
[ "$size" -eq $((n * 512 * 4)) ] || { echo "wrong output size $size"; exit 1; }
# stdout output, chunked batches (--batch 5) give the same bytes
"$H" logits "$M" --tokens "$ids" --kv f32 --batch 5 --threads 1 > "$tmp/o2.f32" || { echo "stdout run failed"; exit 1; }
cmp -s "$tmp/o.f32" "$tmp/o2.f32" || { echo "chunked/stdout output differs"; exit 1; }
# the ids from a file (CRLF lines) and from stdin give the same bytes
printf '%s\r\n' $ids > "$tmp/ids.txt"
"$H" logits "$M" --tokens-file "$tmp/ids.txt" --kv f32 --threads 1 > "$tmp/o3.f32" || { echo "--tokens-file run failed"; exit 1; }
cmp -s "$tmp/o.f32" "$tmp/o3.f32" || { echo "--tokens-file output differs"; exit 1; }
echo "$ids" | "$H" logits "$M" --tokens-file - --kv f32 --threads 1 > "$tmp/o4.f32" || { echo "--tokens-file - run failed"; exit 1; }
cmp -s "$tmp/o.f32" "$tmp/o4.f32" || { echo "--tokens-file - output differs"; exit 1; }
printf '1 2\0003' > "$tmp/nul.txt"
for args in "--tokens 1 --tokens-file $tmp/ids.txt" "--tokens-file $tmp/nothere.txt" "--tokens-file $tmp/nul.txt"; do
  # shellcheck disable=SC2086
  if "$H" logits "$M" $args > /dev/null 2> "$tmp/err"; then echo "accepted: $args"; exit 1; fi
  [ "$(wc -l < "$tmp/err")" -eq 1 ] || { echo "not one message for $args:"; cat "$tmp/err"; exit 1; }
done
# errors: out-of-range id, garbage ids, too long for the context, bad kv type, missing model
for args in "--tokens 1,99999" "--tokens 1,x" "--tokens 1,2,3 --ctx 2" "--tokens 1 --kv f8" "--tokens 1 --greedy 9 --ctx 4" ""; do
  # shellcheck disable=SC2086
  if "$H" logits "$M" $args > /dev/null 2> "$tmp/err"; then echo "accepted: $args"; exit 1; fi
  [ "$(wc -l < "$tmp/err")" -eq 1 ] || { echo "not one message for $args:"; cat "$tmp/err"; exit 1; }
done
if "$H" logits "$tmp/none.gguf" --tokens 1 2> "$tmp/err"; then echo "missing model accepted"; exit 1; fi
# a run that cannot write all of --out leaves an existing file as it was, and no partial file
echo keep > "$tmp/old.f32"
if (trap '' XFSZ; ulimit -f 1; "$H" logits "$M" --tokens "$ids" --kv f32 -o "$tmp/old.f32" 2> "$tmp/err"); then echo "write past the file size limit succeeded"; exit 1; fi
[ "$(cat "$tmp/old.f32")" = keep ] || { echo "a failed run clobbered --out"; exit 1; }
[ -z "$(ls "$tmp" | grep 'old.f32.tmp')" ] || { echo "a failed run left its temporary file"; exit 1; }
# stdout that cannot be written is an error
if "$H" logits "$M" --tokens 1 > /dev/full 2> "$tmp/err"; then echo "write to a full device succeeded"; exit 1; fi
echo ok
