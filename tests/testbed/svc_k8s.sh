# shellcheck shell=bash
# A kubeadm-like control-plane layout (no Kubernetes itself: Debian does not package it):
#   /etc/kubernetes/pki/{ca,apiserver,apiserver-kubelet-client,apiserver-etcd-client,front-proxy-ca,
#                        front-proxy-client}.{crt,key}, sa.{key,pub}
#   /etc/kubernetes/pki/etcd/{ca,server,peer,healthcheck-client}.{crt,key}
#   /etc/kubernetes/{admin,controller-manager,scheduler,kubelet}.conf, /etc/kubernetes/manifests/*.yaml
#   /etc/kubeadm/kubeadm-config.yml (ClusterConfiguration as LambdaStack writes it)
# and a real etcd 3.4 (Debian etcd-server) serving https://127.0.0.1:2379 with client-cert auth,
# data dir /var/lib/etcd, holding a few /registry/... keys.
# Sourced by up.sh (needs lib.sh).

TB_K8S=/etc/kubernetes
TB_PKI=$TB_K8S/pki
TB_ETCD_PKI=$TB_PKI/etcd
TB_ETCD_DATA=/var/lib/etcd
TB_ETCD_ENDPOINT=https://127.0.0.1:2379
TB_K8S_VERSION=v1.24.7

# tb_ca DIR NAME CN: self-signed CA DIR/NAME.{crt,key} (10 years), unless present
tb_ca() {
    local dir="$1" name="$2" cn="$3"
    [ -s "$dir/$name.crt" ] && [ -s "$dir/$name.key" ] && return 0
    install -d -m 0755 "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
        -keyout "$dir/$name.key" -out "$dir/$name.crt" >>"$TB_LOGS/pki.log" 2>&1 ||
        tb_die "openssl: cannot create CA $dir/$name (see $TB_LOGS/pki.log)"
    chmod 0600 "$dir/$name.key"
}

# tb_leaf DIR NAME CA_DIR CA_NAME SUBJECT EKU [SAN]: leaf cert signed by the CA, unless present
tb_leaf() {
    local dir="$1" name="$2" cadir="$3" ca="$4" subj="$5" eku="$6" san="${7:-}"
    [ -s "$dir/$name.crt" ] && [ -s "$dir/$name.key" ] && return 0
    local ext
    ext="$(mktemp)"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } >"$ext"
    # shellcheck disable=SC2015 # die when either step fails
    openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "$subj" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" >>"$TB_LOGS/pki.log" 2>&1 &&
        openssl x509 -req -in "$dir/$name.csr" -CA "$cadir/$ca.crt" -CAkey "$cadir/$ca.key" \
            -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$dir/$name.crt" >>"$TB_LOGS/pki.log" 2>&1 ||
        tb_die "openssl: cannot create certificate $dir/$name (see $TB_LOGS/pki.log)"
    rm -f "$dir/$name.csr" "$ext" "$cadir/$ca.srl"
    chmod 0600 "$dir/$name.key"
}

tb_k8s_pki() {
    local node_ips="IP:${LSB_HOST_IPS[0]},IP:${LSB_HOST_IPS[1]},IP:${LSB_HOST_IPS[2]}"
    tb_ca "$TB_PKI" ca kubernetes
    tb_ca "$TB_PKI" front-proxy-ca front-proxy-ca
    tb_ca "$TB_ETCD_PKI" ca etcd-ca
    tb_leaf "$TB_PKI" apiserver "$TB_PKI" ca "/CN=kube-apiserver" serverAuth \
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:node2,DNS:localhost,IP:10.96.0.1,IP:127.0.0.1,$node_ips"
    tb_leaf "$TB_PKI" apiserver-kubelet-client "$TB_PKI" ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    tb_leaf "$TB_PKI" apiserver-etcd-client "$TB_ETCD_PKI" ca "/O=system:masters/CN=kube-apiserver-etcd-client" clientAuth
    tb_leaf "$TB_PKI" front-proxy-client "$TB_PKI" front-proxy-ca "/CN=front-proxy-client" clientAuth
    tb_leaf "$TB_ETCD_PKI" server "$TB_ETCD_PKI" ca "/CN=node2" serverAuth,clientAuth \
        "DNS:node2,DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1,$node_ips"
    tb_leaf "$TB_ETCD_PKI" peer "$TB_ETCD_PKI" ca "/CN=node2" serverAuth,clientAuth \
        "DNS:node2,DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1,$node_ips"
    tb_leaf "$TB_ETCD_PKI" healthcheck-client "$TB_ETCD_PKI" ca "/CN=kube-etcd-healthcheck-client" clientAuth
    # kubeconfig client identities (kept out of pki/, as kubeadm embeds them in the .conf files)
    local kc="$LSB_TESTBED/k8s-clients"
    install -d -m 0700 "$kc"
    tb_leaf "$kc" admin "$TB_PKI" ca "/O=system:masters/CN=kubernetes-admin" clientAuth
    tb_leaf "$kc" controller-manager "$TB_PKI" ca "/CN=system:kube-controller-manager" clientAuth
    tb_leaf "$kc" scheduler "$TB_PKI" ca "/CN=system:kube-scheduler" clientAuth
    tb_leaf "$kc" kubelet "$TB_PKI" ca "/O=system:nodes/CN=system:node:node2" clientAuth
    if [ ! -s "$TB_PKI/sa.key" ] || [ ! -s "$TB_PKI/sa.pub" ]; then
        # shellcheck disable=SC2015
        openssl genrsa -out "$TB_PKI/sa.key" 2048 >>"$TB_LOGS/pki.log" 2>&1 &&
            openssl rsa -in "$TB_PKI/sa.key" -pubout -out "$TB_PKI/sa.pub" >>"$TB_LOGS/pki.log" 2>&1 ||
            tb_die "openssl: cannot create $TB_PKI/sa.key (see $TB_LOGS/pki.log)"
        chmod 0600 "$TB_PKI/sa.key"
    fi
}

# tb_kubeconfig FILE USER CLIENT_NAME
tb_kubeconfig() {
    local file="$1" user="$2" kc="$LSB_TESTBED/k8s-clients/$3"
    local tmp="$file.tmp"
    cat >"$tmp" <<EOF
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 <"$TB_PKI/ca.crt")
    server: https://${LSB_HOST_IPS[1]}:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: $user
  name: $user@kubernetes
current-context: $user@kubernetes
kind: Config
preferences: {}
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$kc.crt")
    client-key-data: $(base64 -w0 <"$kc.key")
EOF
    chmod 0600 "$tmp"
    if cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv -f "$tmp" "$file"; fi
}

tb_k8s_files() {
    install -d -m 0755 "$TB_K8S" "$TB_K8S/manifests" /etc/kubeadm
    tb_kubeconfig "$TB_K8S/admin.conf" kubernetes-admin admin
    tb_kubeconfig "$TB_K8S/controller-manager.conf" system:kube-controller-manager controller-manager
    tb_kubeconfig "$TB_K8S/scheduler.conf" system:kube-scheduler scheduler
    tb_kubeconfig "$TB_K8S/kubelet.conf" system:node:node2 kubelet

    tb_write_if_changed /etc/kubeadm/kubeadm-config.yml 0644 <<EOF
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: $TB_K8S_VERSION
clusterName: lsbackup-testbed
controlPlaneEndpoint: ${LSB_HOST_IPS[1]}:6443
certificatesDir: $TB_PKI
imageRepository: registry.k8s.io
networking:
  dnsDomain: cluster.local
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
etcd:
  local:
    dataDir: $TB_ETCD_DATA
    imageRepository: registry.k8s.io
    imageTag: 3.5.4-0
apiServer:
  certSANs:
  - localhost
  - 127.0.0.1
  - ${LSB_HOST_IPS[1]}
  extraArgs:
    audit-log-maxbackup: "10"
    audit-log-maxsize: "200"
    audit-log-path: /var/log/apiserver/audit.log
    audit-policy-file: /etc/kubernetes/audit-policy/policy.yml
    encryption-provider-config: /etc/kubernetes/encryption-provider-config.yml
    profiling: "false"
  timeoutForControlPlane: 4m0s
controllerManager:
  extraArgs:
    profiling: "false"
    terminated-pod-gc-threshold: "200"
scheduler:
  extraArgs:
    profiling: "false"
dns: {}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: ${LSB_HOST_IPS[1]}
  bindPort: 6443
nodeRegistration:
  name: node2
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
    node-labels: node-type=lambdastack
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
EOF

    tb_write_if_changed "$TB_K8S/manifests/etcd.yaml" 0600 <<EOF
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://${LSB_HOST_IPS[1]}:2379
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://${LSB_HOST_IPS[1]}:2379
    - --cert-file=$TB_ETCD_PKI/server.crt
    - --client-cert-auth=true
    - --data-dir=$TB_ETCD_DATA
    - --initial-advertise-peer-urls=https://127.0.0.1:2380
    - --initial-cluster=node2=https://127.0.0.1:2380
    - --key-file=$TB_ETCD_PKI/server.key
    - --listen-client-urls=https://127.0.0.1:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=https://127.0.0.1:2380
    - --name=node2
    - --peer-cert-file=$TB_ETCD_PKI/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=$TB_ETCD_PKI/peer.key
    - --peer-trusted-ca-file=$TB_ETCD_PKI/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=$TB_ETCD_PKI/ca.crt
    image: registry.k8s.io/etcd:3.5.4-0
    name: etcd
    volumeMounts:
    - mountPath: $TB_ETCD_DATA
      name: etcd-data
    - mountPath: $TB_ETCD_PKI
      name: etcd-certs
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: $TB_ETCD_PKI
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: $TB_ETCD_DATA
      type: DirectoryOrCreate
    name: etcd-data
EOF
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
        tb_write_if_changed "$TB_K8S/manifests/$c.yaml" 0600 <<EOF
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: $c
    tier: control-plane
  name: $c
  namespace: kube-system
spec:
  containers:
  - command:
    - $c
    image: registry.k8s.io/$c:$TB_K8S_VERSION
    name: $c
  hostNetwork: true
  priorityClassName: system-node-critical
EOF
    done
}

tb_etcdctl() {
    ETCDCTL_API=3 etcdctl --endpoints="$TB_ETCD_ENDPOINT" --cacert="$TB_ETCD_PKI/ca.crt" \
        --cert="$TB_ETCD_PKI/healthcheck-client.crt" --key="$TB_ETCD_PKI/healthcheck-client.key" \
        --dial-timeout=2s --command-timeout=5s "$@"
}

tb_up_etcd() {
    tb_k8s_pki
    tb_k8s_files
    install -d -m 0700 "$TB_ETCD_DATA"
    local log="$TB_LOGS/etcd.log"
    if ! tb_pid etcd >/dev/null; then
        tb_spawn etcd "$log" /usr/bin/etcd \
            --name=node2 \
            --data-dir="$TB_ETCD_DATA" \
            --listen-client-urls="$TB_ETCD_ENDPOINT" \
            --advertise-client-urls="$TB_ETCD_ENDPOINT" \
            --listen-peer-urls=https://127.0.0.1:2380 \
            --initial-advertise-peer-urls=https://127.0.0.1:2380 \
            --initial-cluster=node2=https://127.0.0.1:2380 \
            --initial-cluster-state=new \
            --listen-metrics-urls=http://127.0.0.1:2381 \
            --cert-file="$TB_ETCD_PKI/server.crt" --key-file="$TB_ETCD_PKI/server.key" \
            --client-cert-auth=true --trusted-ca-file="$TB_ETCD_PKI/ca.crt" \
            --peer-cert-file="$TB_ETCD_PKI/peer.crt" --peer-key-file="$TB_ETCD_PKI/peer.key" \
            --peer-client-cert-auth=true --peer-trusted-ca-file="$TB_ETCD_PKI/ca.crt" \
            --snapshot-count=10000
    fi
    tb_wait_svc etcd "$log" 30 tb_etcdctl endpoint health
    # keys shaped like what the API server stores (values are plain text here, not protobuf)
    local k
    {
        tb_etcdctl put /registry/namespaces/default '{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default"}}'
        tb_etcdctl put /registry/namespaces/kube-system '{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"kube-system"}}'
        tb_etcdctl put /registry/configmaps/kube-system/kubeadm-config "$(cat /etc/kubeadm/kubeadm-config.yml)"
        for k in $(seq 1 20); do
            tb_etcdctl put "/registry/lsbackup-testbed/key-$k" "value-$k"
        done
    } >/dev/null || tb_die "etcdctl put failed against $TB_ETCD_ENDPOINT"
    tb_ready etcd "$TB_ETCD_ENDPOINT (client-cert auth, pki $TB_ETCD_PKI), data $TB_ETCD_DATA, pid $(tb_pid etcd)"
    tb_env_set LSB_ETCD_ENDPOINT "$TB_ETCD_ENDPOINT"
    tb_env_set LSB_ETCD_DATA_DIR "$TB_ETCD_DATA"
    tb_env_set LSB_ETCD_CACERT "$TB_ETCD_PKI/ca.crt"
    tb_env_set LSB_ETCD_CERT "$TB_ETCD_PKI/healthcheck-client.crt"
    tb_env_set LSB_ETCD_KEY "$TB_ETCD_PKI/healthcheck-client.key"
    tb_env_set LSB_ETCD_KEY_PREFIX /registry/lsbackup-testbed/
    tb_env_set LSB_ETCD_KEY_COUNT 20
    tb_env_set LSB_K8S_PKI "$TB_PKI"
    tb_env_set LSB_KUBEADM_CONFIG /etc/kubeadm/kubeadm-config.yml
}
