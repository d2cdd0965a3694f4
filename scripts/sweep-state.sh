#!/usr/bin/env bash
# Carry a pareto sweep's folder from one machine to the next through the repository.
#
#   scripts/sweep-state.sh save OUT STATE      # end of a session: OUT -> STATE (to commit)
#   scripts/sweep-state.sh restore STATE OUT   # new machine: STATE -> OUT, then re-run the sweep
#
# `save` copies what the sweep needs to go on: OUT/sweep.json, every run folder without its
# lock or temporary files, and of a finished run no checkpoint (safetensors), except the
# baseline's best.safetensors, the teacher of every linearize run. The sweep must be stopped
# first (`for f in OUT/.pareto.lock OUT/*/.snl.lock; do kill "$(cat "$f")"; done`; re-running it resumes): a run that
# is still writing is refused. STATE is replaced only once the new copy is complete, and
# only if it holds nothing but a saved state. OUT is never changed.
#
# `restore` copies STATE into OUT, which must not hold a sweep yet. sweep.json records
# absolute paths (the teacher in OUT, the data folder): restore to the same OUT path, with
# the data at the same place, or the sweep refuses to go on.
set -euo pipefail

die() { echo "sweep-state: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: $0 save OUT STATE | restore STATE OUT"
command -v flock >/dev/null || die "flock (util-linux) is needed to tell a running run"

# A run folder of a sweep: named as `xtask pareto` names them, with a config.json.
is_run() {
    case "$(basename "$1")" in
        baseline | snl-* | random-* | uniform-*) [ -d "$1" ] && [ -f "$1/config.json" ] ;;
        *) return 1 ;;
    esac
}

# Whether some process holds the flock on file $1.
held() { [ -e "$1" ] && ! flock -n "$1" true; }

case "$1" in
save)
    out=${2%/} state=${3%/}
    [ -d "$out" ] || die "$out: no such sweep folder"
    [ -f "$out/sweep.json" ] || die "$out has no sweep.json: not a sweep folder"
    if [ -L "$state" ]; then die "$state is a symbolic link; give the folder itself"; fi
    real_out=$(realpath -m "$out") real_state=$(realpath -m "$state")
    case "$real_state/" in "$real_out/"*) die "$state is inside the sweep folder $out" ;; esac
    case "$real_out/" in "$real_state/"*) die "the sweep folder $out is inside $state" ;; esac
    if [ -e "$state" ]; then
        [ -d "$state" ] || die "$state exists and is not a folder"
        for entry in "$state"/* "$state"/.[!.]*; do
            [ -e "$entry" ] || continue
            if [ "$(basename "$entry")" != sweep.json ] && ! is_run "$entry"; then
                die "$entry is not part of a saved state; not replacing $state"
            fi
        done
    fi
    if held "$out/.pareto.lock"; then die "the sweep in $out is running (stop it: kill \$(cat $out/.pareto.lock))"; fi
    runs=()
    for run in "$out"/*/; do
        run=${run%/}
        if is_run "$run"; then
            if held "$run/.snl.lock"; then die "$run is running (stop it: kill \$(cat $run/.snl.lock))"; fi
            runs+=("$run")
        fi
    done
    [ ${#runs[@]} -gt 0 ] || die "$out holds no run folder; nothing to save"

    mkdir -p "$(dirname "$state")"
    tmp=$(mktemp -d "$state.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"
    cp "$out/sweep.json" "$tmp/"
    for run in "${runs[@]}"; do
        name=$(basename "$run")
        mkdir "$tmp/$name"
        if [ -f "$run/result.json" ]; then
            find "$run" -maxdepth 1 -type f ! -name '.*' ! -name '*.safetensors' -exec cp -t "$tmp/$name/" {} +
            if [ "$name" = baseline ]; then
                cp "$run/best.safetensors" "$tmp/$name/" || die "$run: finished without best.safetensors"
            fi
        else
            find "$run" -maxdepth 1 -type f ! -name '.*' -exec cp -t "$tmp/$name/" {} +
        fi
    done
    # Swap in the new state; the old one goes only once the new one is in place.
    old=
    if [ -e "$state" ]; then
        old=$(mktemp -u "$state.old.XXXXXX")
        mv "$state" "$old"
    fi
    if ! mv "$tmp" "$state"; then
        [ -n "$old" ] && mv "$old" "$state"
        die "could not move the new state to $state; the old one is kept"
    fi
    trap - EXIT
    [ -n "$old" ] && rm -rf "$old"
    du -sh "$state"
    ;;
restore)
    state=${2%/} out=${3%/}
    [ -d "$state" ] || die "$state: no such state folder"
    [ -f "$state/sweep.json" ] || die "$state has no sweep.json: not a saved state"
    if [ -e "$out" ]; then
        [ -d "$out" ] || die "$out exists and is not a folder"
        if [ -e "$out/sweep.json" ]; then die "$out already holds a sweep; restore into a new folder"; fi
        for run in "$out"/*/; do
            if is_run "${run%/}"; then die "$out already holds runs (${run%/}); restore into a new folder"; fi
        done
    fi
    mkdir -p "$out"
    cp -r "$state"/. "$out"/
    ls "$out"
    ;;
*) die "unknown command $1 (save or restore)" ;;
esac
