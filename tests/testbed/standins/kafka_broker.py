#!/usr/bin/python3
"""lsbackup test bed STAND-IN for an Apache Kafka broker process (Kafka is not packaged in Debian).

It speaks no Kafka protocol. It does, for the files and the process, what a broker does that the
lsbackup `kafka` component depends on:

  - its command line holds the main class argument `kafka.Kafka` followed by the config file, like
    `java ... kafka.Kafka /opt/kafka/config/server.properties`, so the process is found the way
    Apache Kafka's bin/kafka-server-stop.sh finds it;
  - it reads `listeners` and `log.dirs` (or `log.dir`) from that server.properties, refuses to start
    without meta.properties in each log dir, takes the lock on `<log dir>/.lock` (fcntl, as Kafka's
    FileChannel.tryLock) and deletes `.kafka_cleanshutdown` once "loaded";
  - it listens on the listener's port (after a short startup delay);
  - on SIGTERM it takes a moment (controlled shutdown), writes `.kafka_cleanshutdown` in each log
    dir, logs "shut down completed" and exits 0.

A test can make the shutdown slower, as a real broker's controlled shutdown (moving partition
leadership away, flushing logs) can be: when the file $LOG_DIR/lsbackup-standin-stop-delay exists
at SIGTERM, its content (seconds) is added to the shutdown time (logged as such). The pid file's
second line, `stop-delay-flag`, says that this stand-in honours it.

It logs to $LOG_DIR/server.log in Kafka's log4j line format and appends machine-readable lines
`start|stop <unix ms> <pid>` to $LOG_DIR/lsbackup-standin-events.log, and keeps its pid in
$LOG_DIR/lsbackup-standin-broker.pid (for the test bed's down.sh).

usage: kafka_broker.py kafka.Kafka SERVER_PROPERTIES
"""

import fcntl
import os
import selectors
import signal
import socket
import sys
import time

STARTUP_DELAY = 1.0
SHUTDOWN_DELAY = 1.0
STOP_DELAY_FILE = "lsbackup-standin-stop-delay"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"


def read_properties(path):
    props = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#!":
                continue
            for i, ch in enumerate(line):
                if ch in "=:":
                    props[line[:i].strip()] = line[i + 1 :].strip()
                    break
            else:
                props[line] = ""
    return props


class Broker:
    def __init__(self, config):
        self.config = config
        self.props = read_properties(config)
        self.broker_id = self.props.get("broker.id", "0")
        dirs = self.props.get("log.dirs") or self.props.get("log.dir") or "/tmp/kafka-logs"
        self.log_dirs = [d.strip() for d in dirs.split(",") if d.strip()]
        listener = (self.props.get("listeners") or "PLAINTEXT://:9092").split(",")[0]
        hostport = listener.split("://", 1)[-1]
        host, _, port = hostport.rpartition(":")
        self.host = host or "0.0.0.0"
        self.port = int(port)
        self.log_dir = os.environ.get("LOG_DIR") or os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "logs"
        )
        os.makedirs(self.log_dir, exist_ok=True)
        self.locks = []
        self.stopping = False

    def log(self, level, msg, logger="kafka.server.KafkaServer"):
        t = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ",%03d" % (t % 1 * 1000)
        with open(os.path.join(self.log_dir, "server.log"), "a", encoding="utf-8") as f:
            f.write(f"[{stamp}] {level} [KafkaServer id={self.broker_id}] {msg} ({logger})\n")

    def event(self, what):
        with open(
            os.path.join(self.log_dir, "lsbackup-standin-events.log"), "a", encoding="utf-8"
        ) as f:
            f.write(f"{what} {int(time.time() * 1000)} {os.getpid()}\n")

    def fail(self, msg):
        self.log("ERROR", msg)
        print(f"ERROR {msg}", file=sys.stderr)
        sys.exit(1)

    def load_logs(self):
        for d in self.log_dirs:
            if not os.path.isfile(os.path.join(d, "meta.properties")):
                self.fail(f"No meta.properties found in {d} (stand-in: run the test bed's up.sh)")
            fd = os.open(os.path.join(d, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.fail(
                    f"Failed to acquire lock on file .lock in {d}. A Kafka instance in another "
                    "process or thread is using this directory."
                )
            self.locks.append(fd)
            try:
                os.unlink(os.path.join(d, CLEAN_SHUTDOWN_FILE))
            except FileNotFoundError:
                pass

    def run(self):
        self.log("INFO", "starting")
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        self.load_logs()
        time.sleep(STARTUP_DELAY)
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind((self.host, self.port))
        except OSError as e:
            self.fail(f"Socket server failed to bind to {self.host}:{self.port}: {e}.")
        srv.listen(16)
        srv.setblocking(False)
        pidfile = os.path.join(self.log_dir, "lsbackup-standin-broker.pid")
        with open(pidfile + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\nstop-delay-flag\n")
        os.replace(pidfile + ".tmp", pidfile)
        self.event("start")
        self.log("INFO", "started")
        sel = selectors.DefaultSelector()
        sel.register(srv, selectors.EVENT_READ)
        while not self.stopping:
            for _key, _ in sel.select(timeout=0.2):
                try:
                    conn, _ = srv.accept()
                    conn.close()  # no Kafka protocol here
                except OSError:
                    pass
        self.log("INFO", "shutting down")
        delay = SHUTDOWN_DELAY
        try:
            with open(os.path.join(self.log_dir, STOP_DELAY_FILE), encoding="utf-8") as f:
                extra = float(f.read().strip() or 0)
            self.log("INFO", f"stand-in: shutdown {extra}s slower ({STOP_DELAY_FILE})")
            delay += extra
        except (OSError, ValueError):
            pass
        time.sleep(delay)
        srv.close()
        for d in self.log_dirs:
            with open(os.path.join(d, CLEAN_SHUTDOWN_FILE), "w", encoding="utf-8"):
                pass
        for fd in self.locks:
            os.close(fd)
        self.event("stop")
        self.log("INFO", "shut down completed")
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass

    def on_term(self, _signum, _frame):
        self.stopping = True


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "kafka.Kafka":
        sys.exit(__doc__)
    Broker(args[1]).run()


if __name__ == "__main__":
    main()
