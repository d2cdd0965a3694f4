#!/usr/bin/env bash
# Carry a pareto sweep's folder from one machine to the next through the repository.
#
#   scripts/sweep-state.sh save OUT STATE      # end of a session: OUT -> STATE (to commit)
#   scripts/sweep-state.sh restore STATE OUT   # new machine: STATE -> OUT, then re-run the sweep
#
# `save` copies what the sweep cannot rebuild from the published results: every unfinished
# run folder (config.json, metrics.jsonl, checkpoints; no lock, no log) and the finished
# baseline's best.safetensors (the teacher of every linearize run). It replaces STATE's
# previous contents, refuses while OUT's runs are still writing (stop or SIGSTOP the sweep
# first), and never touches OUT. Finished runs travel as published by `xtask pareto
# --publish` (config, metrics, result): `restore` copies those from STATE's parent folder
# (the results folder), then STATE on top, into OUT, and refuses an OUT that holds runs.
set -euo pipefail

die() { echo "sweep-state: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: $0 save OUT STATE | restore STATE OUT"
cmd=$1

# The run folders of a sweep: those named as `xtask pareto` names them.
is_run() { case "$(basename "$1")" in baseline|snl-*|random-*|uniform-*) [ -f "$1/config.json" ];; *) false;; esac; }

case "$cmd" in
save)
    out=$2 state=$3
    [ -d "$out" ] || die "$out: no such sweep folder"
    # STATE is replaced: it must not be OUT, inside it or around it, nor hold anything but runs.
    real_out=$(realpath -m "$out") real_state=$(realpath -m "$state")
    case "$real_state/" in "$real_out/"*) die "$state is inside the sweep folder $out";; esac
    case "$real_out/" in "$real_state/"*) die "the sweep folder $out is inside $state";; esac
    if [ -e "$state" ]; then
        [ -d "$state" ] || die "$state exists and is not a folder"
        for entry in "$state"/* "$state"/.[!.]*; do
            [ -e "$entry" ] || continue
            case "$(basename "$entry")" in
                baseline|snl-*|random-*|uniform-*) [ -d "$entry" ] || die "$entry is not a run folder; not replacing $state" ;;
                *) die "$entry is not a run folder; not replacing $state" ;;
            esac
        done
    fi
    for run in "$out"/*/; do
        run=${run%/}
        is_run "$run" || continue
        # A run that is running holds its lock (flock) on .snl.lock.
        if [ -e "$run/.snl.lock" ] && ! flock -n "$run/.snl.lock" true; then
            ps -o stat= -p "$(cat "$run/.snl.lock" 2>/dev/null || echo 0)" 2>/dev/null | grep -q T ||
                die "$run is running (pause it with SIGSTOP or stop the sweep first)"
        fi
    done
    mkdir -p "$(dirname "$state")"
    tmp=$(mktemp -d "${state%/}.tmp.XXXXXX")
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    for run in "$out"/*/; do
        run=${run%/}
        is_run "$run" || continue
        name=$(basename "$run")
        if [ -f "$run/result.json" ]; then
            # Finished: published elsewhere; only the teacher's weights are needed here.
            if [ "$name" = baseline ] && [ -f "$run/best.safetensors" ]; then
                mkdir -p "$tmp/$name"
                cp "$run/best.safetensors" "$tmp/$name/"
            fi
            continue
        fi
        mkdir -p "$tmp/$name"
        find "$run" -maxdepth 1 -type f ! -name '.snl.lock' -exec cp {} "$tmp/$name/" \;
    done
    rm -rf "$state"
    mv "$tmp" "$state"
    trap - EXIT
    du -sh "$state"
    ;;
restore)
    state=$2 out=$3
    [ -d "$state" ] || die "$state: no such state folder"
    if [ -d "$out" ]; then
        for run in "$out"/*/; do
            is_run "${run%/}" && die "$out already holds runs (${run%/}); restore into a new folder"
        done
    fi
    mkdir -p "$out"
    results=$(dirname "$state")
    for run in "$results"/*/; do
        run=${run%/}
        is_run "$run" && [ -f "$run/result.json" ] && cp -r "$run" "$out/"
    done
    cp -r "$state"/. "$out"/
    ls "$out"
    ;;
*) die "unknown command $cmd (save or restore)" ;;
esac
