#!/usr/bin/env bash
# Bring up the lsbackup test bed (idempotent; run as root on Debian 12).
#
#   tests/testbed/up.sh            # everything
#   LSB_TESTBED=/some/dir LSB_SSH_PORT=2200 tests/testbed/up.sh
#
# Installs the Debian packages it needs with apt-get (only when missing), then starts, by hand and
# without systemd: three OpenSSH sshd "hosts" on 127.0.0.2/3/4 and the services of the components.
# What already runs (recorded pid alive) is kept; what is dead is restarted. Every started pid is
# recorded in $LSB_TESTBED/pids/ and tests/testbed/down.sh stops exactly those. The object-store
# emulators (svc_objstore.sh) come from PyPI and npm into $LSB_TESTBED, not into the system.
# Logs: $LSB_TESTBED/logs/. Prints one "ready" line per service.

TB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$TB_DIR/lib.sh"

tb_require_root
tb_mkdirs
exec 9>"$LSB_TESTBED/.up.lock"
flock -n 9 || tb_die "another up.sh is running (lock $LSB_TESTBED/.up.lock)"

# shellcheck source=svc_ssh.sh
. "$TB_DIR/svc_ssh.sh"
# shellcheck source=svc_pg.sh
. "$TB_DIR/svc_pg.sh"
# shellcheck source=svc_k8s.sh
. "$TB_DIR/svc_k8s.sh"
# shellcheck source=svc_kubeapi.sh
. "$TB_DIR/svc_kubeapi.sh"
# shellcheck source=svc_worker.sh
. "$TB_DIR/svc_worker.sh"
# shellcheck source=svc_haproxy.sh
. "$TB_DIR/svc_haproxy.sh"
# shellcheck source=svc_zookeeper.sh
. "$TB_DIR/svc_zookeeper.sh"
# shellcheck source=svc_kafka.sh
. "$TB_DIR/svc_kafka.sh"
# shellcheck source=svc_monitoring.sh
. "$TB_DIR/svc_monitoring.sh"
# shellcheck source=svc_prometheus_noadmin.sh
. "$TB_DIR/svc_prometheus_noadmin.sh"
# shellcheck source=svc_rabbitmq.sh
. "$TB_DIR/svc_rabbitmq.sh"
# shellcheck source=svc_standins.sh
. "$TB_DIR/svc_standins.sh"
# shellcheck source=svc_objstore.sh
. "$TB_DIR/svc_objstore.sh"

tb_install openssh-server openssh-client sudo openssl
tb_install postgresql
tb_install etcd-server etcd-client
tb_install haproxy curl
tb_install zookeeperd default-jre-headless
tb_install prometheus prometheus-alertmanager
tb_install rabbitmq-server
tb_install python3 sqlite3
tb_install shellcheck   # components::template hostile-value test (required under CI=true)
tb_install systemd      # systemd-analyze verify of docs/examples (tests/cli_tools.rs; nothing is started)
# tests/archive_tools.rs, tests/encryption.rs: archives open with the standard tools (each required under CI=true)
tb_install zstd gzip tar unzip libarchive-tools p7zip-full age

tb_up_ssh
tb_write_inventory
tb_up_postgresql
tb_up_etcd
tb_up_kubeapi
tb_up_worker
tb_up_haproxy
tb_up_zookeeper
tb_up_kafka
tb_up_prometheus
tb_up_prometheus_noadmin
tb_up_alertmanager
tb_up_rabbitmq
tb_up_elasticsearch
tb_up_kibana
tb_up_grafana
tb_up_objstore
tb_up_azfile

tb_env_set LSB_TESTBED "$LSB_TESTBED"
tb_env_set LSB_LOGS "$TB_LOGS"
tb_log "test bed is up; env: $LSB_TESTBED/env"
