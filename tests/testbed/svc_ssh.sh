# shellcheck shell=bash
# Three OpenSSH sshd "hosts" (127.0.0.2..4), the test client keys, known_hosts and the inventory.
# Sourced by up.sh (needs lib.sh).

TB_SSH="$LSB_TESTBED/ssh"

tb_ssh_user() {
    if ! id "$LSB_SSH_USER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash "$LSB_SSH_USER"
    fi
    # '*' = no password login possible, but not "locked" ('!'), which sshd refuses with UsePAM no.
    if [ "$(getent shadow "$LSB_SSH_USER" | cut -d: -f2)" != '*' ]; then
        usermod -p '*' "$LSB_SSH_USER"
    fi
    local sudoers=/etc/sudoers.d/lsbackup-testbed
    local want="$LSB_SSH_USER ALL=(ALL:ALL) NOPASSWD: ALL"
    if [ "$(cat "$sudoers" 2>/dev/null)" != "$want" ]; then
        printf '%s\n' "$want" >"$sudoers.tmp"
        chmod 0440 "$sudoers.tmp"
        visudo -cqf "$sudoers.tmp" || tb_die "generated sudoers file is invalid"
        mv -f "$sudoers.tmp" "$sudoers"
    fi
}

tb_ssh_keys() {
    local k
    for k in client_key other_key; do
        if [ ! -s "$LSB_TESTBED/$k" ] || [ ! -s "$LSB_TESTBED/$k.pub" ]; then
            rm -f "$LSB_TESTBED/$k" "$LSB_TESTBED/$k.pub"
            ssh-keygen -q -t ed25519 -N '' -C "lsbackup-testbed-$k" -f "$LSB_TESTBED/$k"
        fi
        chmod 0600 "$LSB_TESTBED/$k"
        chmod 0644 "$LSB_TESTBED/$k.pub"
    done
    # authorized for root and operations on all hosts (AuthorizedKeysFile points here)
    install -d -m 0755 "$TB_SSH"
    install -m 0644 "$LSB_TESTBED/client_key.pub" "$TB_SSH/authorized_keys"
}

# tb_ssh_hostspec IP: the known_hosts / ssh host form for IP at $LSB_SSH_PORT
tb_ssh_hostspec() {
    if [ "$LSB_SSH_PORT" = 22 ]; then echo "$1"; else echo "[$1]:$LSB_SSH_PORT"; fi
}

tb_ssh_known_hosts() {
    local plain="" i ip node line
    for i in 0 1 2; do
        ip="${LSB_HOST_IPS[$i]}"
        node="${LSB_NODES[$i]}"
        line="$(tb_ssh_hostspec "$ip") $(cut -d' ' -f1,2 "$TB_SSH/$node/ssh_host_ed25519_key.pub")"
        plain+="$line"$'\n'
    done
    # Regenerate only when a host key or the port changed (hashing salts differ on every run).
    if [ -s "$LSB_TESTBED/known_hosts" ] && [ "$(cat "$TB_SSH/known_hosts.plain" 2>/dev/null)" = "${plain%$'\n'}" ]; then
        return 0
    fi
    printf '%s' "$plain" >"$TB_SSH/known_hosts.plain"
    # node1, node2 plain; node3 (127.0.0.4) hashed, to exercise `|1|salt|hash` lines.
    local tmp
    tmp="$(mktemp -d)"
    printf '%s' "$plain" | sed -n 3p >"$tmp/kh"
    ssh-keygen -q -H -f "$tmp/kh" >/dev/null 2>&1
    {
        printf '# lsbackup test bed hosts (node3 is hashed)\n'
        printf '%s' "$plain" | sed -n 1,2p
        cat "$tmp/kh"
    } >"$LSB_TESTBED/known_hosts.tmp"
    rm -rf "$tmp"
    chmod 0644 "$LSB_TESTBED/known_hosts.tmp"
    mv -f "$LSB_TESTBED/known_hosts.tmp" "$LSB_TESTBED/known_hosts"
}

tb_ssh_config() {
    local node="$1" ip="$2" dir="$TB_SSH/$1"
    install -d -m 0755 "$dir"
    if [ ! -s "$dir/ssh_host_ed25519_key" ]; then
        rm -f "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "$node" -f "$dir/ssh_host_ed25519_key"
    fi
    chmod 0600 "$dir/ssh_host_ed25519_key"
    TB_CHANGED=""
    tb_write_if_changed "$dir/sshd_config" 0644 <<EOF
# lsbackup test bed: $node ($ip)
ListenAddress $ip:$LSB_SSH_PORT
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $TB_SSH/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# the state dir may live under /tmp (world-writable parent)
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 50
EOF
    local err
    err="$(/usr/sbin/sshd -t -f "$dir/sshd_config" 2>&1)" || tb_die "sshd config for $node is invalid: $err"
    # a running sshd keeps its old config (port, paths): restart it
    if [ -n "$TB_CHANGED" ] && tb_pid "sshd-$node" >/dev/null; then
        tb_log "sshd config of $node changed, restarting it"
        tb_stop "sshd-$node"
    fi
}

# tb_ssh_probe USER IP CMD...: run CMD on IP as USER with the test client key and known_hosts
tb_ssh_probe() {
    local user="$1" ip="$2"
    shift 2
    ssh -n -i "$LSB_TESTBED/client_key" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o UserKnownHostsFile="$LSB_TESTBED/known_hosts" -o StrictHostKeyChecking=yes \
        -o ConnectTimeout=3 -p "$LSB_SSH_PORT" "$user@$ip" "$@"
}

tb_up_ssh() {
    tb_ssh_user
    tb_ssh_keys
    install -d -m 0755 /run/sshd
    local i node ip pid
    for i in 0 1 2; do
        tb_ssh_config "${LSB_NODES[$i]}" "${LSB_HOST_IPS[$i]}"
    done
    tb_ssh_known_hosts
    for i in 0 1 2; do
        node="${LSB_NODES[$i]}"
        ip="${LSB_HOST_IPS[$i]}"
        if ! pid="$(tb_pid "sshd-$node")"; then
            # an sshd of ours whose pid file in pids/ was lost: adopt it
            pid="$(cat "$TB_SSH/$node/sshd.pid" 2>/dev/null || true)"
            if [[ "$pid" =~ ^[0-9]+$ ]] && tb_alive "$pid" && [ "$(readlink "/proc/$pid/exe")" = /usr/sbin/sshd ]; then
                tb_record_pid "sshd-$node" "$pid"
                continue
            fi
            # -E: log to file; sshd daemonizes and writes its PidFile
            rm -f "$TB_SSH/$node/sshd.pid"
            /usr/sbin/sshd -f "$TB_SSH/$node/sshd_config" -E "$TB_LOGS/sshd-$node.log" 9>&- ||
                tb_die "sshd for $node ($ip:$LSB_SSH_PORT) failed to start: $(tail -n3 "$TB_LOGS/sshd-$node.log")"
            tb_wait "sshd $node pid file" 10 test -s "$TB_SSH/$node/sshd.pid"
            pid="$(cat "$TB_SSH/$node/sshd.pid")"
            tb_record_pid "sshd-$node" "$pid"
        fi
    done
    # the three hosts are probed in parallel: login as operations with sudo, and as root
    local probes=()
    for i in 0 1 2; do
        ip="${LSB_HOST_IPS[$i]}"
        (
            tb_wait "sshd ${LSB_NODES[$i]} ($ip:$LSB_SSH_PORT) login as $LSB_SSH_USER with sudo -n" 15 \
                tb_ssh_probe "$LSB_SSH_USER" "$ip" sudo -n true
            tb_wait "sshd ${LSB_NODES[$i]} ($ip:$LSB_SSH_PORT) login as root" 5 tb_ssh_probe root "$ip" true
        ) &
        probes+=($!)
    done
    for i in 0 1 2; do
        wait "${probes[$i]}" || exit 1
    done
    for i in 0 1 2; do
        tb_ready "sshd-${LSB_NODES[$i]}" "${LSB_HOST_IPS[$i]}:$LSB_SSH_PORT pid $(tb_pid "sshd-${LSB_NODES[$i]}")"
    done

    tb_env_set LSB_SSH_PORT "$LSB_SSH_PORT"
    tb_env_set LSB_SSH_USER "$LSB_SSH_USER"
    tb_env_set LSB_HOSTS "$(
        IFS=,
        echo "${LSB_HOST_IPS[*]}"
    )"
    tb_env_set LSB_NODES "$(
        IFS=,
        echo "${LSB_NODES[*]}"
    )"
    tb_env_set LSB_CLIENT_KEY "$LSB_TESTBED/client_key"
    tb_env_set LSB_OTHER_KEY "$LSB_TESTBED/other_key"
    tb_env_set LSB_KNOWN_HOSTS "$LSB_TESTBED/known_hosts"
    tb_env_set LSB_BUILD_DIR "$LSB_TESTBED/build"
    tb_env_set LSB_INVENTORY "$LSB_TESTBED/build/inventory"
}

# LambdaStack-style INI inventory of the test bed.
tb_write_inventory() {
    install -d -m 0755 "$LSB_TESTBED/build"
    local n1="node1 ansible_host=${LSB_HOST_IPS[0]}"
    local n2="node2 ansible_host=${LSB_HOST_IPS[1]}"
    local n3="node3 ansible_host=${LSB_HOST_IPS[2]}"
    cat >"$LSB_TESTBED/build/inventory.tmp" <<EOF
# lsbackup test bed inventory (generated by tests/testbed/up.sh)
[postgresql]
$n1

[kubernetes_master]
$n2

[haproxy]
$n3

[zookeeper]
$n1

[kafka]
$n2

[prometheus]
$n3

[grafana]
$n3

[rabbitmq]
$n1

[logging]
$n2

[kibana]
$n3

# The test bed's Kibana (like LambdaStack's) serves plain http: lsbackup sends its credentials
# there only when allowed explicitly (docs/components/kibana.md).
[kibana:vars]
kibana_allow_insecure=true

[all:vars]
ansible_user=$LSB_SSH_USER
ansible_port=$LSB_SSH_PORT
ansible_become=true
ansible_ssh_private_key_file=$LSB_TESTBED/client_key
ansible_ssh_common_args='-o UserKnownHostsFile=$LSB_TESTBED/known_hosts'
EOF
    mv -f "$LSB_TESTBED/build/inventory.tmp" "$LSB_TESTBED/build/inventory"
}
