"""Clients of the split test (docker/split-test.sh), with the official Python client.

Each mode talks to the nodes named on the command line (host:port, seeds) and records what
was acknowledged, so that the script can tell what a split and its heal kept:

  put PREFIX COUNT HOSTS...           writes PREFIX0..PREFIX{COUNT-1} = {"v": i}
  majority ACKED HOSTS...             writes maj0..maj1999 during a split; each acknowledged
                                      index is appended to the file ACKED
  check-majority ACKED HOSTS...       after the heal: pre*, and every acknowledged maj*, read
                                      back, with two copies of each in the cluster
  both SIDE UPDATES_LOW UPDATES_HIGH ACKED HOSTS...
                                      one side of a split with clients on both sides: updates
                                      both0..both999 (UPDATES_LOW times below 500,
                                      UPDATES_HIGH times from 500), writes only-SIDE0..999 that
                                      only this side has, deletes del0..del199 (majority only);
                                      every acknowledged write is recorded in ACKED as JSON
  check-both MAJ_ACKED MIN_ACKED ROUND1_ACKED HOSTS...
                                      after the heal: what each side's acknowledged writes
                                      became; prints the figures, fails if a write made on one
                                      side only (or kept by the first split) is missing, a
                                      record holds a value nobody wrote, or the cluster does
                                      not settle at two copies of each record
Every request is bounded by a total timeout; no loop is unbounded.
"""

import json
import sys
import time

import aerospike
from aerospike import exception as ex

NS, SET = "test", "split"
PATIENT = {"total_timeout": 5000, "max_retries": 5, "sleep_between_retries": 100}


def connect(hosts):
    pairs = []
    for h in hosts:
        host, _, port = h.partition(":")
        pairs.append((host, int(port or 3000)))
    policies = {"write": PATIENT, "read": PATIENT, "remove": PATIENT, "total_timeout": 5000}
    return aerospike.client({"hosts": pairs, "policies": policies}).connect()


def copies_of_namespace(c):
    objects = 0
    for _, (err, text) in c.info_all("namespace/test").items():
        if err:
            raise RuntimeError(f"info: {err}")
        stats = dict(kv.split("=", 1) for kv in text.strip().split("\t", 1)[-1].split(";") if "=" in kv)
        objects += int(stats["objects"])
    return objects


def get(c, key):
    try:
        return c.get((NS, SET, key))[2]
    except ex.RecordNotFound:
        return None


def put(prefix, count, hosts):
    c = connect(hosts)
    for i in range(int(count)):
        c.put((NS, SET, f"{prefix}{i}"), {"v": i})
    c.close()


def majority(acked_path, hosts):
    c = connect(hosts)
    with open(acked_path, "w") as acked:
        for i in range(2000):
            try:
                c.put((NS, SET, f"maj{i}"), {"v": i})
                print(i, file=acked, flush=True)
            except ex.AerospikeError as e:
                print(f"write maj{i}: {e}", file=sys.stderr)
    c.close()


def check_majority(acked_path, hosts):
    acked = [int(line) for line in open(acked_path) if line.strip()]
    c = connect(hosts)
    lost = []
    for prefix, keys in (("pre", range(1000)), ("maj", acked)):
        for i in keys:
            bins = get(c, f"{prefix}{i}")
            if bins is None or bins.get("v") != i:
                lost.append(f"{prefix}{i}")
    objects = copies_of_namespace(c)
    c.close()
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    want = 2 * (1000 + len(acked))
    assert objects == want, f"objects {objects}, want {want}"
    print(f"split: {len(acked)} writes acknowledged by the majority, every one read back after the merge; {objects} copies")


def both(side, updates_low, updates_high, acked_path, hosts):
    """One side's clients. A record's value names the side and the write: f"{side}:{n}"."""
    c = connect(hosts)
    # "doubt": a write whose call failed may still have been applied.
    acked = {"updates": {}, "doubt": {}, "only": [], "deleted": [], "failed": 0}
    for i in range(1000):
        times = int(updates_low) if i < 500 else int(updates_high)
        for n in range(times):
            try:
                c.put((NS, SET, f"both{i}"), {"v": f"{side}:{n}"})
                acked["updates"][f"both{i}"] = f"{side}:{n}"
            except ex.AerospikeError:
                acked["failed"] += 1
                acked["doubt"].setdefault(f"both{i}", []).append(f"{side}:{n}")
        try:
            c.put((NS, SET, f"only-{side}{i}"), {"v": i})
            acked["only"].append(f"only-{side}{i}")
        except ex.AerospikeError:
            acked["failed"] += 1
    if side == "maj":
        for i in range(200):
            try:
                c.remove((NS, SET, f"del{i}"))
                acked["deleted"].append(f"del{i}")
            except ex.AerospikeError:
                acked["failed"] += 1
    c.close()
    with open(acked_path, "w") as f:
        json.dump(acked, f)


def check_both(maj_path, min_path, round1_acked_path, hosts):
    sides = {"maj": json.load(open(maj_path)), "min": json.load(open(min_path))}
    round1 = [f"pre{i}" for i in range(1000)] + [f"maj{int(l)}" for l in open(round1_acked_path) if l.strip()]
    c = connect(hosts)
    # What the first split kept must still be there after the second.
    missing = [k for k in round1 if get(c, k) is None]
    missing += [k for s in sides.values() for k in s["only"] if get(c, k) is None]
    kept = {"maj": 0, "min": 0}
    strange = []
    for i in range(1000):
        key = f"both{i}"
        bins = get(c, key)
        value = bins and bins.get("v")
        winner = next((s for s, a in sides.items() if a["updates"].get(key) == value), None)
        if winner is None:
            if not any(value in a["doubt"].get(key, []) for a in sides.values()):
                strange.append((key, value))
        else:
            kept[winner] += 1
    back = sum(1 for k in sides["maj"]["deleted"] if get(c, k) is not None)
    acked_updates = {s: len(a["updates"]) for s, a in sides.items()}
    records = len(round1) - len(missing) + 1000 + sum(len(a["only"]) for a in sides.values()) + back
    # Two copies of each once migrations settle (bounded wait).
    deadline = time.monotonic() + 60
    while (objects := copies_of_namespace(c)) != 2 * records and time.monotonic() < deadline:
        time.sleep(0.5)
    c.close()
    print(
        "split, writes on both sides: "
        f"records updated on both sides: {kept['maj']} kept the majority's last acknowledged value, "
        f"{kept['min']} the minority's ({acked_updates['maj']} and {acked_updates['min']} records "
        f"acknowledged by each side); records written on one side only: "
        f"{sum(len(a['only']) for a in sides.values()) - len(missing)} of "
        f"{sum(len(a['only']) for a in sides.values())} kept; deletes acknowledged by the majority: "
        f"{back} of {len(sides['maj']['deleted'])} came back from the minority's copies; "
        f"failed calls: {sides['maj']['failed']} and {sides['min']['failed']}; {objects} copies"
    )
    assert not missing, f"{len(missing)} records written on one side only are missing, e.g. {missing[:5]}"
    assert not strange, f"records hold a value no side acknowledged last, e.g. {strange[:5]}"
    assert objects == 2 * records, f"objects {objects}, want {2 * records}"


def main(argv):
    mode, args = argv[1], argv[2:]
    if mode == "put":
        put(args[0], args[1], args[2:])
    elif mode == "majority":
        majority(args[0], args[1:])
    elif mode == "check-majority":
        check_majority(args[0], args[1:])
    elif mode == "both":
        both(args[0], args[1], args[2], args[3], args[4:])
    elif mode == "check-both":
        check_both(args[0], args[1], args[2], args[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv)
