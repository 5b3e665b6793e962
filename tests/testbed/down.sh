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

# service files only define functions and variables; sourcing them brings the tb_down_<name>
# hooks (for services whose live pid may differ from the recorded one, e.g. kafka)
for f in "$TB_DIR"/svc_*.sh; do
    # shellcheck disable=SC1090
    . "$f"
done

tb_down() {
    if declare -F "tb_down_$1" >/dev/null; then
        "tb_down_$1"
    else
        tb_stop "$1"
    fi
}

# reverse start order first (the Azure Files stand-in and the object stores first, rabbitmq before
# its epmd, kafka before zookeeper, services before the sshd hosts), then any other pid file
order=(azfile azurite moto grafana kibana elasticsearch rabbitmq epmd alertmanager prometheus-noadmin
    prometheus kafka zookeeper haproxy kubeapi-workers kubeapi etcd postgresql sshd-node4 sshd-node3
    sshd-node2 sshd-node1)
for name in "${order[@]}"; do
    if [ -e "$TB_PIDS/$name.pid" ]; then tb_down "$name"; fi
done
shopt -s nullglob
for f in "$TB_PIDS"/*.pid; do
    tb_down "$(basename "$f" .pid)"
done
# an earlier version of up.sh put the test bed's Grafana CA into the system trust store
if [ -e /usr/local/share/ca-certificates/lsbackup-testbed-grafana-ca.crt ]; then
    rm -f /usr/local/share/ca-certificates/lsbackup-testbed-grafana-ca.crt
    update-ca-certificates --fresh >/dev/null 2>&1 || true
fi
tb_log "test bed stopped"
