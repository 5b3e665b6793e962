# shellcheck shell=bash
# PostgreSQL 15 (Debian cluster 15/main at its default paths, port 5432, peer auth for `postgres`),
# with two databases holding rows. Sourced by up.sh (needs lib.sh).

TB_PG_VER=15
TB_PG_CLUSTER=main
TB_PG_PORT=5432
TB_PG_CONF="/etc/postgresql/$TB_PG_VER/$TB_PG_CLUSTER"
TB_PG_DATA="/var/lib/postgresql/$TB_PG_VER/$TB_PG_CLUSTER"
TB_PG_BIN="/usr/lib/postgresql/$TB_PG_VER/bin"

tb_psql() {
    # run from / so that `sudo -u postgres` does not complain about an unreadable cwd
    (cd / && PGOPTIONS='-c client_min_messages=warning' sudo -u postgres --preserve-env=PGOPTIONS "$TB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$TB_PG_PORT" "$@")
}

tb_pg_cluster() {
    if [ ! -f "$TB_PG_CONF/postgresql.conf" ]; then
        tb_log "creating PostgreSQL cluster $TB_PG_VER/$TB_PG_CLUSTER"
        pg_createcluster --port "$TB_PG_PORT" "$TB_PG_VER" "$TB_PG_CLUSTER" >>"$TB_LOGS/postgresql.log" 2>&1 ||
            tb_die "pg_createcluster $TB_PG_VER $TB_PG_CLUSTER failed (see $TB_LOGS/postgresql.log)"
    elif [ ! -f "$TB_PG_DATA/PG_VERSION" ]; then
        # config present but data dir empty (e.g. an image that dropped /var/lib): initdb as Debian does
        tb_log "initializing PostgreSQL data dir $TB_PG_DATA"
        install -d -o postgres -g postgres -m 0700 "$TB_PG_DATA"
        (cd / && sudo -u postgres "$TB_PG_BIN/initdb" -D "$TB_PG_DATA" --auth-local=peer \
            --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8) >>"$TB_LOGS/postgresql.log" 2>&1 ||
            tb_die "initdb $TB_PG_DATA failed (see $TB_LOGS/postgresql.log)"
        rm -f "$TB_PG_DATA/postgresql.conf" "$TB_PG_DATA/pg_hba.conf" "$TB_PG_DATA/pg_ident.conf"
    fi
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
}

tb_pg_seed() {
    local db
    for db in shop inventory_db; do
        if [ "$(tb_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
            tb_psql -d postgres -c "CREATE DATABASE $db"
        fi
    done
    tb_psql -d shop <<'SQL'
CREATE TABLE IF NOT EXISTS customers (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers(id),
    amount      numeric(10,2) NOT NULL,
    placed_at   timestamptz NOT NULL
);
INSERT INTO customers
SELECT i, 'customer ' || i, 'c' || i || '@shop.example'
FROM generate_series(1, 300) AS i
ON CONFLICT DO NOTHING;
INSERT INTO orders
SELECT i, 1 + (i * 7) % 300, (i * 13 % 1000) / 10.0, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, 500) AS i
ON CONFLICT DO NOTHING;
SQL
    tb_psql -d inventory_db <<'SQL'
CREATE TABLE IF NOT EXISTS items (
    sku      text PRIMARY KEY,
    title    text NOT NULL,
    quantity integer NOT NULL
);
INSERT INTO items
SELECT 'SKU-' || lpad(i::text, 5, '0'), 'item number ' || i, i % 50
FROM generate_series(1, 400) AS i
ON CONFLICT DO NOTHING;
SQL
}

tb_pg_ready() {
    tb_psql -d postgres -tAc 'SELECT 1' | grep -qx 1
}

tb_up_postgresql() {
    tb_pg_cluster
    local pid
    if ! pid="$(tb_pid postgresql)"; then
        if ! pg_ctlcluster "$TB_PG_VER" "$TB_PG_CLUSTER" status >/dev/null 2>&1; then
            pg_ctlcluster "$TB_PG_VER" "$TB_PG_CLUSTER" start >>"$TB_LOGS/postgresql.log" 2>&1 9>&- ||
                tb_die "PostgreSQL $TB_PG_VER/$TB_PG_CLUSTER failed to start: $(tail -n3 "$TB_LOGS/postgresql.log") (also /var/log/postgresql/)"
        fi
        tb_wait "PostgreSQL postmaster.pid" 20 test -s "$TB_PG_DATA/postmaster.pid"
        pid="$(head -n1 "$TB_PG_DATA/postmaster.pid")"
        tb_record_pid postgresql "$pid"
    fi
    tb_wait "PostgreSQL on port $TB_PG_PORT" 30 tb_pg_ready
    tb_pg_seed
    tb_ready postgresql "port $TB_PG_PORT, cluster $TB_PG_VER/$TB_PG_CLUSTER, dbs shop+inventory_db, pid $(tb_pid postgresql)"
    tb_env_set LSB_PG_PORT "$TB_PG_PORT"
    tb_env_set LSB_PG_VERSION "$TB_PG_VER"
    tb_env_set LSB_PG_CONF_DIR "$TB_PG_CONF"
    tb_env_set LSB_PG_DATA_DIR "$TB_PG_DATA"
    tb_env_set LSB_PG_DATABASES shop,inventory_db
    tb_env_set LSB_PG_ROWS "shop.customers=300,shop.orders=500,inventory_db.items=400"
}
