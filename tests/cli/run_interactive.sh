#!/usr/bin/env bash
# hearth run without PROMPT on a terminal: a multi-turn chat driven through tmux. Checks the
# greeting, a reply, /set (and its range check) and /show, """ multi-line input, Ctrl-C stopping a long reply (not
# the program), /clear, line editing (Up recalls a message, Ctrl-C at the prompt, Ctrl-D ending a """ block, a line longer than a
# terminal's 4095-byte canonical limit), the history file, and /bye exiting.
set -u
H=${HEARTH:?}; S=${HEARTH_TEST_SHARED:?}
M=$S/models/stories260K.gguf
command -v tmux >/dev/null || { echo "tmux is required (scripts/deps.sh test installs it)"; exit 1; }
sock=hearth-test-$$
T() { tmux -L "$sock" "$@"; }
t_one=$(mktemp)
hist=$(mktemp -u) # the chat history file (never the user's ~/.hearth/history)
export HEARTH_HISTORY=$hist
trap 'T kill-server 2>/dev/null; rm -f "$t_one" "$hist"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
screen() { T capture-pane -t s -p -S -200; }
wait_for() { # pattern, seconds
  for _ in $(seq 1 $(($2 * 10))); do screen | grep -q -- "$1" && return 0; sleep 0.1; done; return 1; }
T new-session -d -s s -x 150 -y 50 "LANG= LC_ALL= LC_CTYPE= '$H' run '$M' --temp 0 -n 30 -t 1; echo EXITED-\$?; sleep 30"
check "greeting" "wait_for 'Type /? for help' 20"
T send-keys -t s "Once upon a time" Enter
check "a reply, then the prompt again" "for _ in \$(seq 300); do [ \$(screen | grep -c '^>>>') -ge 2 ] && break; sleep 0.1; done; [ \$(screen | grep -c '^>>>') -ge 2 ]"
T send-keys -t s "/set parameter num_predict -1" Enter
check "/set parameter" "wait_for \"Set parameter 'num_predict'\" 10"
T send-keys -t s "/set parameter seed 1e30" Enter
check "/set parameter out of range is refused" "wait_for 'seed must be in' 10"
T send-keys -t s "/set parameter top_k 1.7" Enter
check "/set parameter: an integer parameter refuses a fraction" "wait_for 'top_k must be a whole number' 10"
T send-keys -t s "/set parameter seed 0x10" Enter
check "/set parameter: hex is not a number" "wait_for \"'0x10' is not a number\" 10"
T send-keys -t s "/set parameter bogus abc" Enter
check "/set parameter: an unknown name is named first" "wait_for \"unknown parameter 'bogus'\" 10"
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
T send-keys -t s '"""/set system kept' Enter
T send-keys -t s 'by ctrl-d' Enter
T send-keys -t s C-d
T send-keys -t s "/show" Enter
check "Ctrl-D inside a \"\"\" block sends what was typed" "wait_for 'system       kept' 10"
T send-keys -t s C-c
check "Ctrl-C at the prompt does not exit" "wait_for 'Use Ctrl-D or /bye to exit' 10"
long=$(head -c 6000 /dev/zero | tr '\0' 'x')
T send-keys -t s "/set system ${long}ZZEND" Enter
T send-keys -t s "/show" Enter
check "a 6000-byte line arrives whole" "for _ in \$(seq 50); do T capture-pane -t s -p -J -S -300 | grep -q 'xZZEND' && break; sleep 0.1; done; T capture-pane -t s -p -J -S -300 | grep -q 'xZZEND'"
T send-keys -t s "/set system héllo wörld 日本 end" Enter
T send-keys -t s "/show" Enter
check "non-ASCII text typed at the prompt arrives whole" "wait_for 'system       héllo wörld 日本 end' 10"
T send-keys -t s "/clear" Enter
wait_for 'Cleared the conversation' 10
sleep 0.3
n_clear=$(T capture-pane -t s -p -J -S -300 | grep -c 'Cleared the conversation')
T send-keys -t s Up Enter
check "Up recalls the last message" "for _ in \$(seq 50); do [ \$(T capture-pane -t s -p -J -S -300 | grep -c 'Cleared the conversation') -gt $n_clear ] && break; sleep 0.1; done; [ \$(T capture-pane -t s -p -J -S -300 | grep -c 'Cleared the conversation') -gt $n_clear ]"
T send-keys -t s "/bye" Enter
check "/bye exits with 0" "wait_for 'EXITED-0' 10"
check "the history file keeps the messages" "grep -q 'Once\\\\040upon\\\\040a\\\\040time' '$hist' && grep -q ZZEND '$hist'"
[ $fail -ne 0 ] && screen

# Turn 2 of a chat equals a one-shot run of the same rendered conversation, penalties
# included: the penalty history is the conversation once (it used to hold earlier turns
# twice, so a frequency penalty over the whole history counted them double).
pen="--temp 0 -n 12 -t 1 --repeat-last-n -1 --frequency-penalty 1"
T kill-session -t s 2>/dev/null
T new-session -d -s s -x 200 -y 50 "'$H' run '$M' $pen; sleep 30"
wait_for 'Type /? for help' 20
T send-keys -t s "Once upon a time" Enter
for _ in $(seq 300); do [ $(screen | grep -c '^>>>') -ge 2 ] && break; sleep 0.1; done
T send-keys -t s "Tell more" Enter
for _ in $(seq 300); do [ $(screen | grep -c '^>>>') -ge 3 ] && break; sleep 0.1; done
r1=$(screen | awk '/^>>> Once upon a time$/ { getline; print; exit }')
r2=$(screen | awk '/^>>> Tell more$/ { getline; print; exit }')
printf '<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n<|im_start|>user\nTell more<|im_end|>\n<|im_start|>assistant\n' "$r1" |
  "$H" run "$M" --raw $pen >"$t_one" 2>/dev/null
check "chat turn 2 equals the one-shot run of its prompt (penalties counted once)" "[ -n \"\$r2\" ] && [ \"\$r2\" = \"\$(cat '$t_one')\" ]"
[ $fail -ne 0 ] && { screen; echo "one-shot: $(cat "$t_one")"; }
exit $fail
