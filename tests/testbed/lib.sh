# shellcheck shell=bash
# Shared helpers for tests/testbed/up.sh and down.sh. Sourced, not executed.
#
# State lives in $LSB_TESTBED (default /tmp/lsbackup-testbed):
#   env, client_key(.pub), other_key(.pub), known_hosts, build/inventory,
#   pids/<name>.pid, logs/<name>.log, ssh/<node>/..., and per-service scratch.

set -euo pipefail

LSB_TESTBED="${LSB_TESTBED:-/tmp/lsbackup-testbed}"
LSB_SSH_PORT="${LSB_SSH_PORT:-2222}"
LSB_SSH_USER="${LSB_SSH_USER:-operations}"
# shellcheck disable=SC2034 # used by the svc_*.sh files
LSB_NODES=(node1 node2 node3)
# shellcheck disable=SC2034
LSB_HOST_IPS=(127.0.0.2 127.0.0.3 127.0.0.4)

TB_PIDS="$LSB_TESTBED/pids"
TB_LOGS="$LSB_TESTBED/logs"
TB_APT_UPDATED=""

# Daemons started by up.sh must not inherit the up.sh lock (fd 9): start them with `9>&-`.

tb_log() { printf '%s testbed: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
tb_ready() { printf 'ready  %-13s %s\n' "$1" "$2"; }
tb_die() {
    printf 'testbed: ERROR: %s\n' "$*" >&2
    exit 1
}

tb_require_root() {
    [ "$(id -u)" = 0 ] || tb_die "must run as root (it installs packages and starts services)"
}

tb_mkdirs() {
    install -d -m 0755 "$LSB_TESTBED"
    install -d -m 0700 "$TB_PIDS"
    install -d -m 0755 "$TB_LOGS"
}

# --- packages -------------------------------------------------------------

tb_pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# tb_install PKG...: apt-get install only what is missing; `apt-get update` at most once per run.
# Services are kept from starting during the install with a policy-rc.d that returns 101.
tb_install() {
    local missing=() p
    for p in "$@"; do
        tb_pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    tb_log "installing ${missing[*]}"
    local own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    {
        if [ -z "$TB_APT_UPDATED" ]; then
            apt-get update -q && TB_APT_UPDATED=1
        fi
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    } >>"$TB_LOGS/apt.log" 2>&1 || rc=$?
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ $rc -eq 0 ] || tb_die "apt-get install ${missing[*]} failed (see $TB_LOGS/apt.log)"
}

# --- processes ------------------------------------------------------------

# tb_pid NAME: print the recorded pid of NAME if that process is alive, else nothing (status 1).
tb_pid() {
    local f="$TB_PIDS/$1.pid" pid
    [ -s "$f" ] || return 1
    pid="$(head -n1 "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -d "/proc/$pid" ] || return 1
    # a zombie is not alive
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    # guard against pid reuse: the executable must be the one recorded
    local exe
    exe="$(sed -n 2p "$f")"
    if [ -n "$exe" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$exe" ]; then
        return 1
    fi
    echo "$pid"
}

# tb_record_pid NAME PID: record PID (and its executable, against pid reuse) for down.sh.
tb_record_pid() {
    printf '%s\n%s\n' "$2" "$(readlink "/proc/$2/exe" 2>/dev/null || true)" >"$TB_PIDS/$1.pid"
}

# tb_wait WHAT TIMEOUT_SECONDS CMD...: retry CMD until it succeeds; fail with a clear message.
tb_wait() {
    local what="$1" timeout="$2"
    shift 2
    local end=$((SECONDS + timeout))
    while ! "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $end ]; then
            tb_die "$what did not become ready within ${timeout}s (logs: $TB_LOGS/)"
        fi
        sleep 0.2
    done
}

# tb_alive PID: the process exists and is not a zombie
tb_alive() {
    [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# tb_stop_signal NAME: the signal that shuts NAME down cleanly and promptly
tb_stop_signal() {
    case "$1" in
    postgresql) echo INT ;; # fast shutdown (TERM waits for clients to disconnect)
    *) echo TERM ;;
    esac
}

# tb_stop NAME: SIGTERM (or tb_stop_signal) the recorded pid, wait, SIGKILL if needed; remove the pid file.
tb_stop() {
    local name="$1" pid
    if pid="$(tb_pid "$name")"; then
        kill -"$(tb_stop_signal "$name")" "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            tb_alive "$pid" || break
            sleep 0.1
        done
        if tb_alive "$pid"; then
            tb_log "$name (pid $pid) still runs after 30s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        tb_log "stopped $name (pid $pid)"
    fi
    rm -f "$TB_PIDS/$name.pid"
}

# --- env file -------------------------------------------------------------

# tb_env_set KEY VALUE: write/replace KEY=VALUE in $LSB_TESTBED/env (plain KEY=value lines, no quoting).
tb_env_set() {
    local f="$LSB_TESTBED/env" tmp
    tmp="$(mktemp "$LSB_TESTBED/.env.XXXXXX")"
    if [ -f "$f" ]; then
        grep -v "^$1=" "$f" >"$tmp" || true
    fi
    printf '%s=%s\n' "$1" "$2" >>"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$f"
}

# tb_spawn NAME LOGFILE [--as USER] CMD...: start CMD in the background in its own session (no
# lock fd, stdin /dev/null, output appended to LOGFILE), optionally as USER (setpriv execs, so the
# pid stays the same), wait until it has exec'd CMD, record its pid as NAME.
tb_spawn() {
    local name="$1" log="$2" user=""
    shift 2
    if [ "${1:-}" = --as ]; then
        user="$2"
        shift 2
    fi
    local exe
    exe="$(readlink -f "$(command -v "$1")")" || tb_die "$1 not found (needed for $name)"
    if [ -n "$user" ]; then
        setsid setpriv --reuid="$user" --regid="$user" --init-groups \
            env HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" LOGNAME="$user" \
            "$@" >>"$log" 2>&1 </dev/null 9>&- &
    else
        setsid "$@" >>"$log" 2>&1 </dev/null 9>&- &
    fi
    local pid=$!
    for _ in $(seq 1 100); do
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] && break
        tb_alive "$pid" || tb_die "$name exited at once: $(tail -n5 "$log")"
        sleep 0.05
    done
    tb_record_pid "$name" "$pid"
}

# tb_check_alive NAME: die with the log tail when NAME's recorded process is gone (after a start).
tb_check_alive() {
    tb_pid "$1" >/dev/null || tb_die "$1 exited: $(tail -n5 "$2")"
}

# tb_wait_svc NAME LOGFILE TIMEOUT CMD...: like tb_wait, but fail at once when NAME's process died.
tb_wait_svc() {
    local name="$1" log="$2" timeout="$3"
    shift 3
    local end=$((SECONDS + timeout))
    while ! "$@" >/dev/null 2>&1; do
        tb_pid "$name" >/dev/null || tb_die "$name exited while starting: $(tail -n5 "$log")"
        [ $SECONDS -lt $end ] || tb_die "$name did not become ready within ${timeout}s (log: $log)"
        sleep 0.2
    done
}

# tb_write_if_changed FILE MODE: stdin -> FILE, only touching FILE when the content differs;
# sets TB_CHANGED=1 when it wrote (callers reset it to decide on a reload).
# shellcheck disable=SC2034
TB_CHANGED=""
tb_write_if_changed() {
    local file="$1" mode="$2" tmp
    tmp="$(mktemp "$(dirname "$file")/.tbtmp.XXXXXX")"
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$file"
        # shellcheck disable=SC2034
        TB_CHANGED=1
    fi
}
