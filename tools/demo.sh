#!/usr/bin/env bash
# The offline end-to-end demo (README command one):
#   1. set up the environment (tools/setup_env.sh, idempotent);
#   2. generate, once, a synthetic zero-shot dataset (12 colour x texture classes, 4 of them
#      unseen), compositional class text embeddings and a tiny pretrained CLIP saved as an
#      OpenAI-style TorchScript archive (data/demo/);
#   3. train the inductive Cascade-CLIP model on the CPU with 2 processes (dist_train.sh);
#   4. test it with tools/test.py --eval mIoU, write colour overlays, and compare with chance
#      and with the tiny CLIP alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
PY="${CASCADE_CLIP_VENV:-$ROOT/.venv}/bin/python"
export PYTHONWARNINGS=ignore
CONFIG=configs/demo/cascade_clip_tiny_synthetic.py
WORK_DIR=${WORK_DIR:-work_dirs/demo}
start=$(date +%s)

"$PY" tools/make_demo_data.py --root data/demo
rm -rf "$WORK_DIR"
PYTHON="$PY" bash dist_train.sh "$CONFIG" 2 "$WORK_DIR" --seed 0 --deterministic 2>&1 \
  | grep -E "Iter \[|mIoU_seen|Error|error" || true
[ -f "$WORK_DIR/latest.pth" ] || { echo "training failed: see $WORK_DIR/*.log" >&2; exit 1; }
OMP_NUM_THREADS=2 "$PY" tools/test.py "$CONFIG" "$WORK_DIR/latest.pth" --eval mIoU \
  --work-dir "$WORK_DIR" --show-dir "$WORK_DIR/overlays" 2>&1 | grep -v "^\[" | grep -v "load checkpoint" || true
"$PY" tools/demo_report.py "$CONFIG" "$WORK_DIR"
echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "  data (images, label maps, text embeddings, tiny CLIP): data/demo/"
echo "  training log and checkpoint:  $WORK_DIR/*.log, $WORK_DIR/latest.pth"
echo "  metrics:                      $(ls -t "$WORK_DIR"/eval_*.json | head -n1)"
echo "  overlays with class legends:  $WORK_DIR/overlays/"
