# shellcheck shell=bash
# Object-store emulators for the S3 and Azure blob targets: moto (S3, 127.0.0.1:4566, in memory) and
# azurite (blob service only, 127.0.0.1:10000, data in $LSB_TESTBED/azurite-data), both with their
# authentication enforced. Nothing is installed system-wide: moto, boto3, azure-storage-blob and
# azure-storage-file-share go into the venv $LSB_TESTBED/objstore-venv, azurite into
# $LSB_TESTBED/azurite (npm --prefix).
# tests/testbed/objstore_probe.py (run with the venv python) inspects the stores for the tests.
# Plus a STAND-IN for the Azure Files REST API (no emulator serves Azure Files):
# tests/testbed/standins/azfile.py on 127.0.0.1:10004, files under $LSB_TESTBED/azfile-data, Shared
# Key enforced (tb_up_azfile); tests/testbed/standins/azfile_check.py checks it with the real SDK.
# Sourced by up.sh (needs lib.sh).

TB_OBJSTORE_VENV="$LSB_TESTBED/objstore-venv"
TB_OBJSTORE_PY="$TB_OBJSTORE_VENV/bin/python"
TB_OBJSTORE_PROBE="$TB_DIR/objstore_probe.py"
TB_OBJSTORE_PIP_PKGS=('moto[server]>=5,<6' azure-storage-blob azure-storage-file-share boto3)
TB_OBJSTORE_INSTALL_LOG="$TB_LOGS/objstore-install.log"

TB_S3_PORT=4566
TB_S3_ENDPOINT="http://127.0.0.1:$TB_S3_PORT"
TB_S3_BUCKET=lsbackup-test
TB_S3_REGION=us-east-1
# moto checks no request signature for its first N actions (moto/core/authorization.py: every S3 or
# other service action bumps a counter while it is below INITIAL_NO_AUTH_ACTION_COUNT; /moto-api/
# calls do not count). objstore_probe.py s3-setup spends exactly these 3 on CreateUser,
# CreateAccessKey and PutUserPolicy; from then on every request must be signed with that key.
TB_MOTO_NO_AUTH_ACTIONS=3

# azurite 3.36+ needs Node.js >= 21 (the machine has 20); 3.35.0 runs on Node.js >= 10
TB_AZURITE_VERSION=3.35.0
TB_AZURITE_DIR="$LSB_TESTBED/azurite"
TB_AZURITE_MAIN="$TB_AZURITE_DIR/node_modules/azurite/dist/src/blob/main.js"
TB_AZURITE_DATA="$LSB_TESTBED/azurite-data"
TB_AZURITE_PORT=10000
TB_AZURE_ACCOUNT=devstoreaccount1
# the well-known development storage key (azurite's and the Azure storage emulator's default)
TB_AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
TB_AZURE_BLOB_ENDPOINT="http://127.0.0.1:$TB_AZURITE_PORT/$TB_AZURE_ACCOUNT"
TB_AZURE_CONTAINER=lsbackup-test
TB_AZURE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$TB_AZURE_ACCOUNT;AccountKey=$TB_AZURE_KEY;BlobEndpoint=$TB_AZURE_BLOB_ENDPOINT;"

# STAND-IN Azure Files (standins/azfile.py): same account and key as azurite, path-style URLs
TB_AZFILE_PY="$TB_DIR/standins/azfile.py"
TB_AZFILE_PORT=10004
TB_AZFILE_ENDPOINT="http://127.0.0.1:$TB_AZFILE_PORT/$TB_AZURE_ACCOUNT"
TB_AZFILE_DATA="$LSB_TESTBED/azfile-data"
TB_AZFILE_SHARE=lsbackup-test
TB_AZFILE_DIR=backups
TB_AZFILE_LOG="$TB_LOGS/azfile-requests.jsonl"
TB_AZFILE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$TB_AZURE_ACCOUNT;AccountKey=$TB_AZURE_KEY;FileEndpoint=$TB_AZFILE_ENDPOINT;"

# keys of moto's IAM user (set by tb_up_moto)
TB_S3_KEY_ID=""
TB_S3_SECRET=""

tb_objstore_venv_ok() {
    [ -x "$TB_OBJSTORE_PY" ] &&
        "$TB_OBJSTORE_PY" -c 'import moto.server, boto3, azure.storage.blob, azure.storage.fileshare' >/dev/null 2>&1
}

tb_objstore_install() {
    if ! tb_objstore_venv_ok; then
        [ -x /usr/bin/python3 ] || tb_install python3
        # Debian's python3 makes venvs only with python3-venv (ensurepip); the machine image has it
        /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || tb_install python3-venv
        tb_log "objstore: creating $TB_OBJSTORE_VENV, pip install ${TB_OBJSTORE_PIP_PKGS[*]}"
        {
            [ -x "$TB_OBJSTORE_PY" ] || /usr/bin/python3 -m venv "$TB_OBJSTORE_VENV"
            "$TB_OBJSTORE_PY" -m pip install -q --disable-pip-version-check "${TB_OBJSTORE_PIP_PKGS[@]}"
        } >>"$TB_OBJSTORE_INSTALL_LOG" 2>&1 ||
            tb_die "objstore: creating the venv $TB_OBJSTORE_VENV or pip install failed (see $TB_OBJSTORE_INSTALL_LOG; rm -rf the venv to start over)"
        tb_objstore_venv_ok ||
            tb_die "objstore: the venv $TB_OBJSTORE_VENV cannot import moto/boto3/azure.storage.blob/azure.storage.fileshare (rm -rf it and re-run up.sh)"
    fi
    if [ ! -s "$TB_AZURITE_MAIN" ]; then
        if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
            tb_install nodejs npm
        fi
        tb_log "objstore: npm install azurite@$TB_AZURITE_VERSION into $TB_AZURITE_DIR"
        install -d -m 0755 "$TB_AZURITE_DIR"
        npm install --prefix "$TB_AZURITE_DIR" --save-exact --no-audit --no-fund \
            "azurite@$TB_AZURITE_VERSION" >>"$TB_OBJSTORE_INSTALL_LOG" 2>&1 ||
            tb_die "objstore: npm install azurite@$TB_AZURITE_VERSION failed (see $TB_OBJSTORE_INSTALL_LOG)"
        [ -s "$TB_AZURITE_MAIN" ] ||
            tb_die "objstore: azurite installed, but $TB_AZURITE_MAIN is missing (see $TB_OBJSTORE_INSTALL_LOG)"
    fi
}

# tb_objstore_probe ARGS...: objstore_probe.py with this file's endpoints and keys (not the env file's)
tb_objstore_probe() {
    env LSB_S3_ENDPOINT="$TB_S3_ENDPOINT" LSB_S3_REGION="$TB_S3_REGION" \
        LSB_S3_ACCESS_KEY_ID="$TB_S3_KEY_ID" LSB_S3_SECRET_ACCESS_KEY="$TB_S3_SECRET" \
        LSB_AZURE_ACCOUNT="$TB_AZURE_ACCOUNT" LSB_AZURE_KEY="$TB_AZURE_KEY" \
        LSB_AZURE_BLOB_ENDPOINT="$TB_AZURE_BLOB_ENDPOINT" \
        LSB_AZURE_CONNECTION_STRING="$TB_AZURE_CONNECTION_STRING" \
        "$TB_OBJSTORE_PY" "$TB_OBJSTORE_PROBE" "$@"
}

# tb_objstore_env_get KEY: the value of KEY in $LSB_TESTBED/env (read, never sourced)
tb_objstore_env_get() {
    [ -f "$LSB_TESTBED/env" ] || return 0
    sed -n "s/^$1=//p" "$LSB_TESTBED/env" | tail -n1
}

tb_up_moto() {
    local log="$TB_LOGS/moto.log" fresh="" keys
    if tb_pid moto >/dev/null; then
        # moto keeps everything in memory: the keys in the env file are still good if they work
        TB_S3_KEY_ID="$(tb_objstore_env_get LSB_S3_ACCESS_KEY_ID)"
        TB_S3_SECRET="$(tb_objstore_env_get LSB_S3_SECRET_ACCESS_KEY)"
        if [ -z "$TB_S3_KEY_ID" ] || [ -z "$TB_S3_SECRET" ] ||
            ! tb_objstore_probe s3-check "$TB_S3_BUCKET" >>"$log" 2>&1; then
            tb_log "moto runs, but the keys in $LSB_TESTBED/env do not work with it: restarting moto"
            tb_stop moto
        fi
    fi
    if ! tb_pid moto >/dev/null; then
        INITIAL_NO_AUTH_ACTION_COUNT="$TB_MOTO_NO_AUTH_ACTIONS" \
            tb_spawn moto "$log" "$TB_OBJSTORE_PY" -m moto.server -H 127.0.0.1 -p "$TB_S3_PORT"
        fresh=1
    fi
    tb_wait_svc moto "$log" 60 tb_objstore_probe s3-ready
    if [ -n "$fresh" ]; then
        if ! keys="$(tb_objstore_probe s3-setup "$TB_S3_BUCKET" 2>>"$log")"; then
            tb_stop moto # its no-auth actions may be spent: the next up.sh starts a fresh one
            tb_die "moto: creating the IAM user lsbackup and bucket $TB_S3_BUCKET failed: $(tail -n1 "$log")"
        fi
        TB_S3_KEY_ID="$("$TB_OBJSTORE_PY" -c 'import json,sys; print(json.load(sys.stdin)["access_key_id"])' <<<"$keys")"
        TB_S3_SECRET="$("$TB_OBJSTORE_PY" -c 'import json,sys; print(json.load(sys.stdin)["secret_access_key"])' <<<"$keys")"
        if ! tb_objstore_probe s3-check "$TB_S3_BUCKET" >>"$log" 2>&1; then
            tb_stop moto
            tb_die "moto: authentication check failed (right key refused or wrong secret accepted): $(tail -n1 "$log")"
        fi
    fi
    tb_ready moto-s3 "$TB_S3_ENDPOINT bucket $TB_S3_BUCKET, IAM user lsbackup key $TB_S3_KEY_ID (auth enforced), in memory, pid $(tb_pid moto)"
    tb_env_set LSB_S3_ENDPOINT "$TB_S3_ENDPOINT"
    tb_env_set LSB_S3_BUCKET "$TB_S3_BUCKET"
    tb_env_set LSB_S3_REGION "$TB_S3_REGION"
    tb_env_set LSB_S3_ACCESS_KEY_ID "$TB_S3_KEY_ID"
    tb_env_set LSB_S3_SECRET_ACCESS_KEY "$TB_S3_SECRET"
}

tb_up_azurite() {
    local log="$TB_LOGS/azurite.log"
    install -d -m 0755 "$TB_AZURITE_DATA"
    if ! tb_pid azurite >/dev/null; then
        # no --loose: SharedKey signatures are checked; --disableTelemetry: no traffic off the machine
        tb_spawn azurite "$log" node "$TB_AZURITE_MAIN" \
            --blobHost 127.0.0.1 --blobPort "$TB_AZURITE_PORT" --location "$TB_AZURITE_DATA" \
            --skipApiVersionCheck --disableTelemetry --silent
    fi
    tb_wait_svc azurite "$log" 60 tb_objstore_probe az-ready
    tb_objstore_probe az-setup "$TB_AZURE_CONTAINER" >>"$log" 2>&1 ||
        tb_die "azurite: creating container $TB_AZURE_CONTAINER or the authentication check failed: $(tail -n1 "$log")"
    tb_ready azurite "$TB_AZURE_BLOB_ENDPOINT container $TB_AZURE_CONTAINER (SharedKey enforced), data $TB_AZURITE_DATA, pid $(tb_pid azurite)"
    tb_env_set LSB_AZURE_ACCOUNT "$TB_AZURE_ACCOUNT"
    tb_env_set LSB_AZURE_KEY "$TB_AZURE_KEY"
    tb_env_set LSB_AZURE_BLOB_ENDPOINT "$TB_AZURE_BLOB_ENDPOINT"
    tb_env_set LSB_AZURE_CONTAINER "$TB_AZURE_CONTAINER"
    tb_env_set LSB_AZURE_CONNECTION_STRING "$TB_AZURE_CONNECTION_STRING"
}

tb_up_objstore() {
    tb_objstore_install
    tb_up_moto
    tb_up_azurite
    tb_env_set LSB_OBJSTORE_PYTHON "$TB_OBJSTORE_PY"
    tb_env_set LSB_OBJSTORE_PROBE "$TB_OBJSTORE_PROBE"
}

# tb_azfile_check: a signed Get Directory Properties of the share's directory gets 200, a wrong key 403
tb_azfile_check() {
    /usr/bin/python3 "$TB_AZFILE_PY" check --endpoint "$TB_AZFILE_ENDPOINT" --account "$TB_AZURE_ACCOUNT" \
        --key "$TB_AZURE_KEY" --share "$TB_AZFILE_SHARE" --dir "$TB_AZFILE_DIR"
}

tb_up_azfile() {
    local log="$TB_LOGS/azfile.log"
    [ -x /usr/bin/python3 ] || tb_install python3
    install -d -m 0755 "$TB_AZFILE_DATA"
    # a changed stand-in replaces the running one (its state is only the files under the data dir)
    if tb_pid azfile >/dev/null && [ "$TB_AZFILE_PY" -nt "$TB_PIDS/azfile.pid" ]; then
        tb_log "azfile: $TB_AZFILE_PY changed, restarting it"
        tb_stop azfile
    fi
    if ! tb_pid azfile >/dev/null; then
        tb_spawn azfile "$log" /usr/bin/python3 "$TB_AZFILE_PY" serve --host 127.0.0.1 --port "$TB_AZFILE_PORT" \
            --data "$TB_AZFILE_DATA" --account "$TB_AZURE_ACCOUNT" --key "$TB_AZURE_KEY" \
            --share "$TB_AZFILE_SHARE" --dir "$TB_AZFILE_DIR" --request-log "$TB_AZFILE_LOG"
    fi
    tb_wait_svc azfile "$log" 20 tb_azfile_check
    tb_azfile_check >>"$log" 2>&1 ||
        tb_die "azfile: the Shared Key check failed (right key refused or wrong key accepted): $(tail -n1 "$log")"
    tb_ready azfile "STAND-IN Azure Files $TB_AZFILE_ENDPOINT share $TB_AZFILE_SHARE dir $TB_AZFILE_DIR (SharedKey enforced), data $TB_AZFILE_DATA, pid $(tb_pid azfile)"
    tb_env_set LSB_AZFILE_ENDPOINT "$TB_AZFILE_ENDPOINT"
    tb_env_set LSB_AZFILE_SHARE "$TB_AZFILE_SHARE"
    tb_env_set LSB_AZFILE_DIR "$TB_AZFILE_DIR"
    tb_env_set LSB_AZFILE_CONNECTION_STRING "$TB_AZFILE_CONNECTION_STRING"
    tb_env_set LSB_AZFILE_LOG "$TB_AZFILE_LOG"
    tb_env_set LSB_AZFILE_DATA "$TB_AZFILE_DATA"
}
