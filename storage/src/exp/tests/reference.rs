//! The property test: random integer and boolean expressions over records whose bins may be
//! missing or of another type, evaluated by the compiled evaluator and by a direct reference
//! evaluator written from the language's rules, which must agree.

use super::*;

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum BinVal {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone)]
enum IExp {
    Lit(i64),
    Bin(usize),
    Add(Vec<IExp>),
    Sub(Box<IExp>, Box<IExp>),
    Mul(Box<IExp>, Box<IExp>),
    Min(Vec<IExp>),
    IntXor(Box<IExp>, Box<IExp>),
    Abs(Box<IExp>),
    Cond(Box<BExp>, Box<IExp>, Box<IExp>),
    Unknown,
}

#[derive(Debug, Clone)]
enum BExp {
    Lit(bool),
    Cmp(usize, IExp, IExp),
    And(Vec<BExp>),
    Or(Vec<BExp>),
    Not(Box<BExp>),
    Exclusive(Vec<BExp>),
    StrEq(usize, String),
    BinExists(usize),
}

fn leaf_int() -> impl Strategy<Value = IExp> {
    prop_oneof![(-5i64..5).prop_map(IExp::Lit), (0..3usize).prop_map(IExp::Bin), Just(IExp::Unknown)]
}

fn int_exp() -> impl Strategy<Value = IExp> {
    leaf_int().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(IExp::Add),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| IExp::Sub(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| IExp::Mul(Box::new(a), Box::new(b))),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(IExp::Min),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| IExp::IntXor(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| IExp::Abs(Box::new(a))),
            (bool_leaf(), inner.clone(), inner).prop_map(|(c, a, b)| IExp::Cond(Box::new(c), Box::new(a), Box::new(b))),
        ]
    })
}

fn bool_leaf() -> impl Strategy<Value = BExp> {
    prop_oneof![
        any::<bool>().prop_map(BExp::Lit),
        (0..6usize, leaf_int(), leaf_int()).prop_map(|(c, a, b)| BExp::Cmp(c, a, b)),
        (0..3usize, "[xy]").prop_map(|(i, s)| BExp::StrEq(i, s)),
        (0..3usize).prop_map(BExp::BinExists),
    ]
}

fn bool_exp() -> impl Strategy<Value = BExp> {
    let leaf = prop_oneof![bool_leaf(), (0..6usize, int_exp(), int_exp()).prop_map(|(c, a, b)| BExp::Cmp(c, a, b))];
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(BExp::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(BExp::Or),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(BExp::Exclusive),
            inner.prop_map(|a| BExp::Not(Box::new(a))),
        ]
    })
}

fn record_bins() -> impl Strategy<Value = Vec<Option<BinVal>>> {
    let v = prop_oneof![
        2 => (-5i64..5).prop_map(|i| Some(BinVal::Int(i))),
        1 => "[xy]".prop_map(|s| Some(BinVal::Str(s))),
        1 => Just(None),
    ];
    proptest::collection::vec(v, 3)
}

// ---- encoding ----

fn enc_i(e: &IExp) -> Vec<u8> {
    let many = |code: i64, xs: &[IExp]| call(code, &xs.iter().map(enc_i).collect::<Vec<_>>());
    match e {
        IExp::Lit(i) => int(*i),
        IExp::Bin(n) => bin(op::ty::INT, NAMES[*n]),
        IExp::Add(xs) => many(op::ADD, xs),
        IExp::Sub(a, b) => call(op::SUB, &[enc_i(a), enc_i(b)]),
        IExp::Mul(a, b) => call(op::MUL, &[enc_i(a), enc_i(b)]),
        IExp::Min(xs) => many(op::MIN, xs),
        IExp::IntXor(a, b) => call(op::INT_XOR, &[enc_i(a), enc_i(b)]),
        IExp::Abs(a) => call(op::ABS, &[enc_i(a)]),
        IExp::Cond(c, a, b) => call(op::COND, &[enc_b(c), enc_i(a), enc_i(b)]),
        IExp::Unknown => call(op::UNKNOWN, &[]),
    }
}

fn enc_b(e: &BExp) -> Vec<u8> {
    let many = |code: i64, xs: &[BExp]| call(code, &xs.iter().map(enc_b).collect::<Vec<_>>());
    match e {
        BExp::Lit(b) => boolean(*b),
        BExp::Cmp(c, a, b) => call(op::EQ + *c as i64, &[enc_i(a), enc_i(b)]),
        BExp::And(xs) => many(op::AND, xs),
        BExp::Or(xs) => many(op::OR, xs),
        BExp::Exclusive(xs) => many(op::EXCLUSIVE, xs),
        BExp::Not(a) => call(op::NOT, &[enc_b(a)]),
        BExp::StrEq(n, s) => call(op::EQ, &[bin(op::ty::STRING, NAMES[*n]), string(s)]),
        BExp::BinExists(n) => call(op::NE, &[call(op::BIN_TYPE, &[raw(NAMES[*n])]), int(0)]),
    }
}

// ---- the reference evaluator ----

fn ref_i(e: &IExp, bins: &[Option<BinVal>]) -> Option<i64> {
    match e {
        IExp::Lit(i) => Some(*i),
        IExp::Bin(n) => match &bins[*n] {
            Some(BinVal::Int(i)) => Some(*i),
            _ => None,
        },
        IExp::Add(xs) => xs.iter().try_fold(0i64, |acc, x| Some(acc.wrapping_add(ref_i(x, bins)?))),
        IExp::Sub(a, b) => Some(ref_i(a, bins)?.wrapping_sub(ref_i(b, bins)?)),
        IExp::Mul(a, b) => Some(ref_i(a, bins)?.wrapping_mul(ref_i(b, bins)?)),
        IExp::Min(xs) => xs.iter().map(|x| ref_i(x, bins)).collect::<Option<Vec<_>>>()?.into_iter().min(),
        IExp::IntXor(a, b) => Some(ref_i(a, bins)? ^ ref_i(b, bins)?),
        IExp::Abs(a) => Some(ref_i(a, bins)?.wrapping_abs()),
        IExp::Cond(c, a, b) => {
            if ref_b(c, bins)? {
                ref_i(a, bins)
            } else {
                ref_i(b, bins)
            }
        }
        IExp::Unknown => None,
    }
}

fn ref_b(e: &BExp, bins: &[Option<BinVal>]) -> Option<bool> {
    match e {
        BExp::Lit(b) => Some(*b),
        BExp::Cmp(c, a, b) => {
            let (a, b) = (ref_i(a, bins)?, ref_i(b, bins)?);
            Some([a == b, a != b, a > b, a >= b, a < b, a <= b][*c])
        }
        BExp::And(xs) => {
            let vals: Vec<_> = xs.iter().map(|x| ref_b(x, bins)).collect();
            if vals.contains(&Some(false)) {
                Some(false)
            } else if vals.contains(&None) {
                None
            } else {
                Some(true)
            }
        }
        BExp::Or(xs) => {
            let vals: Vec<_> = xs.iter().map(|x| ref_b(x, bins)).collect();
            if vals.contains(&Some(true)) {
                Some(true)
            } else if vals.contains(&None) {
                None
            } else {
                Some(false)
            }
        }
        BExp::Exclusive(xs) => {
            let vals = xs.iter().map(|x| ref_b(x, bins)).collect::<Option<Vec<_>>>()?;
            Some(vals.iter().filter(|v| **v).count() == 1)
        }
        BExp::Not(a) => Some(!ref_b(a, bins)?),
        BExp::StrEq(n, s) => match &bins[*n] {
            Some(BinVal::Str(v)) => Some(v == s),
            _ => None,
        },
        BExp::BinExists(n) => Some(bins[*n].is_some()),
    }
}

fn record_of(bins: &[Option<BinVal>]) -> Rec {
    let named: Vec<(&str, MsgValue)> = bins
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let v = match b.as_ref()? {
                BinVal::Int(x) => MsgValue::Int(*x),
                BinVal::Str(s) => MsgValue::str(s),
            };
            Some((NAMES[i], v))
        })
        .collect();
    rec(&named)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluator_agrees_with_the_reference(e in bool_exp(), bins in record_bins()) {
        let r = record_of(&bins);
        let bytes = enc_b(&e);
        let program = Program::compile(&bytes).expect("well-typed expressions compile");
        let got = eval_on(&bytes, &r).expect("compiles");
        let want = ref_b(&e, &bins).map(EVal::Bool);
        prop_assert_eq!(got, want.clone());
        let image = ImageView::parse(&r.image).expect("parse");
        let ctx = RecordCtx {
            digest: &r.digest, set_name: b"", key: None, void_time: 0, lut_ms: 0, now_ms: 0,
            data_size: 0, bins: Bins::Image(image),
        };
        prop_assert_eq!(program.matches(&ctx, usize::MAX), want == Some(EVal::Bool(true)));
    }

    #[test]
    fn integer_results_agree_with_the_reference(e in int_exp(), bins in record_bins()) {
        let r = record_of(&bins);
        let got = eval_on(&enc_i(&e), &r).expect("compiles");
        prop_assert_eq!(got, ref_i(&e, &bins).map(EVal::Int));
    }

    #[test]
    fn mutated_expressions_never_panic(
        e in bool_exp(),
        bins in record_bins(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = enc_b(&e);
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        bytes.truncate(bytes.len() - cut % 3.min(bytes.len()));
        let r = record_of(&bins);
        let _ = eval_on_unchecked(&bytes, &r);
    }
}

/// Compiles and evaluates whatever compiles, ignoring trailing bytes.
fn eval_on_unchecked(bytes: &[u8], r: &Rec) -> Option<EVal<'static>> {
    let (program, _) = Program::compile_prefix(bytes).ok()?;
    let image = ImageView::parse(&r.image).ok()?;
    let ctx = RecordCtx {
        digest: &r.digest,
        set_name: b"",
        key: None,
        void_time: 0,
        lut_ms: 0,
        now_ms: 0,
        data_size: 0,
        bins: Bins::Image(image),
    };
    program.eval(&ctx, 1 << 16).map(EVal::into_owned)
}
