#!/usr/bin/env bash
# check_layers.sh - the layering rules of README.md "Layout", checked on the tree.
#
#   tests/check_layers.sh [ROOT]      check ROOT (default: the source tree); exit 1 on a violation
#   tests/check_layers.sh --self-test check that violations planted in copies of the tree are found
#
# Folders are layers: base/ (0) uses nothing of walcast; replication/ and config/ (1) use base/;
# sinks/ (2) uses those three; src/ (3), the engine and the command line, uses anything. A header in
# include/walcast/ belongs to the layer named below and obeys its layer's rules; a header private to a
# folder ("x.h", or "../x.h" from a sink's own folder into sinks/) is not included from elsewhere. Base
# code includes no library but libc and jansson; no source file is over 700 lines.
set -u

declare -A layer_of=(
    [buf]=base [backoff]=base [err]=base [log]=base [lsn]=base [jscan]=base [event]=base [clock]=base [keyslot]=base
    [pgconn]=replication [stream]=replication [slot]=replication [decode]=replication [snapshot]=replication
    [outbox]=replication [lease]=replication
    [config]=config [template]=config
    [sink]=sinks [tally]=sinks [probe]=sinks
    [engine]=src
)
# What each layer may include, by layer name.
declare -A allowed=(
    [base]="base"
    [replication]="base replication"
    [config]="base config"
    [sinks]="base replication config sinks"
    [src]="base replication config sinks src"
)
# Libraries a layer must not touch (system includes, by prefix).
declare -A forbidden_libs=(
    [base]="libpq-fe.h hiredis/ libfyaml.h pthread.h"
    [replication]="hiredis/ libfyaml.h"
    [config]="libpq-fe.h hiredis/"
)

# The path "a/b/../c/./d" as "a/c/d", in REPLY (no subshell: check runs thirteen times in the self-test).
normalize() {
    local IFS=/ part
    local -a out=()
    set -f
    for part in $1; do
        case "$part" in
        '' | .) ;;
        ..) if [ ${#out[@]} -gt 0 ] && [ "${out[-1]}" != .. ]; then unset 'out[-1]'; else out+=(..); fi ;;
        *) out+=("$part") ;;
        esac
    done
    set +f
    REPLY="${out[*]}"
}

check() {
    local root=$1 bad=0 f folder layer inc name hl n
    cd "$root" || return 2
    local -a files
    mapfile -t files < <(find include base replication config sinks src -name '*.[ch]' 2>/dev/null | sort)
    [ ${#files[@]} -gt 0 ] || return 0
    # Line counts and #include lines of every file, each in one pass (not a process per file or include).
    local -A lines=() includes=()
    while read -r n f; do
        [ "$f" = total ] || lines[$f]=$n
    done < <(wc -l "${files[@]}")
    while IFS= read -r inc; do
        f=${inc%%:*}
        inc=${inc#*:}
        includes[$f]+="$inc"$'\n'
    done < <(grep -HE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^>"]*[>"]' "${files[@]}" |
        sed 's/^\([^:]*\):[[:space:]]*#[[:space:]]*include[[:space:]]*\([<"][^>"]*[>"]\).*/\1:\2/')
    for f in "${files[@]}"; do
        folder=${f%%/*}
        case "$folder" in
        include) hl=${f##*/}; hl=${hl%.h}; layer=${layer_of[$hl]:-}
            if [ -z "$layer" ]; then
                echo "check_layers: $f: header has no layer: add it to layer_of in tests/check_layers.sh"; bad=1; continue
            fi ;;
        base | replication | config | sinks | src) layer=$folder ;;
        *) continue ;;
        esac
        if [ "${f##*.}" = c ] || [ "$folder" != include ]; then
            n=${lines[$f]:-0}
            [ "$n" -gt 700 ] && { echo "check_layers: $f: $n lines (at most 700: split it along a seam)"; bad=1; }
        fi
        while IFS= read -r inc; do
            case "$inc" in
            '"walcast/'*)
                name=${inc#\"walcast/}; name=${name%.h\"}
                hl=${layer_of[$name]:-}
                if [ -z "$hl" ]; then
                    echo "check_layers: $f includes walcast/$name.h, which has no layer"; bad=1
                elif [[ " ${allowed[$layer]} " != *" $hl "* ]]; then
                    echo "check_layers: $f ($layer) includes walcast/$name.h ($hl): $layer may use only ${allowed[$layer]}"; bad=1
                fi ;;
            '"'*)
                name=${inc#\"}; name=${name%\"}
                local target
                normalize "${f%/*}/$name"
                target=$REPLY
                if [ ! -e "$target" ]; then
                    echo "check_layers: $f includes \"$name\", which is not beside it"; bad=1
                elif [ "${target%%/*}" != "$folder" ]; then
                    echo "check_layers: $f includes \"$name\" ($target), a header private to ${target%%/*}/"; bad=1
                fi ;;
            '<'*)
                local lib
                for lib in ${forbidden_libs[$layer]:-}; do
                    case "$inc" in "<$lib"*) echo "check_layers: $f ($layer) includes $inc"; bad=1 ;; esac
                done ;;
            esac
        done <<<"${includes[$f]:-}"
    done
    return $bad
}

self_test() {
    local src=$1 tmp rc=0 case_ what
    tmp=$(mktemp -d /tmp/check-layers.XXXXXX)
    trap 'rm -rf "$tmp"' RETURN
    plant() { # plant FILE LINE: copy the tree, add LINE after the first line of FILE, expect a failure
        rm -rf "$tmp/t"; mkdir -p "$tmp/t"
        (cd "$src" && cp -r include base replication config sinks src "$tmp/t/")
        sed -i "1a $2" "$tmp/t/$1"
        if check "$tmp/t" >/dev/null; then
            echo "check_layers: self-test: \"$2\" in $1 was not found"; rc=1
        fi
    }
    plant base/buf.c '#include "walcast/sink.h"'
    plant base/lsn.c '#include <libpq-fe.h>'
    plant include/walcast/event.h '#include "walcast/config.h"'
    plant replication/stream.c '#include "walcast/engine.h"'
    plant replication/decode.c '#include "walcast/config.h"'
    plant replication/slot.c '#include "walcast/sink.h"'
    plant replication/slot.c '#include "../src/engine_int.h"'
    plant config/config.c '#include "walcast/stream.h"'
    plant sinks/record.c '#include "walcast/engine.h"'
    plant sinks/postgres/conn.c '#include "../../src/cli.h"'
    plant base/err.c '#include "walcast/nowhere.h"'
    # A file over 700 lines.
    rm -rf "$tmp/t"; mkdir -p "$tmp/t"; (cd "$src" && cp -r include base replication config sinks src "$tmp/t/")
    seq 1 701 | sed 's|^|/* line */|' >>"$tmp/t/base/err.c"
    check "$tmp/t" >/dev/null && { echo "check_layers: self-test: a 700+ line file was not found"; rc=1; }
    # And the real tree passes.
    check "$src" || rc=1
    [ $rc = 0 ] && echo "check_layers: self-test ok"
    return $rc
}

here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = --self-test ]; then
    self_test "$here"
    exit $?
fi
check "${1:-$here}"
