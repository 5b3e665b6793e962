#!/usr/bin/env python3
"""Inspect and prepare the test bed's object stores (moto S3, azurite blob), independently of lsbackup.

Run with the test bed's venv interpreter ($LSB_OBJSTORE_PYTHON: boto3, azure-storage-blob). Endpoint
and keys come from the environment (LSB_S3_ENDPOINT, LSB_S3_ACCESS_KEY_ID, LSB_S3_SECRET_ACCESS_KEY,
LSB_S3_REGION, LSB_AZURE_CONNECTION_STRING or LSB_AZURE_ACCOUNT/LSB_AZURE_KEY/LSB_AZURE_BLOB_ENDPOINT);
a variable that is unset is read from the test bed's env file ($LSB_TESTBED/env, default
/tmp/lsbackup-testbed/env). Every subcommand prints JSON on stdout; on error it prints
"objstore_probe: error: ..." on stderr and exits 1 (2 for a usage error).

  s3-objects BUCKET [PREFIX]        [{"key", "size"}]
  s3-uploads BUCKET [PREFIX]        in-progress multipart uploads [{"key", "upload_id"}]
  s3-get BUCKET KEY OUTFILE         {"key", "size"}
  s3-put BUCKET KEY INFILE          {"key", "size"}
  s3-empty BUCKET PREFIX            delete objects and abort multipart uploads under PREFIX
  az-blobs CONTAINER [PREFIX]       committed blobs [{"name", "size"}]
  az-uncommitted CONTAINER [PREFIX] blobs holding uncommitted blocks [{"name", "uncommitted_blocks"}]
                                    (uncommitted_blocks: how many)
  az-get CONTAINER NAME OUTFILE     {"name", "size"}
  az-put CONTAINER NAME INFILE      {"name", "size"} (overwrites)
  az-empty CONTAINER PREFIX         delete blobs under PREFIX; uncommitted blocks are first dropped
                                    with an empty Put Block List (azurite keeps them through Put Blob
                                    and Delete Blob)

Used by tests/testbed/svc_objstore.sh:
  s3-ready                          moto answers (no AWS action: does not use up the no-auth count)
  s3-setup BUCKET                   on a fresh moto: IAM user + key + policy, then the bucket
  s3-check BUCKET                   the keys work, a wrong secret gets 403
  az-ready                          azurite answers an authenticated request
  az-setup CONTAINER                create CONTAINER (idempotent), check that a wrong key gets 403
"""

import json
import os
import sys
import urllib.request

TESTBED_ENV_DEFAULT = "/tmp/lsbackup-testbed"


class ProbeError(Exception):
    pass


_env_file_cache = None


def _env_file():
    global _env_file_cache
    if _env_file_cache is None:
        _env_file_cache = {}
        path = os.path.join(os.environ.get("LSB_TESTBED") or TESTBED_ENV_DEFAULT, "env")
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if "=" in line and not line.startswith("#"):
                        k, v = line.split("=", 1)
                        _env_file_cache[k] = v
        except FileNotFoundError:
            pass
    return _env_file_cache


def setting(name, required=True):
    v = os.environ.get(name)
    if v is None:
        v = _env_file().get(name)
    if required and not v:
        raise ProbeError(f"{name} is not set (environment or test bed env file)")
    return v


def out(value):
    json.dump(value, sys.stdout)
    sys.stdout.write("\n")


# --- S3 (moto) --------------------------------------------------------------


def s3_client(key_id=None, secret=None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=setting("LSB_S3_ENDPOINT"),
        region_name=setting("LSB_S3_REGION", required=False) or "us-east-1",
        aws_access_key_id=key_id or setting("LSB_S3_ACCESS_KEY_ID"),
        aws_secret_access_key=secret or setting("LSB_S3_SECRET_ACCESS_KEY"),
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def s3_objects(bucket, prefix=""):
    res = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            res.append({"key": o["Key"], "size": o["Size"]})
    return res


def s3_uploads(bucket, prefix=""):
    res = []
    for page in s3_client().get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for u in page.get("Uploads", []):
            res.append({"key": u["Key"], "upload_id": u["UploadId"]})
    return res


def cmd_s3_objects(bucket, prefix=""):
    out(s3_objects(bucket, prefix))


def cmd_s3_uploads(bucket, prefix=""):
    out(s3_uploads(bucket, prefix))


def cmd_s3_get(bucket, key, outfile):
    s3_client().download_file(bucket, key, outfile)
    out({"key": key, "size": os.path.getsize(outfile)})


def cmd_s3_put(bucket, key, infile):
    with open(infile, "rb") as f:
        s3_client().put_object(Bucket=bucket, Key=key, Body=f.read())
    out({"key": key, "size": os.path.getsize(infile)})


def cmd_s3_empty(bucket, prefix):
    c = s3_client()
    aborted = 0
    for u in s3_uploads(bucket, prefix):
        c.abort_multipart_upload(Bucket=bucket, Key=u["key"], UploadId=u["upload_id"])
        aborted += 1
    keys = [o["key"] for o in s3_objects(bucket, prefix)]
    for i in range(0, len(keys), 1000):
        r = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})
        if r.get("Errors"):
            raise ProbeError(f"delete_objects: {r['Errors'][:3]}")
    out({"deleted": len(keys), "aborted_uploads": aborted})


def cmd_s3_ready():
    url = setting("LSB_S3_ENDPOINT").rstrip("/") + "/moto-api/config"
    with urllib.request.urlopen(url, timeout=3) as r:
        json.load(r)
    out({"ready": True})


def cmd_s3_setup(bucket):
    """On a moto started with INITIAL_NO_AUTH_ACTION_COUNT=3: the first 3 actions (not checked) create
    the IAM user, its access key and its policy; everything after that is authenticated."""
    import boto3
    from botocore.config import Config

    endpoint = setting("LSB_S3_ENDPOINT")
    region = setting("LSB_S3_REGION", required=False) or "us-east-1"
    cfg = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 1, "mode": "standard"})
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="lsbackup-testbed-bootstrap",
        aws_secret_access_key="unchecked",
        config=cfg,
    )
    iam.create_user(UserName="lsbackup")  # no-auth action 1
    key = iam.create_access_key(UserName="lsbackup")["AccessKey"]  # 2
    iam.put_user_policy(  # 3
        UserName="lsbackup",
        PolicyName="lsbackup-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    s3 = s3_client(key["AccessKeyId"], key["SecretAccessKey"])
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    out({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]})


def cmd_s3_check(bucket):
    from botocore.exceptions import ClientError

    s3_client().head_bucket(Bucket=bucket)
    wrong = setting("LSB_S3_SECRET_ACCESS_KEY")[:-4] + "XXXX"
    try:
        s3_client(setting("LSB_S3_ACCESS_KEY_ID"), wrong).head_bucket(Bucket=bucket)
    except ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 403:
            raise ProbeError(f"a wrong secret got HTTP {status}, not 403")
    else:
        raise ProbeError("a wrong secret key was accepted: authentication is not enforced")
    out({"bucket": bucket, "auth_enforced": True})


# --- Azure blob (azurite) ---------------------------------------------------


def az_conn_str(key=None):
    cs = None if key else setting("LSB_AZURE_CONNECTION_STRING", required=False)
    if cs:
        return cs
    account = setting("LSB_AZURE_ACCOUNT")
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key or setting('LSB_AZURE_KEY')};"
        f"BlobEndpoint={setting('LSB_AZURE_BLOB_ENDPOINT')};"
    )


def az_service(key=None):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(
        az_conn_str(key), connection_timeout=5, read_timeout=60, retry_total=0
    )


def az_container(container):
    return az_service().get_container_client(container)


def az_uncommitted(container, prefix=""):
    c = az_container(container)
    res = []
    for b in c.list_blobs(name_starts_with=prefix or None, include=["uncommittedblobs"]):
        _, uncommitted = c.get_blob_client(b.name).get_block_list("uncommitted")
        if uncommitted:
            res.append({"name": b.name, "uncommitted_blocks": len(uncommitted)})
    return res


def cmd_az_blobs(container, prefix=""):
    c = az_container(container)
    out([{"name": b.name, "size": b.size} for b in c.list_blobs(name_starts_with=prefix or None)])


def cmd_az_uncommitted(container, prefix=""):
    out(az_uncommitted(container, prefix))


def cmd_az_get(container, name, outfile):
    with open(outfile, "wb") as f:
        az_container(container).download_blob(name).readinto(f)
    out({"name": name, "size": os.path.getsize(outfile)})


def cmd_az_put(container, name, infile):
    with open(infile, "rb") as f:
        az_container(container).upload_blob(name, f, overwrite=True)
    out({"name": name, "size": os.path.getsize(infile)})


def cmd_az_empty(container, prefix):
    from azure.core.exceptions import ResourceNotFoundError

    c = az_container(container)
    # Uncommitted blocks go only with a Put Block List: on azurite 3.35 neither Put Blob nor Delete Blob
    # removes them (a delete hides them until the name is written again). So first commit an empty
    # block list on every name holding uncommitted blocks, then delete.
    discarded = 0
    for u in az_uncommitted(container, prefix):
        c.get_blob_client(u["name"]).commit_block_list([])
        discarded += 1
    deleted = 0
    for n in sorted({b.name for b in c.list_blobs(name_starts_with=prefix or None)}):
        try:
            c.delete_blob(n, delete_snapshots="include")
            deleted += 1
        except ResourceNotFoundError:
            pass
    left = az_uncommitted(container, prefix)
    if left:
        raise ProbeError(f"uncommitted blocks left after az-empty: {left[:3]}")
    out({"deleted": deleted, "discarded_uncommitted": discarded})


def cmd_az_ready():
    next(iter(az_service().list_containers(results_per_page=1).by_page()), None)
    out({"ready": True})


def cmd_az_setup(container):
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError

    try:
        az_service().create_container(container)
        created = True
    except ResourceExistsError:
        created = False
    az_container(container).get_container_properties()
    key = setting("LSB_AZURE_KEY")
    wrong = ("A" if key[0] != "A" else "B") + key[1:]
    try:
        az_service(wrong).get_container_client(container).get_container_properties()
    except (ClientAuthenticationError, HttpResponseError) as e:
        if getattr(e, "status_code", None) != 403:
            raise ProbeError(f"a wrong key got HTTP {getattr(e, 'status_code', None)}, not 403")
    else:
        raise ProbeError("a wrong account key was accepted: authentication is not enforced")
    out({"container": container, "created": created, "auth_enforced": True})


COMMANDS = {
    "s3-objects": (cmd_s3_objects, 1, 2),
    "s3-uploads": (cmd_s3_uploads, 1, 2),
    "s3-get": (cmd_s3_get, 3, 3),
    "s3-put": (cmd_s3_put, 3, 3),
    "s3-empty": (cmd_s3_empty, 2, 2),
    "s3-ready": (cmd_s3_ready, 0, 0),
    "s3-setup": (cmd_s3_setup, 1, 1),
    "s3-check": (cmd_s3_check, 1, 1),
    "az-blobs": (cmd_az_blobs, 1, 2),
    "az-uncommitted": (cmd_az_uncommitted, 1, 2),
    "az-get": (cmd_az_get, 3, 3),
    "az-put": (cmd_az_put, 3, 3),
    "az-empty": (cmd_az_empty, 2, 2),
    "az-ready": (cmd_az_ready, 0, 0),
    "az-setup": (cmd_az_setup, 1, 1),
}


def main(argv):
    if len(argv) < 1 or argv[0] not in COMMANDS:
        sys.stderr.write(__doc__)
        return 2
    fn, lo, hi = COMMANDS[argv[0]]
    args = argv[1:]
    if not lo <= len(args) <= hi:
        sys.stderr.write(f"objstore_probe: {argv[0]} takes {lo}..{hi} arguments\n")
        return 2
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - one line for the caller, whatever failed
        sys.stderr.write(f"objstore_probe: error: {argv[0]}: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
