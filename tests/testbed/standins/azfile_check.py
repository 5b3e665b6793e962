#!/usr/bin/env python3
"""Check the Azure Files STAND-IN (standins/azfile.py) with Microsoft's own client library.

Run with the test bed venv's python (it has azure-storage-file-share):

    $LSB_TESTBED/objstore-venv/bin/python tests/testbed/standins/azfile_check.py [-v]

The connection string, share and directory come from the environment (LSB_AZFILE_CONNECTION_STRING,
LSB_AZFILE_SHARE, LSB_AZFILE_DIR, LSB_AZFILE_LOG), else from $LSB_TESTBED/env (read, never sourced).
Everything happens in a fresh directory <dir>/azfile-check-<random>, removed at the end. The SDK
signs every request with Shared Key, so each accepted request is a signature the stand-in verified.
Prints one line per check and "azfile_check: all N checks passed"; exits 1 on the first failure.
"""

import hashlib
import json
import os
import sys
import uuid

from azure.core.exceptions import HttpResponseError
from azure.storage.fileshare import ShareDirectoryClient, ShareFileClient

MiB = 1024 * 1024
VERBOSE = "-v" in sys.argv[1:]
CHECKS = 0


def env(name, default=None):
    if os.environ.get(name):
        return os.environ[name]
    path = os.path.join(os.environ.get("LSB_TESTBED", "/tmp/lsbackup-testbed"), "env")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(name + "="):
                    return line.rstrip("\n").split("=", 1)[1]
    if default is None:
        sys.exit("azfile_check: %s is not set and not in %s" % (name, path))
    return default


def ok(what):
    global CHECKS
    CHECKS += 1
    print("ok   %s" % what, flush=True)


def fail(what):
    print("FAIL %s" % what, flush=True)
    sys.exit(1)


def expect_error(what, status, code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except HttpResponseError as e:
        got_code = e.error_code or (e.response.headers.get("x-ms-error-code") if e.response is not None else None)
        if e.status_code == status and got_code == code:
            ok("%s -> %d %s" % (what, status, code))
            return e
        fail("%s: expected %d %s, got %s %s: %s" % (what, status, code, e.status_code, got_code, str(e).splitlines()[0]))
    fail("%s: expected %d %s, but it succeeded" % (what, status, code))


def log_lines(path, start):
    with open(path, encoding="utf-8") as f:
        f.seek(start)
        return [json.loads(line) for line in f if line.strip()]


def main():
    conn = env("LSB_AZFILE_CONNECTION_STRING")
    share = env("LSB_AZFILE_SHARE", "lsbackup-test")
    base = env("LSB_AZFILE_DIR", "backups")
    reqlog = env("LSB_AZFILE_LOG", "")
    kw = {"logging_enable": VERBOSE}
    if VERBOSE:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

    top = "%s/azfile-check-%s" % (base, uuid.uuid4().hex[:8])
    d = ShareDirectoryClient.from_connection_string(conn, share, top, **kw)
    if not d.url.startswith(env("LSB_AZFILE_ENDPOINT", "http://127.0.0.1:10004/devstoreaccount1") + "/"):
        fail("the SDK's directory URL %s is not path-style under the endpoint" % d.url)

    def fc(path):
        return ShareFileClient.from_connection_string(conn, share, path, **kw)

    # -- directories --
    d.create_directory()
    ok("Create Directory %s" % top)
    expect_error("Create Directory again", 409, "ResourceAlreadyExists", d.create_directory)
    props = d.get_directory_properties()
    ok("Get Directory Properties (etag %s, last_modified %s)" % (props.etag, props.last_modified))
    missing_parent = ShareDirectoryClient.from_connection_string(conn, share, top + "/no/such", **kw)
    expect_error("Get Directory Properties below a missing directory", 404, "ParentNotFound", missing_parent.get_directory_properties)
    expect_error("Create Directory below a missing directory", 404, "ParentNotFound", missing_parent.create_directory)
    other_share = ShareDirectoryClient.from_connection_string(conn, "no-such-share", "x", **kw)
    expect_error("Get Directory Properties in an unknown share", 404, "ShareNotFound", other_share.get_directory_properties)

    # -- upload: Create File + Put Range in 4 MiB chunks, several at once --
    data = os.urandom(10 * MiB + 12345)
    name = top + "/big file +%ü.bin"  # space, plus, percent and non-ASCII: the path signs as encoded on the wire
    f = fc(name)
    log_start = os.path.getsize(reqlog) if reqlog and os.path.exists(reqlog) else 0
    f.upload_file(data, max_concurrency=3)
    ok("upload_file of %d bytes (max_concurrency=3) to %r" % (len(data), name))
    if reqlog:
        entries = [e for e in log_lines(reqlog, log_start) if e["method"] == "PUT"]
        creates = [e for e in entries if not e["query"]]
        ranges = sorted((e["headers"].get("x-ms-range"), e["headers"].get("content-length"), e["status"])
                        for e in entries if e["query"].get("comp") == "range")
        if len(creates) != 1 or creates[0]["status"] != 201 or creates[0]["headers"].get("x-ms-content-length") != str(len(data)):
            fail("request log: expected one Create File of %d bytes, got %s" % (len(data), creates))
        want = [("bytes=0-4194303", "4194304", 201), ("bytes=4194304-8388607", "4194304", 201),
                ("bytes=8388608-%d" % (len(data) - 1), str(len(data) - 8 * MiB), 201)]
        if ranges != want:
            fail("request log: expected Put Ranges %s, got %s" % (want, ranges))
        ok("request log shows Create File and 3 Put Ranges (4 MiB, 4 MiB, rest), none carrying Authorization")
        if any("authorization" in e["headers"] for e in log_lines(reqlog, log_start)):
            fail("the request log holds an Authorization header")
    p = f.get_file_properties()
    if p.size != len(data):
        fail("Get File Properties: size %s, expected %d" % (p.size, len(data)))
    ok("Get File Properties: size %d" % p.size)

    # -- download whole and ranged --
    got = f.download_file(max_concurrency=2).readall()
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        fail("download_file: content differs (%d bytes)" % len(got))
    ok("download_file: %d bytes, identical" % len(got))
    part = f.download_file(offset=5 * MiB - 7, length=MiB + 13).readall()
    if part != data[5 * MiB - 7: 6 * MiB + 6]:
        fail("ranged download differs")
    ok("ranged download (offset %d, length %d) identical" % (5 * MiB - 7, MiB + 13))

    # -- listing with paging --
    for i in range(5):
        fc("%s/small-%d.dat" % (top, i)).upload_file(b"x" * i)
    ShareDirectoryClient.from_connection_string(conn, share, top + "/sub", **kw).create_directory()
    pages = d.list_directories_and_files(results_per_page=2, include=["timestamps", "Etag"]).by_page()
    items, npages = [], 0
    for page in pages:
        npages += 1
        items.extend(page)
    names = sorted(i["name"] for i in items)
    expect_names = sorted(["big file +%ü.bin", "sub"] + ["small-%d.dat" % i for i in range(5)])
    if names != expect_names or npages != 4:
        fail("listing: %d pages, names %s; expected 4 pages of %s" % (npages, names, expect_names))
    sizes = {i["name"]: i.get("size") for i in items if not i["is_directory"]}
    if sizes["big file +%ü.bin"] != len(data) or sizes["small-3.dat"] != 3:
        fail("listing sizes %s" % sizes)
    big = next(i for i in items if i["name"] == "big file +%ü.bin")
    if big.get("last_modified") is None or big.get("etag") is None:
        fail("listing with include=timestamps,Etag has no last_modified/etag: %s" % big)
    ok("List Directories and Files: 7 entries in 4 pages of 2 (NextMarker paging), sizes, timestamps, etags")
    pref = list(d.list_directories_and_files(name_starts_with="small-"))
    if sorted(i["name"] for i in pref) != ["small-%d.dat" % i for i in range(5)]:
        fail("listing with prefix: %s" % [i["name"] for i in pref])
    ok("List Directories and Files with prefix")

    # -- empty file, errors of Put Range --
    empty = fc(top + "/small-0.dat")
    if empty.download_file().readall() != b"":
        fail("download of an empty file")
    ok("download of an empty file (416 on the first ranged GET, then a plain GET)")
    expect_error("Put Range beyond the file size", 416, "InvalidRange", fc(top + "/small-4.dat").upload_range, b"abcd", 2, 4)
    expect_error("Put Range of 4 MiB + 1", 413, "RequestBodyTooLarge", f.upload_range, b"y" * (4 * MiB + 1), 0, 4 * MiB + 1)
    expect_error("Put Range on a missing file", 404, "ResourceNotFound", fc(top + "/nope").upload_range, b"ab", 0, 2)
    expect_error("Create File in a missing directory", 404, "ParentNotFound", fc(top + "/no/such/file").create_file, 1)
    expect_error("Create File of 4 TiB + 1", 400, "OutOfRangeInput", fc(top + "/huge").create_file, 4 * 1024**4 + 1)
    expect_error("Get File Properties of a missing file", 404, "ResourceNotFound", fc(top + "/nope").get_file_properties)

    # -- clear range, resize --
    f.clear_range(offset=MiB, length=2 * MiB)
    got = f.download_file(offset=MiB - 512, length=2 * MiB + 1024).readall()
    if got != data[MiB - 512: MiB] + bytes(2 * MiB) + data[3 * MiB: 3 * MiB + 512]:
        fail("clear_range: content not zeroed exactly in the range")
    data = data[:MiB] + bytes(2 * MiB) + data[3 * MiB:]
    ok("Put Range x-ms-write: clear zeroes exactly the range")
    f.resize_file(20 * MiB)
    if f.get_file_properties().size != 20 * MiB:
        fail("resize to 20 MiB")
    tail = f.download_file(offset=len(data) - 10, length=20).readall()
    if tail != data[-10:] + bytes(10):
        fail("resize: the extension does not read as zeros")
    f.resize_file(MiB)
    if f.get_file_properties().size != MiB or f.download_file().readall() != data[:MiB]:
        fail("resize to 1 MiB")
    ok("Set File Properties x-ms-content-length: extend (zeros) and truncate")
    expect_error("resize to 4 TiB + 1", 400, "OutOfRangeInput", f.resize_file, 4 * 1024**4 + 1)
    f.upload_file(b"replaced")
    if f.download_file().readall() != b"replaced":
        fail("Create File over an existing file does not replace it")
    ok("Create File replaces an existing file")

    # -- rename --
    src = fc(top + "/small-1.dat")
    expect_error("rename onto an existing name, overwrite=False", 409, "ResourceAlreadyExists",
                 src.rename_file, top + "/small-2.dat", overwrite=False)
    if src.download_file().readall() != b"x" or fc(top + "/small-2.dat").download_file().readall() != b"xx":
        fail("a refused rename changed a file")
    moved = src.rename_file(top + "/small-2.dat", overwrite=True)
    if moved.download_file().readall() != b"x":
        fail("rename with overwrite=True: destination content")
    expect_error("renamed source is gone", 404, "ResourceNotFound", src.get_file_properties)
    ok("Rename File with overwrite=True replaces the destination (%s)" % moved.url)
    moved2 = moved.rename_file(top + "/sub/renamed.dat")
    if moved2.download_file().readall() != b"x":
        fail("rename into a subdirectory")
    ok("Rename File into a subdirectory (default: no overwrite)")
    expect_error("rename of a missing source", 404, "ResourceNotFound", src.rename_file, top + "/whatever")

    # -- delete --
    expect_error("Delete Directory that is not empty", 409, "DirectoryNotEmpty", d.delete_directory)
    for item in d.list_directories_and_files():
        if not item["is_directory"]:
            fc("%s/%s" % (top, item["name"])).delete_file()
    moved2.delete_file()
    expect_error("Delete File again", 404, "ResourceNotFound", moved2.delete_file)
    ShareDirectoryClient.from_connection_string(conn, share, top + "/sub", **kw).delete_directory()
    d.delete_directory()
    expect_error("Get Directory Properties of the deleted directory", 404, "ResourceNotFound", d.get_directory_properties)
    ok("Delete File and Delete Directory")

    # -- authentication --
    wrong = conn.replace("AccountKey=", "AccountKey=AAAA", 1)
    e = expect_error("wrong key", 403, "AuthenticationFailed",
                     ShareDirectoryClient.from_connection_string(wrong, share, base, **kw).get_directory_properties)
    body = e.response.text() if e.response is not None else ""
    if "<Code>AuthenticationFailed</Code>" not in body:
        fail("the 403 body is not the XML Error: %r" % body[:200])
    ok("the 403 carries the XML Error body")
    print("azfile_check: all %d checks passed" % CHECKS)


if __name__ == "__main__":
    main()
