#!/usr/bin/env bash
# Train the smallest model of each classifier family on the embedded digits from the CLI
# (configs/data/digits.yaml: 5 epochs, 32x32, batch 64, SGD + warmup + cosine, plus the
# model's own config), one after the other, and print a Markdown table: model, epochs,
# val top-1 accuracy after the last epoch, wall time of the whole `python -m zoo fit` command.
#
#   bash benchmarks/train_digits.sh [NAME ...]      # default: the list below
#
# Run it alone on a small machine (each fit uses every core). Logs: runs/digits_table/<name>.log
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then
  MODELS=(resnet18 darknet53 densenet121 googlenet res2net50_26w_4s resnest50d ghostnet_050 efficientnet_b0
          adder_resnet20)
fi
# extra command-line options per model (EfficientNet-B0's last stages see 1x1 maps at 32x32)
declare -A EXTRA=([efficientnet_b0]="--data.init_args.image_size 64")
OUT=runs/digits_table
mkdir -p "$OUT"
echo "| model | options | epochs | val acc1 | wall time |"
echo "|---|---|---:|---:|---:|"
for name in "${MODELS[@]}"; do
  cfg=configs/classification/$name.yaml
  args=(--config configs/data/digits.yaml)
  if [ -f "$cfg" ]; then args+=(--config "$cfg"); else args+=(--model.init_args.arch "$name"); fi
  extra=${EXTRA[$name]:-}
  # shellcheck disable=SC2206
  [ -n "$extra" ] && args+=($extra)
  start=$(date +%s)
  "$PY" -m zoo fit "${args[@]}" --trainer.default_root_dir "$OUT/$name" --trainer.enable_progress_bar=false \
    > "$OUT/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  best=$(grep '^zoo fit: done' "$OUT/$name.log" | grep -o 'val/acc1=[0-9.]*' | tail -1 | cut -d= -f2)
  epochs=$(grep -c '^epoch ' "$OUT/$name.log")
  [ $rc -eq 0 ] || best="failed (rc $rc, see $OUT/$name.log)"
  opts=$([ -f "$cfg" ] && echo "\`$cfg\`" || echo "-")${extra:+ \`$extra\`}
  printf '| %s | %s | %s | %s | %dm%02ds |\n' "$name" "$opts" "$epochs" "${best:--}" $((secs / 60)) $((secs % 60))
done
