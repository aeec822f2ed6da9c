#!/usr/bin/env bash
# The last command of every RUN step: give each path this step created or changed (files, directories, symlinks) one
# fixed modification time, so two builds of the same inputs write byte-identical layers and the engine's own exporter
# stores the same image ID, with no export-time rewrite (BuildKit's rewrite-timestamp cannot write into the engine's
# image store, moby/buildkit#4230, and rewriting 4.5 GB at export costs minutes).
#   RUN --mount=type=bind,source=clamp-mtimes.sh,target=/tmp/torchdev/clamp-mtimes.sh \
#       ... && bash /tmp/torchdev/clamp-mtimes.sh
# Why a constant and not SOURCE_DATE_EPOCH: the value is part of every layer, so it would have to be a build arg in
# scope of every step, and each commit to the build inputs would then rebuild (and re-push, re-pull) the 4.5 GB torch
# layer whose content did not change. The image config still carries SOURCE_DATE_EPOCH as its creation date.
# 2000-01-01 rather than 1970: zip cannot store times before 1980, and tools that zip installed files would fail.
#
# What "changed by this step" means: newer than the moment the step's process started (PID 1 of the step's own PID
# namespace; two seconds earlier, as /proc/stat's boot time is rounded to the second). Files a package or archive
# unpacked with their own older times keep them: they come from the package, so they are the same in every build.
# Older files of earlier layers or of the base are never touched, as touching them would copy them into this layer.
# BuildKit creates an empty stub for each --mount target that does not exist, just before the step starts, and removes
# it after the step, restoring its parent's times as they are then: so the parents of mount points are clamped too.
# Mount points themselves are left alone: they are caches, secrets, the build context, or the engine's resolv.conf.
set -euo pipefail
readonly LAYER_MTIME=946684800   # 2000-01-01T00:00:00Z

boot=$(sed -n 's/^btime //p' /proc/stat)
status=$(</proc/1/stat)
read -r -a fields <<<"${status##*) }"   # after "pid (command) ": fields[19] is starttime, in clock ticks since boot
since=$(( boot + fields[19] / $(getconf CLK_TCK) - 2 ))

points=()
declare -A mounted
while read -r _ _ _ _ point _; do
  [ "$point" = / ] || { points+=("$point"); mounted[$point]=1; }
done </proc/self/mountinfo
prune=()
for point in "${points[@]}"; do prune+=(-path "$point" -o); done

find / -xdev \( "${prune[@]}" -false \) -prune -o -newermt "@$since" -exec touch -h -d "@$LAYER_MTIME" -- {} +

root_device=$(stat -c %d /)
for point in "${points[@]}"; do
  parent=$point
  while parent=${parent%/*}; [ -n "$parent" ]; do
    if [ -z "${mounted[$parent]:-}" ] && [ "$(stat -c %d -- "$parent" 2>/dev/null)" = "$root_device" ]; then
      find "$parent" -maxdepth 0 -newermt "@$LAYER_MTIME" -exec touch -h -d "@$LAYER_MTIME" -- {} +
    fi
  done
done
