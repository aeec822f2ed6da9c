#!/usr/bin/env bash
# CI's clean-up on an engine others may share: remove what this run made, and nothing that was there before it or
# that someone else made while it ran.
#   scripts/ci-cleanup.sh record STATE           note the engine's images (IDs and names), build-cache records,
#                                                containers, volumes and networks in folder STATE, and start
#                                                noting every tag given from now on (a `docker events` process)
#   scripts/ci-cleanup.sh clean STATE CLAIM...   remove what this run made, say what was made meanwhile and kept
# A CLAIM is the run's own repository (it claims REPO, REPO:tag, REPO@digest and the repositories REPO-*) or one
# exact reference (REPO:TAG). What counts as this run's, everything else being kept:
# - image names that are new since `record` and claimed; an image goes with its last name (`docker image rm NAME`,
#   never -f: an image a container still uses stays). An image that is new, carries no name any more (a
#   "moby-dangling@" one) and was given a claimed name during the run (the tag events) goes by its ID.
# - new containers whose image is one of those (or is named by a claim), with their anonymous volumes, and the new
#   named volumes and networks they used (removed after them, so one still in use by anyone stays).
# - new build-cache records, pruned by ID (`docker buildx prune --filter id=...`, without --all, so BuildKit keeps
#   every record an image still holds or a build still uses).
# What it cannot tell apart: BuildKit's records carry no owner, so a record someone else's build made during the
# run and no longer uses (context copies, intermediate stages, new cache mounts) is pruned with the run's (a cache
# loss, never an image); and someone who tags into the run's own repository. A new image that never had a claimed
# name (a build interrupted between loading its image and tagging it) is kept and listed, as is every other new
# container, volume and network: nothing ties them to this run.
set -euo pipefail

say() { echo "cleanup: $*"; }
usage() { echo "usage: $0 record STATE | clean STATE CLAIM..." >&2; exit 2; }
quietly() { "$@" >/dev/null 2>&1; }

list_images() {  # ID NAME... per image, names being its tags and digest names
  local ids
  ids=$(docker image ls -aq --no-trunc | sort -u)
  [ -z "$ids" ] && return 0
  # shellcheck disable=SC2086  # one ID per word
  docker image inspect --format '{{.Id}}{{range .RepoTags}} {{.}}{{end}}{{range .RepoDigests}} {{.}}{{end}}' \
    $ids 2>/dev/null || true
}
list_cache() {
  docker buildx du --verbose 2>/dev/null | sed -n -E 's/^ID:[[:space:]]+([^[:space:]]+).*/\1/p' | sort -u
}
list_containers() { docker ps -aq --no-trunc | sort -u; }
list_volumes() { docker volume ls -q | sort -u; }
list_networks() { docker network ls --format '{{.Name}}' | sort -u; }
new_lines() { comm -13 <(sort -u "$1") <(sort -u "$2"); }  # lines of file $2 that file $1 lacks
listed() { printf '%s\n' "${@:2}" | head -n "$1" | tr '\n' ' ' | sed 's/ $//'; }

record() {
  local state=$1
  mkdir -p "$state"
  docker events --filter type=image --filter event=tag --format '{{.Actor.ID}} {{index .Actor.Attributes "name"}}' \
    >"$state/tags" 2>/dev/null </dev/null &
  echo $! >"$state/events.pid"
  list_images >"$state/images"
  list_cache >"$state/cache"
  list_containers >"$state/containers"
  list_volumes >"$state/volumes"
  list_networks >"$state/networks"
  say "recorded $(wc -l <"$state/images") images, $(wc -l <"$state/cache") build-cache records," \
      "$(wc -l <"$state/containers") containers: the run may remove only what is new when it ends"
}

stop_events() {
  local pid
  [ -f "$STATE/events.pid" ] || return 0
  pid=$(cat "$STATE/events.pid")
  sleep 1  # the last tag's event may still be on its way to the file
  case $(ps -o args= -p "$pid" 2>/dev/null || true) in "docker events"*) kill "$pid" 2>/dev/null || true ;; esac
  rm -f "$STATE/events.pid"
}

# The repository of an image name: without its @digest, and without its :tag (a colon after the last slash).
repository_of() {
  local name=${1%%@*}
  case ${name##*/} in *:*) name=${name%:*} ;; esac
  printf '%s\n' "$name"
}
claimed() {  # NAME CLAIM...
  local name=$1 repository claim; shift
  repository=$(repository_of "$name")
  for claim; do
    case ${claim##*/} in *:*) [ "${name%%@*}" = "$claim" ] && return 0; continue ;; esac
    case $repository in "$claim" | "$claim"-*) return 0 ;; esac
  done
  return 1
}

# Into $WORK: names (the run's: new since `record` and claimed), held (images holding one) and run-ids (the new
# images among those, and the new ones a claimed tag was given to during the run, dangling since or not).
find_run_images() {
  local id rest name
  tr ' ' '\n' <"$STATE/images" | sed '/^sha256:/d;/^$/d' >"$WORK/names-before"
  cut -d' ' -f1 "$STATE/images" >"$WORK/ids-before"
  cut -d' ' -f1 "$WORK/images" | new_lines "$WORK/ids-before" /dev/stdin >"$WORK/new-ids"
  : >"$WORK/names"; : >"$WORK/held"; : >"$WORK/run-ids"
  while read -r id rest; do
    for name in $rest; do
      if grep -qxF -- "$name" "$WORK/names-before" || ! claimed "$name" "$@"; then continue; fi
      echo "$name" >>"$WORK/names"; echo "$id" >>"$WORK/held"
      if grep -qxF -- "$id" "$WORK/new-ids"; then echo "$id" >>"$WORK/run-ids"; fi
    done
  done <"$WORK/images"
  while read -r id name; do
    if grep -qxF -- "$id" "$WORK/new-ids" && claimed "$name" "$@"; then
      echo "$id" | tee -a "$WORK/held" >>"$WORK/run-ids"
    fi
  done <"$STATE/tags"
  sort -u -o "$WORK/run-ids" "$WORK/run-ids"
}

# New containers of the run's images (or of an image a claim names), with their anonymous volumes; the named volumes
# and networks they used go into $WORK/volumes and $WORK/networks.
remove_run_containers() {
  local container image config mounts networks
  : >"$WORK/containers"; : >"$WORK/volumes"; : >"$WORK/networks"
  while read -r container; do
    IFS='|' read -r image config mounts networks < <(docker container inspect --format '{{.Image}}|{{.Config.Image}}|'`
      `'{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}},{{end}}{{end}}|'`
      `'{{range $k, $v := .NetworkSettings.Networks}}{{$k}},{{end}}' "$container" 2>/dev/null || echo "|||")
    grep -qxF -- "$image" "$WORK/run-ids" || claimed "$config" "$@" || continue
    if quietly docker rm -f -v "$container"; then echo "$container" >>"$WORK/containers"; fi
    tr ',' '\n' <<<"$mounts" | sed '/^$/d' >>"$WORK/volumes"
    tr ',' '\n' <<<"$networks" | sed '/^$/d' >>"$WORK/networks"
  done < <(list_containers | new_lines "$STATE/containers" /dev/stdin)
}

# The run's names (tags first: a digest name mostly goes with them), never with -f, so an image a container still
# uses stays; then run images left with no name at all, by ID (`rm ID` on a named image would drop that name).
remove_run_images() {
  local name id
  : >"$WORK/names-gone"
  while read -r name; do
    if [[ $name != *@* ]] && quietly docker image rm "$name"; then echo "$name" >>"$WORK/names-gone"; fi
  done <"$WORK/names"
  while read -r name; do
    if [[ $name == *@* ]] && quietly docker image inspect "$name" && quietly docker image rm "$name"; then
      echo "$name" >>"$WORK/names-gone"
    fi
  done <"$WORK/names"
  list_images >"$WORK/named"
  while read -r id; do
    if grep -qxF -- "$id" "$WORK/named"; then quietly docker image rm "$id" || true; fi
  done <"$WORK/run-ids"
}

# Volumes and networks the run's containers used and that are new; one still in use by anyone is refused by Docker.
remove_run_volumes_and_networks() {
  local volume network
  while read -r volume; do
    if ! grep -qxF -- "$volume" "$STATE/volumes"; then quietly docker volume rm "$volume" || true; fi
  done < <(sort -u "$WORK/volumes")
  while read -r network; do
    if ! grep -qxF -- "$network" "$STATE/networks"; then quietly docker network rm "$network" || true; fi
  done < <(sort -u "$WORK/networks")
}

# Records by ID, 200 to a call (one anchored regular expression each: buildx turns id=V into id~=V, and without
# --all BuildKit keeps records an image holds or a build uses); once more for those whose children went only later.
prune_records() {
  local _ start batch
  for _ in 1 2; do
    [ $# -gt 0 ] || return 0
    for ((start = 0; start < $#; start += 200)); do
      batch=("${@:start+1:200}")
      quietly docker buildx prune -f --filter "id=^($(IFS='|'; echo "${batch[*]}"))\$" || true
    done
    # shellcheck disable=SC2046  # one record ID per word
    set -- $(list_cache | grep -xF -f <(printf '%s\n' "$@") || true)
  done
}

# What is new and stays: someone else's, still in use, or nothing ties it to this run.
report_left() {
  local left
  mapfile -t left < <(list_images | grep -vF -f "$WORK/ids-before" \
                      | awk '{print $1 (NF > 1 ? "(" $2 ")" : "(no name)")}')
  [ ${#left[@]} = 0 ] || say "kept ${#left[@]} images made during the run: $(listed 5 "${left[@]}")"
  local kind
  for kind in containers volumes networks; do
    mapfile -t left < <("list_$kind" | new_lines "$STATE/$kind" /dev/stdin)
    [ ${#left[@]} = 0 ] || say "kept ${#left[@]} $kind made during the run: $(listed 5 "${left[@]}")"
  done
}

clean() {
  [ -f "$STATE/images" ] || { echo "cleanup: $STATE holds no record: run \`$0 record $STATE\` first" >&2; exit 2; }
  stop_events
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  list_images >"$WORK/images"
  find_run_images "$@"
  remove_run_containers "$@"
  remove_run_images
  remove_run_volumes_and_networks
  local records kept images_gone
  images_gone=$(sort -u "$WORK/held" | grep -cvxF -f <(list_images | cut -d' ' -f1) || true)
  mapfile -t records < <(list_cache | new_lines "$STATE/cache" /dev/stdin)
  prune_records "${records[@]}"
  kept=$(list_cache | new_lines "$STATE/cache" /dev/stdin | wc -l)
  say "removed $(wc -l <"$WORK/containers") containers, $(wc -l <"$WORK/names-gone") image names ($images_gone" \
      "images), $((${#records[@]} - kept)) of ${#records[@]} new build-cache records; kept $kept that an image or" \
      "a build still uses"
  report_left
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0  # sourced (by the unit tests): the functions only
case "${1:-}" in
  record) [ $# = 2 ] || usage; record "$2" ;;
  clean) [ $# -ge 3 ] || usage; STATE=$2; shift 2; clean "$@" ;;
  *) usage ;;
esac
