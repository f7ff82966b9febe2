#!/usr/bin/env bash
# The Python locks, each written from the .in file beside it with every transitive dependency pinned and hashed:
#   requirements.txt                            the controller and the test suite (make venv), Python 3.11+
#   roles/model_weights/files/requirements.txt  the downloader's virtualenv on the nodes, Python 3.10+
# Universal resolutions (uv pip compile --universal): one lock for every Python and platform, with markers where
# they differ, and the hashes of every file PyPI has for each pinned release.
#   scripts/locks.sh            rewrite the locks, keeping the locked versions that still fit
#   scripts/locks.sh --upgrade  rewrite them with the latest versions that fit
#   scripts/locks.sh --check    fail when a lock does not match its .in file (make lint runs it; needs PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case $mode in
  "" | --upgrade | --check) ;;
  *) echo "usage: scripts/locks.sh [--upgrade | --check]" >&2; exit 2 ;;
esac

lock() {  # .in file, lock, oldest Python the lock serves
  local source=$1 lock=$2 python=$3 output=$2
  local options=(--quiet --universal --generate-hashes --python-version "$python"
                 --custom-compile-command scripts/locks.sh)
  [ "$mode" = --upgrade ] && options+=(--upgrade)
  if [ "$mode" = --check ]; then
    output=$(mktemp)
    cp "$lock" "$output"  # uv keeps the versions of the output file it rewrites, as when the lock was written
  fi
  uv pip compile "${options[@]}" --output-file "$output" "$source"
  if [ "$mode" = --check ]; then
    if ! diff -u "$lock" "$output"; then
      echo "$lock does not match $source: run scripts/locks.sh and commit the lock" >&2
      exit 1
    fi
    rm -f "$output"
  fi
}

lock requirements.in requirements.txt 3.11
lock roles/model_weights/files/requirements.in roles/model_weights/files/requirements.txt 3.10
