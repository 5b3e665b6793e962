#!/usr/bin/env python3
"""Generate a benchmark directory tree (deterministic: the same arguments give the same bytes).

    bench/gentree.py DIR MIB mixed|large

mixed: ~25% of the bytes in small files (1-64 KiB, in nested directories three levels deep),
       ~35% in medium files (100 KiB - 4 MiB), ~40% in a few large files (16-64 MiB).
large: files of 16-64 MiB only (fast to write, for the multi-GiB memory rows).
Each file is either compressible text (log lines) or random bytes, alternating within each size
class (about half of the bytes each). Writes into DIR.tmp, renamed to DIR when complete.
"""

import os
import random
import shutil
import sys

KIB = 1024
MIB = 1024 * KIB
CHUNK = 4 * MIB


def text_pool(rng, size):
    """Log-like lines: timestamps, levels, components, ids; compresses like real logs."""
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    comps = ["api", "scheduler", "db.pool", "auth", "cache", "ingest", "billing", "mailer"]
    msgs = [
        "request completed",
        "connection accepted from",
        "cache miss for key",
        "retrying upstream call",
        "user session refreshed",
        "slow query detected",
        "job finished with status",
        "payload validated",
    ]
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    out = []
    n = 0
    while n < size:
        line = "2026-12-%02dT%02d:%02d:%02d.%03dZ %-5s [%s] %s id=%08x user=%s latency_ms=%d path=/v1/%s/%d\n" % (
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.randint(0, 999),
            rng.choice(levels),
            rng.choice(comps),
            rng.choice(msgs),
            rng.getrandbits(32),
            rng.choice(users),
            rng.randint(1, 5000),
            rng.choice(comps),
            rng.randint(1, 100000),
        )
        out.append(line)
        n += len(line)
    pool = "".join(out).encode()
    return pool + pool  # doubled: any slice of up to len(pool) starting in the first half


def write_file(path, size, compressible, rng, pool):
    half = len(pool) // 2
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, CHUNK, half)
            if compressible:
                off = rng.randrange(half)
                f.write(pool[off : off + n])
            else:
                f.write(rng.randbytes(n))
            left -= n


def plan(total, kind, rng):
    """(relative path, size, is text) for every file, sizes summing to total."""
    files = []
    if kind == "large":
        shares = [("large", 1.0, 16 * MIB, 64 * MIB)]
    else:
        shares = [
            ("small", 0.25, 1 * KIB, 64 * KIB),
            ("medium", 0.35, 100 * KIB, 4 * MIB),
            ("large", 0.40, 16 * MIB, 64 * MIB),
        ]
    placed = 0
    for i, (cls, share, lo, hi) in enumerate(shares):
        budget = total - placed if i == len(shares) - 1 else int(total * share)
        used = 0
        k = 0
        while used < budget:
            size = min(rng.randint(lo, hi), budget - used)
            text = k % 2 == 0  # half of the files of each size class are text
            if cls == "small":
                # 8 x 8 x 8 directories, file names varying in length
                a, b, c = rng.randrange(8), rng.randrange(8), rng.randrange(8)
                rel = "src/d%d/sub%d/leaf%d/file-%05d%s" % (a, b, c, k, ".log" if text else ".dat")
            elif cls == "medium":
                rel = "var/m%02d/blob-%04d.%s" % (k % 16, k, "txt" if text else "bin")
            else:
                rel = "big/part-%03d.%s" % (k, "log" if text else "img")
            files.append((rel, size, text))
            used += size
            k += 1
        placed += used
    return files


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("mixed", "large"):
        sys.exit(__doc__)
    dest, mib, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random("lsbackup-bench-%s-%d" % (kind, mib))
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    pool = text_pool(random.Random("lsbackup-bench-text"), 16 * MIB)
    count = 0
    for rel, size, text in plan(mib * MIB, kind, rng):
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, size, text, rng, pool)
        count += 1
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    print("%s: %d files, %d MiB (%s)" % (dest, count, mib, kind))


if __name__ == "__main__":
    main()
