#!/usr/bin/env bash
# bash dist_test.sh CONFIG CHECKPOINT GPUS [test.py args, e.g. --eval mIoU]
# On a machine without GPUs: GPUS CPU processes with the Gloo backend.
if [ $# -lt 3 ]; then
  echo "usage: bash dist_test.sh CONFIG CHECKPOINT GPUS [args]" >&2; exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/tools/dist_launch.sh"
dist_launch "$3" test.py "$1" "$2" "${@:4}"
