#!/usr/bin/env bash
# Planning time of the paper DAG: `snakemake -n --cores all results/fig1.pdf` (1,444 jobs) in a fresh copy of the
# workflow, REPEATS times; prints each wall time and the median [min, max]. Run it alone on the machine:
#   benchmarks/plan_time.sh [REPEATS]
set -euo pipefail
repeats=${1:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$repo/Snakefile" "$repo/params.yaml" "$tmp/" && cp -r "$repo/workflow" "$tmp/"
cd "$tmp"
times=()
for _ in $(seq "$repeats"); do
  start=$(date +%s.%N)
  PATH="$repo/.venv/bin:$PATH" snakemake -n --cores all results/fig1.pdf > plan.log 2>&1
  end=$(date +%s.%N)
  jobs=$(grep -c "^rule \|^localrule " plan.log || true)
  times+=("$(awk "BEGIN {printf \"%.2f\", $end - $start}")")
  echo "plan: ${times[-1]} s ($jobs jobs)"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.2f s [%.2f, %.2f] of %d\n", a[int((NR+1)/2)], a[1], a[NR], NR}'
