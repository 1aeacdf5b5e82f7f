"""Filter expressions and expression operations through the official Python client against
petreld: filters on get, exists, put, operate and remove (a record that does not match answers
FILTERED_OUT and is left as it was), a batch read with a batch-wide filter, a scan with a
filter, and expression read and write operations with their flags."""
import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers import expressions as exp
from aerospike_helpers.batch import records as br
from aerospike_helpers.operations import expression_operations as eo
from aerospike_helpers.operations import list_operations as lo
from aerospike_helpers.operations import operations as op

NS = "test"
SET = "exprs"
COUNT = 10
FILTERED_OUT = 27


@pytest.fixture
def recs(client):
    keys = [(NS, SET, i) for i in range(COUNT)]
    for i, k in enumerate(keys):
        client.put(k, {"i": i, "f": i / 2, "s": f"name{i}", "l": [i, i + 1, i + 2], "m": {"k": i}})
    yield keys
    for k in keys:
        try:
            client.remove(k)
        except ex.RecordNotFound:
            pass


def policy(e):
    return {"expressions": e.compile()}


def test_get_and_exists_apply_the_filter(client, recs):
    _, _, bins = client.get(recs[3], policy=policy(exp.Eq(exp.IntBin("i"), 3)))
    assert bins["s"] == "name3"
    with pytest.raises(ex.FilteredOut):
        client.get(recs[3], policy=policy(exp.Eq(exp.IntBin("i"), 4)))
    with pytest.raises(ex.FilteredOut):
        client.exists(recs[3], policy=policy(exp.GT(exp.FloatBin("f"), 100.0)))
    # A missing bin makes the filter unknown, which does not match.
    with pytest.raises(ex.FilteredOut):
        client.get(recs[3], policy=policy(exp.Eq(exp.IntBin("missing"), 1)))
    assert client.exists(recs[3], policy=policy(exp.Eq(exp.ListGetByIndex(None, aerospike.LIST_RETURN_VALUE, exp.ResultType.INTEGER, 1, exp.ListBin("l")), 4)))[1] is not None


def test_put_operate_and_remove_change_nothing_when_filtered_out(client, recs):
    k = recs[5]
    with pytest.raises(ex.FilteredOut):
        client.put(k, {"i": 99}, policy=policy(exp.LT(exp.IntBin("i"), 5)))
    with pytest.raises(ex.FilteredOut):
        client.operate(k, [op.increment("i", 1)], policy=policy(exp.Eq(exp.StrBin("s"), "other")))
    with pytest.raises(ex.FilteredOut):
        client.remove(k, policy=policy(exp.Not(exp.BinExists("i"))))
    _, meta, bins = client.get(k)
    assert bins["i"] == 5 and meta["gen"] == 1
    client.put(k, {"i": 50}, policy=policy(exp.Eq(exp.IntBin("i"), 5)))
    client.operate(k, [op.increment("i", 1)], policy=policy(exp.GE(exp.IntBin("i"), 50)))
    assert client.get(k)[2]["i"] == 51
    client.remove(k, policy=policy(exp.Eq(exp.IntBin("i"), 51)))
    with pytest.raises(ex.RecordNotFound):
        client.get(k)


def test_batch_read_with_a_batch_wide_filter(client, recs):
    even = exp.Eq(exp.Mod(exp.IntBin("i"), 2), 0)
    res = client.batch_read(recs, policy={"expressions": even.compile()})
    got = {r.key[2]: r.result for r in res.batch_records}
    for i in range(COUNT):
        assert got[i] == (0 if i % 2 == 0 else FILTERED_OUT), i
    # A row's own filter takes the place of the batch-wide one.
    rows = [br.Read(k, [op.read("s")], policy={"expressions": exp.LT(exp.IntBin("i"), 2).compile()}) for k in recs[:4]]
    res = client.batch_write(br.BatchRecords(rows), policy_batch={"expressions": exp.Eq(exp.IntBin("i"), 3).compile()})
    assert [r.result for r in res.batch_records] == [0, 0, FILTERED_OUT, FILTERED_OUT]


def test_scan_returns_only_matching_records(client, recs):
    scan = client.scan(NS, SET)
    found = scan.results(policy=policy(exp.And(exp.GE(exp.IntBin("i"), 3), exp.LT(exp.IntBin("i"), 7))))
    assert sorted(b["i"] for _, _, b in found) == [3, 4, 5, 6]
    regex = exp.CmpRegex(aerospike.REGEX_ICASE, "^NAME[12]$", exp.StrBin("s"))
    assert sorted(b["i"] for _, _, b in scan.results(policy=policy(regex))) == [1, 2]


def test_expression_read_and_write_operations(client, recs):
    k = recs[2]
    total = exp.Add(exp.IntBin("i"), exp.ListGetByIndex(None, aerospike.LIST_RETURN_VALUE, exp.ResultType.INTEGER, 2, exp.ListBin("l")))
    _, _, bins = client.operate(k, [eo.expression_read("sum", total.compile())])
    assert bins["sum"] == 2 + 4
    client.operate(k, [eo.expression_write("twice", exp.Mul(exp.IntBin("i"), 2).compile(), aerospike.EXP_WRITE_DEFAULT)])
    assert client.get(k)[2]["twice"] == 4
    # Ops see the bins as earlier ops in the same operate left them.
    _, _, bins = client.operate(k, [op.write("i", 10), lo.list_append("l", 7), eo.expression_read("n", exp.ListSize(None, exp.ListBin("l")).compile())])
    assert bins["n"] == 4
    with pytest.raises(ex.BinExistsError):
        client.operate(k, [eo.expression_write("twice", exp.IntBin("i").compile(), aerospike.EXP_WRITE_CREATE_ONLY)])
    client.operate(k, [eo.expression_write("twice", exp.IntBin("i").compile(), aerospike.EXP_WRITE_CREATE_ONLY | aerospike.EXP_WRITE_POLICY_NO_FAIL)])
    assert client.get(k)[2]["twice"] == 4
    with pytest.raises(ex.BinNotFound):
        client.operate(k, [eo.expression_write("nobin", exp.IntBin("i").compile(), aerospike.EXP_WRITE_UPDATE_ONLY)])
    with pytest.raises(ex.OpNotApplicable):
        client.operate(k, [eo.expression_read("u", exp.Unknown().compile())])
    client.operate(k, [eo.expression_write("twice", exp.Unknown().compile(), aerospike.EXP_WRITE_EVAL_NO_FAIL)])
    nil = exp.MapGetByKey(None, aerospike.MAP_RETURN_VALUE, exp.ResultType.INTEGER, "absent", exp.MapBin("m"))
    with pytest.raises(ex.OpNotApplicable):
        client.operate(k, [eo.expression_write("twice", nil.compile(), aerospike.EXP_WRITE_DEFAULT)])
    client.operate(k, [eo.expression_write("twice", nil.compile(), aerospike.EXP_WRITE_ALLOW_DELETE)])
    assert "twice" not in client.get(k)[2]


def test_bad_expressions_are_parameter_errors(client, recs):
    with pytest.raises(ex.InvalidRequest):
        client.get(recs[0], policy=policy(exp.Eq(exp.IntBin("i"), "text")))
    with pytest.raises(ex.InvalidRequest):
        client.get(recs[0], policy=policy(exp.Add(exp.IntBin("i"), 1.5)))
    deep = exp.Eq(exp.IntBin("i"), 0)
    for _ in range(100):
        deep = exp.Not(deep)
    with pytest.raises(ex.InvalidRequest):
        client.get(recs[0], policy=policy(deep))
