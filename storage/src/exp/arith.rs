//! Arithmetic and integer operators of expressions: add, sub, mul, div, pow, log, mod, abs,
//! floor, ceil, to-int, to-float, min, max and the bitwise integer operators. Operands of a
//! variadic operator must all be integers or all floats; a mismatch or a division by zero is
//! unknown. Integer results wrap on overflow; to-int saturates (NaN becomes 0).

use petrel_proto::exp as op;

use super::decode::Node;
use super::eval::{eval, Env};
use super::value::EVal;

/// Numbers of one kind, as a variadic operator sees them.
enum Nums {
    Ints(smallvec::SmallVec<[i64; 4]>),
    Floats(smallvec::SmallVec<[f64; 4]>),
}

fn operands<'a>(args: &'a [Node], env: &mut Env<'a>) -> Option<Nums> {
    let mut ints = smallvec::SmallVec::new();
    let mut floats = smallvec::SmallVec::new();
    for a in args {
        match eval(a, env)? {
            EVal::Int(i) if floats.is_empty() => ints.push(i),
            EVal::Float(f) if ints.is_empty() => floats.push(f),
            _ => return None,
        }
    }
    Some(if floats.is_empty() { Nums::Ints(ints) } else { Nums::Floats(floats) })
}

fn int<'a>(node: &'a Node, env: &mut Env<'a>) -> Option<i64> {
    match eval(node, env)? {
        EVal::Int(i) => Some(i),
        _ => None,
    }
}

fn float<'a>(node: &'a Node, env: &mut Env<'a>) -> Option<f64> {
    match eval(node, env)? {
        EVal::Float(f) => Some(f),
        _ => None,
    }
}

/// Folds integers with `f`, or floats with `g`.
fn fold(nums: Nums, f: impl Fn(i64, i64) -> Option<i64>, g: impl Fn(f64, f64) -> f64) -> Option<EVal<'static>> {
    match nums {
        Nums::Ints(v) => {
            let mut acc = v[0];
            for &x in &v[1..] {
                acc = f(acc, x)?;
            }
            Some(EVal::Int(acc))
        }
        Nums::Floats(v) => Some(EVal::Float(v[1..].iter().fold(v[0], |a, &x| g(a, x)))),
    }
}

pub(crate) fn eval_op<'a>(code: i64, args: &'a [Node], env: &mut Env<'a>) -> Option<EVal<'a>> {
    match code {
        op::ADD => fold(operands(args, env)?, |a, b| Some(a.wrapping_add(b)), |a, b| a + b),
        op::MUL => fold(operands(args, env)?, |a, b| Some(a.wrapping_mul(b)), |a, b| a * b),
        op::SUB => match operands(args, env)? {
            Nums::Ints(v) if v.len() == 1 => Some(EVal::Int(v[0].wrapping_neg())),
            Nums::Floats(v) if v.len() == 1 => Some(EVal::Float(-v[0])),
            n => fold(n, |a, b| Some(a.wrapping_sub(b)), |a, b| a - b),
        },
        op::DIV => {
            let div = |a: i64, b: i64| if b == 0 { None } else { Some(a.wrapping_div(b)) };
            match operands(args, env)? {
                Nums::Ints(v) if v.len() == 1 => div(1, v[0]).map(EVal::Int),
                Nums::Floats(v) if v.len() == 1 => Some(EVal::Float(1.0 / v[0])),
                n => fold(n, div, |a, b| a / b),
            }
        }
        op::MIN | op::MAX => {
            let max = code == op::MAX;
            let pick_i = move |a: i64, b: i64| Some(if max { a.max(b) } else { a.min(b) });
            fold(operands(args, env)?, pick_i, move |a, b| if max { a.max(b) } else { a.min(b) })
        }
        op::POW => Some(EVal::Float(float(&args[0], env)?.powf(float(&args[1], env)?))),
        op::LOG => {
            let n = float(&args[0], env)?;
            let base = float(&args[1], env)?;
            Some(EVal::Float(n.ln() / base.ln()))
        }
        op::MOD => {
            let a = int(&args[0], env)?;
            let b = int(&args[1], env)?;
            (b != 0).then(|| EVal::Int(a.wrapping_rem(b)))
        }
        op::ABS => match eval(&args[0], env)? {
            EVal::Int(i) => Some(EVal::Int(i.wrapping_abs())),
            EVal::Float(f) => Some(EVal::Float(f.abs())),
            _ => None,
        },
        op::FLOOR => Some(EVal::Float(float(&args[0], env)?.floor())),
        op::CEIL => Some(EVal::Float(float(&args[0], env)?.ceil())),
        op::TO_INT => Some(EVal::Int(float(&args[0], env)? as i64)),
        op::TO_FLOAT => Some(EVal::Float(int(&args[0], env)? as f64)),
        op::INT_AND | op::INT_OR | op::INT_XOR => {
            let mut acc = int(&args[0], env)?;
            for a in &args[1..] {
                let x = int(a, env)?;
                acc = match code {
                    op::INT_AND => acc & x,
                    op::INT_OR => acc | x,
                    _ => acc ^ x,
                };
            }
            Some(EVal::Int(acc))
        }
        op::INT_NOT => Some(EVal::Int(!int(&args[0], env)?)),
        op::INT_LSHIFT | op::INT_RSHIFT | op::INT_ARSHIFT => {
            let v = int(&args[0], env)?;
            let s = int(&args[1], env)?;
            if !(0..64).contains(&s) {
                return Some(EVal::Int(if code == op::INT_ARSHIFT && v < 0 { -1 } else { 0 }));
            }
            let s = s as u32;
            Some(EVal::Int(match code {
                op::INT_LSHIFT => v << s,
                op::INT_RSHIFT => ((v as u64) >> s) as i64,
                _ => v >> s,
            }))
        }
        op::INT_COUNT => Some(EVal::Int(int(&args[0], env)?.count_ones() as i64)),
        op::INT_LSCAN | op::INT_RSCAN => {
            let v = int(&args[0], env)? as u64;
            let search = match eval(&args[1], env)? {
                EVal::Bool(b) => b,
                _ => return None,
            };
            let bits = if search { v } else { !v };
            Some(EVal::Int(if bits == 0 {
                -1
            } else if code == op::INT_LSCAN {
                bits.leading_zeros() as i64
            } else {
                63 - bits.trailing_zeros() as i64
            }))
        }
        _ => None,
    }
}
