#!/usr/bin/env bash
# Adds up the "N passed, N failed" lines of each stage into the final summary line.
p=0; f=0
for r in "$@"; do
  [ -f "$r" ] || continue
  read -r a _ b _ < "$r"
  p=$((p + a)); f=$((f + b))
done
echo "total: $p passed, $f failed"
[ "$f" -eq 0 ]
