#!/usr/bin/env bash
# The steps of the nightly device matrix (.github/workflows/nightly.yml), one subcommand per job:
#
#   nightly.sh encode TARGET LABEL OUT              encode set of this runner's TARGET, named LABEL
#   nightly.sh decode TARGET LABEL SETS_DIR OUT     decode every encode set in SETS_DIR (one per subdirectory)
#   nightly.sh aggregate SETS_DIR HISTORY_DIR OUT   verdicts over every set in SETS_DIR, kept in HISTORY_DIR
#
# Environment: BITMATCH (the command, default `bitmatch` from PATH), BITMATCH_CODECS (codec packages separated
# by spaces, default the shipped packages/int16/q2 and packages/float/q2), BITMATCH_IMAGES (default `tiny`),
# BITMATCH_SERIES (the history's series, default `nightly`), GITHUB_STEP_SUMMARY (where aggregate appends
# its Markdown summary, default OUT/summary.md).
#
# Exits with bitmatch's exit code: 0 written or passed; 2 the target cannot run here, or an infrastructure
# failure; aggregate also 1 when an integer codec desynced. A usage error exits 2 as well.
# Written for bash 3.2 too (macOS): no mapfile, no empty-array expansion under `set -u`.
set -euo pipefail

root="$(dirname "$0")/../.."
bitmatch="${BITMATCH:-bitmatch}"
images="${BITMATCH_IMAGES:-tiny}"
series="${BITMATCH_SERIES:-nightly}"
read -r -a codecs <<<"${BITMATCH_CODECS:-$root/packages/int16/q2 $root/packages/float/q2}"

say() { echo "nightly.sh: $*" >&2; }

usage() {
  say "usage: nightly.sh $1"
  exit 2
}

run_bitmatch() {
  echo "+ $bitmatch $*" >&2
  local code=0
  "$bitmatch" "$@" || code=$?
  if ((code != 0)); then say "bitmatch $1 exited $code"; fi
  return "$code"
}

# The set directories under $1: $1 itself when it is a set, else each subdirectory holding a set.json.
list_sets() {
  local dir
  if [[ -f "$1/set.json" ]]; then
    echo "$1"
    return
  fi
  for dir in "$1"/*/; do
    if [[ -f "$dir/set.json" ]]; then echo "${dir%/}"; fi
  done
}

encode() {
  (($# == 3)) || usage "encode TARGET LABEL OUT"
  local target=$1 label=$2 out=$3 args=() codec code=0
  if ((${#codecs[@]} == 0)); then
    say "BITMATCH_CODECS names no codec package"
    exit 2
  fi
  for codec in "${codecs[@]}"; do args+=(--codec "$codec"); done
  say "encoding $images with ${#codecs[@]} codec(s) on $target as $label into $out"
  run_bitmatch encode-set "${args[@]}" --images "$images" --target "$target" --label "$label" \
    --out "$out" || code=$?
  if ((code == 2)); then say "target $target cannot run on this runner"; fi
  return "$code"
}

decode() {
  (($# == 4)) || usage "decode TARGET LABEL SETS_DIR OUT"
  local target=$1 label=$2 sets_dir=$3 out=$4 args=() dir code=0
  while IFS= read -r dir; do args+=(--from "$dir"); done < <(list_sets "$sets_dir")
  if ((${#args[@]} == 0)); then
    say "no encode set (a directory with set.json) in $sets_dir"
    exit 2
  fi
  say "decoding $((${#args[@]} / 2)) encode set(s) on $target as $label into $out"
  run_bitmatch decode-set "${args[@]}" --target "$target" --label "$label" --out "$out" || code=$?
  if ((code == 2)); then say "target $target cannot run on this runner"; fi
  return "$code"
}

aggregate() {
  (($# == 3)) || usage "aggregate SETS_DIR HISTORY_DIR OUT"
  local sets_dir=$1 history=$2 out=$3 sets=() dir code=0
  local summary="${GITHUB_STEP_SUMMARY:-$out/summary.md}"
  while IFS= read -r dir; do sets+=("$dir"); done < <(list_sets "$sets_dir")
  if ((${#sets[@]} == 0)); then
    say "no encode or decode set (a directory with set.json) in $sets_dir"
    exit 2
  fi
  say "aggregating ${#sets[@]} set(s) into $out, history in $history"
  run_bitmatch aggregate "${sets[@]}" --out "$out" --history "$history" --series "$series" \
    --fail-on integer-desync --summary-md "$summary" || code=$?
  case $code in
    0) say "pass" ;;
    1) say "verdict failure: an integer codec desynced; see $out/report.html" ;;
    *) say "infrastructure failure (exit $code): a cell without evidence, or sets bitmatch could not use" ;;
  esac
  if ((code != 0)) && [[ ! -f "$out/results.json" ]]; then
    mkdir -p "$(dirname "$summary")"
    echo "**bitmatch aggregate exited $code without writing a report; see the job log.**" >>"$summary"
  fi
  return "$code"
}

main() {
  (($# >= 1)) || usage "encode|decode|aggregate ARGS... (see the script's header)"
  local command=$1
  shift
  case $command in
    encode | decode | aggregate) "$command" "$@" ;;
    *) usage "encode|decode|aggregate ARGS... (not $command)" ;;
  esac
}

main "$@"
