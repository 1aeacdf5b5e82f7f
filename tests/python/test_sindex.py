"""Secondary indexes and queries through the official Python client against one real node:
every index type and collection type, every predicate kind, geo within/contains, queries
combined with expressions, partition filters, and index entries against a full scan after a
write/delete storm."""
import json
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike import predicates as p
from aerospike_helpers import cdt_ctx
from aerospike_helpers import expressions as exp

NS = "test"
SET = "sidx"
SEND_KEY = {"key": aerospike.POLICY_KEY_SEND}


def wait_built(client, name):
    deadline = time.monotonic() + 30
    while True:
        text = client.info_all(f"sindex/{NS}/{name}")
        done = all("load_pct=100" in (value or "") for _, (_, value) in text.items())
        if done:
            return
        assert time.monotonic() < deadline, f"index {name} not built: {text}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def data(client):
    client.truncate(NS, SET, 0)
    for i in range(200):
        rec = {
            "n": i,
            "s": f"name{i % 10}",
            "b": bytearray([i % 7]),
            "l": [i, i + 1000],
            "m": {f"k{i % 5}": i % 3, "nested": {"x": i % 4}},
            "g": aerospike.GeoJSON({"type": "Point", "coordinates": [-122.0 + i * 0.01, 37.0]}),
        }
        client.put((NS, SET, i), rec, policy=SEND_KEY)
    made = []

    def make(create, *args, **kwargs):
        create(*args, **kwargs)
        name = args[-1] if "name" not in kwargs else kwargs["name"]
        made.append(name)
        wait_built(client, name)

    make(client.index_integer_create, NS, SET, "n", "ix_n")
    make(client.index_string_create, NS, SET, "s", "ix_s")
    make(client.index_blob_create, NS, SET, "b", "ix_b")
    make(client.index_list_create, NS, SET, "l", aerospike.INDEX_NUMERIC, "ix_l")
    make(client.index_map_keys_create, NS, SET, "m", aerospike.INDEX_STRING, "ix_mk")
    make(client.index_map_values_create, NS, SET, "m", aerospike.INDEX_NUMERIC, "ix_mv")
    make(client.index_geo2dsphere_create, NS, SET, "g", "ix_g")
    ctx = [cdt_ctx.cdt_ctx_map_key("nested")]
    client.index_cdt_create(NS, SET, "m", aerospike.INDEX_TYPE_MAPVALUES, aerospike.INDEX_NUMERIC, "ix_ctx", ctx)
    made.append("ix_ctx")
    wait_built(client, "ix_ctx")
    yield ctx
    for name in made:
        client.index_remove(NS, name)
    client.truncate(NS, SET, 0)


def keys_of(client, predicate, *, ctx=None, expr=None, partition_filter=None):
    q = client.query(NS, SET)
    q.where(predicate, ctx) if ctx else q.where(predicate)
    policy = {}
    if expr is not None:
        policy["expressions"] = expr.compile()
    if partition_filter is not None:
        policy["partition_filter"] = partition_filter
    return sorted(rec[0][2] for rec in q.results(policy))


def test_every_index_type_and_predicate(client, data):
    assert keys_of(client, p.equals("n", 17)) == [17]
    assert keys_of(client, p.between("n", 10, 14)) == [10, 11, 12, 13, 14]
    assert keys_of(client, p.equals("s", "name3")) == list(range(3, 200, 10))
    assert keys_of(client, p.equals("b", bytearray([2]))) == list(range(2, 200, 7))
    assert keys_of(client, p.contains("l", aerospike.INDEX_TYPE_LIST, 1005)) == [5]
    assert keys_of(client, p.range("l", aerospike.INDEX_TYPE_LIST, 1198, 5000)) == [198, 199]
    assert keys_of(client, p.contains("m", aerospike.INDEX_TYPE_MAPKEYS, "k4")) == list(range(4, 200, 5))
    assert keys_of(client, p.contains("m", aerospike.INDEX_TYPE_MAPVALUES, 2)) == list(range(2, 200, 3))
    assert keys_of(client, p.contains("m", aerospike.INDEX_TYPE_MAPVALUES, 3), ctx=data) == list(range(3, 200, 4))


def test_geo_within_and_contains(client, data):
    region = {"type": "Polygon",
              "coordinates": [[[-121.905, 36.9], [-121.855, 36.9], [-121.855, 37.1], [-121.905, 37.1], [-121.905, 36.9]]]}
    # Points at -122 + i/100: i = 10..14 lie inside (-121.9 .. -121.86).
    assert keys_of(client, p.geo_within_geojson_region("g", json.dumps(region))) == [10, 11, 12, 13, 14]
    # An AeroCircle of 2 km around point 0: points 0, 1 and 2 (0.01 degrees of longitude is ~890 m).
    assert keys_of(client, p.geo_within_radius("g", -122.0, 37.0, 2000)) == [0, 1, 2]
    circle = {"type": "AeroCircle", "coordinates": [[-121.87, 37.0], 1500]}
    far = {"type": "AeroCircle", "coordinates": [[-100.0, 40.0], 1500]}
    areas = {"region": region, "circle": circle, "far": far}
    for name, area in areas.items():
        client.put((NS, SET, name), {"area": aerospike.GeoJSON(area)}, policy=SEND_KEY)
    client.index_geo2dsphere_create(NS, SET, "area", "ix_area")
    try:
        wait_built(client, "ix_area")

        def holding(lng, lat):
            point = aerospike.GeoJSON({"type": "Point", "coordinates": [lng, lat]})
            q = client.query(NS, SET)
            q.where(p.geo_contains_geojson_point("area", point.dumps()))
            return sorted(r[0][2] for r in q.results())

        assert holding(-121.88, 37.0) == ["circle", "region"]
        assert holding(-121.90, 37.05) == ["region"]
        assert holding(-121.854, 37.0) == ["circle"]
        assert holding(-100.0, 40.01) == ["far"]
        assert holding(10.0, 10.0) == []
        # A region query that holds no point answers nothing; one around point 150 only it.
        assert keys_of(client, p.geo_within_radius("g", 20.0, 20.0, 5000)) == []
        assert keys_of(client, p.geo_within_radius("g", -120.5, 37.0, 100)) == [150]
    finally:
        client.index_remove(NS, "ix_area")
        for name in areas:
            client.remove((NS, SET, name))


def test_query_with_an_expression_and_a_partition_filter(client, data):
    even = exp.Eq(exp.IntBin("n") % 2, 0)
    assert keys_of(client, p.between("n", 0, 9), expr=even) == [0, 2, 4, 6, 8]
    everything = keys_of(client, p.between("n", 0, 199))
    halves = keys_of(client, p.between("n", 0, 199), partition_filter={"begin": 0, "count": 2048}) + \
        keys_of(client, p.between("n", 0, 199), partition_filter={"begin": 2048, "count": 2048})
    assert sorted(halves) == everything == list(range(200))


def test_a_query_without_an_index_is_refused(client, data):
    with pytest.raises(ex.IndexNotFound):
        keys_of(client, p.equals("no_such_bin", 1))


def test_index_listing_and_statistics(client, data):
    listing = client.info_all(f"sindex-list:ns={NS}")
    text = next(iter(listing.values()))[1]
    assert "indexname=ix_n:set=sidx:bin=n:type=numeric:indextype=default" in text
    stats = next(iter(client.info_all(f"sindex/{NS}/ix_n").values()))[1]
    assert "entries=200" in stats and "load_pct=100" in stats
    # Index memory counts in the namespace's memory (eviction and stop-writes see it).
    ns_stats = next(iter(client.info_all(f"namespace/{NS}").values()))[1]
    fields = dict(kv.split("=", 1) for kv in ns_stats.strip().split(";") if "=" in kv)
    assert int(fields["sindex_used_bytes"]) > 0
    parts = ("index_used_bytes", "data_used_bytes", "sindex_used_bytes")
    assert int(fields["memory_used_bytes"]) == sum(int(fields[k]) for k in parts)


def test_entries_match_a_scan_after_a_storm(client, data):
    for i in range(300):
        k = (NS, SET, i % 120)
        if i % 3 == 0:
            try:
                client.remove(k)
            except ex.RecordNotFound:
                pass
        elif i % 3 == 1:
            client.put(k, {"n": 1000 + i}, policy=SEND_KEY)
        else:
            client.put(k, {"n": "not a number"}, policy=SEND_KEY)
    want = sorted(r[0][2] for r in client.scan(NS, SET).results() if isinstance(r[2].get("n"), int)
                  and 0 <= r[2]["n"] <= 10_000)
    assert keys_of(client, p.between("n", 0, 10_000)) == want
    entries = int(next(iter(client.info_all(f"sindex/{NS}/ix_n").values()))[1].split("entries=")[1].split(";")[0])
    assert entries == len(want)


def wait_job(client, job_id):
    deadline = time.monotonic() + 30
    while True:
        info = client.job_info(job_id, aerospike.JOB_QUERY)
        if info["status"] == aerospike.JOB_STATUS_COMPLETED:
            return info
        assert time.monotonic() < deadline, f"job {job_id} not done: {info}"
        time.sleep(0.05)


def test_background_query_and_scan_with_write_ops(client):
    from aerospike_helpers.operations import operations as op

    bg_set = "sidx-bg"
    for i in range(100):
        client.put((NS, bg_set, i), {"n": i})
    client.index_integer_create(NS, bg_set, "n", "ix_bg")
    try:
        wait_built(client, "ix_bg")
        # A query with an index range and an expression: only n in 10..19 and even.
        q = client.query(NS, bg_set)
        q.where(p.between("n", 10, 19))
        q.add_ops([op.write("flag", 1)])
        job = q.execute_background({"expressions": exp.Eq(exp.IntBin("n") % 2, 0).compile()})
        info = wait_job(client, job)
        assert info["records_read"] == 5 and info["progress_pct"] == 100
        flagged = sorted(r[2]["n"] for r in client.scan(NS, bg_set).results() if r[2].get("flag") == 1)
        assert flagged == [10, 12, 14, 16, 18]
        # A scan over the whole set; a record deleted before the job is not created again.
        client.remove((NS, bg_set, 99))
        s = client.scan(NS, bg_set)
        s.add_ops([op.increment("flag", 10)])
        info = wait_job(client, s.execute_background())
        assert info["records_read"] == 99
        flags = [r[2]["flag"] for r in client.scan(NS, bg_set).results()]
        assert len(flags) == 99 and sorted(set(flags)) == [10, 11]
        shown = next(iter(client.info_all(f"query-show:trid={job}").values()))[1]
        assert "status=done(ok)" in shown and "recs-succeeded=5" in shown
    finally:
        client.index_remove(NS, "ix_bg")
        client.truncate(NS, bg_set, 0)
