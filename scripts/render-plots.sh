#!/usr/bin/env bash
# Renders `replay --plot` to PNG for a person to look at (the tests check the plot's geometry; only
# eyes check that it reads well). Needs rsvg-convert (Debian: apt-get install librsvg2-bin).
# Usage: scripts/render-plots.sh [OUT_DIR]   (default: target/plots)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/plots}
mkdir -p "$out"
cargo build --release -q
bin=target/release/gpuplace
"$bin" replay --count 3000 --span-h 24 --backend cpu --plot "$out/generated.svg" >/dev/null
traces=../shared/traces/alibaba-gpu-v2023
if [ -f "$traces/openb_pod_list_default.csv" ]; then
  "$bin" import alibaba "$traces/openb_pod_list_default.csv" --nodes "$traces/openb_node_list_gpu_node.csv" \
    --fleet-out "$out/openb-fleet.json" --out "$out/openb-jobs.json" 2>/dev/null
  "$bin" replay --fleet "$out/openb-fleet.json" --jobs "$out/openb-jobs.json" --interval 600 --backend cpu \
    --plot "$out/openb.svg" >/dev/null
fi
for svg in "$out"/*.svg; do
  rsvg-convert "$svg" -o "${svg%.svg}.png"
  echo "${svg%.svg}.png"
done
