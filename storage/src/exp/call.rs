//! Calls inside expressions: list and map reads and modifies (through [`crate::cdt`]), bit
//! reads and modifies (through [`crate::bits`]) and HyperLogLog reads and modifies (through
//! [`crate::hll`]), applied to a bin or value the expression computes. A modify call answers
//! the changed value and writes nothing. A failing call is unknown.

use super::decode::{pack_call, Call};
use super::eval::{eval, Env};
use super::value::EVal;
use crate::value::ParticleRef;
use crate::{bits, cdt, hll};
use petrel_proto::exp as op;

pub(crate) fn eval_call<'a>(c: &'a Call, env: &mut Env<'a>) -> Option<EVal<'a>> {
    let owned;
    let payload: &[u8] = match &c.packed {
        Some(p) => p,
        None => {
            let mut args = Vec::with_capacity(c.args.len());
            for a in &c.args {
                args.push(eval(a, env)?);
            }
            owned = pack_call(c, &args)?;
            &owned
        }
    };
    let target = eval(&c.bin, env)?;
    let (particle, bytes) = target.particle_parts()?;
    let existing = Some(ParticleRef { particle, bytes: &bytes });
    let (new_value, result) = match c.module {
        op::MODULE_CDT => {
            let out = cdt::apply(existing, payload, c.modify).ok()?;
            (out.new_value.map(|v| v.unwrap_or(crate::value::Particle { particle: 0, bytes: Vec::new() })), out.result)
        }
        op::MODULE_BITS => {
            let out = bits::apply(existing, payload, c.modify, env.bytes_left).ok()?;
            (out.new_value, out.result)
        }
        _ => {
            let out = hll::apply(existing, payload, c.modify).ok()?;
            (out.new_value, out.result)
        }
    };
    let produced = new_value.as_ref().map_or(0, |p| p.bytes.len()) + result.as_ref().map_or(0, |p| p.bytes.len());
    if !env.charge(produced) {
        return None;
    }
    if c.modify {
        return match new_value {
            Some(p) => EVal::from_owned_particle(p),
            None => Some(target.into_owned()),
        };
    }
    match result {
        Some(p) => EVal::from_owned_particle(p),
        None => Some(EVal::Nil),
    }
}
