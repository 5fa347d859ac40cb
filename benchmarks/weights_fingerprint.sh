#!/usr/bin/env bash
# Fingerprints of the final weights of every built-in method after a tiny training run (smoke scale,
# 96 CIFAR-10 images, width 4, 2 epochs, seed 0, one thread), to show that a refactoring changed no
# number: run it with the checkout before and after (each with its own .venv) and compare the lines.
#   benchmarks/weights_fingerprint.sh CHECKOUT OUT_DIR DATA_ROOT     (DATA_ROOT holds cifar10.npz)
set -euo pipefail
repo=$1; out=$2; data=$3
mkdir -p "$out"
cd "$repo"
for m in ${METHODS:-standard fgsm fgsm_rs gradalign gradalign_fd nfgsm elle elle_a cure llr pgd free}; do
  extra=()
  case $m in
    elle_a) extra=(--set method.elle_a.lambda=100) ;;
    llr) extra=(--set method.llr.steps=2) ;;
    pgd) extra=(--set method.pgd.steps=2) ;;
    free) extra=(--set method.free.replay=2) ;;
  esac
  .venv/bin/fastadv train --scale smoke --out "$out/$m" --diverged-ok --set data.root="$data" --set data.dataset=cifar10 \
    --set data.subset=96 --set optim.batch_size=32 --set optim.epochs=2 --set model.width=4 --set monitor.test_points=16 \
    --set monitor.train_points=16 --set monitor.pgd_steps=1 --set runtime.threads=1 --set runtime.progress=never \
    --set method.name="$m" --set method.eps=8 "${extra[@]}" > "$out/$m.log" 2>&1
  .venv/bin/python -c "
import hashlib, sys, torch
sd = torch.load(sys.argv[1], weights_only=True)['state_dict']
print(sys.argv[2], hashlib.sha256(b''.join(sd[k].numpy().tobytes() for k in sorted(sd))).hexdigest()[:16])" \
    "$out/$m/model_final.pt" "$m"
done
