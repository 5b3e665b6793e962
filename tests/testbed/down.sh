#!/usr/bin/env bash
# Stop the lsbackup test bed: only the processes whose pids up.sh recorded in $LSB_TESTBED/pids/.
# Keeps the state dir (keys, known_hosts, inventory, data) so the next up.sh is quick.

TB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$TB_DIR/lib.sh"
# shellcheck source=svc_kafka.sh
. "$TB_DIR/svc_kafka.sh" # tb_down_kafka

tb_require_root
[ -d "$TB_PIDS" ] || {
    tb_log "nothing recorded in $TB_PIDS"
    exit 0
}

shopt -s nullglob
for f in "$TB_PIDS"/*.pid; do
    name="$(basename "$f" .pid)"
    if declare -F "tb_down_$name" >/dev/null; then
        "tb_down_$name"
    else
        tb_stop "$name"
    fi
done
tb_log "test bed stopped"
