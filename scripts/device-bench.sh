#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no Rust toolchain there, no registry): `gpuplace bench`
# at BENCHMARKS.md's sizes and a larger one, and `gpuplace inflate` on GPU and CPU. Every output
# goes to $OUT as soon as it exists, so a run cut short still returns what finished.
#
# Here, before the run:  cargo build --release && mkdir -p .bin && strip -o .bin/gpuplace
#   target/release/gpuplace, the two openb CSVs and scripts/typed_pod_list.py's list copied into
#   .bin, the Vulkan loader's .deb files in .gl (see the device README).
# There:                 bash scripts/device-bench.sh      (carry .bin and .gl)
set -u
B=.bin/gpuplace
O=${OUT:-/tmp/device-out}
mkdir -p "$O"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
log() { echo "$*" | tee -a "$O/log.txt"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# At most 8 files come back: the log, the bench sections, the four inflate reports.
{ nvidia-smi; nproc; grep -m1 'model name' /proc/cpuinfo; free -g; } >>"$O/log.txt" 2>&1

# Is the NVIDIA adapter found? If not, name the driver's manifests (the README's fallback).
probe() { timeout 120 "$B" bench --count 2000 --racks 200 --repeat 1 --no-single-thread --no-place 2>&1; }
p=$(probe)
if ! grep -qi nvidia <<<"$p"; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    p=$(probe)
fi
log "$p"
# What the probe chose, for later commands of the same call.
{ declare -p VK_DRIVER_FILES __EGL_VENDOR_LIBRARY_FILENAMES 2>/dev/null || true; } >/tmp/gpuplace-vk-env

step() { # where stdout goes, limit in seconds, command...
    local to=$1 limit=$2 t rc
    shift 2
    t=$(now)
    timeout "$limit" "$@" >>"$O/$to" 2>>"$O/log.txt"
    rc=$?
    log "== rc=$rc wall=$(since "$t") s: $*"
}

step bench.md 60 "$B" bench --count 10000 --racks 1000 --markdown
step bench.md 120 "$B" bench --count 100000 --racks 4000 --markdown
step bench.md 200 "$B" bench --count 1000000 --racks 5000 --repeat 3 --no-single-thread --markdown
for list in default typed; do
    for backend in gpu cpu; do
        step log.txt 60 "$B" inflate --nodes .bin/openb_node_list_gpu_node.csv \
            --pods ".bin/openb_pod_list_$list.csv" --policy-preset fgd --backend "$backend" --json "$O/inflate-$list-$backend.json"
    done
done
step bench.md 150 "$B" bench --count 10000000 --racks 5000 --repeat 1 --no-single-thread --no-place --markdown
log "done"
