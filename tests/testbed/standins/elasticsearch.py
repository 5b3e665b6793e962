#!/usr/bin/python3
"""STAND-IN Elasticsearch / OpenDistro / OpenSearch node for the lsbackup test bed (not Elasticsearch).

Neither Debian nor any reachable registry packages an Elasticsearch or OpenSearch server, so the
test bed runs this small HTTP(S) server in its place. It reads the node's real configuration file
(elasticsearch.yml / opensearch.yml: cluster.name, node.name, path.data, path.repo, http.port,
network.host and the opendistro_security / plugins.security TLS settings) and serves exactly the
endpoints the lsbackup `elasticsearch` component calls, with the shapes a real 7.10 (OpenDistro
1.13) or OpenSearch 1.x node returns:

  GET  /                                   node info (version.number, tagline)
  GET  /_cluster/health                    cluster health
  GET  /_nodes/settings                    node settings (filter_path honoured, with * wildcards)
  PUT  /<index>/_doc/<id>                  index a document (how the test bed seeds indices)
  DELETE /<index>                          delete an index (tests clean up after themselves)
  POST /<index>/_close | _open             close / reopen an index
  GET  /_cat/indices?format=json           indices with their status (open / close)
  PUT  /_snapshot/<repo>                   register an `fs` repository; the location must be
                                           inside path.repo (repository_exception otherwise) and
                                           every node must see it (repository_verification_exception)
  GET  /_snapshot/<repo>                   repository settings
  PUT  /_snapshot/<repo>/<snap>            take a snapshot (?wait_for_completion=true|false)
  GET  /_snapshot/<repo>/<snap>|_all       snapshot info (state IN_PROGRESS / SUCCESS)
  DELETE /_snapshot/<repo>/<snap>          delete a snapshot (aborts one in progress)
  POST /_snapshot/<repo>/<snap>/_restore   restore indices of a snapshot from the repository files
                                           (?wait_for_completion=true|false); an open index of the
                                           same name is refused (snapshot_restore_exception), a
                                           closed one is replaced and opened, as in 7.x
  GET  /<index>/_count                     document count (index_not_found / index_closed errors)

A snapshot writes the blob-store layout of a real fs repository into the location: index-N (the
repository data, JSON), index.latest (8-byte big-endian generation), snap-<uuid>.dat and
meta-<uuid>.dat at the top, and per index indices/<index-id>/meta-<id>.dat plus per shard
indices/<index-id>/0/{index-<gen>, snap-<uuid>.dat, __<blob>}. The .dat files are JSON between a
Lucene codec header and footer (a real node writes SMILE there); the __ blob holds the shard's
documents as JSON lines (a real node copies Lucene segment files). Deleting a snapshot removes its
files and the blobs nothing references any more, and writes the next index-N.

With TLS (…ssl.http.enabled: true) the server uses the node certificate, asks for a client
certificate (clientauth OPTIONAL) and accepts a request when that certificate's DN is one of
…authcz.admin_dn, or when it carries HTTP basic credentials given with --basic-auth; anything else
gets 401 "Unauthorized". Without TLS (a plain cluster) there is no authentication.

Test options: --extra-node NAME[:PATH_REPO[:unshared]] simulates more cluster nodes (their
path.repo, and whether they see the repository directory: unshared ones make repository
verification fail as on a real cluster without a shared file system); --snapshot-never-completes
keeps every snapshot IN_PROGRESS until it is deleted; --snapshot-completes-after SECONDS keeps it
IN_PROGRESS that long and then completes it, whether or not anyone still asks (as a real node
goes on with a snapshot its client left); --distribution opensearch answers as OpenSearch.
As in Elasticsearch 7.x, a snapshot with ignore_unavailable leaves closed indices out (without it,
a closed index named by the snapshot fails it).

    elasticsearch.py --config /etc/elasticsearch/elasticsearch.yml [--port N] [--bind ADDR]
        [--basic-auth USER:PASS] [--extra-node ...] [--snapshot-never-completes]
        [--snapshot-completes-after SECONDS] [--log FILE]
"""

import argparse
import base64
import json
import os
import re
import shutil
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.RLock()
CODEC_MAGIC = 0x3FD76C17
FOOTER_MAGIC = ~CODEC_MAGIC & 0xFFFFFFFF


def rand_id():
    """Like Elasticsearch's UUIDs.randomBase64UUID(): 22 url-safe base64 characters."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def now_ms():
    return int(time.time() * 1000)


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".%03dZ" % (ms % 1000)


# --- minimal YAML reader for elasticsearch.yml (flat dotted keys, scalars, [inline] and - lists) ---


def scalar(v):
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def read_es_yaml(path):
    conf, key = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if not line.strip():
                continue
            s = line.strip()
            if s.startswith("- ") and key is not None:
                if not isinstance(conf.get(key), list):
                    conf[key] = []
                conf[key].append(scalar(s[2:]))
                continue
            if ":" not in s:
                continue
            k, v = s.split(":", 1)
            key, v = k.strip(), v.strip()
            if v.startswith("[") and v.endswith("]"):
                conf[key] = [scalar(x) for x in v[1:-1].split(",") if x.strip()]
            elif v == "":
                conf[key] = []
            else:
                conf[key] = scalar(v)
    return conf


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def norm_dn(dn):
    return ",".join(p.strip().lower() for p in dn.split(","))


def cert_dn(peer):
    """RFC 4514 order (most specific first), as OpenDistro compares admin_dn."""
    names = {
        "commonName": "CN",
        "organizationalUnitName": "OU",
        "organizationName": "O",
        "localityName": "L",
        "stateOrProvinceName": "ST",
        "countryName": "C",
        "domainComponent": "DC",
    }
    parts = []
    for rdn in reversed(peer.get("subject", ())):
        for k, v in rdn:
            parts.append("%s=%s" % (names.get(k, k), v))
    return ",".join(parts)


def codec_blob(codec, payload):
    """Lucene CodecUtil header + payload + footer (magic, algorithm 0, CRC32), as BlobStore .dat files."""
    name = codec.encode()
    head = struct.pack(">I", CODEC_MAGIC) + bytes([len(name)]) + name + struct.pack(">I", 1)
    body = head + payload
    crc = zlib.crc32(body + struct.pack(">II", FOOTER_MAGIC, 0))
    return body + struct.pack(">IIQ", FOOTER_MAGIC, 0, crc)


def write_file(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def filter_path(obj, filters):
    """Elasticsearch's filter_path: comma-separated dotted paths, * matches one key."""
    if not filters:
        return obj
    paths = [f.split(".") for f in filters.split(",") if f]

    def keep(o, ps):
        if any(not p for p in ps):
            return o
        if not isinstance(o, dict):
            return None
        out = {}
        for k, v in o.items():
            sub = [p[1:] for p in ps if p[0] == "*" or p[0] == k]
            if not sub:
                continue
            r = keep(v, sub)
            if r is not None and r != {}:
                out[k] = r
        return out

    return keep(obj, paths) or {}


class Node:
    def __init__(self, args):
        self.args = args
        self.config_path = args.config
        self.config_dir = os.path.dirname(os.path.abspath(args.config))
        self.conf = read_es_yaml(args.config)
        self.opensearch = args.distribution == "opensearch"
        self.cluster_name = self.conf.get("cluster.name", "elasticsearch")
        self.node_name = self.conf.get("node.name", os.uname().nodename)
        self.path_repo = as_list(self.conf.get("path.repo"))
        data = self.conf.get("path.data", "/var/lib/elasticsearch")
        self.state_dir = os.path.join(as_list(data)[0], "lsbackup-standin")
        os.makedirs(self.state_dir, exist_ok=True)
        self.state_file = os.path.join(self.state_dir, "state.json")
        self.node_id = None
        self.cluster_uuid = None
        self.indices = {}  # name -> {"uuid":..., "docs": {id: source}, "created": ms}
        self.repos = {}  # name -> {"type": "fs", "settings": {...}}
        self.load()
        self.running = {}  # (repo, snap) -> {"info":..., "abort": Event}
        self.extra_nodes = []
        for spec in args.extra_node or []:
            parts = spec.split(":")
            self.extra_nodes.append(
                {
                    "name": parts[0],
                    "id": rand_id(),
                    "path_repo": [p for p in (parts[1].split(",") if len(parts) > 1 else []) if p],
                    "shared": not (len(parts) > 2 and parts[2] == "unshared"),
                }
            )

    # -- persistence
    def load(self):
        if os.path.exists(self.state_file):
            with open(self.state_file, encoding="utf-8") as f:
                st = json.load(f)
            self.node_id = st.get("node_id")
            self.cluster_uuid = st.get("cluster_uuid")
            self.indices = st.get("indices", {})
            self.repos = st.get("repos", {})
        self.node_id = self.node_id or rand_id()
        self.cluster_uuid = self.cluster_uuid or rand_id()

    def save(self):
        st = {
            "node_id": self.node_id,
            "cluster_uuid": self.cluster_uuid,
            "indices": self.indices,
            "repos": self.repos,
        }
        write_file(self.state_file, json.dumps(st).encode())

    # -- security
    def security(self, key):
        for prefix in ("plugins.security.", "opendistro_security."):
            if prefix + key in self.conf:
                return self.conf[prefix + key]
        return None

    def tls_enabled(self):
        return str(self.security("ssl.http.enabled")).lower() == "true"

    def admin_dns(self):
        return {norm_dn(d) for d in as_list(self.security("authcz.admin_dn"))}

    def version(self):
        if self.opensearch:
            return {
                "distribution": "opensearch",
                "number": "1.3.14",
                "build_type": "deb",
                "build_hash": "30dd870855093c9dca23fc6f8cfd5c0d7c83127d",
                "build_date": "2023-12-13T07:16:21.513219Z",
                "build_snapshot": False,
                "lucene_version": "8.10.1",
                "minimum_wire_compatibility_version": "6.8.0",
                "minimum_index_compatibility_version": "6.0.0-beta1",
            }
        return {
            "number": "7.10.2",
            "build_flavor": "oss",
            "build_type": "deb",
            "build_hash": "747e1cc71def077253878a59143c1f785afa92b9",
            "build_date": "2021-01-13T00:42:12.435326Z",
            "build_snapshot": False,
            "lucene_version": "8.7.0",
            "minimum_wire_compatibility_version": "6.8.0",
            "minimum_index_compatibility_version": "6.0.0-beta1",
        }

    def nodes(self):
        me = {"name": self.node_name, "id": self.node_id, "path_repo": self.path_repo, "shared": True}
        return [me] + self.extra_nodes


def error(status, etype, reason, root=None, caused_by=None):
    root = root or {"type": etype, "reason": reason}
    err = {"root_cause": [root], "type": etype, "reason": reason}
    if caused_by:
        err["caused_by"] = caused_by
    return status, {"error": err, "status": status}


def location_in_path_repo(location, path_repo):
    loc = os.path.normpath(location)
    for r in path_repo:
        r = os.path.normpath(r)
        if loc == r or loc.startswith(r.rstrip("/") + "/"):
            return True
    return False


class Repo:
    """An fs snapshot repository in the blob-store layout of Elasticsearch 7.x."""

    def __init__(self, node, name):
        self.node = node
        self.name = name
        self.location = node.repos[name]["settings"]["location"]

    def p(self, *parts):
        return os.path.join(self.location, *parts)

    def generation(self):
        try:
            with open(self.p("index.latest"), "rb") as f:
                return struct.unpack(">q", f.read(8))[0]
        except FileNotFoundError:
            return -1

    def data(self):
        gen = self.generation()
        if gen < 0:
            return {"snapshots": [], "indices": {}, "min_version": "7.9.0", "index_metadata_identifiers": {}}
        with open(self.p("index-%d" % gen), "rb") as f:
            return json.load(f)

    def write_data(self, data):
        gen = self.generation()
        new = gen + 1
        write_file(self.p("index-%d" % new), json.dumps(data).encode())
        write_file(self.p("index.latest"), struct.pack(">q", new))
        if gen >= 0:
            try:
                os.remove(self.p("index-%d" % gen))
            except FileNotFoundError:
                pass

    def snapshot_info(self, snap_uuid):
        with open(self.p("snap-%s.dat" % snap_uuid), "rb") as f:
            raw = f.read()
        start = raw.index(b"{")
        return json.loads(raw[start:-16])

    def create(self, snap_name, snap_uuid, index_names, started):
        os.makedirs(self.location, exist_ok=True)
        data = self.data()
        version = self.node.version()["number"]
        shard_results = []
        lookup = {}
        for iname in index_names:
            idx = self.node.indices[iname]
            entry = data["indices"].get(iname)
            if entry is None:
                entry = {"id": rand_id(), "snapshots": [], "shard_generations": []}
                data["indices"][iname] = entry
            index_id = entry["id"]
            shard_dir = self.p("indices", index_id, "0")
            os.makedirs(shard_dir, exist_ok=True)
            docs = "".join(
                json.dumps({"_index": iname, "_id": k, "_source": v}) + "\n" for k, v in sorted(idx["docs"].items())
            ).encode()
            blob = "__" + rand_id()
            write_file(os.path.join(shard_dir, blob), docs)
            files = [{"name": blob, "physical_name": "_0.cfs", "length": len(docs), "checksum": "%x" % zlib.crc32(docs)}]
            shard_snap = {
                "name": snap_name,
                "index_version": 1,
                "start_time": started,
                "time": now_ms() - started,
                "number_of_files": 1,
                "total_size": len(docs),
                "files": files,
            }
            write_file(os.path.join(shard_dir, "snap-%s.dat" % snap_uuid), codec_blob("snapshot", json.dumps(shard_snap).encode()))
            gen = rand_id()
            shard_index = {"snapshots": [{"name": snap_name, "files": [blob]}]}
            for old in os.listdir(shard_dir):
                if old.startswith("index-"):
                    try:
                        with open(os.path.join(shard_dir, old), "rb") as f:
                            prev = json.load(f)
                        shard_index["snapshots"] = prev["snapshots"] + shard_index["snapshots"]
                    except (OSError, ValueError, KeyError):
                        pass
                    os.remove(os.path.join(shard_dir, old))
            write_file(os.path.join(shard_dir, "index-%s" % gen), json.dumps(shard_index).encode())
            meta_id = rand_id()
            index_meta = {
                iname: {
                    "version": 3,
                    "state": "open",
                    "settings": {
                        "index": {
                            "number_of_shards": "1",
                            "number_of_replicas": "1",
                            "uuid": idx["uuid"],
                            "provided_name": iname,
                            "creation_date": str(idx["created"]),
                            "version": {"created": "7100299"},
                        }
                    },
                    "mappings": [{"_doc": {"dynamic": "true"}}],
                }
            }
            write_file(self.p("indices", index_id, "meta-%s.dat" % meta_id), codec_blob("index-metadata", json.dumps(index_meta).encode()))
            entry["snapshots"].append(snap_uuid)
            entry["shard_generations"].append(gen)
            lookup[index_id] = meta_id
            data["index_metadata_identifiers"][meta_id] = idx["uuid"] + "-_na_-1-1-1"
            shard_results.append(iname)
        global_meta = {
            "meta-data": {
                "version": 1,
                "cluster_uuid": self.node.cluster_uuid,
                "templates": {},
                "index-graveyard": {"tombstones": []},
            }
        }
        write_file(self.p("meta-%s.dat" % snap_uuid), codec_blob("metadata", json.dumps(global_meta).encode()))
        ended = now_ms()
        info = {
            "snapshot": snap_name,
            "uuid": snap_uuid,
            "version_id": 7100299,
            "version": version,
            "indices": list(index_names),
            "data_streams": [],
            "include_global_state": True,
            "state": "SUCCESS",
            "start_time": iso(started),
            "start_time_in_millis": started,
            "end_time": iso(ended),
            "end_time_in_millis": ended,
            "duration_in_millis": ended - started,
            "failures": [],
            "shards": {"total": len(index_names), "failed": 0, "successful": len(index_names)},
        }
        write_file(self.p("snap-%s.dat" % snap_uuid), codec_blob("snapshot", json.dumps(info).encode()))
        data["snapshots"].append(
            {"name": snap_name, "uuid": snap_uuid, "state": 1, "index_metadata_lookup": lookup, "version": version}
        )
        self.write_data(data)
        return info

    def delete(self, snap_uuid):
        data = self.data()
        snaps = [s for s in data["snapshots"] if s["uuid"] != snap_uuid]
        gone = [s for s in data["snapshots"] if s["uuid"] == snap_uuid]
        data["snapshots"] = snaps
        for name, entry in list(data["indices"].items()):
            keep = [i for i, u in enumerate(entry["snapshots"]) if u != snap_uuid]
            index_dir = self.p("indices", entry["id"])
            shard_dir = os.path.join(index_dir, "0")
            try:
                os.remove(os.path.join(shard_dir, "snap-%s.dat" % snap_uuid))
            except FileNotFoundError:
                pass
            for s in gone:
                meta = s["index_metadata_lookup"].get(entry["id"])
                if meta:
                    data["index_metadata_identifiers"].pop(meta, None)
                    try:
                        os.remove(os.path.join(index_dir, "meta-%s.dat" % meta))
                    except FileNotFoundError:
                        pass
            if not keep:
                shutil.rmtree(index_dir, ignore_errors=True)
                del data["indices"][name]
                continue
            entry["snapshots"] = [entry["snapshots"][i] for i in keep]
            entry["shard_generations"] = [entry["shard_generations"][i] for i in keep]
            # drop the blobs of the deleted snapshot from the shard index
            for f in os.listdir(shard_dir):
                if f.startswith("index-"):
                    with open(os.path.join(shard_dir, f), "rb") as fh:
                        idx = json.load(fh)
                    names = {s["name"] for s in gone}
                    idx["snapshots"] = [s for s in idx["snapshots"] if s["name"] not in names]
                    used = {b for s in idx["snapshots"] for b in s["files"]}
                    for b in os.listdir(shard_dir):
                        if b.startswith("__") and b not in used:
                            os.remove(os.path.join(shard_dir, b))
                    write_file(os.path.join(shard_dir, f), json.dumps(idx).encode())
        for name in ("snap-%s.dat" % snap_uuid, "meta-%s.dat" % snap_uuid):
            try:
                os.remove(self.p(name))
            except FileNotFoundError:
                pass
        self.write_data(data)


class Handler(BaseHTTPRequestHandler):
    server_version = "lsbackup-standin"
    protocol_version = "HTTP/1.1"
    # As Go's net/http and Netty do: no Nagle on accepted connections, and each response leaves
    # in one write (headers and body buffered, flushed once the handler returns). Without both,
    # the body waits for the ACK of the headers, which the client delays by 40 ms.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    node = None  # set in main

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def send(self, status, body, ctype="application/json; charset=UTF-8", extra=None):
        data = body if isinstance(body, bytes) else (json.dumps(body, separators=(",", ":")) if not isinstance(body, str) else body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass

    def authorized(self):
        node = self.node
        if not node.tls_enabled():
            return True
        peer = self.request.getpeercert() if isinstance(self.request, ssl.SSLSocket) else None
        if peer and norm_dn(cert_dn(peer)) in node.admin_dns():
            return True
        auth = self.headers.get("Authorization", "")
        if node.args.basic_auth and auth.startswith("Basic "):
            try:
                if base64.b64decode(auth[6:]).decode() == node.args.basic_auth:
                    return True
            except ValueError:
                pass
        return False

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return {}
        return json.loads(raw)

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if not self.authorized():
            self.send(401, "Unauthorized", "text/plain; charset=UTF-8", {"WWW-Authenticate": 'Basic realm="Open Distro Security"'})
            return
        try:
            body = self.body_json() if self.command in ("PUT", "POST") else {}
        except ValueError as e:
            self.send(*error(400, "parse_exception", "request body is not valid JSON: %s" % e))
            return
        status, resp = self.route(self.command, parts, q, body)
        if isinstance(resp, (dict, list)):
            resp = filter_path(resp, q.get("filter_path"))
            if "pretty" in q:
                resp = json.dumps(resp, indent=2) + "\n"
        self.send(status, resp)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def route(self, m, parts, q, body):
        node = self.node
        if not parts:
            tagline = "The OpenSearch Project: https://opensearch.org/" if node.opensearch else "You Know, for Search"
            return 200, {
                "name": node.node_name,
                "cluster_name": node.cluster_name,
                "cluster_uuid": node.cluster_uuid,
                "version": node.version(),
                "tagline": tagline,
            }
        if parts == ["_cluster", "health"]:
            n = len(node.nodes())
            return 200, {
                "cluster_name": node.cluster_name,
                "status": "green",
                "timed_out": False,
                "number_of_nodes": n,
                "number_of_data_nodes": n,
                "active_primary_shards": len(node.indices),
                "active_shards": len(node.indices),
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": 0,
                "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0,
            }
        if parts[:1] == ["_nodes"] and parts[-1:] == ["settings"] and m == "GET":
            nodes = {}
            for n in node.nodes():
                settings = {
                    "cluster": {"name": node.cluster_name},
                    "node": {"name": n["name"]},
                    "path": {"home": "/usr/share/elasticsearch", "logs": "/var/log/elasticsearch", "data": ["/var/lib/elasticsearch"]},
                    "http": {"port": str(node.args.port)},
                }
                if n["path_repo"]:
                    settings["path"]["repo"] = n["path_repo"]
                nodes[n["id"]] = {
                    "name": n["name"],
                    "transport_address": "127.0.0.1:9300",
                    "host": "127.0.0.1",
                    "ip": "127.0.0.1",
                    "version": node.version()["number"],
                    "build_type": "deb",
                    "roles": ["data", "ingest", "master", "remote_cluster_client"],
                    "settings": settings,
                }
            return 200, {"_nodes": {"total": len(nodes), "successful": len(nodes), "failed": 0}, "cluster_name": node.cluster_name, "nodes": nodes}
        if parts[:2] == ["_cat", "indices"] and m == "GET":
            rows = [
                {"health": "green", "status": "close" if idx.get("closed") else "open", "index": name, "uuid": idx["uuid"], "pri": "1", "rep": "0", "docs.count": str(len(idx["docs"]))}
                for name, idx in sorted(node.indices.items())
            ]
            if q.get("h"):
                cols = q["h"].split(",")
                rows = [{k: r[k] for k in cols if k in r} for r in rows]
            if q.get("format") == "json":
                return 200, rows
            return 200, "".join(" ".join(r.values()) + "\n" for r in rows)
        if len(parts) == 2 and parts[1] in ("_close", "_open") and m == "POST" and not parts[0].startswith("_"):
            with LOCK:
                idx = node.indices.get(parts[0])
                if idx is None:
                    return error(404, "index_not_found_exception", "no such index [%s]" % parts[0])
                idx["closed"] = parts[1] == "_close"
                node.save()
                return 200, {"acknowledged": True, "shards_acknowledged": True}
        if parts[0] == "_snapshot":
            with LOCK:
                return self.snapshot_api(m, parts[1:], q, body)
        if len(parts) == 3 and parts[1] == "_doc" and m in ("PUT", "POST"):
            with LOCK:
                iname, doc_id = parts[0], parts[2]
                idx = node.indices.setdefault(iname, {"uuid": rand_id(), "docs": {}, "created": now_ms()})
                created = doc_id not in idx["docs"]
                idx["docs"][doc_id] = body
                node.save()
                return (201 if created else 200), {
                    "_index": iname,
                    "_type": "_doc",
                    "_id": doc_id,
                    "_version": 1,
                    "result": "created" if created else "updated",
                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": len(idx["docs"]) - 1,
                    "_primary_term": 1,
                }
        if len(parts) == 2 and parts[1] == "_count" and m in ("GET", "POST") and not parts[0].startswith("_"):
            with LOCK:
                idx = node.indices.get(parts[0])
                if idx is None:
                    # IndexNotFoundException (404), shaped as every 7.x error
                    return error(404, "index_not_found_exception", "no such index [%s]" % parts[0],
                                 root={"type": "index_not_found_exception", "reason": "no such index [%s]" % parts[0], "index": parts[0], "index_uuid": "_na_"})
                if idx.get("closed"):
                    # IndexClosedException: 400 index_closed_exception "closed"
                    return error(400, "index_closed_exception", "closed",
                                 root={"type": "index_closed_exception", "reason": "closed", "index_uuid": idx["uuid"], "index": parts[0]})
                return 200, {"count": len(idx["docs"]), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}
        if len(parts) == 1 and m == "DELETE" and not parts[0].startswith("_"):
            with LOCK:
                if node.indices.pop(parts[0], None) is None:
                    return error(404, "index_not_found_exception", "no such index [%s]" % parts[0])
                node.save()
                return 200, {"acknowledged": True}
        return error(400, "illegal_argument_exception", "no handler found for uri [%s] and method [%s]" % (self.path, m))

    def snapshot_api(self, m, parts, q, body):
        node = self.node
        if not parts:
            return 200, {k: v for k, v in node.repos.items()}
        repo = parts[0]
        if len(parts) == 1:
            if m in ("PUT", "POST"):
                return self.put_repo(repo, body)
            if m == "GET":
                if repo not in node.repos:
                    return error(404, "repository_missing_exception", "[%s] missing" % repo)
                return 200, {repo: node.repos[repo]}
            if m == "DELETE":
                node.repos.pop(repo, None)
                node.save()
                return 200, {"acknowledged": True}
        if repo not in node.repos:
            return error(404, "repository_missing_exception", "[%s] missing" % repo)
        r = Repo(node, repo)
        snap = parts[1]
        if len(parts) == 3 and parts[2] == "_restore" and m == "POST":
            return self.restore_snapshot(r, snap, q, body)
        if m == "GET":
            data = r.data()
            infos = []
            for s in data["snapshots"]:
                if snap in ("_all", "*") or s["name"] == snap:
                    infos.append(r.snapshot_info(s["uuid"]))
            for (rn, sn), run in node.running.items():
                if rn == repo and (snap in ("_all", "*") or sn == snap):
                    infos.append(run["info"])
            if not infos and snap not in ("_all", "*"):
                return error(404, "snapshot_missing_exception", "[%s:%s] is missing" % (repo, snap))
            return 200, {"snapshots": infos}
        if m in ("PUT", "POST"):
            return self.create_snapshot(r, snap, q, body)
        if m == "DELETE":
            run = node.running.get((repo, snap))
            if run:
                run["abort"].set()
                del node.running[(repo, snap)]
                return 200, {"acknowledged": True}
            for s in r.data()["snapshots"]:
                if s["name"] == snap:
                    r.delete(s["uuid"])
                    return 200, {"acknowledged": True}
            return error(404, "snapshot_missing_exception", "[%s:%s] is missing" % (repo, snap))
        return error(405, "method_not_allowed", "method [%s] not allowed" % m)

    def put_repo(self, repo, body):
        node = self.node
        rtype = body.get("type")
        settings = body.get("settings") or {}
        if rtype != "fs":
            return error(500, "repository_exception", "[%s] repository type [%s] does not exist" % (repo, rtype))
        location = settings.get("location")
        if not location:
            reason = "[%s] missing location" % repo
            return error(500, "repository_exception", "[%s] failed to create repository" % repo, root={"type": "repository_exception", "reason": reason}, caused_by={"type": "repository_exception", "reason": reason})
        if not location_in_path_repo(location, node.path_repo):
            reason = "[%s] location [%s] doesn't match any of the locations specified by path.repo" % (repo, location)
            if not node.path_repo:
                reason += " because this setting is empty"
            return error(500, "repository_exception", "[%s] failed to create repository" % repo, root={"type": "repository_exception", "reason": reason}, caused_by={"type": "repository_exception", "reason": reason})
        try:
            os.makedirs(location, exist_ok=True)
            probe = os.path.join(location, "tests-%s" % rand_id())
            os.makedirs(probe)
            shutil.rmtree(probe)
        except OSError as e:
            reason = "[%s] cannot create blob store: %s" % (repo, e)
            return error(500, "repository_exception", reason)
        # repository verification: every node must be able to use the location
        for n in node.extra_nodes:
            if not location_in_path_repo(location, n["path_repo"]):
                reason = "[%s] [[%s, 'RemoteTransportException[[%s][127.0.0.1:9300][internal:admin/repository/verify]]; nested: RepositoryException[[%s] location [%s] doesn't match any of the locations specified by path.repo];']]" % (repo, n["id"], n["name"], repo, location)
                return error(500, "repository_verification_exception", reason)
            if not n["shared"]:
                reason = (
                    "[%s] [[%s, 'RemoteTransportException[[%s][127.0.0.1:9300][internal:admin/repository/verify]]; nested: "
                    "RepositoryVerificationException[[%s] a file written by master to the store [%s] cannot be accessed on the node "
                    "[{%s}{%s}{127.0.0.1:9300}]. This might indicate that the store [%s] is not shared between this node and the master node "
                    "or that permissions on the store don't allow reading files written by the master node];']]"
                    % (repo, n["id"], n["name"], repo, location, n["name"], n["id"], location)
                )
                return error(500, "repository_verification_exception", reason)
        node.repos[repo] = {"type": "fs", "settings": {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings.items()}}
        node.save()
        return 200, {"acknowledged": True}

    def create_snapshot(self, r, snap, q, body):
        node = self.node
        if snap != snap.lower() or any(c in snap for c in ' ",*\\<|>/?'):
            return error(400, "invalid_snapshot_name_exception", "[%s:%s] Invalid snapshot name [%s], must be lowercase" % (r.name, snap, snap))
        if any(s["name"] == snap for s in r.data()["snapshots"]) or (r.name, snap) in node.running:
            return error(400, "invalid_snapshot_name_exception", "[%s:%s] Invalid snapshot name [%s], snapshot with the same name already exists" % (r.name, snap, snap))
        wanted = body.get("indices", "*")
        patterns = wanted if isinstance(wanted, list) else [p for p in str(wanted).split(",") if p]
        names = sorted(n for n in node.indices if any(re.fullmatch(re.escape(p).replace("\\*", ".*"), n) for p in patterns) or "_all" in patterns)
        closed = [n for n in names if node.indices[n].get("closed")]
        if closed and not body.get("ignore_unavailable"):
            return error(400, "snapshot_exception", "[%s:%s] index %s is closed" % (r.name, snap, closed[0]))
        names = [n for n in names if n not in closed]
        snap_uuid = rand_id()
        started = now_ms()
        wait = q.get("wait_for_completion", "false") == "true"
        if node.args.snapshot_never_completes or node.args.snapshot_completes_after:
            info = {
                "snapshot": snap,
                "uuid": snap_uuid,
                "version_id": 7100299,
                "version": node.version()["number"],
                "indices": names,
                "data_streams": [],
                "include_global_state": True,
                "state": "IN_PROGRESS",
                "start_time": iso(started),
                "start_time_in_millis": started,
                "failures": [],
                "shards": {"total": 0, "failed": 0, "successful": 0},
            }
            abort = threading.Event()
            node.running[(r.name, snap)] = {"info": info, "abort": abort}
            after = node.args.snapshot_completes_after
            done = {}
            if after:

                def complete():
                    if abort.wait(after):
                        return
                    with LOCK:
                        if node.running.get((r.name, snap), {}).get("abort") is abort:
                            del node.running[(r.name, snap)]
                            done["info"] = r.create(snap, snap_uuid, names, started)
                            abort.set()

                threading.Thread(target=complete, daemon=True).start()
            if not wait:
                return 200, {"accepted": True}
            LOCK.release()
            try:
                abort.wait()
            finally:
                LOCK.acquire()
            if "info" in done:
                return 200, {"snapshot": done["info"]}
            reason = "[%s:%s/%s] Snapshot was aborted by deletion" % (r.name, snap, snap_uuid)
            return error(500, "snapshot_exception", reason)
        info = r.create(snap, snap_uuid, names, started)
        if not wait:
            return 200, {"accepted": True}
        return 200, {"snapshot": info}


    def restore_snapshot(self, r, snap, q, body):
        """POST /_snapshot/<repo>/<snap>/_restore as Elasticsearch 7.10's RestoreService answers:
        the snapshot is looked up in the repository data read from disk (index.latest, index-N);
        `indices` (a list or comma-separated, * wildcards) picks among the snapshot's indices
        (a name it does not hold: index_not_found_exception unless ignore_unavailable); an open
        index of the same name fails the whole request with snapshot_restore_exception (500,
        "cannot restore index [x] because an open index with same name already exists in the
        cluster. Either close or delete the existing index or restore the index under a
        different name by providing a rename pattern and replacement name"); a closed one is
        replaced. Each restored index gets a new uuid and is open, with the documents of the
        shard blobs the snapshot's shard files (snap-<uuid>.dat) list. With
        wait_for_completion=true the answer is {"snapshot": {"snapshot", "indices", "shards"}},
        else {"accepted": true}."""
        node = self.node
        data = r.data()
        found = [s for s in data["snapshots"] if s["name"] == snap]
        if not found:
            # SnapshotRestoreException via SnapshotException: "[repo:snap] snapshot does not exist"
            return error(404, "snapshot_restore_exception", "[%s:%s] snapshot does not exist" % (r.name, snap))
        snap_uuid = found[0]["uuid"]
        info = r.snapshot_info(snap_uuid)
        have = list(info.get("indices") or [])
        wanted = body.get("indices", "*")
        patterns = wanted if isinstance(wanted, list) else [p for p in str(wanted).split(",") if p]
        chosen = []
        for p in patterns or ["*"]:
            hits = [n for n in have if re.fullmatch(re.escape(p).replace("\\*", ".*"), n)]
            if not hits and "*" not in p and not body.get("ignore_unavailable"):
                return error(404, "index_not_found_exception", "no such index [%s]" % p,
                             root={"type": "index_not_found_exception", "reason": "no such index [%s]" % p, "index": p, "index_uuid": "_na_"})
            chosen.extend(h for h in hits if h not in chosen)
        snapshot = "%s:%s/%s" % (r.name, snap, snap_uuid)
        for n in chosen:
            idx = node.indices.get(n)
            if idx is not None and not idx.get("closed"):
                reason = ("[%s] cannot restore index [%s] because an open index with same name already exists in the cluster. "
                          "Either close or delete the existing index or restore the index under a different name by providing "
                          "a rename pattern and replacement name" % (snapshot, n))
                return error(500, "snapshot_restore_exception", reason)
        restored = {}
        for n in chosen:
            entry = data["indices"].get(n)
            if entry is None:
                reason = "[%s] index [%s] is missing from the repository data" % (snapshot, n)
                return error(500, "snapshot_restore_exception", reason)
            shard_dir = r.p("indices", entry["id"], "0")
            with open(os.path.join(shard_dir, "snap-%s.dat" % snap_uuid), "rb") as f:
                raw = f.read()
            shard = json.loads(raw[raw.index(b"{"):-16])
            docs = {}
            for fi in shard["files"]:
                with open(os.path.join(shard_dir, fi["name"]), "rb") as f:
                    blob = f.read()
                if "%x" % zlib.crc32(blob) != fi["checksum"]:
                    reason = "[%s] failed to restore [%s]: checksum failed for blob [%s]" % (snapshot, n, fi["name"])
                    return error(500, "snapshot_restore_exception", reason)
                for line in blob.decode().splitlines():
                    if line.strip():
                        d = json.loads(line)
                        docs[d["_id"]] = d["_source"]
            restored[n] = docs
        for n, docs in restored.items():
            node.indices[n] = {"uuid": rand_id(), "docs": docs, "created": now_ms()}
        node.save()
        if q.get("wait_for_completion", "false") != "true":
            return 200, {"accepted": True}
        names = list(restored)
        return 200, {"snapshot": {"snapshot": snap, "indices": names, "shards": {"total": len(names), "failed": 0, "successful": len(names)}}}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        sys.stderr.write("%s connection from %s: %s\n" % (time.strftime("%H:%M:%S"), client_address[0], e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="elasticsearch.yml / opensearch.yml")
    ap.add_argument("--port", type=int, help="default: http.port from the config, else 9200")
    ap.add_argument("--bind", help="default: network.host from the config, else 127.0.0.1")
    ap.add_argument("--basic-auth", help="USER:PASS also accepted (besides the admin certificate)")
    ap.add_argument("--extra-node", action="append", help="NAME[:PATH_REPO[,PATH...][:unshared]]")
    ap.add_argument("--snapshot-never-completes", action="store_true")
    ap.add_argument("--snapshot-completes-after", type=float, default=0)
    ap.add_argument("--distribution", choices=["elasticsearch", "opensearch"], default="elasticsearch")
    ap.add_argument("--log")
    args = ap.parse_args()
    if args.log:
        sys.stderr = open(args.log, "a", buffering=1, encoding="utf-8")
    conf = read_es_yaml(args.config)
    args.port = args.port or int(conf.get("http.port", 9200))
    bind = args.bind or as_list(conf.get("network.host", "127.0.0.1"))[0]
    node = Node(args)
    Handler.node = node
    srv = Server((bind, args.port), Handler)
    scheme = "http"
    if node.tls_enabled():
        d = node.config_dir
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(
            os.path.join(d, node.security("ssl.http.pemcert_filepath")),
            os.path.join(d, node.security("ssl.http.pemkey_filepath")),
        )
        ctx.load_verify_locations(os.path.join(d, node.security("ssl.http.pemtrustedcas_filepath")))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    sys.stderr.write("%s stand-in %s node %s listening on %s://%s:%d\n" % (time.strftime("%H:%M:%S"), args.distribution, node.node_name, scheme, bind, args.port))
    srv.serve_forever()


if __name__ == "__main__":
    main()
