"""Bitwise and HyperLogLog operations through the official Python client against petreld:
every op, the write, resize and overflow flags, and the result codes Aerospike gives."""
import math

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers import HyperLogLog
from aerospike_helpers.operations import bitwise_operations as bo
from aerospike_helpers.operations import hll_operations as ho
from aerospike_helpers.operations import operations as op

NS = "test"
SET = "bits"


@pytest.fixture
def rec(client):
    """A record with a 5-byte blob of ones, a 5-byte blob of zeroes and a counting pattern."""
    k = (NS, SET, "rec")
    client.put(k, {"ones": bytearray([0xFF] * 5), "zeros": bytearray(5), "count": bytearray([1, 2, 3, 4, 5])})
    yield k
    client.remove(k)


def blob(client, k, name):
    return client.get(k)[2][name]


def test_resize_with_every_flag(client, rec):
    client.operate(rec, [bo.bit_resize("zeros", 7)])
    assert blob(client, rec, "zeros") == bytearray(7)
    client.operate(rec, [bo.bit_resize("count", 7, resize_flags=aerospike.BIT_RESIZE_FROM_FRONT)])
    assert blob(client, rec, "count") == bytearray([0, 0, 1, 2, 3, 4, 5])
    client.operate(rec, [bo.bit_resize("count", 3, resize_flags=aerospike.BIT_RESIZE_FROM_FRONT)])
    assert blob(client, rec, "count") == bytearray([3, 4, 5])
    client.operate(rec, [bo.bit_resize("count", 2)])
    assert blob(client, rec, "count") == bytearray([3, 4])
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_resize("count", 1, resize_flags=aerospike.BIT_RESIZE_GROW_ONLY)])
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_resize("count", 9, resize_flags=aerospike.BIT_RESIZE_SHRINK_ONLY)])
    no_fail = {"bit_write_flags": aerospike.BIT_WRITE_NO_FAIL}
    client.operate(rec, [bo.bit_resize("count", 9, policy=no_fail, resize_flags=aerospike.BIT_RESIZE_SHRINK_ONLY)])
    assert blob(client, rec, "count") == bytearray([3, 4])
    # Creating: resize makes the bin; create-only refuses an existing one.
    client.operate(rec, [bo.bit_resize("new", 2)])
    assert blob(client, rec, "new") == bytearray(2)
    with pytest.raises(ex.BinExistsError):
        client.operate(rec, [bo.bit_resize("new", 4, policy={"bit_write_flags": aerospike.BIT_WRITE_CREATE_ONLY})])
    with pytest.raises(ex.BinNotFound):
        client.operate(rec, [bo.bit_resize("other", 4, policy={"bit_write_flags": aerospike.BIT_WRITE_UPDATE_ONLY})])
    # Past the record size limit: a parameter error, not an allocation.
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_resize("zeros", 100 * 1024 * 1024)])


def test_insert_and_remove(client, rec):
    client.operate(rec, [bo.bit_insert("count", 1, 2, bytearray([9, 9]))])
    assert blob(client, rec, "count") == bytearray([1, 9, 9, 2, 3, 4, 5])
    client.operate(rec, [bo.bit_insert("fresh", 2, 1, bytearray([7]))])
    assert blob(client, rec, "fresh") == bytearray([0, 0, 7])
    client.operate(rec, [bo.bit_remove("count", 1, 2)])
    assert blob(client, rec, "count") == bytearray([1, 2, 3, 4, 5])
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_remove("count", 3, 4)])
    client.operate(rec, [bo.bit_remove("count", 3, 4, policy={"bit_write_flags": aerospike.BIT_WRITE_PARTIAL})])
    assert blob(client, rec, "count") == bytearray([1, 2, 3])
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_remove("count", 3, 1)])


def test_set_or_xor_and_not(client, rec):
    client.operate(rec, [bo.bit_set("zeros", 4, 8, 1, bytearray([0xFF]))])
    assert blob(client, rec, "zeros") == bytearray([0x0F, 0xF0, 0, 0, 0])
    client.operate(rec, [bo.bit_or("zeros", 16, 8, 1, bytearray([0x81]))])
    assert blob(client, rec, "zeros") == bytearray([0x0F, 0xF0, 0x81, 0, 0])
    client.operate(rec, [bo.bit_xor("zeros", 0, 16, 2, bytearray([0xFF, 0xFF]))])
    assert blob(client, rec, "zeros") == bytearray([0xF0, 0x0F, 0x81, 0, 0])
    client.operate(rec, [bo.bit_and("ones", 8, 16, 2, bytearray([0x0F, 0xF0]))])
    assert blob(client, rec, "ones") == bytearray([0xFF, 0x0F, 0xF0, 0xFF, 0xFF])
    client.operate(rec, [bo.bit_not("ones", 0, 12)])
    assert blob(client, rec, "ones") == bytearray([0x00, 0xFF, 0xF0, 0xFF, 0xFF])
    # Negative offsets count from the end.
    client.operate(rec, [bo.bit_not("ones", -8, 8)])
    assert blob(client, rec, "ones") == bytearray([0x00, 0xFF, 0xF0, 0xFF, 0x00])
    # Past the end: not applicable, unless partial (or no-fail) says otherwise.
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_not("ones", 36, 8)])
    client.operate(rec, [bo.bit_not("ones", 36, 8, policy={"bit_write_flags": aerospike.BIT_WRITE_PARTIAL})])
    assert blob(client, rec, "ones") == bytearray([0x00, 0xFF, 0xF0, 0xFF, 0x0F])
    client.operate(rec, [bo.bit_not("ones", 40, 8, policy={"bit_write_flags": aerospike.BIT_WRITE_NO_FAIL})])
    assert blob(client, rec, "ones") == bytearray([0x00, 0xFF, 0xF0, 0xFF, 0x0F])
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_not("ones", -41, 8)])
    with pytest.raises(ex.BinNotFound):
        client.operate(rec, [bo.bit_not("missing", 0, 8)])


def test_shifts(client, rec):
    client.operate(rec, [bo.bit_lshift("count", 0, 16, 4)])
    assert blob(client, rec, "count") == bytearray([0x10, 0x20, 3, 4, 5])
    client.operate(rec, [bo.bit_rshift("count", 16, 24, 9)])
    assert blob(client, rec, "count") == bytearray([0x10, 0x20, 0x00, 0x01, 0x82])
    client.operate(rec, [bo.bit_lshift("count", 0, 8, 100)])
    assert blob(client, rec, "count")[0] == 0


def test_integer_arithmetic_and_overflow(client, rec):
    client.operate(rec, [bo.bit_add("zeros", 0, 8, 200, False, aerospike.BIT_OVERFLOW_FAIL)])
    assert blob(client, rec, "zeros")[0] == 200
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_add("zeros", 0, 8, 100, False, aerospike.BIT_OVERFLOW_FAIL)])
    client.operate(rec, [bo.bit_add("zeros", 0, 8, 100, False, aerospike.BIT_OVERFLOW_SATURATE)])
    assert blob(client, rec, "zeros")[0] == 255
    client.operate(rec, [bo.bit_add("zeros", 0, 8, 2, False, aerospike.BIT_OVERFLOW_WRAP)])
    assert blob(client, rec, "zeros")[0] == 1
    client.operate(rec, [bo.bit_subtract("zeros", 0, 8, 2, False, aerospike.BIT_OVERFLOW_SATURATE)])
    assert blob(client, rec, "zeros")[0] == 0
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_subtract("zeros", 0, 8, 1, False, aerospike.BIT_OVERFLOW_FAIL)])
    # Signed: 127 + 1 overflows; saturating stays at 127; -128 - 1 saturates at -128.
    client.operate(rec, [bo.bit_set_int("zeros", 8, 8, 127)])
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_add("zeros", 8, 8, 1, True, aerospike.BIT_OVERFLOW_FAIL)])
    client.operate(rec, [bo.bit_add("zeros", 8, 8, 1, True, aerospike.BIT_OVERFLOW_SATURATE)])
    (_, _, res) = client.operate(rec, [bo.bit_get_int("zeros", 8, 8, True)])
    assert res["zeros"] == 127
    client.operate(rec, [bo.bit_set_int("zeros", 8, 8, 0x80)])
    client.operate(rec, [bo.bit_subtract("zeros", 8, 8, 1, True, aerospike.BIT_OVERFLOW_SATURATE)])
    (_, _, res) = client.operate(rec, [bo.bit_get_int("zeros", 8, 8, True)])
    assert res["zeros"] == -128
    (_, _, res) = client.operate(rec, [bo.bit_get_int("zeros", 8, 8, False)])
    assert res["zeros"] == 128
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_set_int("zeros", 36, 8, 1)])
    with pytest.raises(ex.InvalidRequest):
        client.operate(rec, [bo.bit_get_int("zeros", 0, 65, False)])


def test_reads(client, rec):
    ops = [
        bo.bit_get("count", 4, 12),
        bo.bit_count("count", 0, 40),
        bo.bit_lscan("count", 0, 40, True),
        bo.bit_rscan("count", 0, 40, True),
        bo.bit_lscan("ones", 0, 40, False),
        bo.bit_get_int("count", 8, 16, False),
    ]
    (_, _, res) = client.operate_ordered(rec, ops)
    values = [v for (_, v) in res]
    # 0x01 0x02 ...: bits 4..16 are 0001 0000 0010, left-aligned.
    assert values == [bytearray([0x10, 0x20]), 7, 7, 39, -1, 0x0203]
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_get("count", 36, 8)])
    with pytest.raises(ex.BinIncompatibleType):
        client.put(rec, {"s": "text"})
        client.operate(rec, [bo.bit_count("s", 0, 8)])
    # A read of a missing bin answers nothing.
    (_, _, res) = client.operate(rec, [bo.bit_count("missing", 0, 8)])
    assert res.get("missing") is None


def test_failed_op_leaves_record_unchanged(client, rec):
    (_, meta_before, _) = client.get(rec)
    with pytest.raises(ex.OpNotApplicable):
        client.operate(rec, [bo.bit_not("ones", 0, 8), bo.bit_not("ones", 48, 8)])
    (_, meta_after, bins) = client.get(rec)
    assert bins["ones"] == bytearray([0xFF] * 5)
    assert meta_after["gen"] == meta_before["gen"]


@pytest.fixture
def hrec(client):
    k = (NS, SET, "hll")
    client.put(k, {"x": 1})
    yield k
    client.remove(k)


def within(estimate, exact, index_bits):
    bound = 3 * 1.04 / math.sqrt(2**index_bits) * exact + 3
    assert abs(estimate - exact) <= bound, (estimate, exact)


def test_hll_add_count_describe_refresh(client, hrec):
    keys = ["k%d" % i for i in range(1000)]
    (_, _, res) = client.operate(hrec, [ho.hll_add("h", keys, 12)])
    assert 0 < res["h"] <= 1000
    (_, _, res) = client.operate_ordered(hrec, [ho.hll_get_count("h"), ho.hll_describe("h"), ho.hll_refresh_count("h")])
    count, desc, refreshed = [v for (_, v) in res]
    within(count, 1000, 12)
    assert desc == [12, 0]
    assert refreshed == count
    (_, _, bins) = client.get(hrec)
    value = bins["h"]
    assert isinstance(value, HyperLogLog)
    # The byte layout: flags, index bits, min-hash bits, the cached count, the registers.
    assert bytes(value[:3]) == bytes([0, 12, 0])
    assert int.from_bytes(bytes(value[3:11]), "little") == count
    assert len(value) == 11 + (6 << 12) // 8
    # Adding what is already there changes no register.
    (_, _, res) = client.operate(hrec, [ho.hll_add("h", keys[:10])])
    assert res["h"] == 0
    # The value written back is read back the same, and counted the same.
    client.put(hrec, {"copy": value})
    (_, _, res) = client.operate(hrec, [ho.hll_get_count("copy")])
    assert res["copy"] == count


def test_hll_init_flags_and_bit_counts(client, hrec):
    client.operate(hrec, [ho.hll_init("h", 10, 8)])
    (_, _, res) = client.operate(hrec, [ho.hll_describe("h")])
    assert res["h"] == [10, 8]
    with pytest.raises(ex.BinExistsError):
        client.operate(hrec, [ho.hll_init("h", 10, policy={"flags": aerospike.HLL_WRITE_CREATE_ONLY})])
    quiet = {"flags": aerospike.HLL_WRITE_CREATE_ONLY | aerospike.HLL_WRITE_NO_FAIL}
    client.operate(hrec, [ho.hll_init("h", 10, policy=quiet)])
    with pytest.raises(ex.BinNotFound):
        client.operate(hrec, [ho.hll_init("other", 10, policy={"flags": aerospike.HLL_WRITE_UPDATE_ONLY})])
    for ib, mb in [(3, 0), (17, 0), (8, 3), (16, 49)]:
        with pytest.raises(ex.InvalidRequest):
            client.operate(hrec, [ho.hll_init("h", ib, mb)])
    with pytest.raises(ex.InvalidRequest):
        client.operate(hrec, [ho.hll_add("h", ["a"], 8, policy={"flags": aerospike.HLL_WRITE_UPDATE_ONLY})])
    with pytest.raises(ex.BinIncompatibleType):
        client.operate(hrec, [ho.hll_get_count("x")])
    with pytest.raises(ex.InvalidRequest):
        client.put(hrec, {"bad": HyperLogLog(b"\x00\x04\x00")})


def test_hll_fold_union_intersect_similarity(client, hrec):
    a = ["k%d" % i for i in range(0, 1000)]
    b = ["k%d" % i for i in range(500, 1500)]
    adds = [ho.hll_add("a", a, 12), ho.hll_add("b", b, 12), ho.hll_add("ma", a, 12, 16), ho.hll_add("mb", b, 12, 16)]
    client.operate(hrec, adds)
    bins = client.get(hrec)[2]
    (_, _, res) = client.operate_ordered(
        hrec,
        [
            ho.hll_get_union_count("a", [bins["b"]]),
            ho.hll_get_intersect_count("a", [bins["b"]]),
            ho.hll_get_similarity("a", [bins["b"]]),
            ho.hll_get_intersect_count("ma", [bins["mb"]]),
            ho.hll_get_similarity("ma", [bins["mb"]]),
            ho.hll_get_union("a", [bins["b"]]),
        ],
    )
    union_count, intersect, sim, mh_intersect, mh_sim, union = [v for (_, v) in res]
    within(union_count, 1500, 12)
    assert abs(intersect - 500) < 150
    assert abs(mh_intersect - 500) < 100
    assert abs(sim - 1 / 3) < 0.1 and abs(mh_sim - 1 / 3) < 0.1
    assert isinstance(union, HyperLogLog)
    # Set-union into a bin; fold a plain sketch down; fold refuses to grow or a min-hash one.
    client.operate(hrec, [ho.hll_set_union("u", [bins["a"], bins["b"]])])
    (_, _, res) = client.operate(hrec, [ho.hll_get_count("u")])
    within(res["u"], 1500, 12)
    client.operate(hrec, [ho.hll_fold("a", 8)])
    (_, _, res) = client.operate_ordered(hrec, [ho.hll_describe("a"), ho.hll_get_count("a")])
    assert res[0][1] == [8, 0]
    within(res[1][1], 1000, 8)
    with pytest.raises(ex.OpNotApplicable):
        client.operate(hrec, [ho.hll_fold("a", 10)])
    with pytest.raises(ex.OpNotApplicable):
        client.operate(hrec, [ho.hll_fold("ma", 8)])
    # A union may lower the bin's index bits only with allow-fold.
    with pytest.raises(ex.OpNotApplicable):
        client.operate(hrec, [ho.hll_set_union("b", [client.get(hrec)[2]["a"]])])
    fold = {"flags": aerospike.HLL_WRITE_ALLOW_FOLD}
    client.operate(hrec, [ho.hll_set_union("b", [client.get(hrec)[2]["a"]], policy=fold)])
    (_, _, res) = client.operate(hrec, [ho.hll_describe("b")])
    assert res["b"] == [8, 0]


def test_respond_all_ops_answers_each_op(client, hrec):
    client.put(hrec, {"blob": bytearray([0x0F])})
    ops = [
        bo.bit_not("blob", 0, 8),
        bo.bit_get("blob", 0, 8),
        ho.hll_init("h", 8),
        ho.hll_add("h", ["a", "b"]),
        op.read("x"),
    ]
    (_, _, res) = client.operate_ordered(hrec, ops)
    assert [v for (_, v) in res] == [None, bytearray([0xF0]), None, 2, 1]
