#!/usr/bin/env bash
# CLI store verbs without a server: create (import by copy or reflink), list, cp, rm, and their errors.
set -eu
: "${HEARTH:?}" "${HEARTH_TEST_SHARED:?}"
dir=$(mktemp -d /tmp/hearth-verbs-XXXXXX)
trap 'rm -rf "$dir"' EXIT
export HEARTH_MODELS="$dir/models" HEARTH_HOST=127.0.0.1:1   # no server there
cp "$HEARTH_TEST_SHARED/models/stories260K.gguf" "$dir/m.gguf"
printf 'FROM ./m.gguf\nPARAMETER temperature 0.5\nSYSTEM hi\n' > "$dir/Modelfile"
"$HEARTH" create tiny -f "$dir/Modelfile"
blob=$(ls "$HEARTH_MODELS"/blobs/ | while read -r b; do cmp -s "$HEARTH_MODELS/blobs/$b" "$dir/m.gguf" && echo "$b"; done; true)
[ -n "$blob" ] || { echo "model blob missing"; exit 1; }
# the blob is a file of its own (a copy or a reflink, never a hard link): overwriting the
# source in place afterwards leaves the stored model intact
[ "$(stat -c %i "$dir/m.gguf")" != "$(stat -c %i "$HEARTH_MODELS/blobs/$blob")" ] || { echo "blob is a hard link"; exit 1; }
[ "$blob" = "sha256-$(sha256sum "$dir/m.gguf" | cut -d' ' -f1)" ] || { echo "blob name is not the sha256"; exit 1; }
head -c 5000 "$dir/m.gguf" > "$dir/cut"; cat "$dir/cut" > "$dir/m.gguf"
[ "$blob" = "sha256-$(sha256sum "$HEARTH_MODELS/blobs/$blob" | cut -d' ' -f1)" ] || { echo "blob changed with its source"; exit 1; }
"$HEARTH" run tiny --raw "Once" -n 2 > /dev/null || { echo "stored model broken by its source's edit"; exit 1; }
"$HEARTH" list | grep -q '^tiny:latest '
"$HEARTH" cp tiny other/tiny:v2
"$HEARTH" list | grep -q '^other/tiny:v2 '
"$HEARTH" rm tiny
"$HEARTH" list | grep -q '^other/tiny:v2 '
! "$HEARTH" list | grep -q '^tiny:latest'
[ -e "$HEARTH_MODELS/blobs/$blob" ] || { echo "shared blob removed too early"; exit 1; }
"$HEARTH" rm other/tiny:v2
[ -z "$(ls "$HEARTH_MODELS/blobs")" ] || { echo "blobs left after the last rm"; exit 1; }
# errors: exit 1 with one message
if "$HEARTH" rm nope 2>"$dir/err"; then echo "rm of a missing model succeeded"; exit 1; fi
grep -q "not found" "$dir/err"
if "$HEARTH" create bad -f "$dir/nope" 2>"$dir/err"; then exit 1; fi
grep -q "cannot open Modelfile" "$dir/err"
printf 'FROM ./m.gguf\nPARAMETER bogus 1\n' > "$dir/Bad"
if "$HEARTH" create bad -f "$dir/Bad" 2>"$dir/err"; then exit 1; fi
grep -q "unknown PARAMETER" "$dir/err"
if "$HEARTH" ps 2>"$dir/err"; then exit 1; fi
grep -q "no server" "$dir/err"
# a malformed HEARTH_HOST is named as such (not "no server"), and rm does not fall back to the store
# (rm and cp ask the server only when no store is named: HEARTH_MODELS is dropped for them)
cp "$HEARTH_TEST_SHARED/models/stories260K.gguf" "$dir/m.gguf"
"$HEARTH" create tiny -f "$dir/Modelfile" > /dev/null
for verb in "ps" "stop tiny" "rm tiny" "cp tiny t2"; do
    if HEARTH_HOST=localhost:abc env -u HEARTH_MODELS "$HEARTH" $verb 2>"$dir/err"; then echo "$verb with a bad HEARTH_HOST succeeded"; exit 1; fi
    grep -q "bad HEARTH_HOST 'localhost:abc'" "$dir/err" || { echo "$verb: $(cat "$dir/err")"; exit 1; }
done
"$HEARTH" list | grep -q '^tiny:latest ' || { echo "rm with a bad HEARTH_HOST removed the model"; exit 1; }
# a directory named like a store name is reported as what it is
mkdir "$dir/adir"
if (cd "$dir" && "$HEARTH" show adir 2>"$dir/err"); then echo "show of a directory succeeded"; exit 1; fi
grep -q "adir is not a regular file" "$dir/err" || { echo "directory: $(cat "$dir/err")"; exit 1; }
echo "store verbs ok"
