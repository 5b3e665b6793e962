#!/usr/bin/python3
"""STAND-IN kube-apiserver for the lsbackup test bed (not Kubernetes).

Debian packages kubectl (kubernetes-client) but no kube-apiserver, so the test bed runs this small
HTTPS server in its place. It serves exactly what the lsbackup `kubernetes` and
`kubernetes_volumes` components ask kubectl for, with the shapes a real v1.24 API server returns:

  GET /version, /api, /apis, /api/v1, /apis/<group>/<version>     discovery (APIVersions,
                                                                   APIGroupList, APIResourceList)
  GET /api/v1/<resource>, /api/v1/namespaces/<ns>/<resource>       lists (kind <Kind>List)
  GET /apis/<g>/<v>/..., and .../<resource>/<name>                 the same for groups, single objects
  query: fieldSelector (a=b, a==b, a!=b on dotted paths), labelSelector (a=b), limit and continue
  (paged lists as the real server pages them: items in key order, namespace then name;
  metadata.continue is an opaque token, metadata.remainingItemCount what is left; a token from
  before the data changed answers 410 Expired, a malformed one 400)

Test bed administration (not Kubernetes; same client certificate; for bench/k8s_api.sh):

  POST   /lsbackup-testbed/fixture  {"namespaces": N, "objects": M}   adds N namespaces bench-000...
                                    holding M objects of common types (the default data stays)
  DELETE /lsbackup-testbed/fixture                                    back to the default data
  GET    /lsbackup-testbed/stats    {"requests": n, "lists": n, "objects": n}: requests served since
                                    the last fixture change (or start), lists among them, objects held

Clients must present a certificate signed by the cluster CA (as admin.conf does); the server uses
the kubeadm apiserver certificate. No writes, watches, exec or Table output: kubectl is only used
with -o yaml/json/jsonpath/go-template/name here. The objects (namespaces, deployments, services,
configmaps incl. kube-system/kubeadm-config, secrets, PVs and PVCs, pods, nodes, RBAC, a custom
resource, events) are built at start from the command-line options.

With --degraded, the server serves the same cluster in a degraded state, for the "API partly
down" tests (the test bed runs a second instance on port 6444 for them): the aggregated API metrics.k8s.io/v1beta1 is in /apis but its discovery
answers 503 (as the aggregator does when metrics-server is down), and listing the custom resource
widgets.lsbackup.example.com fails with 500 (as with a broken conversion webhook).

    kube_apiserver.py --bind 127.0.0.3 --port 6443 --cert apiserver.crt --key apiserver.key \
        --client-ca ca.crt --kubeadm-config /etc/kubeadm/kubeadm-config.yml \
        --local-pv-dir DIR --hostpath-pv-dir DIR --hostpath-unused-dir DIR [--log FILE] \
        [--degraded] [--worker-pv-dir DIR --hostile-pv-dir DIR]

With --worker-pv-dir (the test bed's third instance, port 6445), the cluster also has a kubeadm
worker k8s-worker-4 (InternalIP 127.0.0.5, the test bed's node4) with a local PV there and a
hostPath PV at --hostile-pv-dir used by its pod, and a node9 (no inventory host) with a local PV:
for the kubernetes_volumes tests of node mapping and literal paths. Without it, nothing changes.
"""

import argparse
import base64
import copy
import json
import random
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GIT_VERSION = "v1.24.7"


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------------------------
# API resources: (group, version, plural, singular, kind, namespaced, verbs, shortNames)
LIST_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
RESOURCES = [
    ("", "v1", "bindings", "", "Binding", True, ["create"], []),
    ("", "v1", "configmaps", "", "ConfigMap", True, LIST_VERBS, ["cm"]),
    ("", "v1", "endpoints", "", "Endpoints", True, LIST_VERBS, ["ep"]),
    ("", "v1", "events", "", "Event", True, LIST_VERBS, ["ev"]),
    ("", "v1", "namespaces", "", "Namespace", False, ["create", "delete", "get", "list", "patch", "update", "watch"], ["ns"]),
    ("", "v1", "nodes", "", "Node", False, LIST_VERBS, ["no"]),
    ("", "v1", "persistentvolumeclaims", "", "PersistentVolumeClaim", True, LIST_VERBS, ["pvc"]),
    ("", "v1", "persistentvolumes", "", "PersistentVolume", False, LIST_VERBS, ["pv"]),
    ("", "v1", "pods", "", "Pod", True, LIST_VERBS, ["po"]),
    ("", "v1", "secrets", "", "Secret", True, LIST_VERBS, []),
    ("", "v1", "serviceaccounts", "", "ServiceAccount", True, LIST_VERBS, ["sa"]),
    ("", "v1", "services", "", "Service", True, ["create", "delete", "get", "list", "patch", "update", "watch"], ["svc"]),
    ("apps", "v1", "daemonsets", "", "DaemonSet", True, LIST_VERBS, ["ds"]),
    ("apps", "v1", "deployments", "", "Deployment", True, LIST_VERBS, ["deploy"]),
    ("apps", "v1", "replicasets", "", "ReplicaSet", True, LIST_VERBS, ["rs"]),
    ("apps", "v1", "statefulsets", "", "StatefulSet", True, LIST_VERBS, ["sts"]),
    ("authentication.k8s.io", "v1", "tokenreviews", "", "TokenReview", False, ["create"], []),
    ("events.k8s.io", "v1", "events", "", "Event", True, LIST_VERBS, ["ev"]),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "", "ClusterRoleBinding", False, LIST_VERBS, []),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "", "ClusterRole", False, LIST_VERBS, []),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "", "RoleBinding", True, LIST_VERBS, []),
    ("rbac.authorization.k8s.io", "v1", "roles", "", "Role", True, LIST_VERBS, []),
    ("storage.k8s.io", "v1", "storageclasses", "", "StorageClass", False, LIST_VERBS, ["sc"]),
    ("lsbackup.example.com", "v1", "widgets", "widget", "Widget", True, LIST_VERBS, ["wd"]),
]
# subresources appear in discovery (kubectl api-resources leaves them out)
SUBRESOURCES = [
    ("", "v1", "pods/log", "Pod", True, ["get"]),
    ("", "v1", "pods/exec", "PodExecOptions", True, ["create", "get"]),
    ("apps", "v1", "deployments/scale", "Scale", True, ["get", "patch", "update"]),
]


def group_versions():
    """Ordered {group: [versions]} (legacy core group first, as in discovery)."""
    out = {}
    for g, v, *_ in RESOURCES:
        out.setdefault(g, [])
        if v not in out[g]:
            out[g].append(v)
    return out


def api_version(group, version):
    return version if group == "" else f"{group}/{version}"


def resource_info(group, version, plural):
    for r in RESOURCES:
        if r[0] == group and r[1] == version and r[2] == plural:
            return r
    return None


# ---------------------------------------------------------------------------------------------
# Objects

class Store:
    def __init__(self, opts):
        self.lock = threading.Lock()
        self.rv = 1000
        self.objects = {}  # (group, plural) -> list of objects
        self._build(opts)
        self.base = copy.deepcopy(self.objects)  # the default data (what the tests see)
        self.requests = 0
        self.lists = 0

    def _meta(self, name, namespace=None, labels=None, annotations=None):
        self.rv += 1
        m = {
            "name": name,
            "uid": f"00000000-0000-4000-8000-{self.rv:012d}",
            "resourceVersion": str(self.rv),
            "creationTimestamp": "2024-05-01T10:00:00Z",
        }
        if namespace is not None:
            m["namespace"] = namespace
        if labels:
            m["labels"] = labels
        if annotations:
            m["annotations"] = annotations
        return m

    def add(self, group, version, plural, name, namespace=None, labels=None, annotations=None, **body):
        info = resource_info(group, version, plural)
        assert info is not None, plural
        obj = {"apiVersion": api_version(group, version), "kind": info[4],
               "metadata": self._meta(name, namespace if info[5] else None, labels, annotations)}
        obj.update(body)
        self.objects.setdefault((group, plural), []).append(obj)
        return obj

    def _build(self, o):
        with open(o.kubeadm_config) as f:
            kubeadm_docs = f.read().split("\n---\n")
        cluster_config = next((d for d in kubeadm_docs if "kind: ClusterConfiguration" in d), kubeadm_docs[0])

        for ns in ["default", "kube-system", "kube-public", "kube-node-lease", "shop", "monitoring"]:
            self.add("", "v1", "namespaces", ns, labels={"kubernetes.io/metadata.name": ns},
                     spec={"finalizers": ["kubernetes"]}, status={"phase": "Active"})
        for i, node in enumerate(["node1", "node2", "node3"]):
            labels = {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux",
                      "beta.kubernetes.io/arch": "amd64", "kubernetes.io/arch": "amd64"}
            if node == "node2":
                labels["node-role.kubernetes.io/control-plane"] = ""
            self.add("", "v1", "nodes", node, labels=labels,
                     spec={"podCIDR": f"10.244.{i}.0/24", "podCIDRs": [f"10.244.{i}.0/24"]},
                     status={"addresses": [{"type": "InternalIP", "address": f"127.0.0.{i + 2}"},
                                           {"type": "Hostname", "address": node}],
                             "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                             "nodeInfo": {"kubeletVersion": GIT_VERSION, "containerRuntimeVersion": "containerd://1.6.8",
                                          "osImage": "Debian GNU/Linux 12 (bookworm)"}})

        # kube-system: kubeadm's ConfigMaps, control-plane static pods, a bootstrap token secret
        self.add("", "v1", "configmaps", "kubeadm-config", "kube-system",
                 data={"ClusterConfiguration": cluster_config.strip() + "\n"})
        self.add("", "v1", "configmaps", "kubelet-config", "kube-system",
                 annotations={"kubeadm.kubernetes.io/component-config.hash": "sha256:1f2e3d"},
                 data={"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"})
        self.add("", "v1", "configmaps", "kube-proxy", "kube-system", labels={"app": "kube-proxy"},
                 data={"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n"})
        self.add("", "v1", "configmaps", "kube-root-ca.crt", "default", data={"ca.crt": "-----BEGIN CERTIFICATE-----\n...\n"})
        self.add("", "v1", "secrets", "bootstrap-token-abcdef", "kube-system", type="bootstrap.kubernetes.io/token",
                 data={"token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
                       "usage-bootstrap-authentication": b64("true")})
        for comp, image in [("etcd", "registry.k8s.io/etcd:3.5.4-0"),
                            ("kube-apiserver", f"registry.k8s.io/kube-apiserver:{GIT_VERSION}"),
                            ("kube-controller-manager", f"registry.k8s.io/kube-controller-manager:{GIT_VERSION}"),
                            ("kube-scheduler", f"registry.k8s.io/kube-scheduler:{GIT_VERSION}")]:
            self.add("", "v1", "pods", f"{comp}-node2", "kube-system",
                     labels={"component": comp, "tier": "control-plane"},
                     annotations={"kubernetes.io/config.source": "file"},
                     spec={"nodeName": "node2", "hostNetwork": True, "priorityClassName": "system-node-critical",
                           "containers": [{"name": comp, "image": image, "command": [comp]}]},
                     status={"phase": "Running", "hostIP": "127.0.0.3", "podIP": "127.0.0.3"})
        self.add("", "v1", "serviceaccounts", "default", "default")
        self.add("", "v1", "serviceaccounts", "default", "shop")
        self.add("", "v1", "serviceaccounts", "coredns", "kube-system")
        self.add("", "v1", "services", "kubernetes", "default", labels={"component": "apiserver", "provider": "kubernetes"},
                 spec={"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                       "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]})
        self.add("", "v1", "endpoints", "kubernetes", "default",
                 subsets=[{"addresses": [{"ip": "127.0.0.3"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])

        # the application: shop (web deployment using a hostPath PV, db statefulset on a local PV,
        # a cache on a CSI volume, reports on NFS)
        app = {"app.kubernetes.io/name": "shop"}
        self.add("apps", "v1", "deployments", "web", "shop", labels=dict(app, component="web"),
                 spec={"replicas": 2, "selector": {"matchLabels": {"component": "web"}},
                       "template": {"metadata": {"labels": {"component": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                                             "ports": [{"containerPort": 80}],
                                                             "volumeMounts": [{"name": "uploads", "mountPath": "/srv/uploads"}]}],
                                             "volumes": [{"name": "uploads", "persistentVolumeClaim": {"claimName": "uploads"}}]}}},
                 status={"replicas": 2, "readyReplicas": 2, "availableReplicas": 2})
        self.add("apps", "v1", "replicasets", "web-6d4cf56db6", "shop", labels={"component": "web", "pod-template-hash": "6d4cf56db6"},
                 spec={"replicas": 2, "selector": {"matchLabels": {"component": "web"}}}, status={"replicas": 2})
        self.add("apps", "v1", "statefulsets", "db", "shop", labels=dict(app, component="db"),
                 spec={"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"component": "db"}},
                       "template": {"metadata": {"labels": {"component": "db"}},
                                    "spec": {"containers": [{"name": "db", "image": "postgres:15"}]}},
                       "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                 "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-storage",
                                                          "resources": {"requests": {"storage": "1Gi"}}}}]},
                 status={"replicas": 1, "readyReplicas": 1})
        self.add("apps", "v1", "deployments", "prometheus", "monitoring", labels={"app": "prometheus"},
                 spec={"replicas": 1, "selector": {"matchLabels": {"app": "prometheus"}},
                       "template": {"metadata": {"labels": {"app": "prometheus"}},
                                    "spec": {"containers": [{"name": "prometheus", "image": "prom/prometheus:v2.42.0"}]}}})
        self.add("apps", "v1", "daemonsets", "kube-proxy", "kube-system", labels={"k8s-app": "kube-proxy"},
                 spec={"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                       "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                                    "spec": {"containers": [{"name": "kube-proxy", "image": f"registry.k8s.io/kube-proxy:{GIT_VERSION}"}]}}})
        for name, port in [("web", 80), ("db", 5432)]:
            self.add("", "v1", "services", name, "shop", labels=app,
                     spec={"type": "ClusterIP", "selector": {"component": name},
                           "ports": [{"port": port, "protocol": "TCP", "targetPort": port}]})
        self.add("", "v1", "configmaps", "shop-settings", "shop", labels=app,
                 data={"currency": "EUR", "checkout.yaml": "payment: card\nretries: 3\n"})
        self.add("", "v1", "secrets", "shop-db-credentials", "shop", type="Opaque", labels=app,
                 data={"username": b64("shop"), "password": b64("s3cr3t-shop-password")})
        self.add("lsbackup.example.com", "v1", "widgets", "blue-widget", "shop", spec={"color": "blue", "size": 3})
        self.add("rbac.authorization.k8s.io", "v1", "roles", "shop-reader", "shop",
                 rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])
        self.add("rbac.authorization.k8s.io", "v1", "rolebindings", "shop-reader", "shop",
                 roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "shop-reader"},
                 subjects=[{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}])
        self.add("rbac.authorization.k8s.io", "v1", "clusterroles", "shop-admin",
                 rules=[{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
        self.add("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "kubeadm:cluster-admins",
                 roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                 subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins"}])
        self.add("storage.k8s.io", "v1", "storageclasses", "local-storage", provisioner="kubernetes.io/no-provisioner",
                 volumeBindingMode="WaitForFirstConsumer", reclaimPolicy="Retain")
        self.add("storage.k8s.io", "v1", "storageclasses", "ebs-sc", provisioner="ebs.csi.aws.com",
                 volumeBindingMode="WaitForFirstConsumer", reclaimPolicy="Delete")
        ev = {"involvedObject": {"kind": "Pod", "namespace": "shop", "name": "db-0"}, "reason": "Scheduled",
              "message": "Successfully assigned shop/db-0 to node3", "type": "Normal"}
        self.add("", "v1", "events", "db-0.17a1b2c3d4e5f607", "shop", **ev)
        self.add("events.k8s.io", "v1", "events", "db-0.17a1b2c3d4e5f607", "shop",
                 regarding=ev["involvedObject"], reason="Scheduled", note=ev["message"], type="Normal")

        # persistent volumes and their claims
        def pv(name, source, claim, sc, extra=None):
            spec = {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                    "persistentVolumeReclaimPolicy": "Retain", "storageClassName": sc, "volumeMode": "Filesystem"}
            spec.update(source)
            if extra:
                spec.update(extra)
            if claim:
                ns, cname = claim
                spec["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": cname}
                self.add("", "v1", "persistentvolumeclaims", cname, ns,
                         spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                               "storageClassName": sc, "volumeMode": "Filesystem", "volumeName": name},
                         status={"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}})
            self.add("", "v1", "persistentvolumes", name, spec=spec,
                     status={"phase": "Bound" if claim else "Available"})

        node3_affinity = {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node3"]}]}]}}}
        pv("pv-local-db", {"local": {"path": o.local_pv_dir}}, ("shop", "data-db-0"), "local-storage", node3_affinity)
        pv("pv-hostpath-uploads", {"hostPath": {"path": o.hostpath_pv_dir, "type": "DirectoryOrCreate"}},
           ("shop", "uploads"), "")
        pv("pv-hostpath-unused", {"hostPath": {"path": o.hostpath_unused_dir, "type": ""}}, None, "")
        pv("pvc-3f1c2a9e-cache", {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0a1b2c3d4e5f67890",
                                          "fsType": "ext4"}}, ("shop", "cache"), "ebs-sc")
        pv("pv-nfs-reports", {"nfs": {"server": "10.0.0.9", "path": "/exports/reports"}}, ("shop", "reports"), "")

        # pods of the application, with the nodes they run on
        self.hostip = {"node1": "127.0.0.2", "node2": "127.0.0.3", "node3": "127.0.0.4"}
        def pod(name, node, claims, labels):
            self.add("", "v1", "pods", name, "shop", labels=labels,
                     spec={"nodeName": node,
                           "containers": [{"name": labels["component"], "image": "nginx:1.25"}],
                           "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]},
                     status={"phase": "Running", "hostIP": self.hostip[node]})
        pod("web-6d4cf56db6-x7k2p", "node1", ["uploads"], {"component": "web", "pod-template-hash": "6d4cf56db6"})
        pod("db-0", "node3", ["data-db-0"], {"component": "db", "statefulset.kubernetes.io/pod-name": "db-0"})
        pod("cache-7f9b8c6d5-q2w3e", "node3", ["cache"], {"component": "cache"})
        pod("reports-5c6d7e8f9-a1s2d", "node1", ["reports"], {"component": "reports"})

        if o.worker_pv_dir:
            self._workers(o, pv, pod)

    def _workers(self, o, pv, pod):
        """--worker-pv-dir/--hostile-pv-dir: a kubeadm worker whose Node name is not its inventory
        name (k8s-worker-4, InternalIP 127.0.0.5: the test bed's node4, found by address), a node
        that is no inventory host (node9), and their volumes."""
        for i, (node, ip) in enumerate([("k8s-worker-4", "127.0.0.5"), ("node9", "10.0.0.99")]):
            self.add("", "v1", "nodes", node,
                     labels={"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
                     spec={"podCIDR": f"10.244.{i + 4}.0/24", "podCIDRs": [f"10.244.{i + 4}.0/24"]},
                     status={"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": node}],
                             "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                             "nodeInfo": {"kubeletVersion": GIT_VERSION, "containerRuntimeVersion": "containerd://1.6.8",
                                          "osImage": "Debian GNU/Linux 12 (bookworm)"}})

        def on(node):
            return {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
        pv("pv-worker-data", {"local": {"path": o.worker_pv_dir}}, ("shop", "worker-data"), "local-storage",
           on("k8s-worker-4"))
        pv("pv-worker-hostile", {"hostPath": {"path": o.hostile_pv_dir, "type": "Directory"}}, ("shop", "hostile"), "")
        pv("pv-node9-logs", {"local": {"path": "/var/lib/lsbackup-testbed/k8s-volumes/node9-logs"}},
           ("shop", "node9-logs"), "local-storage", on("node9"))
        self.hostip["k8s-worker-4"] = "127.0.0.5"
        self.hostip["node9"] = "10.0.0.99"
        pod("worker-0", "k8s-worker-4", ["worker-data", "hostile"], {"component": "worker"})
        pod("logger-0", "node9", ["node9-logs"], {"component": "logger"})

    def list(self, group, plural, namespace=None):
        with self.lock:
            items = self.objects.get((group, plural), [])
            if namespace is not None:
                items = [i for i in items if i["metadata"].get("namespace") == namespace]
            # objects are never changed once added (a fixture change replaces them all): no copy
            return list(items), str(self.rv)

    def count(self, is_list):
        with self.lock:
            self.requests += 1
            self.lists += 1 if is_list else 0

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "lists": self.lists,
                    "objects": sum(len(v) for v in self.objects.values()), "resourceVersion": str(self.rv)}

    def reset(self):
        """The default data again."""
        with self.lock:
            self.objects = copy.deepcopy(self.base)
            self.rv += 1
            self.requests = self.lists = 0

    def load_fixture(self, namespaces, objects):
        """The default data plus `namespaces` namespaces bench-NNN holding `objects` objects
        (ConfigMaps, Secrets, Services, ServiceAccounts, Deployments, ReplicaSets, Pods, Roles,
        RoleBindings, PVCs in turn), each about 1-2 KB of JSON as in a real cluster."""
        rnd = random.Random(8)
        with self.lock:
            self.objects = copy.deepcopy(self.base)
            for n in range(namespaces):
                ns = f"bench-{n:03d}"
                self.add("", "v1", "namespaces", ns, labels={"kubernetes.io/metadata.name": ns, "team": f"team-{n % 7}"},
                         spec={"finalizers": ["kubernetes"]}, status={"phase": "Active"})
            kinds = ["configmaps", "secrets", "services", "serviceaccounts", "deployments", "replicasets", "pods",
                     "roles", "rolebindings", "persistentvolumeclaims"]
            for i in range(objects):
                ns = f"bench-{i % max(namespaces, 1):03d}"
                kind = kinds[(i // max(namespaces, 1)) % len(kinds)]
                name = f"app-{i:05d}"
                app = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": ns, "pod-template-hash": f"{rnd.getrandbits(32):08x}"}
                ann = {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": ns}
                pod_spec = {"containers": [{"name": "app", "image": f"registry.example.com/{ns}/app:1.{i % 50}.0",
                                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                            "env": [{"name": "APP_MODE", "value": "production"},
                                                    {"name": "APP_ID", "value": name}],
                                            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                                                          "requests": {"cpu": "100m", "memory": "128Mi"}},
                                            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]}],
                            "volumes": [{"name": "config", "configMap": {"name": name}}],
                            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "serviceAccountName": "default"}
                if kind == "configmaps":
                    body = {"data": {"app.properties": "".join(f"key.{k}={rnd.getrandbits(64):016x}\n" for k in range(12)),
                                     "mode": "production"}}
                elif kind == "secrets":
                    body = {"type": "Opaque", "data": {"password": b64(f"{rnd.getrandbits(128):032x}"),
                                                       "token": b64(f"{rnd.getrandbits(256):064x}")}}
                elif kind == "services":
                    body = {"spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": name},
                                     "clusterIP": f"10.96.{i // 250 % 250}.{i % 250 + 1}",
                                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}
                elif kind == "serviceaccounts":
                    body = {"secrets": [{"name": f"{name}-token"}]}
                elif kind in ("deployments", "replicasets"):
                    body = {"spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                                     "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": pod_spec}},
                            "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}
                elif kind == "pods":
                    body = {"spec": dict(pod_spec, nodeName=f"node{i % 3 + 1}"),
                            "status": {"phase": "Running", "hostIP": f"127.0.0.{i % 3 + 2}", "podIP": f"10.244.{i % 3}.{i % 250 + 2}",
                                       "conditions": [{"type": "Ready", "status": "True"}]}}
                elif kind == "roles":
                    body = {"rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]}]}
                elif kind == "rolebindings":
                    body = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}
                else:
                    body = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                                     "storageClassName": "ebs-sc", "volumeMode": "Filesystem"},
                            "status": {"phase": "Pending"}}
                group = {"deployments": "apps", "replicasets": "apps", "roles": "rbac.authorization.k8s.io",
                         "rolebindings": "rbac.authorization.k8s.io"}.get(kind, "")
                self.add(group, "v1", kind, name, ns, labels=app, annotations=ann, **body)
            self.rv += 1
            self.requests = self.lists = 0


def continue_token(rv, key):
    """The opaque continue token of a page that ended at `key` (as the real server makes it:
    base64url of {"v","rv","start"})."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": int(rv), "start": key + "\x00"}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_continue(token):
    """(rv, start key) of a continue token; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = json.loads(raw)
        if d.get("v") != "meta.k8s.io/v1" or not isinstance(d.get("start"), str):
            raise ValueError("not a continue token")
        return str(d["rv"]), d["start"]
    except Exception as e:
        raise ValueError(f"continue key is not valid: {e}") from None


def item_key(obj):
    m = obj["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


# ---------------------------------------------------------------------------------------------
# Selectors

def field_value(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p, "")
    return cur if isinstance(cur, str) else ("" if cur == "" else json.dumps(cur))


def parse_selector(s):
    """[(path, op, value)] from 'a=b,c!=d'"""
    out = []
    for term in filter(None, (t.strip() for t in s.split(","))):
        for op in ("!=", "==", "="):
            if op in term:
                k, v = term.split(op, 1)
                out.append((k.strip(), "!=" if op == "!=" else "=", v.strip()))
                break
        else:
            raise ValueError(f"unable to parse requirement: {term}")
    return out


def matches(obj, fields, labels):
    for path, op, v in fields:
        got = field_value(obj, path)
        if (got == v) != (op == "="):
            return False
    lab = obj["metadata"].get("labels", {})
    for k, op, v in labels:
        if (lab.get(k) == v) != (op == "="):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# HTTP

def status_obj(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lsbackup-testbed-kube-apiserver-standin"
    # As Go's net/http does: no Nagle on accepted connections, and each response leaves in one
    # write (headers and body buffered, flushed once the handler returns). Without both, the body
    # waits for the ACK of the headers, which the client delays by 40 ms.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    store = None
    log_file = None

    def log_message(self, fmt, *args):
        if self.log_file:
            self.log_file.write("%s %s\n" % (self.address_string(), fmt % args))
            self.log_file.flush()

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        try:
            self.route()
        except Exception as e:  # never leave a client without an answer
            self.send_json(500, status_obj(500, "InternalError", f"stand-in error: {e}"))

    def read_body(self):
        """The request body, whole: by Content-Length, or chunked (kubectl's `create --raw -f`
        sends chunks); left unread it would be taken for the next request on the connection."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after the chunk
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        body = self.read_body()
        if self.admin(body):
            return
        self.send_json(405, status_obj(405, "MethodNotAllowed",
                                       "the lsbackup test bed kube-apiserver stand-in is read-only"))

    do_PUT = do_PATCH = do_DELETE = do_POST

    def admin(self, body=b""):
        """/lsbackup-testbed/... (see the module's doc); False when the path is not one."""
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        if not path.startswith("/lsbackup-testbed/"):
            return False
        try:
            if path == "/lsbackup-testbed/stats" and self.command == "GET":
                return self.send_json(200, self.store.stats()) or True
            if path == "/lsbackup-testbed/fixture" and self.command == "POST":
                spec = json.loads(body or b"{}")
                self.store.load_fixture(int(spec.get("namespaces", 100)), int(spec.get("objects", 10000)))
                return self.send_json(201, self.store.stats()) or True
            if path == "/lsbackup-testbed/fixture" and self.command == "DELETE":
                self.store.reset()
                return self.send_json(200, self.store.stats()) or True
        except (ValueError, TypeError) as e:
            return self.send_json(400, status_obj(400, "BadRequest", f"fixture: {e}")) or True
        self.send_json(404, status_obj(404, "NotFound", "no such test bed endpoint"))
        return True

    def route(self):
        if self.admin():
            return
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = [p for p in url.path.split("/") if p]
        self.store.count(False)
        if q.get("watch") in ("1", "true"):
            return self.send_json(405, status_obj(405, "MethodNotAllowed", "watch is not served by this stand-in"))
        if parts == ["version"]:
            return self.send_json(200, {"major": "1", "minor": "24", "gitVersion": GIT_VERSION,
                                        "gitCommit": "e6f35974b08862a23e7f4aad8e5d7f7f2de26c15",
                                        "gitTreeState": "clean", "buildDate": "2022-10-12T10:50:21Z",
                                        "goVersion": "go1.19.2", "compiler": "gc", "platform": "linux/amd64"})
        if parts in (["healthz"], ["livez"], ["readyz"]):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if parts == ["api"]:
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                        "serverAddress": "127.0.0.3:6443"}]})
        if parts == ["apis"]:
            groups = []
            for g, versions in group_versions().items():
                if g == "":
                    continue
                vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
                groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
            if self.server.degraded:
                vs = [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}]
                groups.append({"name": "metrics.k8s.io", "versions": vs, "preferredVersion": vs[0]})
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if self.server.degraded and parts[:2] == ["apis", "metrics.k8s.io"]:
            return self.send_json(503, status_obj(503, "ServiceUnavailable",
                                                  "the server is currently unable to handle the request"))
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) == 2 and parts[0] == "apis":
            g = parts[1]
            versions = group_versions().get(g)
            if not versions:
                return self.not_found()
            vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs,
                                        "preferredVersion": vs[0]})
        else:
            return self.not_found()
        if version not in group_versions().get(group, []):
            return self.not_found()
        if not rest:
            return self.send_json(200, self.resource_list(group, version))
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        if len(rest) > 2:
            return self.not_found()
        info = resource_info(group, version, plural)
        if info is None:
            return self.not_found()
        if "list" not in info[6] and "get" not in info[6]:
            return self.send_json(405, status_obj(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"))
        if namespace is not None and not info[5]:
            return self.not_found()
        try:
            fields = parse_selector(q.get("fieldSelector", ""))
            labels = parse_selector(q.get("labelSelector", ""))
        except ValueError as e:
            return self.send_json(400, status_obj(400, "BadRequest", str(e)))
        if self.server.degraded and group == "lsbackup.example.com":
            return self.send_json(500, status_obj(500, "InternalError",
                                                  "conversion webhook for lsbackup.example.com/v1, Kind=Widget failed: "
                                                  "Post \"https://widget-webhook.shop.svc:443/convert\": no endpoints available"))
        items, rv = self.store.list(group, plural, namespace)
        if name is not None:
            for it in items:
                if it["metadata"]["name"] == name:
                    return self.send_json(200, it)
            gr = plural if group == "" else f"{plural}.{group}"
            return self.send_json(404, status_obj(404, "NotFound", f'{gr} "{name}" not found',
                                                  {"name": name, "group": group, "kind": plural}))
        self.store.count(True)
        items = sorted((i for i in items if matches(i, fields, labels)), key=item_key)
        meta = {"resourceVersion": rv}
        if q.get("continue"):
            try:
                token_rv, start = parse_continue(q["continue"])
            except ValueError as e:
                return self.send_json(400, status_obj(400, "BadRequest", str(e)))
            if token_rv != rv:
                return self.send_json(410, status_obj(
                    410, "Expired", "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token in this "
                    "response to retrieve the remainder of the results. Continuing with the provided token results "
                    "in an inconsistent list - objects that were created, modified, or deleted between the time "
                    "the first chunk was returned and now may show up in the list."))
            items = [i for i in items if item_key(i) >= start]
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            return self.send_json(400, status_obj(400, "BadRequest", f"invalid limit {q['limit']!r}"))
        if 0 < limit < len(items):
            meta["continue"] = continue_token(rv, item_key(items[limit - 1]))
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        self.send_json(200, {"kind": f"{info[4]}List", "apiVersion": api_version(group, version),
                             "metadata": meta, "items": items})

    def resource_list(self, group, version):
        res = []
        for g, v, plural, singular, kind, namespaced, verbs, short in RESOURCES:
            if g == group and v == version:
                r = {"name": plural, "singularName": singular, "namespaced": namespaced, "kind": kind,
                     "verbs": verbs}
                if short:
                    r["shortNames"] = short
                if g == "lsbackup.example.com":
                    r["categories"] = ["all"]
                res.append(r)
        for g, v, name, kind, namespaced, verbs in SUBRESOURCES:
            if g == group and v == version:
                res.append({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version(group, version),
                "resources": res}

    def not_found(self):
        self.send_json(404, status_obj(404, "NotFound", "the server could not find the requested resource"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", required=True)
    ap.add_argument("--kubeadm-config", required=True)
    ap.add_argument("--local-pv-dir", required=True)
    ap.add_argument("--hostpath-pv-dir", required=True)
    ap.add_argument("--hostpath-unused-dir", required=True)
    ap.add_argument("--worker-pv-dir", help="also serve a worker node k8s-worker-4 (127.0.0.5) with a local PV here, "
                    "a node9 that is no inventory host with a local PV, and --hostile-pv-dir as a hostPath PV of k8s-worker-4")
    ap.add_argument("--hostile-pv-dir")
    ap.add_argument("--log")
    ap.add_argument("--degraded", action="store_true")
    o = ap.parse_args()

    Handler.store = Store(o)
    if o.log:
        Handler.log_file = open(o.log, "a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(o.cert, o.key)
    ctx.load_verify_locations(o.client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = ThreadingHTTPServer((o.bind, o.port), Handler)
    srv.daemon_threads = True
    srv.degraded = o.degraded
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    state = " (DEGRADED: metrics.k8s.io down, widgets fail to list)" if o.degraded else ""
    print(f"kube-apiserver STAND-IN serving https://{o.bind}:{o.port} ({GIT_VERSION} shapes){state}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
