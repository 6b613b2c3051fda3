#!/usr/bin/env bash
# bash dist_train.sh CONFIG GPUS WORK_DIR [train.py args]
# GPUS processes per node (on a machine without GPUs: GPUS CPU processes, Gloo backend).
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT as in MMSeg's scripts.
if [ $# -lt 3 ]; then
  echo "usage: bash dist_train.sh CONFIG GPUS WORK_DIR [args]" >&2; exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/tools/dist_launch.sh"
dist_launch "$2" train.py "$1" --work-dir "$3" "${@:4}"
