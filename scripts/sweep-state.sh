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
# is still writing is refused, and a sweep cannot start while its folder is copied. STATE is
# replaced only once the new copy is complete, only if it holds nothing but a saved state
# whose every file OUT still has, and never by an OUT that is behind it (a run missing, or
# fewer lines of metrics: was STATE restored first?). Symbolic links in OUT's runs are
# refused, not followed. One save at a time per folder of states. OUT is never changed.
#
# `restore` copies STATE into OUT, which must not hold any of STATE's names yet; sweep.json
# goes last, so a restore that failed is never taken for a sweep: remove what it copied into
# OUT (or OUT itself, if it was new), then run it again. sweep.json records absolute paths
# (the teacher in OUT, the data folder): restore to the same OUT path, with the data at the
# same place, or the sweep refuses to go on.
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

# A path argument as a safe operand: no trailing slashes, "./" before a leading dash.
operand() {
    local p=$1
    while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
    case $p in -*) p=./$p ;; esac
    printf '%s' "$p"
}

# Lines of a run's metrics.jsonl (0 without one).
epochs() { if [ -f "$1/metrics.jsonl" ]; then wc -l < "$1/metrics.jsonl"; else echo 0; fi; }

case "$1" in
save)
    out=$(operand "$2") state=$(operand "$3")
    [ -n "$out" ] && [ -n "$state" ] || die "usage: $0 save OUT STATE (empty path)"
    [ -d "$out" ] || die "$out: no such sweep folder"
    [ -f "$out/sweep.json" ] || die "$out has no sweep.json: not a sweep folder"
    if [ -L "$state" ]; then die "$state is a symbolic link; give the folder itself"; fi
    real_out=$(realpath -m "$out") real_state=$(realpath -m "$state")
    case "$real_state/" in "$real_out/"*) die "$state is inside the sweep folder $out" ;; esac
    case "$real_out/" in "$real_state/"*) die "the sweep folder $out is inside $state" ;; esac
    parent=$(dirname -- "$state")
    mkdir -p -- "$parent"
    # One save at a time into this folder of states (held until the script ends).
    exec 9<"$parent"
    flock -n 9 || die "another save into $parent is under way; wait for it"
    # What a save killed outright (SIGKILL) left beside STATE.
    rm -rf -- "$state".tmp.?????? "$state".old.??????
    # Held (shared) until the script ends, so the sweep and its runs cannot start meanwhile.
    if [ -e "$out/.pareto.lock" ]; then
        exec 8<"$out/.pareto.lock"
        flock -n -s 8 || die "the sweep in $out is running (stop it: kill \$(cat $out/.pareto.lock))"
    fi
    runs=()
    for run in "$out"/*/; do
        run=${run%/}
        if is_run "$run"; then
            [ -L "$run" ] && die "$run is a symbolic link; save copies real folders only"
            link=$(find "$run" -maxdepth 1 -type l -print -quit)
            [ -z "$link" ] || die "$link is a symbolic link; save copies real files only"
            if [ -e "$run/.snl.lock" ]; then
                exec {fd}<"$run/.snl.lock"
                flock -n -s "$fd" || die "$run is running (stop it: kill \$(cat $run/.snl.lock))"
            fi
            runs+=("$run")
        fi
    done
    [ ${#runs[@]} -gt 0 ] || die "$out holds no run folder; nothing to save"
    if [ -e "$state" ]; then
        [ -d "$state" ] || die "$state exists and is not a folder"
        for entry in "$state"/* "$state"/.[!.]* "$state"/..?*; do
            [ -e "$entry" ] || [ -L "$entry" ] || continue
            name=$(basename -- "$entry")
            [ "$name" = sweep.json ] && continue
            is_run "$entry" || die "$entry is not part of a saved state; not replacing $state"
            # Everything a save would drop: what OUT no longer has, and what no save writes.
            [ -d "$out/$name" ] || die "$state has $name, which $out has not (was $state restored first?); not replacing $state"
            [ "$(epochs "$out/$name")" -ge "$(epochs "$entry")" ] ||
                die "$out/$name has fewer lines of metrics than $entry (was $state restored first?); not replacing $state"
            for f in "$entry"/* "$entry"/.[!.]* "$entry"/..?*; do
                [ -e "$f" ] || [ -L "$f" ] || continue
                base=${f##*/}
                case $base in .*) die "$f is not part of a saved state; not replacing $state" ;; esac
                [ -f "$f" ] && [ ! -L "$f" ] || die "$f is not part of a saved state; not replacing $state"
                # A checkpoint is superseded by OUT's run, which is at least as far along.
                case $base in *.safetensors) continue ;; esac
                [ -e "$out/$name/$base" ] || die "$f is not in $out/$name; not replacing $state"
            done
        done
    fi

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
    if ! mv -T -- "$tmp" "$state"; then
        [ -n "$old" ] && mv -T -- "$old" "$state"
        die "could not move the new state to $state; the old one is kept"
    fi
    trap - EXIT
    if [ -n "$old" ]; then rm -rf -- "$old" || echo "sweep-state: could not remove $old" >&2; fi
    du -sh "$state"
    ;;
restore)
    state=$(operand "$2") out=$(operand "$3")
    [ -n "$out" ] && [ -n "$state" ] || die "usage: $0 restore STATE OUT (empty path)"
    [ -d "$state" ] || die "$state: no such state folder"
    [ -f "$state/sweep.json" ] || die "$state has no sweep.json: not a saved state"
    if [ -e "$out" ]; then
        [ -d "$out" ] || die "$out exists and is not a folder"
        if [ -e "$out/sweep.json" ]; then die "$out already holds a sweep; restore into a new folder"; fi
        for run in "$out"/*/; do
            if is_run "${run%/}"; then die "$out already holds runs (${run%/}); restore into a new folder"; fi
        done
    fi
    case "$(realpath -m -- "$out")/" in "$(realpath -m -- "$state")/"*) die "$out is inside the state $state" ;; esac
    for entry in "$state"/*; do
        if [ -e "$out/${entry##*/}" ] || [ -L "$out/${entry##*/}" ]; then
            die "$out/${entry##*/} exists; restore into a new folder"
        fi
    done
    mkdir -p -- "$out"
    for entry in "$state"/*; do
        [ "${entry##*/}" = sweep.json ] || cp -r -- "$entry" "$out"/
    done
    cp -- "$state/sweep.json" "$out"/
    ls -- "$out"
    ;;
*) die "unknown command $1 (save or restore)" ;;
esac
