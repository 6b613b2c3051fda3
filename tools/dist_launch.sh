#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh:  dist_launch NPROC SCRIPT ARGS...
# torchrun with MMSeg's environment variables for several nodes (NNODES, NODE_RANK,
# MASTER_ADDR, PORT). Without GPUs the processes run on the CPU (Gloo backend), one thread
# each unless OMP_NUM_THREADS says otherwise.
dist_launch() {
  local nproc=$1 script=$2
  shift 2
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local python=${PYTHON:-python}
  if [ -x "$root/.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${PYTHON:-}" ]; then
    python="$root/.venv/bin/python"
  fi
  if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    local per=$(( $(nproc) / nproc ))
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( per > 0 ? per : 1 ))}
  fi
  PYTHONPATH="$root":${PYTHONPATH:-} \
  "$python" -m torch.distributed.run \
      --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
      --nproc_per_node="$nproc" --master_port="${PORT:-29500}" \
      "$root/tools/$script" "$@" --launcher pytorch
}
