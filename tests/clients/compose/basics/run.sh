#!/bin/sh
# Foreground `up` until both services have exited; its output must come through the attach streams. See ../../README.md.
set -eu
project="flotilla-basics-$$"
trap 'docker-compose -p "$project" down -v >/dev/null 2>&1 || true' EXIT
out=$(docker-compose -p "$project" up --no-color 2>&1) || { echo "$out"; echo "FAILED: up"; exit 1; }
echo "$out"
echo "$out" | grep -q "hello from compose" || { echo "FAILED: app output missing"; exit 1; }
echo "$out" | grep -q "from-writer" || { echo "FAILED: volume content missing"; exit 1; }
echo ok
