#!/usr/bin/env python3
"""CPU time per request, by process group, for the benchmarks.

    cpu.py snap PID > before.json       # the server's, the database's and the broker's CPU ticks
    cpu.py per  before.json after.json N  # microseconds of CPU per request (N requests) per group

Groups: "vela" (the server PID and its threads; embedded SQLite runs inside it), "postgres"
and "mariadb" (all their processes), "broker" (RabbitMQ's beam.smp). Processes that exit
between the two snapshots are not counted, so the database's pooled connections must stay open.
"""
import json
import os
import sys


def group(pid, server):
    if pid == server:
        return "vela"
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    if comm.startswith("postgres"):
        return "postgres"
    if comm.startswith("mariadbd") or comm.startswith("mysqld"):
        return "mariadb"
    if comm.startswith("beam.smp"):
        return "broker"
    return None


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def snap(server):
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        g = group(p, server)
        if g is None:
            continue
        try:
            out[p] = (g, ticks(p))
        except OSError:
            pass
    return out


def per(before, after, n):
    hz = os.sysconf("SC_CLK_TCK")
    total = {}
    for p, (g, t) in after.items():
        total[g] = total.get(g, 0) + t - before.get(p, (g, 0))[1]
    return " ".join(f"{g} {total[g] / hz / n * 1e6:.0f}" for g in sorted(total) if total[g] > 0)


if __name__ == "__main__":
    if sys.argv[1] == "snap":
        json.dump(snap(sys.argv[2]), sys.stdout)
    else:
        with open(sys.argv[2]) as a, open(sys.argv[3]) as b:
            n = max(1.0, float(sys.argv[4]))
            print(per(json.load(a), json.load(b), n))
