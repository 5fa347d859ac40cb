#!/usr/bin/env bash
# The quick scale's training step with torch's and oneDNN's kernels limited to AVX2 (ATEN_CPU_CAPABILITY=avx2,
# ONEDNN_MAX_CPU_ISA=AVX2) against the machine's default (AVX-512 where it has it), ROUNDS alternations of the two
# processes, one thread: how much of a slower machine's time the kernels' ISA explains. Run it alone:
#   benchmarks/isa_probe.sh [ROUNDS]
set -euo pipefail
rounds=${1:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
bench() {
  "$repo/.venv/bin/fastadv" bench-train --scale quick --set runtime.threads=1 --methods fgsm gradalign \
    --iterations 5 --repeats 3 | grep -E "^  (fgsm|gradalign) "
}
for r in $(seq "$rounds"); do
  echo "round $r, default ISA ($("$repo/.venv/bin/python" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')):"
  bench
  echo "round $r, AVX2 only:"
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 bench
done
