# shellcheck shell=bash
# A kubeadm WORKER host for the kubernetes_volumes tests (after svc_ssh.sh, svc_k8s.sh and
# svc_kubeapi.sh):
#
# - node4: a fourth sshd "host" on 127.0.0.5:$LSB_SSH_PORT (own host key, added to known_hosts),
#   started inside its own mount namespace (`unshare --mount --propagation private`) where
#   /etc/kubernetes is a bind mount of $LSB_TESTBED/node4/etc-kubernetes, which holds what kubeadm
#   leaves on a worker: kubelet.conf (client certificate system:node:k8s-worker-4) and pki/ca.crt,
#   and no admin.conf. Every command lsbackup runs on node4 sees that directory; the rest of the
#   filesystem is the machine's. The mount exists only in that namespace: it goes away with the
#   namespace's last process (down.sh stops the sshd; connections end with their clients).
# - a third STAND-IN kube-apiserver instance on ${LSB_HOST_IPS[1]}:6445 (kubeconfig
#   $LSB_TESTBED/kube-workers.conf) serving the test bed cluster plus the Node k8s-worker-4
#   (InternalIP 127.0.0.5: node4, mapped by address), a Node node9 that is no inventory host, a
#   local PV on each, and a hostPath PV of k8s-worker-4 whose path holds spaces, `...`, $(...),
#   a glob and brackets. The instances on 6443/6444 are left as they are.
# Sourced by up.sh (needs lib.sh, svc_ssh.sh, svc_k8s.sh, svc_kubeapi.sh).

TB_WORKER_NODE=node4
TB_WORKER_IP=127.0.0.5
TB_WORKER_K8S_NAME=k8s-worker-4
TB_KUBEAPI_WORKERS_PORT=6445
# created by a command in the hostile path name, should it ever run (it must not)
TB_WORKER_MARKER=/tmp/lsbackup-kvol-pwned
# shellcheck disable=SC2016 # literal on purpose: the name must never be expanded
TB_WORKER_HOSTILE_DIR='/var/lib/lsbackup-testbed/k8s-volumes/hostile dir `touch /tmp/lsbackup-kvol-pwned` $(touch /tmp/lsbackup-kvol-pwned); [x]*'

tb_worker_data() {
    local d="$TB_K8S_VOLUMES/worker-data" h="$TB_WORKER_HOSTILE_DIR"
    if [ ! -s "$d/state.json" ]; then
        install -d -m 0755 "$d" "$d/segments"
        printf '{"worker": "%s"}\n' "$TB_WORKER_K8S_NAME" >"$d/state.json"
        head -c 40000 /dev/urandom >"$d/segments/000001.log"
    fi
    if [ ! -s "$h/upload 1.txt" ]; then
        install -d -m 0755 "$h"
        printf 'a file in a hostile directory\n' >"$h/upload 1.txt"
        printf 'x\n' >"$h/\$(touch lsbackup-kvol-pwned) \`id\`.txt"
    fi
}

# what kubeadm join leaves in /etc/kubernetes on a worker
tb_worker_etc() {
    local dir="$LSB_TESTBED/$TB_WORKER_NODE/etc-kubernetes"
    install -d -m 0755 "$dir" "$dir/pki"
    tb_leaf "$LSB_TESTBED/k8s-clients" "kubelet-$TB_WORKER_NODE" "$TB_PKI" ca \
        "/O=system:nodes/CN=system:node:$TB_WORKER_K8S_NAME" clientAuth
    tb_kubeconfig "$dir/kubelet.conf" "system:node:$TB_WORKER_K8S_NAME" "kubelet-$TB_WORKER_NODE"
    install -m 0644 "$TB_PKI/ca.crt" "$dir/pki/ca.crt"
    rm -f "$dir/admin.conf"
}

tb_worker_known_hosts() {
    local line
    line="$(tb_ssh_hostspec "$TB_WORKER_IP") $(cut -d' ' -f1,2 "$TB_SSH/$TB_WORKER_NODE/ssh_host_ed25519_key.pub")"
    grep -qxF "$line" "$LSB_TESTBED/known_hosts" && return 0
    # drop a stale line for the address, append the current one, replace the file at once
    grep -vF "$(tb_ssh_hostspec "$TB_WORKER_IP") " "$LSB_TESTBED/known_hosts" >"$LSB_TESTBED/known_hosts.tmp" || true
    printf '%s\n' "$line" >>"$LSB_TESTBED/known_hosts.tmp"
    chmod 0644 "$LSB_TESTBED/known_hosts.tmp"
    mv -f "$LSB_TESTBED/known_hosts.tmp" "$LSB_TESTBED/known_hosts"
}

tb_worker_sshd() {
    local node="$TB_WORKER_NODE" dir="$TB_SSH/$TB_WORKER_NODE" log="$TB_LOGS/sshd-$TB_WORKER_NODE.log"
    tb_ssh_config "$node" "$TB_WORKER_IP"
    tb_worker_known_hosts
    tb_pid "sshd-$node" >/dev/null && return 0
    rm -f "$dir/sshd.pid"
    # unshare and sh exec: the recorded pid is the sshd (-D: it does not fork away)
    # shellcheck disable=SC2016,SC2094 # $1.. are expanded by the inner sh; sshd appends to the log too
    setsid unshare --mount --propagation private -- /bin/sh -c \
        'mount --bind "$1" /etc/kubernetes || exit 90; exec /usr/sbin/sshd -D -f "$2" -E "$3"' \
        lsbackup-testbed-node4 "$LSB_TESTBED/$node/etc-kubernetes" "$dir/sshd_config" "$log" \
        </dev/null >>"$log" 2>&1 9>&- &
    local pid=$!
    for _ in $(seq 1 100); do
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/sbin/sshd ] && break
        tb_alive "$pid" || tb_die "sshd for $node ($TB_WORKER_IP:$LSB_SSH_PORT) failed to start: $(tail -n3 "$log")"
        sleep 0.05
    done
    tb_record_pid "sshd-$node" "$pid"
}

tb_up_kubeapi_workers() {
    local log="$TB_LOGS/kubeapi-workers.log" conf="$LSB_TESTBED/kube-workers.conf"
    if ! tb_pid kubeapi-workers >/dev/null; then
        tb_spawn kubeapi-workers "$log" /usr/bin/python3 "$TB_KUBEAPI_STANDIN" --bind "${LSB_HOST_IPS[1]}" \
            --cert "$TB_PKI/apiserver.crt" --key "$TB_PKI/apiserver.key" --client-ca "$TB_PKI/ca.crt" \
            --kubeadm-config /etc/kubeadm/kubeadm-config.yml \
            --local-pv-dir "$TB_K8S_VOLUMES/local-db" \
            --hostpath-pv-dir "$TB_K8S_VOLUMES/uploads" \
            --hostpath-unused-dir "$TB_K8S_VOLUMES/unused" \
            --worker-pv-dir "$TB_K8S_VOLUMES/worker-data" \
            --hostile-pv-dir "$TB_WORKER_HOSTILE_DIR" \
            --port "$TB_KUBEAPI_WORKERS_PORT"
    fi
    sed "s|^\(    server: https://.*\):$TB_KUBEAPI_PORT\$|\1:$TB_KUBEAPI_WORKERS_PORT|" "$TB_K8S/admin.conf" |
        tb_write_if_changed "$conf" 0600
    grep -q ":$TB_KUBEAPI_WORKERS_PORT\$" "$conf" || tb_die "cannot derive $conf from $TB_K8S/admin.conf"
    tb_wait_svc kubeapi-workers "$log" 20 tb_kubectl --kubeconfig "$conf" get --raw /version
}

tb_up_worker() {
    tb_worker_data
    tb_worker_etc
    tb_worker_sshd
    tb_wait "sshd $TB_WORKER_NODE ($TB_WORKER_IP:$LSB_SSH_PORT) login as $LSB_SSH_USER with sudo -n" 15 \
        tb_ssh_probe "$LSB_SSH_USER" "$TB_WORKER_IP" sudo -n true
    # the point of this host: a kubelet.conf, no admin.conf
    tb_ssh_probe root "$TB_WORKER_IP" 'test -s /etc/kubernetes/kubelet.conf && test ! -e /etc/kubernetes/admin.conf' ||
        tb_die "node4 does not see its own /etc/kubernetes (kubelet.conf only)"
    tb_up_kubeapi_workers
    tb_ready "sshd-$TB_WORKER_NODE" "$TB_WORKER_IP:$LSB_SSH_PORT pid $(tb_pid "sshd-$TB_WORKER_NODE"), own /etc/kubernetes (kubelet.conf, no admin.conf) in a mount namespace"
    tb_ready kubeapi-workers "STAND-IN https://${LSB_HOST_IPS[1]}:$TB_KUBEAPI_WORKERS_PORT (+ nodes $TB_WORKER_K8S_NAME, node9 and their PVs), pid $(tb_pid kubeapi-workers)"
    tb_env_set LSB_WORKER_NODE "$TB_WORKER_NODE"
    tb_env_set LSB_WORKER_HOST "$TB_WORKER_IP"
    tb_env_set LSB_WORKER_K8S_NAME "$TB_WORKER_K8S_NAME"
    tb_env_set LSB_WORKER_ETC_KUBERNETES "$LSB_TESTBED/$TB_WORKER_NODE/etc-kubernetes"
    tb_env_set LSB_KUBECONFIG_WORKERS "$LSB_TESTBED/kube-workers.conf"
    tb_env_set LSB_K8S_PV_WORKER_DIR "$TB_K8S_VOLUMES/worker-data"
    tb_env_set LSB_K8S_PV_HOSTILE_DIR "$TB_WORKER_HOSTILE_DIR"
    tb_env_set LSB_K8S_PV_MARKER "$TB_WORKER_MARKER"
}
