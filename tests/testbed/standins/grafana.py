#!/usr/bin/python3
"""STAND-IN Grafana server for the lsbackup test bed (not Grafana).

No reachable registry packages the Grafana server, so the test bed runs this small HTTP server in
its place. Like Grafana it reads /etc/grafana/grafana.ini ([server] protocol (http or https, then
with cert_file/cert_key), http_addr/http_port,
[paths] data, [database] path, [security] admin_user/admin_password) and keeps everything in a
real SQLite database, <data>/grafana.db, with Grafana's table and column names (org, user,
dashboard, data_source, api_key, migration_log). It serves exactly the HTTP API endpoints the
lsbackup `grafana` component calls, with the shapes Grafana 9.5 returns, plus the ones the test bed
uses to create content:

  GET  /api/health                     no authentication
  GET  /api/datasources                POST /api/datasources
  GET|PUT|DELETE /api/datasources/uid/<uid>
  GET  /api/folders                    POST /api/folders
  GET|PUT|DELETE /api/folders/<uid>    (DELETE removes the folder's dashboards too, as Grafana does)
  GET  /api/search?type=dash-db|dash-folder&query=&limit=
  GET  /api/dashboards/uid/<uid>       POST /api/dashboards/db       DELETE /api/dashboards/uid/<uid>
  POST /api/auth/keys, DELETE /api/auth/keys/<id>   API keys (Bearer eyJrIjoi...), stored hashed as Grafana does

Authentication as in Grafana: HTTP basic with a user of the database (the admin user is created
at the first start from [security], password hashed with PBKDF2-SHA256 like Grafana's
util.EncodePassword, so changing grafana.ini later does not change it), or an API key.

    grafana.py --config /etc/grafana/grafana.ini [--log FILE]
"""

import argparse
import base64
import configparser
import hashlib
import json
import os
import re
import secrets
import sqlite3
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "9.5.2"
COMMIT = "cfcea75916"
LOCK = threading.Lock()

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS `migration_log` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `migration_id` TEXT NOT NULL,
       `sql` TEXT NOT NULL, `success` INTEGER NOT NULL, `error` TEXT NOT NULL, `timestamp` DATETIME NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS `org` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `version` INTEGER NOT NULL,
       `name` TEXT NOT NULL, `address1` TEXT NULL, `address2` TEXT NULL, `city` TEXT NULL, `state` TEXT NULL,
       `zip_code` TEXT NULL, `country` TEXT NULL, `billing_email` TEXT NULL, `created` DATETIME NOT NULL,
       `updated` DATETIME NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS `user` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `version` INTEGER NOT NULL,
       `login` TEXT NOT NULL, `email` TEXT NOT NULL, `name` TEXT NULL, `password` TEXT NULL, `salt` TEXT NULL,
       `rands` TEXT NULL, `company` TEXT NULL, `org_id` INTEGER NOT NULL, `is_admin` INTEGER NOT NULL,
       `email_verified` INTEGER NULL, `theme` TEXT NULL, `created` DATETIME NOT NULL, `updated` DATETIME NOT NULL,
       `help_flags1` INTEGER NOT NULL DEFAULT 0, `last_seen_at` DATETIME NULL, `is_disabled` INTEGER NOT NULL DEFAULT 0,
       `is_service_account` INTEGER DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS `dashboard` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `version` INTEGER NOT NULL,
       `slug` TEXT NOT NULL, `title` TEXT NOT NULL, `data` TEXT NOT NULL, `org_id` INTEGER NOT NULL,
       `created` DATETIME NOT NULL, `updated` DATETIME NOT NULL, `updated_by` INTEGER NULL, `created_by` INTEGER NULL,
       `gnet_id` INTEGER NULL, `plugin_id` TEXT NULL, `folder_id` INTEGER NOT NULL DEFAULT 0,
       `is_folder` INTEGER NOT NULL DEFAULT 0, `has_acl` INTEGER NOT NULL DEFAULT 0, `uid` TEXT NULL,
       `is_public` INTEGER NOT NULL DEFAULT 0)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_dashboard_org_id_uid` ON `dashboard` (`org_id`,`uid`)",
    """CREATE TABLE IF NOT EXISTS `data_source` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `org_id` INTEGER NOT NULL,
       `version` INTEGER NOT NULL, `type` TEXT NOT NULL, `name` TEXT NOT NULL, `access` TEXT NOT NULL, `url` TEXT NOT NULL,
       `password` TEXT NULL, `user` TEXT NULL, `database` TEXT NULL, `basic_auth` INTEGER NOT NULL,
       `basic_auth_user` TEXT NULL, `basic_auth_password` TEXT NULL, `is_default` INTEGER NOT NULL,
       `json_data` TEXT NULL, `created` DATETIME NOT NULL, `updated` DATETIME NOT NULL,
       `with_credentials` INTEGER NOT NULL DEFAULT 0, `secure_json_data` TEXT NULL, `read_only` INTEGER NULL,
       `uid` TEXT NOT NULL DEFAULT 0)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_data_source_org_id_name` ON `data_source` (`org_id`,`name`)",
    """CREATE TABLE IF NOT EXISTS `api_key` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `org_id` INTEGER NOT NULL,
       `name` TEXT NOT NULL, `key` TEXT NOT NULL, `role` TEXT NOT NULL, `created` DATETIME NOT NULL,
       `updated` DATETIME NOT NULL, `expires` INTEGER NULL)""",
]


def ts():
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def iso(s):
    return s.replace(" ", "T") + "Z" if s else "0001-01-01T00:00:00Z"


def encode_password(password, salt):
    """Grafana's util.EncodePassword: hex(PBKDF2-SHA256(password, salt, 10000, 50))."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000, 50).hex()


def slugify(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def new_uid():
    return secrets.token_urlsafe(7).replace("_", "x").replace("-", "y")[:9]


def j(o):
    return json.dumps(o, separators=(",", ":"))


class Grafana:
    def __init__(self, ini_path):
        ini = configparser.ConfigParser(interpolation=None, strict=False)
        with open(ini_path, encoding="utf-8") as f:
            ini.read_string("[_default]\n" + f.read())

        def get(sec, key, default):
            v = ini.get(sec, key, fallback="").strip()
            return v.strip('"') if v else default

        self.data_dir = get("paths", "data", "/var/lib/grafana")
        db = get("database", "path", "grafana.db")
        self.db_path = db if os.path.isabs(db) else os.path.join(self.data_dir, db)
        self.addr = get("server", "http_addr", "127.0.0.1") or "127.0.0.1"
        self.port = int(get("server", "http_port", "3000"))
        self.protocol = get("server", "protocol", "http")
        self.cert_file = get("server", "cert_file", "")
        self.cert_key = get("server", "cert_key", "")
        os.makedirs(os.path.dirname(self.db_path), exist_ok=True)
        self.db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 5000")
        for stmt in SCHEMA:
            self.db.execute(stmt)
        if not self.db.execute("SELECT 1 FROM migration_log LIMIT 1").fetchone():
            self.db.execute("BEGIN")
            for mid in ("create migration_log table", "create user table", "create org table", "create dashboard table v2", "create data_source table v2", "create api_key table v2"):
                self.db.execute("INSERT INTO migration_log (migration_id, sql, success, error, timestamp) VALUES (?,?,?,?,?)", (mid, "", 1, "", ts()))
            self.db.execute("COMMIT")
        if not self.db.execute("SELECT 1 FROM org WHERE id = 1").fetchone():
            self.db.execute("INSERT INTO org (id, version, name, created, updated) VALUES (1, 0, 'Main Org.', ?, ?)", (ts(), ts()))
        admin = get("security", "admin_user", "admin")
        if not self.db.execute("SELECT 1 FROM user WHERE login = ?", (admin,)).fetchone():
            salt = secrets.token_hex(5)
            self.db.execute(
                "INSERT INTO user (version, login, email, name, password, salt, rands, org_id, is_admin, email_verified, created, updated, last_seen_at) "
                "VALUES (0, ?, ?, '', ?, ?, ?, 1, 1, 0, ?, ?, ?)",
                (admin, "admin@localhost", encode_password(get("security", "admin_password", "admin"), salt), salt, secrets.token_hex(5), ts(), ts(), ts()),
            )

    def q(self, sql, args=()):
        return self.db.execute(sql, args).fetchall()

    def check_basic(self, login, password):
        row = self.db.execute("SELECT password, salt FROM user WHERE login = ? OR email = ?", (login, login)).fetchone()
        return row is not None and secrets.compare_digest(row["password"], encode_password(password, row["salt"]))

    def check_key(self, token):
        try:
            k = json.loads(base64.b64decode(token + "=" * (-len(token) % 4)))
            row = self.db.execute("SELECT key FROM api_key WHERE name = ? AND id = ?", (k["n"], k["id"])).fetchone()
            return row is not None and secrets.compare_digest(row["key"], encode_password(k["k"], k["n"]))
        except (ValueError, KeyError, TypeError):
            return False

    def folder(self, folder_id):
        if not folder_id:
            return None
        return self.db.execute("SELECT * FROM dashboard WHERE id = ? AND is_folder = 1", (folder_id,)).fetchone()


class Handler(BaseHTTPRequestHandler):
    server_version = "lsbackup-standin"
    protocol_version = "HTTP/1.1"
    # As Go's net/http and Netty do: no Nagle on accepted connections, and each response leaves
    # in one write (headers and body buffered, flushed once the handler returns). Without both,
    # the body waits for the ACK of the headers, which the client delays by 40 ms.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    g = None

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def send(self, status, body):
        data = j(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                login, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return self.g.check_basic(login, pw)
        if auth.startswith("Bearer "):
            return self.g.check_key(auth[7:].strip())
        return False

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if parts == ["api", "health"]:
            self.send(200, {"commit": COMMIT, "database": "ok", "version": VERSION})
            return
        if not self.authorized():
            msg = "invalid username or password" if self.headers.get("Authorization", "").startswith("Basic ") else "Unauthorized"
            if self.headers.get("Authorization", "").startswith("Bearer "):
                msg = "invalid API key"
            self.send(401, {"message": msg})
            return
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self.send(400, {"message": "bad request data"})
            return
        with LOCK:
            self.route(self.command, parts, q, body)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def route(self, m, parts, q, body):
        g = self.g
        if parts == ["api", "datasources"] and m == "GET":
            out = []
            for r in g.q("SELECT * FROM data_source WHERE org_id = 1 ORDER BY name"):
                out.append({
                    "id": r["id"], "uid": r["uid"], "orgId": r["org_id"], "name": r["name"], "type": r["type"],
                    "typeName": r["type"].capitalize(), "typeLogoUrl": "public/app/plugins/datasource/%s/img/logo.svg" % r["type"],
                    "access": r["access"], "url": r["url"], "user": r["user"] or "", "database": r["database"] or "",
                    "basicAuth": bool(r["basic_auth"]), "isDefault": bool(r["is_default"]),
                    "jsonData": json.loads(r["json_data"] or "{}"), "readOnly": bool(r["read_only"]),
                })
            self.send(200, out)
            return
        if parts == ["api", "datasources"] and m == "POST":
            name = body.get("name")
            if not name or not body.get("type"):
                self.send(400, {"message": "Required fields name and type are missing"})
                return
            if g.q("SELECT 1 FROM data_source WHERE org_id = 1 AND name = ?", (name,)):
                self.send(409, {"message": "data source with the same name already exists"})
                return
            # pkg/services/datasources: ErrDataSourceUidExists, 409 from pkg/api/datasources.go
            if body.get("uid") and g.q("SELECT 1 FROM data_source WHERE org_id = 1 AND uid = ?", (body["uid"],)):
                self.send(409, {"message": "data source with the same uid already exists"})
                return
            uid = body.get("uid") or new_uid()
            cur = g.db.execute(
                "INSERT INTO data_source (org_id, version, type, name, access, url, user, database, basic_auth, is_default, json_data, created, updated, secure_json_data, read_only, uid) "
                "VALUES (1, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (body["type"], name, body.get("access", "proxy"), body.get("url", ""), body.get("user", ""), body.get("database", ""),
                 int(bool(body.get("basicAuth"))), int(bool(body.get("isDefault"))), j(body.get("jsonData") or {}), ts(), ts(),
                 j({k: "encrypted" for k in (body.get("secureJsonData") or {})}), uid),
            )
            ds = {"id": cur.lastrowid, "uid": uid, "orgId": 1, "name": name, "type": body["type"], "access": body.get("access", "proxy"),
                  "url": body.get("url", ""), "isDefault": bool(body.get("isDefault")), "jsonData": body.get("jsonData") or {}, "version": 1, "readOnly": False}
            self.send(200, {"datasource": ds, "id": cur.lastrowid, "message": "Datasource added", "name": name})
            return
        if parts[:3] == ["api", "datasources", "uid"] and len(parts) == 4:
            self.datasource_by_uid(m, parts[3], body)
            return
        if parts[:2] == ["api", "folders"] and len(parts) == 3:
            self.folder_by_uid(m, parts[2], body)
            return
        if parts == ["api", "folders"] and m == "GET":
            self.send(200, [{"id": r["id"], "uid": r["uid"], "title": r["title"]} for r in g.q("SELECT * FROM dashboard WHERE is_folder = 1 ORDER BY title")])
            return
        if parts == ["api", "folders"] and m == "POST":
            title = body.get("title")
            uid = body.get("uid") or new_uid()
            if not title:
                self.send(400, {"message": "folder title cannot be empty"})
                return
            if g.q("SELECT 1 FROM dashboard WHERE org_id = 1 AND uid = ?", (uid,)):
                self.send(409, {"message": "a folder with the same uid already exists"})
                return
            data = {"title": title, "uid": uid}
            cur = g.db.execute(
                "INSERT INTO dashboard (version, slug, title, data, org_id, created, updated, updated_by, created_by, folder_id, is_folder, uid) "
                "VALUES (1, ?, ?, ?, 1, ?, ?, 1, 1, 0, 1, ?)", (slugify(title), title, j(data), ts(), ts(), uid))
            self.send(200, {"id": cur.lastrowid, "uid": uid, "title": title, "url": "/dashboards/f/%s/%s" % (uid, slugify(title)),
                            "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True, "canDelete": True,
                            "createdBy": "admin", "created": iso(ts()), "updatedBy": "admin", "updated": iso(ts()), "version": 1})
            return
        if parts == ["api", "search"] and m == "GET":
            kind = q.get("type", "")
            query = q.get("query", "").lower()
            limit = int(q.get("limit", "1000"))
            rows = g.q("SELECT * FROM dashboard WHERE org_id = 1 ORDER BY title")
            out = []
            for r in rows:
                is_folder = bool(r["is_folder"])
                if kind == "dash-db" and is_folder or kind == "dash-folder" and not is_folder:
                    continue
                if query and query not in r["title"].lower():
                    continue
                item = {"id": r["id"], "uid": r["uid"], "title": r["title"], "uri": "db/" + r["slug"],
                        "url": ("/dashboards/f/%s/%s" if is_folder else "/d/%s/%s") % (r["uid"], r["slug"]), "slug": "",
                        "type": "dash-folder" if is_folder else "dash-db", "tags": json.loads(r["data"]).get("tags", []),
                        "isStarred": False, "sortMeta": 0}
                f = g.folder(r["folder_id"])
                if f is not None:
                    item.update({"folderId": f["id"], "folderUid": f["uid"], "folderTitle": f["title"], "folderUrl": "/dashboards/f/%s/%s" % (f["uid"], f["slug"])})
                out.append(item)
            self.send(200, out[:limit])
            return
        if parts[:3] == ["api", "dashboards", "uid"] and len(parts) == 4 and m == "GET":
            r = g.db.execute("SELECT * FROM dashboard WHERE org_id = 1 AND uid = ? AND is_folder = 0", (parts[3],)).fetchone()
            if r is None:
                self.send(404, {"message": "Dashboard not found"})
                return
            f = g.folder(r["folder_id"])
            meta = {
                "type": "db", "canSave": True, "canEdit": True, "canAdmin": True, "canStar": True, "canDelete": True,
                "slug": r["slug"], "url": "/d/%s/%s" % (r["uid"], r["slug"]), "expires": "0001-01-01T00:00:00Z",
                "created": iso(r["created"]), "updated": iso(r["updated"]), "updatedBy": "admin", "createdBy": "admin",
                "version": r["version"], "hasAcl": False, "isFolder": False, "folderId": r["folder_id"],
                "folderUid": f["uid"] if f is not None else "", "folderTitle": f["title"] if f is not None else "General",
                "folderUrl": "/dashboards/f/%s/%s" % (f["uid"], f["slug"]) if f is not None else "",
                "provisioned": False, "provisionedExternalId": "",
                "annotationsPermissions": {"dashboard": {"canAdd": True, "canEdit": True, "canDelete": True}, "organization": {"canAdd": True, "canEdit": True, "canDelete": True}},
                "publicDashboardAccessToken": "", "publicDashboardUid": "", "publicDashboardEnabled": False,
            }
            self.send(200, {"meta": meta, "dashboard": json.loads(r["data"])})
            return
        if parts[:3] == ["api", "dashboards", "uid"] and len(parts) == 4 and m == "DELETE":
            r = g.db.execute("SELECT * FROM dashboard WHERE org_id = 1 AND uid = ? AND is_folder = 0", (parts[3],)).fetchone()
            if r is None:
                self.send(404, {"message": "Dashboard not found"})
                return
            g.db.execute("DELETE FROM dashboard WHERE id = ?", (r["id"],))
            self.send(200, {"title": r["title"], "message": "Dashboard %s deleted" % r["title"], "id": r["id"]})
            return
        if parts[:3] == ["api", "auth", "keys"] and len(parts) == 4 and m == "DELETE":
            g.db.execute("DELETE FROM api_key WHERE id = ?", (parts[3],))
            self.send(200, {"message": "API key deleted"})
            return
        if parts == ["api", "dashboards", "db"] and m == "POST":
            d = body.get("dashboard") or {}
            title = d.get("title")
            if not title:
                self.send(400, {"message": "Dashboard title cannot be empty", "status": "empty-name"})
                return
            folder_id = body.get("folderId", 0)
            if body.get("folderUid"):
                fr = g.db.execute("SELECT id FROM dashboard WHERE uid = ? AND is_folder = 1", (body["folderUid"],)).fetchone()
                if fr is None:
                    self.send(400, {"message": "folder not found", "status": "not-found"})
                    return
                folder_id = fr["id"]
            uid = d.get("uid") or new_uid()
            old = g.db.execute("SELECT * FROM dashboard WHERE org_id = 1 AND uid = ?", (uid,)).fetchone()
            if old is not None and not body.get("overwrite"):
                self.send(412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"})
                return
            version = (old["version"] + 1) if old is not None else 1
            d = dict(d, uid=uid, version=version, title=title)
            if old is not None:
                d["id"] = old["id"]
                g.db.execute("UPDATE dashboard SET version = ?, slug = ?, title = ?, data = ?, updated = ?, folder_id = ? WHERE id = ?",
                             (version, slugify(title), title, j(d), ts(), folder_id, old["id"]))
                did = old["id"]
            else:
                d.pop("id", None)
                cur = g.db.execute(
                    "INSERT INTO dashboard (version, slug, title, data, org_id, created, updated, updated_by, created_by, folder_id, is_folder, uid) "
                    "VALUES (?, ?, ?, ?, 1, ?, ?, 1, 1, ?, 0, ?)", (version, slugify(title), title, "{}", ts(), ts(), folder_id, uid))
                did = cur.lastrowid
                d["id"] = did
                g.db.execute("UPDATE dashboard SET data = ? WHERE id = ?", (j(d), did))
            self.send(200, {"id": did, "slug": slugify(title), "status": "success", "uid": uid, "url": "/d/%s/%s" % (uid, slugify(title)), "version": version})
            return
        if parts == ["api", "auth", "keys"] and m == "POST":
            name = body.get("name")
            if not name:
                self.send(400, {"message": "name is required"})
                return
            if g.q("SELECT 1 FROM api_key WHERE org_id = 1 AND name = ?", (name,)):
                self.send(409, {"message": "API key with the same name already exists"})
                return
            secret = secrets.token_urlsafe(24)
            cur = g.db.execute("INSERT INTO api_key (org_id, name, key, role, created, updated, expires) VALUES (1, ?, ?, ?, ?, ?, NULL)",
                               (name, encode_password(secret, name), body.get("role", "Viewer"), ts(), ts()))
            key = base64.b64encode(j({"k": secret, "n": name, "id": 1}).replace('"id":1', '"id":%d' % cur.lastrowid).encode()).decode()
            self.send(200, {"id": cur.lastrowid, "name": name, "key": key})
            return
        self.send(404, {"message": "Not found"})


    def ds_json(self, r):
        """GET /api/datasources/uid/<uid> of Grafana 9.5 (pkg/api/dtos/datasource.go DataSource):
        the settings and secureJsonFields (which secrets are set, never their values)."""
        return {
            "id": r["id"], "uid": r["uid"], "orgId": r["org_id"], "name": r["name"], "type": r["type"],
            "typeLogoUrl": "public/app/plugins/datasource/%s/img/logo.svg" % r["type"], "access": r["access"],
            "url": r["url"], "user": r["user"] or "", "database": r["database"] or "", "basicAuth": bool(r["basic_auth"]),
            "basicAuthUser": r["basic_auth_user"] or "", "withCredentials": bool(r["with_credentials"]),
            "isDefault": bool(r["is_default"]), "jsonData": json.loads(r["json_data"] or "{}"),
            "secureJsonFields": {k: True for k in json.loads(r["secure_json_data"] or "{}")},
            "version": r["version"], "readOnly": bool(r["read_only"]),
        }

    def datasource_by_uid(self, m, uid, body):
        """GET/PUT/DELETE /api/datasources/uid/<uid>, answers as Grafana 9.5's pkg/api/datasources.go:
        PUT keeps the stored secrets of fields the body does not give (fillWithSecureJSONData),
        refuses a read-only (provisioned) one with 403, another's name with 409."""
        g = self.g
        r = g.db.execute("SELECT * FROM data_source WHERE org_id = 1 AND uid = ?", (uid,)).fetchone()
        if r is None:
            self.send(404, {"message": "Data source not found"})
            return
        if m == "GET":
            self.send(200, self.ds_json(r))
            return
        if m == "DELETE":
            if r["read_only"]:
                self.send(403, {"message": "Cannot delete read-only data source"})
                return
            g.db.execute("DELETE FROM data_source WHERE id = ?", (r["id"],))
            self.send(200, {"message": "Data source deleted", "id": r["id"]})
            return
        if m != "PUT":
            self.send(405, {"message": "Method Not Allowed"})
            return
        if r["read_only"]:
            self.send(403, {"message": "Cannot update read-only data source"})
            return
        name = body.get("name")
        if not name or not body.get("type"):
            self.send(400, {"message": "Required fields name and type are missing"})
            return
        if g.q("SELECT 1 FROM data_source WHERE org_id = 1 AND name = ? AND id != ?", (name, r["id"])):
            self.send(409, {"message": "data source with the same name already exists"})
            return
        new_uid_ = body.get("uid") or r["uid"]
        if g.q("SELECT 1 FROM data_source WHERE org_id = 1 AND uid = ? AND id != ?", (new_uid_, r["id"])):
            self.send(409, {"message": "data source with the same uid already exists"})
            return
        secure = json.loads(r["secure_json_data"] or "{}")
        secure.update({k: "encrypted" for k in (body.get("secureJsonData") or {})})
        g.db.execute(
            "UPDATE data_source SET version = version + 1, type = ?, name = ?, access = ?, url = ?, user = ?, database = ?, basic_auth = ?, "
            "basic_auth_user = ?, with_credentials = ?, is_default = ?, json_data = ?, secure_json_data = ?, uid = ?, updated = ? WHERE id = ?",
            (body["type"], name, body.get("access", "proxy"), body.get("url", ""), body.get("user", ""), body.get("database", ""),
             int(bool(body.get("basicAuth"))), body.get("basicAuthUser", ""), int(bool(body.get("withCredentials"))),
             int(bool(body.get("isDefault"))), j(body.get("jsonData") or {}), j(secure), new_uid_, ts(), r["id"]))
        r = g.db.execute("SELECT * FROM data_source WHERE id = ?", (r["id"],)).fetchone()
        self.send(200, {"datasource": self.ds_json(r), "id": r["id"], "message": "Datasource updated", "name": name})

    def folder_json(self, r):
        """A folder as Grafana 9.5's GET /api/folders/<uid> returns it (pkg/api/dtos/folder.go)."""
        return {"id": r["id"], "uid": r["uid"], "title": r["title"], "url": "/dashboards/f/%s/%s" % (r["uid"], r["slug"]),
                "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True, "canDelete": True,
                "createdBy": "admin", "created": iso(r["created"]), "updatedBy": "admin", "updated": iso(r["updated"]),
                "version": r["version"]}

    def folder_by_uid(self, m, uid, body):
        """GET/PUT/DELETE /api/folders/<uid> as Grafana 9.5's pkg/api/folder.go: PUT needs the
        current version unless overwrite (412 version-mismatch); DELETE removes its dashboards."""
        g = self.g
        r = g.db.execute("SELECT * FROM dashboard WHERE org_id = 1 AND uid = ? AND is_folder = 1", (uid,)).fetchone()
        if r is None:
            self.send(404, {"message": "folder not found", "status": "not-found"})
            return
        if m == "GET":
            self.send(200, self.folder_json(r))
            return
        if m == "DELETE":
            g.db.execute("DELETE FROM dashboard WHERE folder_id = ? AND is_folder = 0", (r["id"],))
            g.db.execute("DELETE FROM dashboard WHERE id = ?", (r["id"],))
            self.send(200, {"title": r["title"], "message": "Folder %s deleted" % r["title"], "id": r["id"]})
            return
        if m != "PUT":
            self.send(405, {"message": "Method Not Allowed"})
            return
        title = body.get("title")
        if not title:
            self.send(400, {"message": "folder title cannot be empty"})
            return
        if not body.get("overwrite") and body.get("version") != r["version"]:
            self.send(412, {"message": "the folder has been changed by someone else", "status": "version-mismatch"})
            return
        g.db.execute("UPDATE dashboard SET version = version + 1, title = ?, slug = ?, data = ?, updated = ? WHERE id = ?",
                     (title, slugify(title), j({"title": title, "uid": uid}), ts(), r["id"]))
        self.send(200, self.folder_json(g.db.execute("SELECT * FROM dashboard WHERE id = ?", (r["id"],)).fetchone()))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--log")
    args = ap.parse_args()
    if args.log:
        sys.stderr = open(args.log, "a", buffering=1, encoding="utf-8")
    Handler.g = g = Grafana(args.config)
    srv = Server((g.addr, g.port), Handler)
    scheme = "http"
    if g.protocol in ("https", "h2"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(g.cert_file, g.cert_key)
        # the handshake happens in the handler's thread, not in accept()
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    sys.stderr.write("%s stand-in grafana %s listening on %s://%s:%d, database %s\n" % (time.strftime("%H:%M:%S"), VERSION, scheme, g.addr, g.port, g.db_path))
    srv.serve_forever()


if __name__ == "__main__":
    main()
