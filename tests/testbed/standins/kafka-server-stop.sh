#!/bin/sh
# lsbackup test bed STAND-IN for Apache Kafka's bin/kafka-server-stop.sh: like the real script,
# sends SIGTERM (or $SIGNAL) to every process whose command line holds the main class argument
# `kafka.Kafka`, and exits 1 with "No kafka server to stop" when there is none. Like the real
# script it returns at once; the broker then shuts down in its own time.
SIGNAL=${SIGNAL:-TERM}
PIDS=$(grep -lsxz 'kafka\.Kafka' /proc/[0-9]*/cmdline | cut -d/ -f3)
if [ -z "$PIDS" ]; then
    echo "No kafka server to stop"
    exit 1
else
    # shellcheck disable=SC2086 # one word per pid
    kill -s "$SIGNAL" $PIDS
fi
