#!/usr/bin/env bash
# The offline end-to-end demo (README command one):
#   1. set up the environment (tools/setup_env.sh, idempotent);
#   2. generate, once, a synthetic zero-shot dataset (12 colour x texture classes, 4 of them
#      unseen), compositional class text embeddings and a tiny CLIP pretrained on
#      image-caption pairs, saved as an OpenAI-style TorchScript archive (data/demo/);
#   3. for each seed (SEEDS, default "0"; SEEDS="0 1 2" for the README's table), train the
#      inductive Cascade-CLIP model on the CPU with 2 processes (dist_train.sh) and test it with
#      tools/test.py --eval mIoU, writing enlarged colour overlays (tools/seeds.py);
#   4. compare with chance and with the tiny CLIP alone, mean ± std over the seeds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
PY="${CASCADE_CLIP_VENV:-$ROOT/.venv}/bin/python"
export PYTHONWARNINGS=ignore
CONFIG=configs/demo/cascade_clip_tiny_synthetic.py
WORK_DIR=${WORK_DIR:-work_dirs/demo}
SEEDS=${SEEDS:-0}
start=$(date +%s)

"$PY" tools/make_demo_data.py --root data/demo
rm -rf "$WORK_DIR"
# shellcheck disable=SC2086
"$PY" tools/seeds.py "$CONFIG" --seeds $SEEDS --work-dir "$WORK_DIR" --launcher pytorch --gpus 2 --show \
  || { echo "training or testing failed: see $WORK_DIR/seed_*/seeds_run.log" >&2; exit 1; }
"$PY" tools/demo_report.py "$CONFIG" "$WORK_DIR"
echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "  data (images, label maps, text embeddings, tiny CLIP): data/demo/"
echo "  per seed S: training log, checkpoint, metrics and overlays with class legends in $WORK_DIR/seed_S/"
echo "  (*.log, latest.pth, eval_*.json, overlays/); all seeds: $WORK_DIR/seeds.json, $WORK_DIR/demo_report.json"
