#!/bin/sh
# `up -d` returns only once db is healthy and app was started; then the app's log and db's health are checked.
# See ../../README.md.
set -eu
project="flotilla-healthy-$$"
trap 'docker-compose -p "$project" down -v -t 1 >/dev/null 2>&1 || true' EXIT
out=$(docker-compose -p "$project" up -d 2>&1) || { echo "$out"; echo "FAILED: up"; exit 1; }
echo "$out"
db=$(docker-compose -p "$project" ps -q db)
status=$(docker inspect -f '{{.State.Health.Status}}' "$db")
[ "$status" = healthy ] || { echo "FAILED: db is $status"; exit 1; }
for _ in 1 2 3 4 5 6 7 8 9 10; do
  logs=$(docker-compose -p "$project" logs --no-color app 2>&1)
  echo "$logs" | grep -q "after a healthy db" && break
  sleep 0.5
done
echo "$logs" | grep -q "after a healthy db" || { echo "$logs"; echo "FAILED: app output missing"; exit 1; }
echo ok
