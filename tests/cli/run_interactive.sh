#!/usr/bin/env bash
# hearth run without PROMPT on a terminal: a multi-turn chat driven through tmux. Checks the
# greeting, a reply, /set (and its range check) and /show, """ multi-line input, Ctrl-C stopping a long reply (not
# the program), /clear, and /bye exiting.
set -u
H=${HEARTH:?}; S=${HEARTH_TEST_SHARED:?}
M=$S/models/stories260K.gguf
command -v tmux >/dev/null || { echo "tmux is required (scripts/deps.sh test installs it)"; exit 1; }
sock=hearth-test-$$
T() { tmux -L "$sock" "$@"; }
trap 'T kill-server 2>/dev/null' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
screen() { T capture-pane -t s -p -S -200; }
wait_for() { # pattern, seconds
  for _ in $(seq 1 $(($2 * 10))); do screen | grep -q -- "$1" && return 0; sleep 0.1; done; return 1; }
T new-session -d -s s -x 150 -y 50 "'$H' run '$M' --temp 0 -n 30 -t 1; echo EXITED-\$?; sleep 30"
check "greeting" "wait_for 'Type /? for help' 20"
T send-keys -t s "Once upon a time" Enter
check "a reply, then the prompt again" "for _ in \$(seq 300); do [ \$(screen | grep -c '^>>>') -ge 2 ] && break; sleep 0.1; done; [ \$(screen | grep -c '^>>>') -ge 2 ]"
T send-keys -t s "/set parameter num_predict -1" Enter
check "/set parameter" "wait_for \"Set parameter 'num_predict'\" 10"
T send-keys -t s "/set parameter seed 1e30" Enter
check "/set parameter out of range is refused" "wait_for 'seed must be in' 10"
T send-keys -t s "/set parameter seed -1" Enter
check "/set parameter seed -1 (random, as run --seed -1) is taken" "wait_for \"Set parameter 'seed'\" 10"
T send-keys -t s "/show" Enter
check "/show lists parameters" "wait_for 'num_predict  -1' 10"
check "/show: the random seed is not -1 cast to an integer" "! screen | grep -q 'seed *18446744073709551615'"
T send-keys -t s '"""The cat' Enter
check "multi-line continuation prompt" "wait_for '^\\.\\.\\.\$' 10"
T send-keys -t s 'sat down."""' Enter
sleep 0.5
T send-keys -t s C-c
check "Ctrl-C stops the reply, not the program" "wait_for '(stopped)' 20"
T send-keys -t s "/clear" Enter
check "/clear" "wait_for 'Cleared the conversation' 10"
T send-keys -t s "/bye" Enter
check "/bye exits with 0" "wait_for 'EXITED-0' 10"
[ $fail -ne 0 ] && screen
exit $fail
