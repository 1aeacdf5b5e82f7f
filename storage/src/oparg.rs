//! The `[op_code, args...]` msgpack payload of a bit or HLL operation, read once: the op code
//! and each argument both decoded and as its raw msgpack bytes (HLL hashes elements in their
//! wire form), with typed accessors that fail as a parameter error, never panic.

use petrel_proto::msgpack::{self, MsgValue};

use crate::StorageError;

/// One argument: its decoded value and the msgpack bytes it came from.
#[derive(Debug)]
pub(crate) struct Arg<'a> {
    pub(crate) value: MsgValue,
    pub(crate) raw: &'a [u8],
}

/// A parsed payload.
#[derive(Debug)]
pub(crate) struct OpArgs<'a> {
    pub(crate) code: i64,
    pub(crate) args: Vec<Arg<'a>>,
}

/// Reads a msgpack array header at the front of `bytes`: the element count and the rest.
pub(crate) fn list_header(bytes: &[u8]) -> Result<(usize, &[u8]), StorageError> {
    let bad = StorageError::Parameter("operation payload is not a msgpack list");
    let (&b, rest) = bytes.split_first().ok_or(bad.clone())?;
    match b {
        0x90..=0x9f => Ok(((b & 0x0f) as usize, rest)),
        0xdc if rest.len() >= 2 => Ok((u16::from_be_bytes([rest[0], rest[1]]) as usize, &rest[2..])),
        0xdd if rest.len() >= 4 => Ok((u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize, &rest[4..])),
        _ => Err(bad),
    }
}

/// Splits `n` consecutive msgpack values off the front of `bytes`.
pub(crate) fn split_values(n: usize, mut bytes: &[u8]) -> Result<(Vec<Arg<'_>>, &[u8]), StorageError> {
    // Each value takes at least one byte, so the count cannot outgrow the input.
    if n > bytes.len() {
        return Err(StorageError::Parameter("operation payload is truncated"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (value, used) =
            msgpack::decode_prefix(bytes).map_err(|_| StorageError::Parameter("malformed operation payload"))?;
        let (raw, rest) = bytes.split_at(used);
        out.push(Arg { value, raw });
        bytes = rest;
    }
    Ok((out, bytes))
}

impl<'a> OpArgs<'a> {
    /// Parses a whole payload; an empty list or a non-integer op code is a parameter error.
    pub(crate) fn parse(payload: &'a [u8]) -> Result<OpArgs<'a>, StorageError> {
        let (n, body) = list_header(payload)?;
        let (mut args, rest) = split_values(n, body)?;
        if !rest.is_empty() {
            return Err(StorageError::Parameter("trailing bytes after operation payload"));
        }
        if args.is_empty() {
            return Err(StorageError::Parameter("operation payload has no op code"));
        }
        let code = match args.remove(0).value {
            MsgValue::Int(c) if c >= 0 => c,
            _ => return Err(StorageError::Parameter("op code is not a non-negative integer")),
        };
        Ok(OpArgs { code, args })
    }

    /// Checks the argument count is within `min..=max`.
    pub(crate) fn count(&self, min: usize, max: usize) -> Result<(), StorageError> {
        if (min..=max).contains(&self.args.len()) {
            Ok(())
        } else {
            Err(StorageError::Parameter("wrong number of op arguments"))
        }
    }

    /// A signed integer argument.
    pub(crate) fn int(&self, i: usize) -> Result<i64, StorageError> {
        match self.args.get(i).map(|a| &a.value) {
            Some(MsgValue::Int(v)) => Ok(*v),
            _ => Err(StorageError::Parameter("op argument is not an integer")),
        }
    }

    /// An unsigned integer argument; a negative one reads as its two's-complement bits, so
    /// range checks on it fail as they would for any huge value.
    pub(crate) fn uint(&self, i: usize) -> Result<u64, StorageError> {
        match self.args.get(i).map(|a| &a.value) {
            Some(MsgValue::Int(v)) => Ok(*v as u64),
            Some(MsgValue::UInt(v)) => Ok(*v),
            _ => Err(StorageError::Parameter("op argument is not an integer")),
        }
    }

    /// A flag-set argument: only bits of `allowed`, and never both bits of `exclusive`.
    pub(crate) fn flag_set(&self, i: usize, allowed: u64, exclusive: u64) -> Result<u64, StorageError> {
        let v = self.uint(i)?;
        if v & !allowed != 0 || (exclusive != 0 && v & exclusive == exclusive) {
            return Err(StorageError::Parameter("flags not allowed for this op"));
        }
        Ok(v)
    }

    /// A boolean argument.
    pub(crate) fn bool(&self, i: usize) -> Result<bool, StorageError> {
        match self.args.get(i).map(|a| &a.value) {
            Some(MsgValue::Bool(b)) => Ok(*b),
            _ => Err(StorageError::Parameter("op argument is not a boolean")),
        }
    }

    /// A bytes argument (any prefixed bytes value), without its type prefix.
    pub(crate) fn bytes(&self, i: usize) -> Result<&[u8], StorageError> {
        match self.args.get(i).map(|a| &a.value) {
            Some(MsgValue::Blob(_, b)) | Some(MsgValue::Str(b)) => Ok(b),
            _ => Err(StorageError::Parameter("op argument is not bytes")),
        }
    }
}

/// Payload builders for the op tests.
#[cfg(test)]
pub(crate) mod build {
    use petrel_proto::msgpack::{self, MsgValue};

    /// The payload `[code, args...]`.
    pub(crate) fn payload(code: i64, args: &[MsgValue]) -> Vec<u8> {
        let mut items = vec![MsgValue::Int(code)];
        items.extend_from_slice(args);
        msgpack::to_vec(&MsgValue::List(items))
    }

    pub(crate) fn int(v: i64) -> MsgValue {
        MsgValue::Int(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_code_and_raw_args() {
        let payload = msgpack::to_vec(&MsgValue::List(vec![MsgValue::Int(3), MsgValue::Int(-5), MsgValue::Bool(true)]));
        let a = OpArgs::parse(&payload).unwrap();
        assert_eq!(a.code, 3);
        assert_eq!(a.int(0).unwrap(), -5);
        assert!(a.bool(1).unwrap());
        assert_eq!(a.args[1].raw, &[0xc3]);
        assert!(a.int(2).is_err());
        assert!(a.uint(5).is_err());
        assert!(a.flag_set(0, u64::MAX, 0).is_ok());
        assert!(a.flag_set(0, 1, 0).is_err());
    }

    #[test]
    fn flag_sets_refuse_unknown_and_exclusive_bits() {
        let payload = build::payload(0, &[build::int(3), build::int(4)]);
        let a = OpArgs::parse(&payload).unwrap();
        assert_eq!(a.flag_set(0, 7, 0).unwrap(), 3);
        assert!(a.flag_set(0, 7, 3).is_err());
        assert!(a.flag_set(1, 3, 0).is_err());
        assert_eq!(a.flag_set(1, 7, 3).unwrap(), 4);
    }

    #[test]
    fn refuses_bad_payloads() {
        for bad in
            [&[][..], &[0x90], &[0x91, 0xc0], &[0x92, 0x01], &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01], &[0x81, 1, 1]]
        {
            assert!(OpArgs::parse(bad).is_err(), "{bad:?}");
        }
    }
}
