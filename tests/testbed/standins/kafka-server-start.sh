#!/bin/sh
# lsbackup test bed STAND-IN for Apache Kafka's bin/kafka-server-start.sh (Kafka is not packaged in
# Debian). Same usage: `kafka-server-start.sh [-daemon] server.properties`; with -daemon the broker
# runs in the background with its console output in $LOG_DIR/kafkaServer.out, as kafka-run-class.sh
# does. The "broker" is the stand-in process lsbackup-standin-broker.py next to this script, with
# the main class argument `kafka.Kafka` on its command line as a real broker has.
if [ $# -lt 1 ]; then
    echo "USAGE: $0 [-daemon] server.properties [--override property=value]*"
    exit 1
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)
daemon=""
if [ "$1" = "-daemon" ]; then
    daemon=1
    shift
fi
LOG_DIR=${LOG_DIR:-$base_dir/logs}
export LOG_DIR
mkdir -p "$LOG_DIR"
broker="$base_dir/bin/lsbackup-standin-broker.py"
if [ -n "$daemon" ]; then
    nohup setsid /usr/bin/python3 "$broker" kafka.Kafka "$@" >"$LOG_DIR/kafkaServer.out" 2>&1 </dev/null &
else
    exec /usr/bin/python3 "$broker" kafka.Kafka "$@"
fi
