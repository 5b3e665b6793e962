#!/usr/bin/python3
"""STAND-IN Kibana / OpenSearch Dashboards for the lsbackup test bed (not Kibana).

No reachable registry packages Kibana, OpenDistro Kibana or OpenSearch Dashboards, so the test bed
runs this small HTTP server in its place. It reads the real configuration file (kibana.yml /
opensearch_dashboards.yml: server.host, server.port, elasticsearch.username/password) and serves
exactly the saved-objects endpoints the lsbackup `kibana` component calls, with the shapes Kibana
7.10 (OpenDistro 1.13) / OpenSearch Dashboards 1.x return:

  GET  /api/status                              version and overall state
  POST /api/saved_objects/_export               NDJSON export: one saved object per line, then
                                                the summary line {"exportedCount":N,...}
  POST /api/saved_objects/_import               import an NDJSON export (multipart/form-data, field
                                                `file`; ?overwrite=true), answered as Kibana 7.10 does
  POST /api/saved_objects/<type>[/<id>]         create a saved object (?overwrite=true)
  GET  /api/saved_objects/<type>/<id>           read one
  DELETE /api/saved_objects/<type>/<id>         delete one

Like Kibana behind the OpenDistro security plugin, every request needs HTTP basic credentials (the
user Kibana itself uses, from the config file, or --user USER:PASS); 401 otherwise. POST requests
need the kbn-xsrf (or osd-xsrf) header, as in Kibana. Saved objects (real 7.10 attributes, references,
migrationVersion) are kept in the --data JSON file (a real Kibana keeps them in the .kibana index);
an index pattern, a search, a visualization, a dashboard and the config object are created at the
first start. Multi-tenancy is not simulated: the securitytenant header is accepted and ignored.

With server.ssl.enabled: true in the config file it serves HTTPS with server.ssl.certificate and
server.ssl.key (PEM paths), as Kibana does; otherwise plain HTTP.

    kibana.py --config /etc/kibana/kibana.yml --data FILE [--port N] [--user USER:PASS]
        [--distribution opensearch-dashboards] [--log FILE]
"""

import argparse
import base64
import email.parser
import email.policy
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
EXPORTABLE = ["config", "index-pattern", "visualization", "dashboard", "search", "query", "url"]
MIGRATION = {
    "config": "7.9.0",
    "index-pattern": "7.6.0",
    "visualization": "7.10.0",
    "dashboard": "7.9.3",
    "search": "7.9.3",
    "query": "7.0.0",
    "url": "7.9.0",
}


def read_flat_yaml(path):
    conf = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            s = raw.strip()
            if not s or s.startswith("#") or ":" not in s:
                continue
            k, v = s.split(":", 1)
            v = v.split(" #")[0].strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            conf[k.strip()] = v
    return conf


def now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def version_token(seq):
    return base64.b64encode(json.dumps([seq, 1], separators=(",", ":")).encode()).decode()


def j(o):
    return json.dumps(o, separators=(",", ":"))


class Store:
    def __init__(self, path, version):
        self.path = path
        self.version = version
        self.seq = 0
        self.objects = {}  # "type/id" -> object
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                st = json.load(f)
            self.seq = st["seq"]
            self.objects = st["objects"]
        if not self.objects:
            self.seed()

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"seq": self.seq, "objects": self.objects}, f)
        os.replace(tmp, self.path)

    def put(self, otype, oid, attributes, references):
        self.seq += 1
        obj = {
            "attributes": attributes,
            "id": oid,
            "migrationVersion": {otype: MIGRATION.get(otype, "7.10.0")},
            "references": references,
            "type": otype,
            "updated_at": now_iso(),
            "version": version_token(self.seq),
        }
        self.objects["%s/%s" % (otype, oid)] = obj
        self.save()
        return obj

    def seed(self):
        self.put("config", self.version, {"buildNum": 36986, "defaultIndex": "lsbackup-logs-pattern"}, [])
        self.put(
            "index-pattern",
            "lsbackup-logs-pattern",
            {"fieldAttrs": "{}", "fields": "[]", "timeFieldName": "@timestamp", "title": "lsbackup-testbed-logs-*"},
            [],
        )
        search_source = j({"query": {"query": "", "language": "kuery"}, "filter": [], "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})
        self.put(
            "search",
            "lsbackup-errors-search",
            {
                "columns": ["message"],
                "description": "",
                "hits": 0,
                "kibanaSavedObjectMeta": {"searchSourceJSON": search_source},
                "sort": [],
                "title": "lsbackup test bed errors",
                "version": 1,
            },
            [{"id": "lsbackup-logs-pattern", "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}],
        )
        self.put(
            "visualization",
            "lsbackup-count-vis",
            {
                "description": "",
                "kibanaSavedObjectMeta": {"searchSourceJSON": search_source},
                "title": "lsbackup test bed log count",
                "uiStateJSON": "{}",
                "version": 1,
                "visState": j({"title": "lsbackup test bed log count", "type": "metric", "aggs": [{"id": "1", "enabled": True, "type": "count", "params": {}, "schema": "metric"}], "params": {}}),
            },
            [{"id": "lsbackup-logs-pattern", "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}],
        )
        self.put(
            "dashboard",
            "lsbackup-overview-dashboard",
            {
                "description": "seeded by the lsbackup test bed",
                "hits": 0,
                "kibanaSavedObjectMeta": {"searchSourceJSON": j({"query": {"query": "", "language": "kuery"}, "filter": []})},
                "optionsJSON": j({"hidePanelTitles": False, "useMargins": True}),
                "panelsJSON": j([{"version": self.version, "gridData": {"x": 0, "y": 0, "w": 24, "h": 15, "i": "1"}, "panelIndex": "1", "embeddableConfig": {}, "panelRefName": "panel_0"}]),
                "timeRestore": False,
                "title": "lsbackup test bed overview",
                "version": 1,
            },
            [{"id": "lsbackup-count-vis", "name": "panel_0", "type": "visualization"}],
        )


class Handler(BaseHTTPRequestHandler):
    server_version = "lsbackup-standin"
    protocol_version = "HTTP/1.1"
    # As Go's net/http and Netty do: no Nagle on accepted connections, and each response leaves
    # in one write (headers and body buffered, flushed once the handler returns). Without both,
    # the body waits for the ACK of the headers, which the client delays by 40 ms.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    store = None
    users = set()
    version = "7.10.2"
    name = "kibana"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def send(self, status, body, ctype="application/json; charset=utf-8"):
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else j(body)).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.send_header("kbn-name", self.name)
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status, error, message):
        self.send(status, {"statusCode": status, "error": error, "message": message})

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            return base64.b64decode(auth[6:]).decode() in self.users
        except ValueError:
            return False

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not self.authorized():
            self.fail(401, "Unauthorized", "Authentication Exception")
            return
        if self.command in ("POST", "PUT", "DELETE") and not (self.headers.get("kbn-xsrf") or self.headers.get("osd-xsrf")):
            self.fail(400, "Bad Request", "Request must contain a kbn-xsrf header.")
            return
        if parts == ["api", "saved_objects", "_import"] and self.command == "POST":
            with LOCK:
                self.import_objects(q, raw)
            return
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            self.fail(400, "Bad Request", "Invalid request payload JSON format: %s" % e)
            return
        with LOCK:
            self.route(parts, q, body)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def route(self, parts, q, body):
        store = self.store
        if parts == ["api", "status"]:
            self.send(200, {
                "name": self.name,
                "uuid": "5b2de169-2785-441b-ae8c-186a1936b17d",
                "version": {"number": self.version, "build_hash": "d6f2d7b87c1bcb34a8b31b7d5f0e0b3c7c4e5d34", "build_number": 36986, "build_snapshot": False},
                "status": {"overall": {"since": now_iso(), "state": "green", "title": "Green", "nickname": "Looking good", "icon": "success", "uiColor": "secondary"}, "statuses": []},
                "metrics": {},
            })
            return
        if parts[:2] != ["api", "saved_objects"] or len(parts) < 3:
            self.fail(404, "Not Found", "Not Found")
            return
        if parts[2] == "_export" and self.command == "POST":
            types = body.get("type")
            objects = body.get("objects")
            if types is None and objects is None:
                self.fail(400, "Bad Request", "Either `type` or `objects` are required.")
                return
            if isinstance(types, str):
                types = [types]
            if types:
                bad = [t for t in types if t not in EXPORTABLE]
                if bad:
                    self.fail(400, "Bad Request", "Trying to export non-exportable type(s): %s" % ", ".join(bad))
                    return
                chosen = [o for o in store.objects.values() if o["type"] in types]
            else:
                chosen = []
                for ref in objects:
                    o = store.objects.get("%s/%s" % (ref.get("type"), ref.get("id")))
                    if o:
                        chosen.append(o)
            chosen.sort(key=lambda o: (o["type"], o["id"]))
            lines = [j(o) for o in chosen]
            if not body.get("excludeExportDetails"):
                lines.append(j({"exportedCount": len(chosen), "missingRefCount": 0, "missingReferences": []}))
            self.send(200, "\n".join(lines), "application/ndjson")
            return
        otype = parts[2]
        oid = parts[3] if len(parts) > 3 else str(uuid.uuid4())
        if self.command == "GET" and len(parts) == 4:
            o = store.objects.get("%s/%s" % (otype, oid))
            if o is None:
                self.fail(404, "Not Found", "Saved object [%s/%s] not found" % (otype, oid))
            else:
                self.send(200, o)
            return
        if self.command == "DELETE" and len(parts) == 4:
            if store.objects.pop("%s/%s" % (otype, oid), None) is None:
                self.fail(404, "Not Found", "Saved object [%s/%s] not found" % (otype, oid))
            else:
                store.save()
                self.send(200, {})
            return
        if self.command == "POST" and len(parts) in (3, 4):
            if otype not in EXPORTABLE:
                self.fail(400, "Bad Request", "Unsupported saved object type: '%s': Bad Request" % otype)
                return
            key = "%s/%s" % (otype, oid)
            if key in store.objects and q.get("overwrite") != "true":
                self.send(409, {"statusCode": 409, "error": "Conflict", "message": "Saved object [%s] conflict" % key})
                return
            o = store.put(otype, oid, body.get("attributes") or {}, body.get("references") or [])
            out = dict(o)
            out["namespaces"] = ["default"]
            self.send(200, out)
            return
        self.fail(404, "Not Found", "Not Found")


    def import_objects(self, q, raw):
        """POST /api/saved_objects/_import as Kibana 7.10 answers it
        (src/core/server/saved_objects/routes/import.ts and import/import_saved_objects.ts):
        a multipart form whose `file` field is an .ndjson export (415 for another content type,
        400 without the field or for another extension); summary lines (exportedCount) are
        skipped; an object of a type that cannot be imported is an `unsupported_type` error; one
        referencing an index-pattern or search that is neither imported nor stored is a
        `missing_references` error (validate_references.ts: REF_TYPES_TO_VALIDATE); without
        overwrite=true an existing object is a `conflict` error. The others are stored. Answer:
        {success, successCount, successResults?, errors?} (errors/successResults only when not
        empty)."""
        store = self.store
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            self.fail(415, "Unsupported Media Type", "Unsupported Media Type")
            return
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        file_part = None
        if msg.is_multipart():
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    file_part = part
        if file_part is None:
            self.fail(400, "Bad Request", "[request body.file]: expected value of type [Stream] but got [undefined]")
            return
        filename = file_part.get_filename() or ""
        ext = os.path.splitext(filename)[1]
        if ext != ".ndjson":
            self.fail(400, "Bad Request", "Invalid file extension %s" % ext)
            return
        data = file_part.get_payload(decode=True) or b""
        objects = []
        for line in data.decode("utf-8").split("\n"):
            if not line.strip():
                continue
            try:
                o = json.loads(line)
            except ValueError as e:
                self.fail(400, "Bad Request", "Unexpected token in JSON: %s" % e)
                return
            if isinstance(o, dict) and o.get("exportedCount") is not None:
                continue
            objects.append(o)
        overwrite = q.get("overwrite") == "true"
        errors, ok = [], []
        importing = {"%s/%s" % (o.get("type"), o.get("id")) for o in objects}

        def title(o):
            return (o.get("attributes") or {}).get("title", "")

        def icon(t):
            return {"dashboard": "dashboardApp", "visualization": "visualizeApp", "index-pattern": "indexPatternApp",
                    "search": "discoverApp", "config": "advancedSettingsApp"}.get(t, "")

        def err(o, e):
            errors.append({"id": o.get("id"), "type": o.get("type"), "title": title(o),
                           "meta": {"title": title(o), "icon": icon(o.get("type"))}, "error": e})

        for o in objects:
            key = "%s/%s" % (o.get("type"), o.get("id"))
            if o.get("type") not in EXPORTABLE:
                err(o, {"type": "unsupported_type"})
                continue
            missing = [{"type": r.get("type"), "id": r.get("id")} for r in o.get("references") or []
                       if r.get("type") in ("index-pattern", "search")
                       and "%s/%s" % (r.get("type"), r.get("id")) not in importing
                       and "%s/%s" % (r.get("type"), r.get("id")) not in store.objects]
            if missing:
                err(o, {"type": "missing_references", "references": missing})
                continue
            if key in store.objects and not overwrite:
                err(o, {"type": "conflict"})
                continue
            existed = key in store.objects
            store.put(o["type"], o["id"], o.get("attributes") or {}, o.get("references") or [])
            res = {"type": o["type"], "id": o["id"], "meta": {"title": title(o), "icon": icon(o["type"])}}
            if existed:
                res["overwrite"] = True
            ok.append(res)
        out = {"successCount": len(ok), "success": not errors}
        if errors:
            out["errors"] = errors
        if ok:
            out["successResults"] = ok
        self.send(200, out)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True, help="JSON file holding the saved objects")
    ap.add_argument("--port", type=int)
    ap.add_argument("--bind")
    ap.add_argument("--user", action="append", default=[], help="USER:PASS accepted besides the config's elasticsearch.username")
    ap.add_argument("--distribution", choices=["kibana", "opensearch-dashboards"], default="kibana")
    ap.add_argument("--log")
    args = ap.parse_args()
    if args.log:
        sys.stderr = open(args.log, "a", buffering=1, encoding="utf-8")
    conf = read_flat_yaml(args.config)
    users = set(args.user)
    for prefix in ("elasticsearch", "opensearch"):
        if conf.get(prefix + ".username"):
            users.add("%s:%s" % (conf[prefix + ".username"], conf.get(prefix + ".password", "")))
    Handler.users = users
    Handler.version = "1.3.14" if args.distribution == "opensearch-dashboards" else "7.10.2"
    Handler.name = conf.get("server.name", os.uname().nodename)
    Handler.store = Store(args.data, Handler.version)
    port = args.port or int(conf.get("server.port", 5601))
    bind = args.bind or conf.get("server.host", "127.0.0.1")
    srv = Server((bind, port), Handler)
    scheme = "http"
    if conf.get("server.ssl.enabled", "").lower() == "true":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(conf["server.ssl.certificate"], conf["server.ssl.key"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    sys.stderr.write("%s stand-in %s listening on %s://%s:%d\n" % (time.strftime("%H:%M:%S"), args.distribution, scheme, bind, port))
    srv.serve_forever()


if __name__ == "__main__":
    main()
