#!/usr/bin/env bash
# Builds smtplb and shows it relaying: two smtp-sink backends on
# 127.0.0.1:10025 and :10026, smtplb on 127.0.0.1:2525 with
# examples/demo.yaml, a few messages sent with swaks, and where each went.
# Then one backend is stopped and more mail is sent: it all goes to the
# other.  Safe to rerun; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target smtplb

work=$(mktemp -d /tmp/smtplb-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {  # bounded poll until something listens on 127.0.0.1:$1
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

start_sink() {  # name port: an smtp-sink that keeps each message as a file
  mkdir -p "$work/$1"
  smtp-sink -u root -d "$work/$1/%H%M%S." "127.0.0.1:$2" 100 &
  pids+=($!)
}
start_sink backend-a 10025
sink_b_index=${#pids[@]}
start_sink backend-b 10026
wait_port 10025
wait_port 10026

build/smtplb check -c examples/demo.yaml
build/smtplb run -c examples/demo.yaml 2>"$work/smtplb.log" &
pids+=($!)
wait_port 2525

send() {  # n subject
  local reply
  reply=$(swaks --server 127.0.0.1:2525 --ehlo client.example.net \
    --from "sender@example.org" --to "user$1@example.com" \
    --header "Subject: demo message $1" --body "Hello from the smtplb demo, message $1." \
    | grep -E '^<- +[0-9]{3} .*queued as|^<-\*\* ' | head -1 | sed 's/^<-[* ]*//')
  echo "message $1: ${reply:-no reply}"
}

echo
echo "== 6 messages through smtplb (weighted_round_robin 2:1)"
for i in 1 2 3 4 5 6; do send "$i"; done
echo
echo "== where each went"
for b in backend-a backend-b; do
  echo "$b: $(ls "$work/$b" | wc -l) message(s): $(grep -h '^Subject:' "$work/$b"/* 2>/dev/null | sed 's/Subject: //' | paste -sd, -)"
done

echo
echo "== backend-b stops; 3 more messages"
kill "${pids[$sink_b_index]}"
wait "${pids[$sink_b_index]}" 2>/dev/null || true
for i in 7 8 9; do send "$i"; done
for b in backend-a backend-b; do
  echo "$b: $(ls "$work/$b" | wc -l) message(s)"
done

echo
echo "== smtplb's log: one line per transaction, and backend state changes"
grep -E 'event=(transaction|backend_down|backend_up)' "$work/smtplb.log" | sed 's/^/  /'
echo
echo "messages are in $work/backend-a and $work/backend-b"
