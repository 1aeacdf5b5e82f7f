//! Evaluating a compiled expression against one record: the record context ([`RecordCtx`]:
//! metadata and bins, borrowed), three-valued logic (a missing bin, a type mismatch or an
//! explicit unknown make "unknown", `None`), comparisons, metadata, `cond` and `let`. Bin
//! values are borrowed from the record; arithmetic is in `arith`, calls in `call`.

use std::borrow::Cow;
use std::cmp::Ordering;

use petrel_proto::exp as op;
use petrel_proto::Digest;

use super::decode::{Cmp, Node, Program};
use super::value::{compare, EVal};
use super::{arith, call, geo};
use crate::record::{ImageView, KeyRef};
use crate::value::ParticleRef;

/// Milliseconds from 1970 to the Citrusleaf epoch (2010-01-01).
const CITRUSLEAF_EPOCH_MS: u64 = 1_262_304_000_000;

/// Where an expression finds a record's bins.
#[derive(Debug, Clone, Copy)]
pub enum Bins<'a> {
    /// A stored image.
    Image(ImageView<'a>),
    /// Bins being worked on by an operate.
    Pairs(&'a [(&'a [u8], ParticleRef<'a>)]),
    /// No record (or no bins).
    None,
}

impl<'a> Bins<'a> {
    fn get(&self, name: &[u8]) -> Option<ParticleRef<'a>> {
        match self {
            Bins::Image(img) => img.bin(name).ok().flatten().map(|b| b.value),
            Bins::Pairs(p) => p.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            Bins::None => None,
        }
    }
}

/// The record an expression looks at.
#[derive(Debug, Clone, Copy)]
pub struct RecordCtx<'a> {
    pub digest: &'a Digest,
    /// The set name; empty when the record has none.
    pub set_name: &'a [u8],
    pub key: Option<KeyRef<'a>>,
    /// Expiry, seconds since the Citrusleaf epoch; 0 = never.
    pub void_time: u32,
    /// Last update, ms since the Citrusleaf epoch.
    pub lut_ms: u64,
    /// Now, ms since the Citrusleaf epoch.
    pub now_ms: u64,
    /// Bytes of the record's data image.
    pub data_size: usize,
    pub bins: Bins<'a>,
}

/// Evaluation state: the record and the variable slots.
pub(crate) struct Env<'a> {
    pub(crate) rec: &'a RecordCtx<'a>,
    pub(crate) vars: smallvec::SmallVec<[Option<EVal<'a>>; 4]>,
    /// Bytes the calls of this evaluation may still produce: a bit call may not grow a value
    /// past it, and every call result is charged to it, so that one evaluation holds at most
    /// about a record's size however many calls and variables the expression has.
    pub(crate) bytes_left: usize,
}

impl Env<'_> {
    /// Charges `bytes` a call produced; false (the call is unknown) past the budget.
    pub(crate) fn charge(&mut self, bytes: usize) -> bool {
        match self.bytes_left.checked_sub(bytes) {
            Some(left) => {
                self.bytes_left = left;
                true
            }
            None => false,
        }
    }
}

impl Program {
    /// Evaluates the program; `None` is "unknown". The calls it makes may produce at most
    /// `bytes_max` bytes in all (the namespace's record size limit).
    pub fn eval<'a>(&'a self, rec: &'a RecordCtx<'a>, bytes_max: usize) -> Option<EVal<'a>> {
        let mut env = Env { rec, vars: smallvec::smallvec![None; self.vars], bytes_left: bytes_max };
        eval(&self.root, &mut env)
    }

    /// Whether the record passes the filter: only a boolean true does. `bytes_max` bounds
    /// what its calls may produce, as for [`Program::eval`].
    pub fn matches(&self, rec: &RecordCtx<'_>, bytes_max: usize) -> bool {
        matches!(self.eval(rec, bytes_max), Some(EVal::Bool(true)))
    }
}

fn as_bool(v: Option<EVal<'_>>) -> Option<bool> {
    match v? {
        EVal::Bool(b) => Some(b),
        _ => None,
    }
}

pub(crate) fn eval<'a>(node: &'a Node, env: &mut Env<'a>) -> Option<EVal<'a>> {
    match node {
        Node::Lit(v) => Some(v.reborrow()),
        Node::Unknown => None,
        Node::Cmp(c, l, r) => {
            let l = eval(l, env)?;
            let r = eval(r, env)?;
            Some(EVal::Bool(cmp(*c, &l, &r)?))
        }
        Node::Regex(re, arg) => match eval(arg, env)? {
            EVal::Str(s) => Some(EVal::Bool(re.is_match(&s))),
            _ => None,
        },
        Node::And(args) => short_circuit(args, env, false),
        Node::Or(args) => short_circuit(args, env, true),
        Node::Geo(l, r) => match (eval(l, env)?, eval(r, env)?) {
            (EVal::Geo(a), EVal::Geo(b)) => Some(EVal::Bool(geo::compare(&a, &b)?)),
            _ => None,
        },
        Node::Not(a) => Some(EVal::Bool(!as_bool(eval(a, env))?)),
        Node::Exclusive(args) => {
            let mut trues = 0;
            for a in args {
                if as_bool(eval(a, env))? {
                    trues += 1;
                }
            }
            Some(EVal::Bool(trues == 1))
        }
        Node::Arith(code, args) => arith::eval_op(*code, args, env),
        Node::DigestModulo(m) => {
            let d = &env.rec.digest.0;
            let v = u32::from_le_bytes([d[16], d[17], d[18], d[19]]) as i64;
            Some(EVal::Int(v % m))
        }
        Node::Meta(code) => meta(*code, env.rec),
        Node::Key(t) => {
            let k = env.rec.key?;
            let v = EVal::from_particle(ParticleRef { particle: k.particle, bytes: k.bytes })?;
            (v.type_code() == *t).then_some(v)
        }
        Node::Bin(t, name) => {
            let v = EVal::from_particle(env.rec.bins.get(name)?)?;
            (v.type_code() == *t).then_some(v)
        }
        Node::BinType(name) => Some(EVal::Int(env.rec.bins.get(name).map_or(0, |p| p.particle as i64))),
        Node::Cond(args) => {
            let (pairs, default) = args.split_at(args.len() - 1);
            for pair in pairs.chunks_exact(2) {
                if as_bool(eval(&pair[0], env))? {
                    return eval(&pair[1], env);
                }
            }
            eval(&default[0], env)
        }
        Node::Let(defs, scope) => {
            for (slot, value) in defs {
                let v = eval(value, env);
                *env.vars.get_mut(*slot)? = v;
            }
            eval(scope, env)
        }
        Node::Var(slot) => env.vars.get(*slot)?.clone(),
        Node::Call(c) => call::eval_call(c, env),
    }
}

/// `and` (deciding on the first false) or `or` (on the first true): the deciding value, else
/// unknown when an operand was unknown, else the other value.
fn short_circuit<'a>(args: &'a [Node], env: &mut Env<'a>, decides: bool) -> Option<EVal<'a>> {
    let mut unknown = false;
    for a in args {
        match as_bool(eval(a, env)) {
            Some(b) if b == decides => return Some(EVal::Bool(decides)),
            Some(_) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(EVal::Bool(!decides))
}

fn cmp(c: Cmp, l: &EVal<'_>, r: &EVal<'_>) -> Option<bool> {
    // Equality across types is simply false; ordering across types is unknown.
    let ord = match (c, compare(l, r)) {
        (Cmp::Eq, None) if !same_kind(l, r) => return Some(false),
        (Cmp::Ne, None) if !same_kind(l, r) => return Some(true),
        (_, o) => o?,
    };
    Some(match c {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
    })
}

fn same_kind(l: &EVal<'_>, r: &EVal<'_>) -> bool {
    std::mem::discriminant(l) == std::mem::discriminant(r)
}

fn meta<'a>(code: i64, rec: &RecordCtx<'a>) -> Option<EVal<'a>> {
    let ns_since_1970 = |ms: u64| (ms.saturating_add(CITRUSLEAF_EPOCH_MS) as i64).saturating_mul(1_000_000);
    Some(match code {
        op::DEVICE_SIZE => EVal::Int(0),
        op::MEMORY_SIZE | op::RECORD_SIZE => EVal::Int(rec.data_size as i64),
        op::LAST_UPDATE => EVal::Int(ns_since_1970(rec.lut_ms)),
        op::SINCE_UPDATE => EVal::Int(rec.now_ms.saturating_sub(rec.lut_ms) as i64),
        op::VOID_TIME => EVal::Int(if rec.void_time == 0 { -1 } else { ns_since_1970(rec.void_time as u64 * 1000) }),
        op::TTL => {
            let now_secs = rec.now_ms / 1000;
            EVal::Int(if rec.void_time == 0 { -1 } else { (rec.void_time as u64).saturating_sub(now_secs) as i64 })
        }
        op::SET_NAME => EVal::Str(Cow::Borrowed(rec.set_name)),
        op::KEY_EXISTS => EVal::Bool(rec.key.is_some()),
        op::IS_TOMBSTONE => EVal::Bool(false),
        _ => return None,
    })
}
