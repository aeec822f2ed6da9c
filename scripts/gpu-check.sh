#!/usr/bin/env bash
# What only real GPUs can show, natively on a host with torch and NVIDIA GPUs (no Docker needed):
#   scripts/gpu-check.sh [REPORT]        PYTHON=/path/to/python (default python3), REPORT default reports/gpu-check.md
# 1. the smoke suite with every GPU (pytest smoke/ --gpus all): visibility, matmul, cuDNN conv2d with and without
#    benchmark mode and under autocast, convergence on the GPU, NCCL DDP with one process per GPU;
# 2. the trainer under torchrun on CUDA, one process per GPU (NCCL), two epochs of the CNN.
# It writes a short report (GPU, driver, torch, what passed) and exits 1 when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
report=${1:-reports/gpu-check.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

facts=$("$python" - <<'EOF' 2>&1
import torch
if not torch.cuda.is_available():
    raise SystemExit(f"torch {torch.__version__} sees no CUDA device (torch.version.cuda={torch.version.cuda})")
names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
print(f"{torch.cuda.device_count()}|{names}|{torch.__version__}|{torch.version.cuda}|{torch.backends.cudnn.version()}"
      f"|{'.'.join(map(str, torch.cuda.nccl.version()))}")
EOF
) || { echo "gpu-check: $python cannot run the check: ${facts##*$'\n'}" >&2; exit 1; }
IFS='|' read -r count names torch_version cuda cudnn nccl <<<"$facts"
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
echo "gpu-check: $count x $names, driver ${driver:-unknown}, torch $torch_version (CUDA $cuda, cuDNN $cudnn, NCCL $nccl)"

echo "gpu-check: [1/2] smoke suite with every GPU" >&2
PYTHONDONTWRITEBYTECODE=1 "$python" -m pytest smoke/ -p no:cacheprovider -q -rfE --gpus all \
  --summary-json "$work/smoke.json" >"$work/smoke.log" 2>&1
smoke_status=$?
smoke_line=$(tail -n 1 "$work/smoke.log")

echo "gpu-check: [2/2] trainer under torchrun, $count process(es) on CUDA" >&2
"$python" -m torch.distributed.run --standalone --nproc-per-node "$count" train/train.py --task cnn --device cuda \
  --epochs 2 --runs-dir "$work/runs" --no-resume >"$work/train.log" 2>&1
train_status=$?
train_line=$(grep -o '"final_loss": [0-9.e+-]*' "$work/train.log" | tail -n 1)

verdict() { [ "$1" = 0 ] && echo passed || echo FAILED; }
mkdir -p "$(dirname "$report")"
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| what | value |"
  echo "| --- | --- |"
  echo "| GPUs | $count x $names |"
  echo "| driver | ${driver:-unknown} |"
  echo "| torch | $torch_version (CUDA $cuda, cuDNN $cudnn, NCCL $nccl) |"
  echo "| smoke suite, --gpus all | $(verdict $smoke_status): $smoke_line |"
  echo "| trainer, torchrun x $count on CUDA | $(verdict $train_status): ${train_line:-no final loss} |"
  echo
  echo "Failed checks:"
  PYTHONDONTWRITEBYTECODE=1 "$python" - "$work/smoke.json" 2>/dev/null <<'PY' || echo "- (no smoke summary: see below)"
import sys
sys.path.insert(0, "smoke")  # the suite's interface (smoke_contract.py), read as the suite reads it
from smoke_contract import SummaryError, read_summary
try:
    failed = read_summary(sys.argv[1]).failures()
except SummaryError as error:
    print(f"- (the smoke summary is not one: {error})")
    failed = ()
for check in failed:
    print(f"- {check.nodeid}: {check.reason.splitlines()[0] if check.reason else ''}")
PY
  [ "$train_status" = 0 ] || { echo; echo "Trainer output (tail):"; echo '```'; tail -n 20 "$work/train.log"; echo '```'; }
} >"$report"
cat "$report"
[ "$smoke_status" = 0 ] && [ "$train_status" = 0 ]
