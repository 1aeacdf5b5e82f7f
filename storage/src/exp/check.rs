//! The static type check of a compiled expression, as the server does it before evaluating
//! anything: comparisons of two different known types, arithmetic on mixed or non-numeric
//! operands, logic on non-booleans, and a filter that cannot be a boolean are parameter
//! errors. A type that depends on the record (a variable of unknown type, a `cond`) is
//! "any" and checked at run time instead.

use petrel_proto::exp::{self as op, ty};

use super::decode::Node;
use crate::StorageError;

/// A type known only at run time.
pub const ANY: i64 = -1;

fn bad(m: &'static str) -> StorageError {
    StorageError::Parameter(m)
}

/// Whether a value of static type `t` may be where `want` is expected.
fn fits(t: i64, want: i64) -> bool {
    t == ANY || t == want
}

fn expect(t: i64, want: i64, m: &'static str) -> Result<(), StorageError> {
    if fits(t, want) {
        Ok(())
    } else {
        Err(bad(m))
    }
}

/// The static type of `node`; `vars` holds the types of the variable slots defined so far.
pub(crate) fn type_of(node: &Node, vars: &mut Vec<i64>) -> Result<i64, StorageError> {
    Ok(match node {
        Node::Lit(v) => v.type_code(),
        Node::Unknown => ANY,
        Node::Cmp(_, l, r) => {
            let (l, r) = (type_of(l, vars)?, type_of(r, vars)?);
            if l != ANY && r != ANY && l != r && l != ty::NIL && r != ty::NIL {
                return Err(bad("comparison of different types"));
            }
            ty::BOOL
        }
        Node::Regex(_, arg) => {
            expect(type_of(arg, vars)?, ty::STRING, "regex compares a string")?;
            ty::BOOL
        }
        Node::Geo(l, r) => {
            expect(type_of(l, vars)?, ty::GEO, "geospatial comparison of a non-GeoJSON value")?;
            expect(type_of(r, vars)?, ty::GEO, "geospatial comparison of a non-GeoJSON value")?;
            ty::BOOL
        }
        Node::And(args) | Node::Or(args) | Node::Exclusive(args) => {
            for a in args {
                expect(type_of(a, vars)?, ty::BOOL, "logical operand is not a boolean")?;
            }
            ty::BOOL
        }
        Node::Not(a) => {
            expect(type_of(a, vars)?, ty::BOOL, "logical operand is not a boolean")?;
            ty::BOOL
        }
        Node::Arith(code, args) => arith(*code, args, vars)?,
        Node::DigestModulo(_) | Node::BinType(_) => ty::INT,
        Node::Meta(code) => match *code {
            op::SET_NAME => ty::STRING,
            op::KEY_EXISTS | op::IS_TOMBSTONE => ty::BOOL,
            _ => ty::INT,
        },
        Node::Key(t) | Node::Bin(t, _) => *t,
        Node::Cond(args) => {
            let (pairs, default) = args.split_at(args.len() - 1);
            let mut out = type_of(&default[0], vars)?;
            for pair in pairs.chunks_exact(2) {
                expect(type_of(&pair[0], vars)?, ty::BOOL, "cond condition is not a boolean")?;
                let t = type_of(&pair[1], vars)?;
                if out == ANY {
                    out = t;
                } else if t != ANY && t != out {
                    return Err(bad("cond branches of different types"));
                }
            }
            out
        }
        Node::Let(defs, scope) => {
            for (slot, value) in defs {
                let t = type_of(value, vars)?;
                if vars.len() <= *slot {
                    vars.resize(*slot + 1, ANY);
                }
                vars[*slot] = t;
            }
            type_of(scope, vars)?
        }
        Node::Var(slot) => vars.get(*slot).copied().unwrap_or(ANY),
        Node::Call(c) => {
            for a in &c.args {
                type_of(a, vars)?;
            }
            type_of(&c.bin, vars)?;
            c.ret
        }
    })
}

fn arith(code: i64, args: &[Node], vars: &mut Vec<i64>) -> Result<i64, StorageError> {
    let mut types = smallvec::SmallVec::<[i64; 4]>::new();
    for a in args {
        types.push(type_of(a, vars)?);
    }
    let all = |want: i64| types.iter().all(|&t| fits(t, want));
    let numeric = || -> Result<i64, StorageError> {
        let known = types.iter().copied().find(|&t| t != ANY).unwrap_or(ANY);
        if known != ANY && known != ty::INT && known != ty::FLOAT {
            return Err(bad("arithmetic on a non-number"));
        }
        if !all(known) {
            return Err(bad("arithmetic on mixed integers and floats"));
        }
        Ok(known)
    };
    let want_all = |want: i64, out: i64| if all(want) { Ok(out) } else { Err(bad("operand of the wrong type")) };
    match code {
        op::ADD | op::SUB | op::MUL | op::DIV | op::MIN | op::MAX | op::ABS => numeric(),
        op::POW | op::LOG | op::FLOOR | op::CEIL => want_all(ty::FLOAT, ty::FLOAT),
        op::TO_INT => want_all(ty::FLOAT, ty::INT),
        op::TO_FLOAT => want_all(ty::INT, ty::FLOAT),
        op::INT_LSCAN | op::INT_RSCAN => {
            expect(types[0], ty::INT, "scan of a non-integer")?;
            expect(types[1], ty::BOOL, "scan searches for a boolean")?;
            Ok(ty::INT)
        }
        _ => want_all(ty::INT, ty::INT),
    }
}
