#!/usr/bin/python3
"""STAND-IN for the Azure Files REST API (file service) for the lsbackup test bed (not Azure).

No emulator serves Azure Files (azurite has the blob, queue and table services only), so the test
bed runs this server in its place. It keeps the shares as real directories and the files as real
(sparse) files under --data, and serves, path-style like azurite
(http://127.0.0.1:10004/devstoreaccount1/<share>/<dir>/.../<file>), exactly these operations:

  Get Directory Properties  GET|HEAD <dir>?restype=directory                     200
  Create Directory          PUT      <dir>?restype=directory                     201
  Delete Directory          DELETE   <dir>?restype=directory (empty only)        202
  List Directories and Files GET     <dir>?restype=directory&comp=list           200
                            [&prefix=][&marker=][&maxresults=][&include=Timestamps,Etag]
  Create File               PUT      <file> (x-ms-type: file, x-ms-content-length) 201
  Put Range                 PUT      <file>?comp=range (x-ms-write: update|clear)  201
  Set File Properties       PUT      <file>?comp=properties [x-ms-content-length]  200
  Get File Properties       HEAD     <file>                                      200
  Get File                  GET      <file> [Range / x-ms-range]                 200 / 206
  Delete File               DELETE   <file>                                      202
  Rename File               PUT      <file>?comp=rename (x-ms-file-rename-source) 200

Every request must be authorized with Shared Key (the "Blob, Queue and File services" scheme of
Microsoft's "Authorize with Shared Key"), verified here: the string-to-sign is rebuilt from the
request as received and compared with the HMAC-SHA256 in `Authorization: SharedKey account:sig`.
Anything else (no Authorization, SharedKeyLite, SAS, bearer tokens, a wrong signature, a date more
than 15 minutes off) gets 403 AuthenticationFailed. x-ms-version (>= 2021-04-10) is required.
Everything Azure Files has beyond the list above is refused with 400 naming what is not implemented
(shares and the service level, snapshots, leases, metadata, stored content headers, copies, handles,
range lists, directory rename, SAS, conditional requests); see tests/testbed/README.md for the list.

One JSON line per request goes to --request-log: method, path (as on the wire), query (decoded),
headers (x-ms-*, content-length, range; never Authorization), status.

    azfile.py serve --data DIR [--host 127.0.0.1] [--port 10004] [--share NAME [--dir PATH]...]
        [--request-log FILE]
    azfile.py check --endpoint URL --share NAME --dir PATH   # readiness: signed 200, wrong key 403
"""

import argparse
import base64
import ctypes
import errno
import hashlib
import hmac
import http.client
import json
import os
import re
import stat
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from email.utils import formatdate, parsedate_to_datetime
from functools import cmp_to_key
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape, quoteattr

ACCOUNT = "devstoreaccount1"
# the well-known development storage key (azurite's and the Azure storage emulator's default)
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MIN_VERSION = "2021-04-10"  # Rename File needs it; older versions are refused
DEFAULT_VERSION = "2025-05-05"  # echoed when the request carried no usable x-ms-version
MAX_FILE_SIZE = 4 * 1024**4  # 4 TiB, Azure's maximum file size
MAX_RANGE = 4 * 1024**2  # 4 MiB, Azure's maximum Put Range body
MAX_RESULTS = 5000
CLOCK_SKEW = 15 * 60
CHUNK = 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # unread request bodies up to this size are drained, else the connection closes
XATTR_CREATED = "user.lsbackup-azfile.created-ns"
MARKER_PREFIX = "azfile1!"
BAD_NAME_CHARS = set('\\/:|<>*?"') | {chr(c) for c in range(0x20)} | {"\x7f"}
SHARE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")

# headers whose meaning the stand-in cannot honour: refused instead of silently ignored
UNSUPPORTED_HEADERS = {
    "x-ms-lease-id": "leases",
    "x-ms-source-lease-id": "leases",
    "x-ms-destination-lease-id": "leases",
    "x-ms-copy-source": "copying (Start Copy File, Put Range From URL)",
    "x-ms-content-type": "stored content headers",
    "x-ms-content-encoding": "stored content headers",
    "x-ms-content-language": "stored content headers",
    "x-ms-cache-control": "stored content headers",
    "x-ms-content-disposition": "stored content headers",
    "x-ms-content-md5": "stored content headers",
    "x-ms-content-crc64": "CRC64 transactional checks",
    "x-ms-file-last-write-time-mode": "x-ms-file-last-write-time-mode",
    "x-ms-mode": "NFS properties",
    "x-ms-owner": "NFS properties",
    "x-ms-group": "NFS properties",
    "if-match": "conditional requests",
    "if-none-match": "conditional requests",
    "if-modified-since": "conditional requests",
    "if-unmodified-since": "conditional requests",
}


# --- Shared Key -------------------------------------------------------------------------------

# The service sorts the canonicalized x-ms-* headers with a culture-aware comparison, not by code
# point: at the first level '-' and '\'' (and characters not allowed in header names) are ignored and
# letters compare case-insensitively; only when that ties do the positions of '-' and '\'' decide
# (the azure-storage SDKs emulate the same order, e.g. azure-storage-file-share
# _shared/authentication.py). For the fixed x-ms-* header names of the file API this order is the
# same as a plain byte sort; it differs only for user-chosen names (x-ms-meta-*).
_LEVEL0 = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz"
_LEVEL1 = {"'": 1, "-": 2}


def _w0(ch):
    i = _LEVEL0.find(ch.lower()) if len(ch) == 1 else -1
    return i + 2 if i >= 0 else 0  # 0: ignored at this level (1 would be "end of string")


def header_name_cmp(a, b):
    i = j = 0
    while True:
        while i < len(a) and _w0(a[i]) == 0:
            i += 1
        while j < len(b) and _w0(b[j]) == 0:
            j += 1
        if i >= len(a) or j >= len(b):
            if i < len(a):
                return 1
            if j < len(b):
                return -1
            break
        wa, wb = _w0(a[i]), _w0(b[j])
        if wa != wb:
            return -1 if wa < wb else 1
        i += 1
        j += 1
    # second level, position by position: a plain character sorts before '\'' and '-', the end of
    # a string before both, and '\'' before '-'
    for k in range(max(len(a), len(b))):
        wa = _LEVEL1.get(a[k], 0) if k < len(a) else -1
        wb = _LEVEL1.get(b[k], 0) if k < len(b) else -1
        if wa == wb:
            continue
        if wa == 0:
            return -1
        if wb == 0:
            return 1
        return -1 if wa < wb else 1
    return 0


def canonical_header_value(v):
    """Linear whitespace (CRLF, spaces, tabs) becomes one space, except inside a quoted string; trimmed."""
    out, quoted, ws = [], False, False
    for ch in v.strip(" \t\r\n"):
        if ch == '"':
            quoted = not quoted
        if not quoted and ch in " \t\r\n":
            if not ws:
                out.append(" ")
            ws = True
            continue
        ws = False
        out.append(ch)
    return "".join(out)


def parse_query(raw_query):
    """[(name, value)] percent-decoded once ('+' stays '+', as the Azure SDKs sign it)."""
    out = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.append((urllib.parse.unquote(name, errors="strict"), urllib.parse.unquote(value, errors="strict")))
    return out


def string_to_sign(method, headers, raw_path, query, account):
    """headers: [(name, value)] as received. The 2009-09-19+ Shared Key string for blob/queue/file."""
    std = {}
    xms = {}
    for name, value in headers:
        lname = name.lower()
        if lname.startswith("x-ms-"):
            xms.setdefault(lname, []).append(canonical_header_value(value))
        else:
            std.setdefault(lname, value.strip(" \t\r\n"))
    content_length = std.get("content-length", "")
    if content_length == "0":
        content_length = ""  # version 2015-02-21 and later: an empty string for a zero length
    parts = [
        method,
        std.get("content-encoding", ""),
        std.get("content-language", ""),
        content_length,
        std.get("content-md5", ""),
        std.get("content-type", ""),
        std.get("date", ""),
        std.get("if-modified-since", ""),
        std.get("if-match", ""),
        std.get("if-none-match", ""),
        std.get("if-unmodified-since", ""),
        std.get("range", ""),
    ]
    canon_headers = "".join(
        "%s:%s\n" % (name, ",".join(xms[name])) for name in sorted(xms, key=cmp_to_key(header_name_cmp))
    )
    # CanonicalizedResource: "/" account, then the encoded URI path as sent (path-style URLs
    # already start with /account, so it appears twice), then each query parameter, names
    # lowercased and sorted, values decoded, several values sorted and comma-joined.
    resource = "/" + account + raw_path
    params = {}
    for name, value in query:
        params.setdefault(name.lower(), []).append(value)
    for name in sorted(params):
        resource += "\n%s:%s" % (name, ",".join(sorted(params[name])))
    return "\n".join(parts) + "\n" + canon_headers + resource


def sign(key_b64, text):
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), text.encode("utf-8"), hashlib.sha256).digest()).decode()


# --- file system helpers ----------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2
try:
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
except AttributeError:
    _renameat2 = None
try:
    _fallocate = _libc.fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
except AttributeError:
    _fallocate = None


def rename_noreplace(src, dst):
    """Atomic rename that fails with FileExistsError when dst exists."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        e = ctypes.get_errno()
        if e not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(e, os.strerror(e), src, None, dst)
    os.link(src, dst)  # fails with EEXIST: the check and the new name are one step
    os.unlink(src)


def clear_range(fd, offset, length):
    if _fallocate is not None and _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    zeros = bytes(min(CHUNK, length))
    end = offset + length
    while offset < end:
        offset += os.pwrite(fd, zeros[: min(len(zeros), end - offset)], offset)


def pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def mark_created(path):
    """Record the creation time (Linux keeps no birth time the stdlib can read) in a user xattr."""
    try:
        os.setxattr(path, XATTR_CREATED, str(os.lstat(path).st_mtime_ns).encode())
    except OSError:
        pass  # no user xattrs on this file system: CreationTime falls back to the change time


def created_ns(path, st):
    try:
        return int(os.getxattr(path, XATTR_CREATED))
    except (OSError, ValueError):
        return st.st_ctime_ns


def rfc1123(ns):
    return formatdate(ns / 1e9, usegmt=True)


def iso7(ns):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%07dZ" % (ns % 10**9 // 100)


def etag(st):
    return '"0x%X%05X"' % (st.st_mtime_ns, st.st_size & 0xFFFFF)


def parse_range(value):
    """'bytes=a-b' -> (a, b); 'bytes=a-' -> (a, None); else None."""
    m = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", value or "")
    if not m:
        return None
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) else None
    if b is not None and b < a:
        return None
    return a, b


class AzError(Exception):
    def __init__(self, status, code, message, detail=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}


def not_implemented(what, code="InvalidQueryParameterValue"):
    return AzError(400, code, "The lsbackup Azure Files stand-in does not implement %s." % what)


# --- server -----------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, handler, data, key, account, request_log):
        super().__init__(addr, handler)
        self.data = os.path.realpath(data)
        self.key = key
        self.account = account
        self.request_log = request_log
        self.log_lock = threading.Lock()
        self.endpoint = "http://%s:%d/%s/" % (addr[0], self.server_address[1], account)

    def log_request_line(self, entry):
        if not self.request_log:
            return
        line = json.dumps(entry, separators=(",", ":"), sort_keys=False) + "\n"
        with self.log_lock:
            with open(self.request_log, "a", encoding="utf-8") as f:
                f.write(line)


class Handler(BaseHTTPRequestHandler):
    server_version = "lsbackup-azfile-standin/1.0"
    protocol_version = "HTTP/1.1"
    # no Nagle, and a buffered writer so that headers and a small body leave in one write (see README)
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    # BaseHTTPRequestHandler answers "Expect: 100-continue" itself; keep that.

    def version_string(self):
        return self.server_version

    def log_request(self, code="-", size="-"):
        pass  # the JSON request log replaces the access log

    def log_error(self, fmt, *args):
        sys.stderr.write("%s azfile: %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    # -- plumbing --

    def _setup(self):
        self.request_id = str(uuid.uuid4())
        self.status = None
        self.extra = {}
        raw = self.path
        if raw.startswith("http://") or raw.startswith("https://"):
            sp = urllib.parse.urlsplit(raw)
            raw = sp.path + ("?" + sp.query if sp.query else "")
        self.raw_path, _, self.raw_query = raw.partition("?")
        self.header_list = [(k, v) for k, v in self.headers.items()]
        cl = self.headers.get("Content-Length")
        self.body_left = 0
        self.bad_length = False
        if cl is not None:
            if not re.fullmatch(r"\d+", cl.strip()):
                self.bad_length = True
            else:
                self.body_left = int(cl)
        self.chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        self.version = None

    def read_body(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.rfile.read(min(n - len(out), CHUNK))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            out += chunk
        self.body_left -= n
        return bytes(out)

    def settle_body(self):
        """Before a response: drain what the client still sends, or close the connection after it."""
        if self.chunked:
            self.close_connection = True
            return
        if self.body_left <= 0:
            return
        if self.body_left > DRAIN_LIMIT:
            self.close_connection = True
            return
        try:
            while self.body_left > 0:
                chunk = self.rfile.read(min(self.body_left, CHUNK))
                if not chunk:
                    break
                self.body_left -= len(chunk)
        except OSError:
            pass
        if self.body_left > 0:
            self.close_connection = True

    def common_headers(self):
        self.send_header("x-ms-request-id", self.request_id)
        self.send_header("x-ms-version", self.version or DEFAULT_VERSION)
        crid = self.headers.get("x-ms-client-request-id")
        if crid is not None:
            self.send_header("x-ms-client-request-id", crid)
        if self.close_connection:
            self.send_header("Connection", "close")

    def respond(self, status, headers=None, body=b"", content_type=None):
        self.settle_body()
        self.status = status
        self.send_response(status)
        self.common_headers()
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if content_type:
            self.send_header("Content-Type", content_type)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def respond_error(self, err):
        msg = "%s\nRequestId:%s\nTime:%s" % (err.message, self.request_id, iso7(time.time_ns()))
        body = '<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message>' % (
            escape(err.code), escape(msg))
        if err.detail:
            body += "<AuthenticationErrorDetail>%s</AuthenticationErrorDetail>" % escape(err.detail)
        body += "</Error>"
        headers = {"x-ms-error-code": err.code}
        headers.update(err.headers)
        self.respond(err.status, headers, body.encode("utf-8"), "application/xml")

    def log_entry(self):
        logged = {}
        for k, v in self.header_list:
            lk = k.lower()
            if lk.startswith("x-ms-") or lk in ("content-length", "range"):
                if lk == "x-ms-file-rename-source":
                    v = re.sub(r"(?i)([?&]sig=)[^&]*", r"\1REDACTED", v)
                logged[lk] = v
        try:
            q = {}
            for k, v in parse_query(self.raw_query):
                q.setdefault(k, []).append(v)
            q = {k: (v[0] if len(v) == 1 else v) for k, v in q.items()}
        except (UnicodeDecodeError, ValueError):
            q = {"(undecodable)": self.raw_query}
        self.server.log_request_line(
            {"method": self.command, "path": self.raw_path, "query": q, "headers": logged, "status": self.status})

    def dispatch(self):
        self._setup()
        try:
            try:
                self.route()
            except AzError as err:
                self.respond_error(err)
            except (ConnectionError, BrokenPipeError):
                self.close_connection = True
                if self.status is None:
                    self.status = 499  # the client went away
            except Exception as exc:  # an internal error must still answer like the service
                self.log_error("internal error on %s %s: %r", self.command, self.path, exc)
                if self.status is None:
                    self.respond_error(AzError(500, "InternalError", "The server encountered an internal error: %r" % exc))
                else:
                    self.close_connection = True
        finally:
            self.log_entry()

    do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = do_PATCH = do_OPTIONS = dispatch

    # -- authentication --

    def authenticate(self, query):
        auth = self.headers.get("Authorization")
        if auth is None:
            if any(k.lower() == "sig" for k, _ in query):
                raise AzError(403, "AuthenticationFailed",
                              "Server failed to authenticate the request. The lsbackup Azure Files stand-in does not implement shared access signatures (SAS): use Shared Key.")
            raise AzError(403, "AuthenticationFailed",
                          "Server failed to authenticate the request. The Authorization header is missing (the lsbackup Azure Files stand-in accepts Shared Key only).")
        m = re.fullmatch(r"SharedKey ([^:\s]+):(\S+)", auth.strip())
        if not m:
            raise AzError(403, "AuthenticationFailed",
                          "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                          "The authorization scheme is not supported by the lsbackup Azure Files stand-in (Shared Key only: 'SharedKey %s:<signature>')." % self.server.account)
        if m.group(1) != self.server.account:
            raise AzError(403, "AuthenticationFailed",
                          "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                          "The account '%s' in the Authorization header is not the account of this endpoint ('%s')." % (m.group(1), self.server.account))
        date = self.headers.get("x-ms-date") or self.headers.get("Date")
        if not date:
            raise AzError(403, "AuthenticationFailed",
                          "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                          "Neither x-ms-date nor Date is present in the request.")
        try:
            when = parsedate_to_datetime(date)
            if when.tzinfo is None:
                raise ValueError
            skew = abs((datetime.now(timezone.utc) - when).total_seconds())
        except (TypeError, ValueError, IndexError):
            raise AzError(403, "AuthenticationFailed", "Server failed to authenticate the request.",
                          "The date header '%s' is not a valid RFC 1123 date." % date)
        if skew > CLOCK_SKEW:
            raise AzError(403, "AuthenticationFailed", "Server failed to authenticate the request.",
                          "Request date header too old or too far in the future: '%s'." % date)
        text = string_to_sign(self.command, self.header_list, self.raw_path, query, self.server.account)
        expected = sign(self.server.key, text)
        if not hmac.compare_digest(expected.encode(), m.group(2).encode()):
            raise AzError(403, "AuthenticationFailed",
                          "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                          "The MAC signature found in the HTTP request '%s' is not the same as any computed signature. Server used following string to sign: '%s'." % (m.group(2), text))

    # -- routing --

    def route(self):
        try:
            query = parse_query(self.raw_query)
        except UnicodeDecodeError:
            raise AzError(400, "InvalidQueryParameterValue", "The query string is not valid percent-encoded UTF-8.")
        segs = self.raw_path.split("/")
        if len(segs) < 2 or segs[0] != "" or segs[1] != self.server.account:
            raise AzError(400, "InvalidUri",
                          "The request URI is invalid: the path must start with /%s/ (path-style URLs)." % self.server.account)
        self.authenticate(query)
        version = self.headers.get("x-ms-version")
        if version is None:
            raise AzError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                          headers={})
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version.strip()) or version.strip() < MIN_VERSION:
            raise AzError(400, "InvalidHeaderValue",
                          "The value for one of the HTTP headers is not in the correct format: x-ms-version '%s' (the stand-in serves %s and later)." % (version, MIN_VERSION))
        self.version = version.strip()
        if self.bad_length:
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Content-Length.")
        for k, _ in self.header_list:
            lk = k.lower()
            if lk.startswith("x-ms-meta-"):
                raise not_implemented("metadata (header %s)" % lk, "UnsupportedHeader")
            if lk in UNSUPPORTED_HEADERS:
                raise not_implemented("%s (header %s)" % (UNSUPPORTED_HEADERS[lk], lk), "UnsupportedHeader")

        params = {}
        for k, v in query:
            params.setdefault(k.lower(), []).append(v)
        q = {k: v[-1] for k, v in params.items()}
        if "sharesnapshot" in q or "snapshot" in q:
            raise not_implemented("share snapshots (?sharesnapshot=)")
        restype = q.get("restype")
        comp = q.get("comp")

        try:
            decoded = urllib.parse.unquote(self.raw_path, errors="strict")
        except UnicodeDecodeError:
            raise AzError(400, "InvalidUri", "The request URI is not valid percent-encoded UTF-8.")
        names = decoded.split("/")[2:]
        if names and names[-1] == "":
            names.pop()  # a trailing slash
        if not names:
            raise not_implemented("service-level operations (restype=service, comp=list of shares, comp=properties)")
        share, rel = names[0], names[1:]
        if not SHARE_NAME.fullmatch(share):
            raise AzError(400, "InvalidResourceName", "The specifed resource name contains invalid characters: share name '%s'." % share)
        for n in rel:
            if n in ("", ".", ".."):
                raise AzError(400, "InvalidResourceName", "The specifed resource name contains invalid characters: empty, '.' or '..' path segment.")
            if len(n) > 255 or any(c in BAD_NAME_CHARS for c in n):
                raise AzError(400, "InvalidResourceName", "The specifed resource name contains invalid characters: '%s'." % n)
        if restype == "share":
            raise not_implemented("share operations (restype=share)")
        if restype not in (None, "directory"):
            raise AzError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid: restype=%s." % restype)
        root = os.path.join(self.server.data, share)
        if not os.path.isdir(root):
            raise AzError(404, "ShareNotFound", "The specified share does not exist.")
        path = os.path.join(root, *rel) if rel else root
        real = os.path.realpath(path)
        if real != os.path.realpath(root) and not real.startswith(os.path.realpath(root) + os.sep):
            raise AzError(400, "InvalidResourceName", "The specified path resolves outside the share.")
        self.share, self.rel, self.root, self.fspath, self.q = share, rel, root, path, q

        m = self.command
        if restype == "directory":
            if comp is None and m in ("GET", "HEAD"):
                return self.get_directory_properties()
            if comp == "list" and m == "GET":
                return self.list_directory()
            if comp is None and m == "PUT":
                return self.create_directory()
            if comp is None and m == "DELETE":
                return self.delete_directory()
            if comp is not None and m in ("GET", "HEAD", "PUT", "DELETE"):
                raise not_implemented("directory operation comp=%s with %s" % (comp, m))
        else:
            if comp is None and m == "PUT":
                return self.create_file()
            if comp == "range" and m == "PUT":
                return self.put_range()
            if comp == "properties" and m == "PUT":
                return self.set_file_properties()
            if comp == "rename" and m == "PUT":
                return self.rename_file()
            if comp is None and m == "HEAD":
                return self.get_file_properties()
            if comp is None and m == "GET":
                return self.get_file()
            if comp is None and m == "DELETE":
                return self.delete_file()
            if comp is not None and m in ("GET", "HEAD", "PUT", "DELETE"):
                raise not_implemented("file operation comp=%s with %s" % (comp, m))
        raise AzError(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb %s (lsbackup Azure Files stand-in)." % m)

    # -- helpers --

    def check_parent(self, rel=None):
        rel = self.rel if rel is None else rel
        parent = os.path.join(self.root, *rel[:-1]) if len(rel) > 1 else self.root
        if not os.path.isdir(parent):
            raise AzError(404, "ParentNotFound", "The specified parent path does not exist.")

    def lstat(self, path=None):
        try:
            return os.lstat(path or self.fspath)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def resource_headers(self, st, path):
        return {
            "ETag": etag(st),
            "Last-Modified": rfc1123(st.st_mtime_ns),
            "x-ms-file-creation-time": iso7(created_ns(path, st)),
            "x-ms-file-last-write-time": iso7(st.st_mtime_ns),
            "x-ms-file-change-time": iso7(st.st_ctime_ns),
        }

    def want_file(self):
        """stat of the file, or 404 ResourceNotFound / ParentNotFound (a directory there is not a file)."""
        self.check_parent()
        st = self.lstat()
        if st is None or not stat.S_ISREG(st.st_mode):
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist.")
        return st

    def content_length_header(self, name="x-ms-content-length", required=False):
        v = self.headers.get(name)
        if v is None:
            if required:
                raise AzError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: %s." % name)
            return None
        v = v.strip()
        if not re.fullmatch(r"\d+", v):
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: %s." % name)
        n = int(v)
        if n > MAX_FILE_SIZE:
            raise AzError(400, "OutOfRangeInput", "One of the request inputs is out of range: %s %d exceeds 4 TiB (%d)." % (name, n, MAX_FILE_SIZE))
        return n

    def no_body(self):
        if self.body_left > 0 or self.chunked:
            raise AzError(400, "InvalidInput", "One of the request inputs is not valid: this operation takes no request body.")

    # -- directories --

    def get_directory_properties(self):
        if self.rel:
            self.check_parent()
        st = self.lstat()
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist.")
        h = self.resource_headers(st, self.fspath)
        h["x-ms-file-attributes"] = "Directory"
        self.respond(200, h)

    def create_directory(self):
        self.no_body()
        if not self.rel:
            raise AzError(409, "ResourceAlreadyExists", "The specified resource already exists (the root directory of the share).")
        self.check_parent()
        try:
            os.mkdir(self.fspath, 0o755)
        except FileExistsError:
            st = self.lstat()
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise AzError(409, "ResourceAlreadyExists", "The specified resource already exists.")
            raise AzError(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the existing resource (a file has this name).")
        except (FileNotFoundError, NotADirectoryError):
            raise AzError(404, "ParentNotFound", "The specified parent path does not exist.")
        mark_created(self.fspath)
        st = os.lstat(self.fspath)
        h = self.resource_headers(st, self.fspath)
        h["x-ms-file-attributes"] = "Directory"
        h["x-ms-request-server-encrypted"] = "false"
        self.respond(201, h)

    def delete_directory(self):
        self.no_body()
        if not self.rel:
            raise AzError(400, "InvalidResourceName", "The root directory of a share cannot be deleted.")
        self.check_parent()
        st = self.lstat()
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist.")
        try:
            os.rmdir(self.fspath)
        except OSError as e:
            if e.errno == errno.ENOTEMPTY:
                raise AzError(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            if e.errno == errno.ENOENT:
                raise AzError(404, "ResourceNotFound", "The specified resource does not exist.")
            raise
        self.respond(202)

    def list_directory(self):
        q = self.q
        include = set()
        for item in (q.get("include") or "").split(","):
            item = item.strip().lower()
            if not item:
                continue
            if item in ("timestamps", "etag"):
                include.add(item)
            elif item in ("attributes", "permissionkey"):
                raise not_implemented("include=%s in List Directories and Files" % item)
            else:
                raise AzError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid: include=%s." % item)
        if (self.headers.get("x-ms-file-extended-info") or "").strip().lower() == "true":
            raise not_implemented("x-ms-file-extended-info: true (file ids) in List Directories and Files", "UnsupportedHeader")
        maxresults = MAX_RESULTS
        if "maxresults" in q:
            if not re.fullmatch(r"\d+", q["maxresults"]) or int(q["maxresults"]) < 1:
                raise AzError(400, "OutOfRangeQueryParameterValue", "One of the query parameters specified in the request URI is outside the permissible range: maxresults=%s." % q["maxresults"])
            maxresults = min(int(q["maxresults"]), MAX_RESULTS)
        start = None
        if q.get("marker"):
            m = q["marker"]
            try:
                if not m.startswith(MARKER_PREFIX):
                    raise ValueError
                start = base64.urlsafe_b64decode(m[len(MARKER_PREFIX):].encode()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise AzError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid: marker.")
        prefix = q.get("prefix") or ""
        if self.rel:
            self.check_parent()
        st = self.lstat()
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist.")
        entries = []
        with os.scandir(self.fspath) as it:
            for e in it:
                if not e.name.startswith(prefix) or (start is not None and e.name < start):
                    continue
                try:
                    est = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(est.st_mode):
                    entries.append((e.name, "Directory", est, e.path))
                elif stat.S_ISREG(est.st_mode):
                    entries.append((e.name, "File", est, e.path))
        entries.sort(key=lambda x: x[0])
        page, rest = entries[:maxresults], entries[maxresults:]
        out = ['<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint=%s ShareName=%s DirectoryPath=%s>' % (
            quoteattr(self.server.endpoint), quoteattr(self.share), quoteattr("/".join(self.rel)))]
        if "marker" in q:
            out.append("<Marker>%s</Marker>" % escape(q["marker"]))
        if "prefix" in q:
            out.append("<Prefix>%s</Prefix>" % escape(q["prefix"]))
        if "maxresults" in q:
            out.append("<MaxResults>%s</MaxResults>" % escape(q["maxresults"]))
        out.append("<Entries>")
        for name, kind, est, epath in page:
            props = []
            if kind == "File":
                props.append("<Content-Length>%d</Content-Length>" % est.st_size)
            if "timestamps" in include:
                props.append("<CreationTime>%s</CreationTime><LastAccessTime>%s</LastAccessTime><LastWriteTime>%s</LastWriteTime><ChangeTime>%s</ChangeTime><Last-Modified>%s</Last-Modified>" % (
                    iso7(created_ns(epath, est)), iso7(est.st_atime_ns), iso7(est.st_mtime_ns), iso7(est.st_ctime_ns), rfc1123(est.st_mtime_ns)))
            if "etag" in include:
                props.append("<Etag>%s</Etag>" % escape(etag(est)))
            out.append("<%s><Name>%s</Name>%s</%s>" % (
                kind, escape(name), "<Properties>%s</Properties>" % "".join(props) if props else "<Properties />", kind))
        out.append("</Entries>")
        if rest:
            out.append("<NextMarker>%s</NextMarker>" % escape(MARKER_PREFIX + base64.urlsafe_b64encode(rest[0][0].encode()).decode()))
        else:
            out.append("<NextMarker />")
        out.append("</EnumerationResults>")
        self.respond(200, {}, "".join(out).encode("utf-8"), "application/xml")

    # -- files --

    def create_file(self):
        self.no_body()
        if not self.rel:
            raise AzError(400, "InvalidResourceName", "A file needs a name below the share.")
        t = (self.headers.get("x-ms-type") or "").strip().lower()
        if t != "file":
            if not t:
                raise AzError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-type.")
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-type.")
        size = self.content_length_header(required=True)
        self.check_parent()
        st = self.lstat()
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise AzError(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the existing resource (a directory has this name).")
        # create or replace, like Azure: a new file of `size` zero bytes (sparse)
        fd = os.open(self.fspath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        mark_created(self.fspath)
        st = os.lstat(self.fspath)
        h = self.resource_headers(st, self.fspath)
        h["x-ms-request-server-encrypted"] = "false"
        self.respond(201, h)

    def put_range(self):
        if self.chunked and self.headers.get("Content-Length") is None:
            raise AzError(411, "MissingContentLengthHeader", "Content-Length header value must be specified for Put Range.")
        length = self.body_left
        if length > MAX_RANGE:
            raise AzError(413, "RequestBodyTooLarge",
                          "The request body is too large and exceeds the maximum permissible limit (4 MiB).",
                          headers={})
        write = (self.headers.get("x-ms-write") or "").strip().lower()
        if write not in ("update", "clear"):
            if not write:
                raise AzError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-write.")
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-write.")
        rh = self.headers.get("x-ms-range") or self.headers.get("Range")
        if rh is None:
            raise AzError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-range.")
        rng = parse_range(rh)
        if rng is None or rng[1] is None:
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: range '%s' (bytes=start-end)." % rh)
        a, b = rng
        n = b - a + 1
        if write == "update":
            if n > MAX_RANGE:
                raise AzError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit (4 MiB).")
            if length != n:
                raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Content-Length %d does not match the range's %d bytes." % (length, n))
        elif length != 0:
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Content-Length must be 0 with x-ms-write: clear.")
        md5 = self.headers.get("Content-MD5")
        st = self.want_file()
        if b >= st.st_size:
            raise AzError(416, "InvalidRange", "The range specified is invalid for the current size of the resource (file size %d, range end %d)." % (st.st_size, b))
        fd = os.open(self.fspath, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if write == "update":
                data = self.read_body(n)
                digest = hashlib.md5(data).digest()
                if md5 is not None and base64.b64encode(digest).decode() != md5.strip():
                    raise AzError(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
                pwrite_all(fd, data, a)
            else:
                clear_range(fd, a, n)
                digest = None
            st = os.fstat(fd)
        finally:
            os.close(fd)
        h = {"ETag": etag(st), "Last-Modified": rfc1123(st.st_mtime_ns), "x-ms-request-server-encrypted": "false",
             "x-ms-file-last-write-time": iso7(st.st_mtime_ns)}
        if digest is not None:
            h["Content-MD5"] = base64.b64encode(digest).decode()
        self.respond(201, h)

    def set_file_properties(self):
        self.no_body()
        size = self.content_length_header()
        st = self.want_file()
        if size is not None:
            os.truncate(self.fspath, size)
            st = os.lstat(self.fspath)
        self.respond(200, self.resource_headers(st, self.fspath))

    def get_file_properties(self):
        st = self.want_file()
        h = self.resource_headers(st, self.fspath)
        h.update({"Content-Length": str(st.st_size), "Content-Type": "application/octet-stream", "x-ms-type": "File"})
        self.respond(200, h)

    def get_file(self):
        self.no_body()
        st = self.want_file()
        rh = self.headers.get("x-ms-range") or self.headers.get("Range")
        want_md5 = (self.headers.get("x-ms-range-get-content-md5") or "").strip().lower() == "true"
        size = st.st_size
        start, end, status = 0, size - 1, 200
        if rh is not None:
            rng = parse_range(rh)
            if rng is None:
                raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: range '%s' (bytes=start-end or bytes=start-)." % rh)
            if rng[0] >= size:
                raise AzError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                              headers={"Content-Range": "bytes */%d" % size})
            start, end, status = rng[0], min(rng[1] if rng[1] is not None else size - 1, size - 1), 206
        elif want_md5:
            raise AzError(400, "InvalidHeaderValue", "x-ms-range-get-content-md5 needs a range.")
        count = end - start + 1 if size else 0
        if want_md5 and count > MAX_RANGE:
            raise AzError(400, "OutOfRangeInput", "One of the request inputs is out of range: x-ms-range-get-content-md5 needs a range of at most 4 MiB.")
        fd = os.open(self.fspath, os.O_RDONLY | os.O_CLOEXEC)
        try:
            h = self.resource_headers(os.fstat(fd), self.fspath)
            h.update({"Content-Length": str(count), "Content-Type": "application/octet-stream", "x-ms-type": "File",
                      "Accept-Ranges": "bytes"})
            if status == 206:
                h["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
            if want_md5:
                h["Content-MD5"] = base64.b64encode(hashlib.md5(os.pread(fd, count, start)).digest()).decode()
            self.respond(status, h)
            off, left = start, count
            while left > 0:
                chunk = os.pread(fd, min(CHUNK, left), off)
                if not chunk:  # the file shrank under us: the promised length cannot be kept
                    self.close_connection = True
                    break
                self.wfile.write(chunk)
                off += len(chunk)
                left -= len(chunk)
            self.wfile.flush()
        finally:
            os.close(fd)

    def delete_file(self):
        self.no_body()
        self.want_file()
        try:
            os.unlink(self.fspath)
        except FileNotFoundError:
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist.")
        self.respond(202)

    def rename_file(self):
        self.no_body()
        if not self.rel:
            raise AzError(400, "InvalidResourceName", "A file needs a name below the share.")
        src_url = self.headers.get("x-ms-file-rename-source")
        if not src_url:
            raise AzError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-file-rename-source.")
        replace = (self.headers.get("x-ms-file-rename-replace-if-exists") or "false").strip().lower()
        if replace not in ("true", "false"):
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-file-rename-replace-if-exists.")
        sp = urllib.parse.urlsplit(src_url.strip())
        if sp.scheme not in ("http", "https") or not sp.netloc:
            raise AzError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-file-rename-source must be the full URL of the source file.")
        try:
            src_names = urllib.parse.unquote(sp.path, errors="strict").split("/")
        except UnicodeDecodeError:
            raise AzError(400, "InvalidHeaderValue", "x-ms-file-rename-source is not valid percent-encoded UTF-8.")
        if len(src_names) < 4 or src_names[0] != "" or src_names[1] != self.server.account or src_names[2] != self.share:
            raise AzError(400, "InvalidHeaderValue",
                          "The value for one of the HTTP headers is not in the correct format: x-ms-file-rename-source must name a file in the same account and share (/%s/%s/...)." % (self.server.account, self.share))
        src_rel = src_names[3:]
        for n in src_rel:
            if n in ("", ".", "..") or len(n) > 255 or any(c in BAD_NAME_CHARS for c in n):
                raise AzError(400, "InvalidResourceName", "The specifed resource name contains invalid characters: rename source segment '%s'." % n)
        src = os.path.join(self.root, *src_rel)
        rs = os.path.realpath(src)
        if not rs.startswith(os.path.realpath(self.root) + os.sep):
            raise AzError(400, "InvalidResourceName", "The rename source resolves outside the share.")
        sst = self.lstat(src)
        if sst is None:
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist (rename source).")
        if not stat.S_ISREG(sst.st_mode):
            raise not_implemented("Rename Directory (the rename source is a directory)")
        self.check_parent()
        dst = self.fspath
        dst_st = self.lstat()
        if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
            raise AzError(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the existing resource (a directory has the destination name).")
        try:
            if replace == "true":
                os.rename(src, dst)
            else:
                rename_noreplace(src, dst)
        except FileExistsError:
            raise AzError(409, "ResourceAlreadyExists", "The specified resource already exists.")
        except FileNotFoundError:
            raise AzError(404, "ResourceNotFound", "The specified resource does not exist (rename source).")
        st = os.lstat(dst)
        self.respond(200, self.resource_headers(st, dst))


# --- commands ---------------------------------------------------------------------------------


def ensure_layout(data, share, dirs):
    os.makedirs(data, exist_ok=True)
    if share:
        if not SHARE_NAME.fullmatch(share):
            sys.exit("azfile: invalid share name %r" % share)
        p = os.path.join(data, share)
        if not os.path.isdir(p):
            os.makedirs(p)
            mark_created(p)
        for d in dirs:
            cur = p
            for part in [x for x in d.split("/") if x]:
                cur = os.path.join(cur, part)
                if not os.path.isdir(cur):
                    os.mkdir(cur)
                    mark_created(cur)


def cmd_serve(args):
    ensure_layout(args.data, args.share, args.dir or [])
    if args.request_log:
        os.makedirs(os.path.dirname(os.path.abspath(args.request_log)), exist_ok=True)
    srv = Server((args.host, args.port), Handler, args.data, args.key, args.account, args.request_log)
    sys.stderr.write("%s azfile: STAND-IN Azure Files on %s, data %s\n" % (time.strftime("%H:%M:%S"), srv.endpoint, srv.data))
    sys.stderr.flush()
    srv.serve_forever()


def signed_request(endpoint, key, account, method, path_query, headers=None):
    """A minimal Shared Key client (readiness check only; the independent check is azfile_check.py)."""
    sp = urllib.parse.urlsplit(endpoint)
    full = sp.path.rstrip("/") + path_query
    raw_path, _, raw_query = full.partition("?")
    h = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2025-05-05"}
    h.update(headers or {})
    text = string_to_sign(method, list(h.items()), raw_path, parse_query(raw_query), account)
    h["Authorization"] = "SharedKey %s:%s" % (account, sign(key, text))
    conn = http.client.HTTPConnection(sp.hostname, sp.port or 80, timeout=5)
    try:
        conn.request(method, full, headers=h)
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("x-ms-error-code")
    finally:
        conn.close()


def cmd_check(args):
    path = "/%s/%s?restype=directory" % (urllib.parse.quote(args.share), urllib.parse.quote(args.dir))
    status, code = signed_request(args.endpoint, args.key, args.account, "GET", path)
    if status != 200:
        sys.exit("azfile check: Get Directory Properties %s: %s %s" % (path, status, code))
    wrong = base64.b64encode(b"not-the-key-" * 4).decode()
    status, code = signed_request(args.endpoint, wrong, args.account, "GET", path)
    if status != 403 or code != "AuthenticationFailed":
        sys.exit("azfile check: a wrong key got %s %s, not 403 AuthenticationFailed" % (status, code))
    print("ok")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--data", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=10004)
    s.add_argument("--account", default=ACCOUNT)
    s.add_argument("--key", default=DEV_KEY)
    s.add_argument("--share", help="share created at start (a top directory of --data)")
    s.add_argument("--dir", action="append", help="directory created in --share at start (repeatable)")
    s.add_argument("--request-log")
    c = sub.add_parser("check")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--account", default=ACCOUNT)
    c.add_argument("--key", default=DEV_KEY)
    c.add_argument("--share", required=True)
    c.add_argument("--dir", required=True)
    args = p.parse_args()
    (cmd_serve if args.cmd == "serve" else cmd_check)(args)


if __name__ == "__main__":
    main()
