//! Frames and AS_MSG messages: the 8-byte proto header, the 22-byte message header, fields and
//! ops, parsed as borrowed views and written into reusable buffers.
//!
//! Parsing is two steps, as the protocol invites: [`ProtoHeader::parse`] says how long the body
//! is (and whether that is within limits) before any body byte is read; then
//! [`Message::parse`] walks the body once, checking every length against what is left, and
//! keeps slices into it. Nothing is allocated and nothing is trusted.

use thiserror::Error;

use crate::wire::{FieldType, MSG_HEADER_LEN, PROTO_HEADER_LEN, PROTO_VERSION};

/// Why a frame or message was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("proto version {0} is not 2")]
    Version(u8),
    #[error("frame type {0} is not supported")]
    Type(u8),
    #[error("frame of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("message header size {0} is not 22")]
    HeaderSize(u8),
    #[error("message is truncated")]
    Truncated,
    #[error("message has {0} fields, over the limit")]
    TooManyFields(u16),
    #[error("message has {0} ops, over the limit")]
    TooManyOps(u16),
    #[error("field size {0} is invalid")]
    FieldSize(u32),
    #[error("op size {0} is invalid")]
    OpSize(u32),
}

/// The 8-byte header before every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoHeader {
    pub version: u8,
    pub frame_type: u8,
    /// Body length in bytes.
    pub size: u64,
}

impl ProtoHeader {
    /// Reads a header and checks version and size against `size_max`.
    pub fn parse(bytes: [u8; PROTO_HEADER_LEN], size_max: u64) -> Result<ProtoHeader, FrameError> {
        let word = u64::from_be_bytes(bytes);
        let header = ProtoHeader { version: bytes[0], frame_type: bytes[1], size: word & 0x0000_ffff_ffff_ffff };
        if header.version != PROTO_VERSION {
            return Err(FrameError::Version(header.version));
        }
        if header.size > size_max {
            return Err(FrameError::TooLarge { size: header.size, limit: size_max });
        }
        Ok(header)
    }

    /// Encodes a header for a body of `size` bytes.
    pub fn encode(frame_type: u8, size: u64) -> [u8; PROTO_HEADER_LEN] {
        debug_assert!(size < 1 << 48);
        ((PROTO_VERSION as u64) << 56 | (frame_type as u64) << 48 | size).to_be_bytes()
    }
}

/// The 22-byte AS_MSG header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgHeader {
    pub info1: u8,
    pub info2: u8,
    pub info3: u8,
    pub info4: u8,
    pub result_code: u8,
    pub generation: u32,
    pub record_ttl: u32,
    pub transaction_ttl: u32,
    pub n_fields: u16,
    pub n_ops: u16,
}

impl MsgHeader {
    pub fn parse(b: &[u8]) -> Result<MsgHeader, FrameError> {
        let b: &[u8; MSG_HEADER_LEN] =
            b.get(..MSG_HEADER_LEN).and_then(|s| s.try_into().ok()).ok_or(FrameError::Truncated)?;
        if b[0] as usize != MSG_HEADER_LEN {
            return Err(FrameError::HeaderSize(b[0]));
        }
        Ok(MsgHeader {
            info1: b[1],
            info2: b[2],
            info3: b[3],
            info4: b[4],
            result_code: b[5],
            generation: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
            record_ttl: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
            transaction_ttl: u32::from_be_bytes([b[14], b[15], b[16], b[17]]),
            n_fields: u16::from_be_bytes([b[18], b[19]]),
            n_ops: u16::from_be_bytes([b[20], b[21]]),
        })
    }

    /// Appends the header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(MSG_HEADER_LEN as u8);
        out.extend_from_slice(&[self.info1, self.info2, self.info3, self.info4, self.result_code]);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.record_ttl.to_be_bytes());
        out.extend_from_slice(&self.transaction_ttl.to_be_bytes());
        out.extend_from_slice(&self.n_fields.to_be_bytes());
        out.extend_from_slice(&self.n_ops.to_be_bytes());
    }
}

/// Byte offsets of the message header's fields, for answers whose counts and metadata are
/// known only after their ops are written.
mod header_at {
    pub const INFO1: usize = 1;
    pub const INFO3: usize = 3;
    pub const GENERATION: usize = 6;
    pub const RECORD_TTL: usize = 10;
    pub const TRANSACTION_TTL: usize = 14;
    pub const N_FIELDS: usize = 18;
    pub const N_OPS: usize = 20;
}
const _: () = assert!(header_at::N_OPS + 2 == MSG_HEADER_LEN);

/// Where a message written into an output buffer starts; its header fields can be set after
/// the fields and ops that follow it are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMark(usize);

impl MessageMark {
    /// Writes `header` at the end of `out` and marks it.
    pub fn begin(out: &mut Vec<u8>, header: &MsgHeader) -> MessageMark {
        let at = out.len();
        header.write(out);
        MessageMark(at)
    }

    /// A mark on a message header already in `out` at `at`.
    pub fn at(at: usize) -> MessageMark {
        MessageMark(at)
    }

    /// Where the message starts in its buffer.
    pub fn offset(self) -> usize {
        self.0
    }

    fn put(self, out: &mut [u8], field_at: usize, bytes: &[u8]) {
        out[self.0 + field_at..self.0 + field_at + bytes.len()].copy_from_slice(bytes);
    }

    pub fn set_info1(self, out: &mut [u8], info1: u8) {
        self.put(out, header_at::INFO1, &[info1]);
    }

    /// Clears `bits` of info3 (a relayed answer that is not the last of its stream).
    pub fn clear_info3(self, out: &mut [u8], bits: u8) {
        out[self.0 + header_at::INFO3] &= !bits;
    }

    pub fn set_generation(self, out: &mut [u8], generation: u32) {
        self.put(out, header_at::GENERATION, &generation.to_be_bytes());
    }

    pub fn set_record_ttl(self, out: &mut [u8], record_ttl: u32) {
        self.put(out, header_at::RECORD_TTL, &record_ttl.to_be_bytes());
    }

    /// The transaction-ttl slot, which answers to batch rows use for the row's index.
    pub fn set_transaction_ttl(self, out: &mut [u8], value: u32) {
        self.put(out, header_at::TRANSACTION_TTL, &value.to_be_bytes());
    }

    pub fn set_n_fields(self, out: &mut [u8], n_fields: u16) {
        self.put(out, header_at::N_FIELDS, &n_fields.to_be_bytes());
    }

    pub fn set_n_ops(self, out: &mut [u8], n_ops: u16) {
        self.put(out, header_at::N_OPS, &n_ops.to_be_bytes());
    }
}

/// A field: its type byte and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub field_type: u8,
    pub data: &'a [u8],
}

/// An op (a bin or an operation): op type, particle type, name, value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireOp<'a> {
    pub op_type: u8,
    pub particle: u8,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Limits a parser applies to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    pub fields_max: u16,
    pub ops_max: u16,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits { fields_max: 64, ops_max: 4096 }
    }
}

/// A parsed message: header plus the raw field and op regions, validated.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub header: MsgHeader,
    fields: &'a [u8],
    ops: &'a [u8],
}

impl<'a> Message<'a> {
    /// Parses one message from the front of `body`; returns it and the bytes it spans.
    pub fn parse(body: &'a [u8], limits: MessageLimits) -> Result<(Message<'a>, usize), FrameError> {
        let header = MsgHeader::parse(body)?;
        if header.n_fields > limits.fields_max {
            return Err(FrameError::TooManyFields(header.n_fields));
        }
        if header.n_ops > limits.ops_max {
            return Err(FrameError::TooManyOps(header.n_ops));
        }
        let fields_len = walk_fields(&body[MSG_HEADER_LEN..], header.n_fields)?;
        let fields_end = MSG_HEADER_LEN + fields_len;
        let ops_len = walk_ops(&body[fields_end..], header.n_ops)?;
        let end = fields_end + ops_len;
        Ok((Message { header, fields: &body[MSG_HEADER_LEN..fields_end], ops: &body[fields_end..end] }, end))
    }

    /// A message from a header and its field and op regions held elsewhere (a batch row keeps
    /// them apart from its header); each region must hold exactly the header's count of
    /// well-formed items.
    pub fn from_regions(
        header: MsgHeader,
        fields: &'a [u8],
        ops: &'a [u8],
        limits: MessageLimits,
    ) -> Result<Message<'a>, FrameError> {
        if header.n_fields > limits.fields_max {
            return Err(FrameError::TooManyFields(header.n_fields));
        }
        if header.n_ops > limits.ops_max {
            return Err(FrameError::TooManyOps(header.n_ops));
        }
        if walk_fields(fields, header.n_fields)? != fields.len() || walk_ops(ops, header.n_ops)? != ops.len() {
            return Err(FrameError::Truncated);
        }
        Ok(Message { header, fields, ops })
    }

    /// The field region's bytes (every field, in wire order).
    pub fn fields_bytes(&self) -> &'a [u8] {
        self.fields
    }

    /// The op region's bytes (every op, in wire order).
    pub fn ops_bytes(&self) -> &'a [u8] {
        self.ops
    }

    /// The fields, in wire order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + 'a {
        let mut pos = 0;
        let buf = self.fields;
        std::iter::from_fn(move || {
            // Bounds were checked by `parse`; `get` keeps this panic-free all the same.
            let size = read_u32(buf, pos).ok()? as usize;
            let field_type = *buf.get(pos + 4)?;
            let data = buf.get(pos + 5..pos + 4 + size)?;
            pos += 4 + size;
            Some(Field { field_type, data })
        })
    }

    /// The data of the first field of type `t`.
    pub fn field(&self, t: FieldType) -> Option<&'a [u8]> {
        self.fields().find(|f| f.field_type == t as u8).map(|f| f.data)
    }

    /// The ops, in wire order.
    pub fn ops(&self) -> impl Iterator<Item = WireOp<'a>> + 'a {
        let mut pos = 0;
        let buf = self.ops;
        std::iter::from_fn(move || {
            let size = read_u32(buf, pos).ok()? as usize;
            let op_type = *buf.get(pos + 4)?;
            let particle = *buf.get(pos + 5)?;
            let name_len = *buf.get(pos + 7)? as usize;
            let name = buf.get(pos + 8..pos + 8 + name_len)?;
            let value = buf.get(pos + 8 + name_len..pos + 4 + size)?;
            pos += 4 + size;
            Some(WireOp { op_type, particle, name, value })
        })
    }
}

/// Checks `n` fields at the front of `buf`; returns the bytes they span.
pub(crate) fn walk_fields(buf: &[u8], n: u16) -> Result<usize, FrameError> {
    let mut pos = 0;
    for _ in 0..n {
        let size = read_u32(buf, pos)?;
        if size == 0 {
            return Err(FrameError::FieldSize(size));
        }
        pos = advance(buf, pos, 4 + size as usize)?;
    }
    Ok(pos)
}

/// Checks `n` ops at the front of `buf`; returns the bytes they span.
pub(crate) fn walk_ops(buf: &[u8], n: u16) -> Result<usize, FrameError> {
    let mut pos = 0;
    for _ in 0..n {
        let size = read_u32(buf, pos)?;
        if size < 4 {
            return Err(FrameError::OpSize(size));
        }
        // Over-long bin names are left for the command to refuse with BIN_NAME (21).
        let name_len = *buf.get(pos + 7).ok_or(FrameError::Truncated)?;
        if name_len as u32 > size - 4 {
            return Err(FrameError::OpSize(size));
        }
        pos = advance(buf, pos, 4 + size as usize)?;
    }
    Ok(pos)
}

fn read_u32(buf: &[u8], pos: usize) -> Result<u32, FrameError> {
    let b = buf.get(pos..pos + 4).ok_or(FrameError::Truncated)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn advance(buf: &[u8], pos: usize, by: usize) -> Result<usize, FrameError> {
    let end = pos.checked_add(by).ok_or(FrameError::Truncated)?;
    if end > buf.len() {
        return Err(FrameError::Truncated);
    }
    Ok(end)
}

/// Appends a field.
pub fn write_field(out: &mut Vec<u8>, field_type: u8, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(field_type);
    out.extend_from_slice(data);
}

/// Appends a KEY field: the key's particle type, then its bytes.
pub fn write_key_field(out: &mut Vec<u8>, particle: u8, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u32 + 2).to_be_bytes());
    out.push(crate::wire::FieldType::Key as u8);
    out.push(particle);
    out.extend_from_slice(key);
}

/// Appends an op.
/// `name` must fit the one-byte length (callers check bin names against
/// [`crate::wire::BIN_NAME_LEN_MAX`] first).
pub fn write_op(out: &mut Vec<u8>, op_type: u8, particle: u8, name: &[u8], value: &[u8]) {
    debug_assert!(name.len() <= u8::MAX as usize);
    out.extend_from_slice(&((4 + name.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[op_type, particle, 0, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Starts a frame in `out`: reserves the proto header, returns where the frame starts.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; PROTO_HEADER_LEN]);
    start
}

/// Completes the frame begun at `start` with its header.
pub fn end_frame(out: &mut [u8], start: usize, frame_type: u8) {
    let size = (out.len() - start - PROTO_HEADER_LEN) as u64;
    out[start..start + PROTO_HEADER_LEN].copy_from_slice(&ProtoHeader::encode(frame_type, size));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn golden(hex_str: &str) -> Vec<u8> {
        hex::decode(hex_str).expect("hex")
    }

    #[test]
    fn parses_golden_select_request() {
        // "select" from the Python client trace: namespace, set, digest; READ ops for i and s.
        let frame = golden("02030000000000531601000000000000000000000000000003e800030002000000050074657374000000050164656d6f0000001504ec91192d4b7f8ce35d5d78d34bca65cbaaaac960000000050100000169000000050100000173");
        let header = ProtoHeader::parse(frame[..8].try_into().expect("8"), 1 << 20).expect("header");
        assert_eq!((header.frame_type, header.size), (3, 0x53));
        let (msg, used) = Message::parse(&frame[8..], MessageLimits::default()).expect("message");
        assert_eq!(used, frame.len() - 8);
        assert_eq!(msg.header.info1, 0x01);
        assert_eq!(msg.header.transaction_ttl, 1000);
        assert_eq!(msg.field(FieldType::Namespace), Some(&b"test"[..]));
        assert_eq!(msg.field(FieldType::Set), Some(&b"demo"[..]));
        assert_eq!(msg.field(FieldType::Digest).map(|d| d.len()), Some(20));
        let names: Vec<_> = msg.ops().map(|o| o.name).collect();
        assert_eq!(names, vec![&b"i"[..], &b"s"[..]]);
    }

    #[test]
    fn encodes_golden_select_response() {
        let want = golden("0203000000000032160000000000000000010000000000000000000000020000000d010100016900000000000000070000000701030001736869");
        let mut out = Vec::new();
        let start = begin_frame(&mut out);
        MsgHeader { generation: 1, n_ops: 2, ..Default::default() }.write(&mut out);
        write_op(&mut out, 1, 1, b"i", &7i64.to_be_bytes());
        write_op(&mut out, 1, 3, b"s", b"hi");
        end_frame(&mut out, start, 3);
        assert_eq!(out, want);
    }

    #[test]
    fn key_field_is_type_then_particle_then_bytes() {
        let mut a = Vec::new();
        write_key_field(&mut a, 1, &42i64.to_be_bytes());
        let mut b = Vec::new();
        let mut data = vec![1u8];
        data.extend_from_slice(&42i64.to_be_bytes());
        write_field(&mut b, FieldType::Key as u8, &data);
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(ProtoHeader::parse([3, 3, 0, 0, 0, 0, 0, 0], 100), Err(FrameError::Version(3)));
        assert!(matches!(ProtoHeader::parse([2, 3, 0, 0, 0, 0, 1, 0], 100), Err(FrameError::TooLarge { .. })));
        let mut body = vec![0u8; 22];
        body[0] = 21;
        assert_eq!(Message::parse(&body, MessageLimits::default()).unwrap_err(), FrameError::HeaderSize(21));
        body[0] = 22;
        body[19] = 1; // one field, absent
        assert_eq!(Message::parse(&body, MessageLimits::default()).unwrap_err(), FrameError::Truncated);
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((msg, used)) = Message::parse(&body, MessageLimits::default()) {
                prop_assert!(used <= body.len());
                prop_assert_eq!(msg.fields().count(), msg.header.n_fields as usize);
                prop_assert_eq!(msg.ops().count(), msg.header.n_ops as usize);
            }
        }

        #[test]
        fn encode_parse_round_trip(
            fields in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
            ops in proptest::collection::vec((any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..15), proptest::collection::vec(any::<u8>(), 0..60)), 0..6),
            gen in any::<u32>(), ttl in any::<u32>(),
        ) {
            let mut out = Vec::new();
            let header = MsgHeader { generation: gen, record_ttl: ttl, n_fields: fields.len() as u16, n_ops: ops.len() as u16, ..Default::default() };
            header.write(&mut out);
            for (t, d) in &fields { write_field(&mut out, *t, d); }
            for (o, p, n, v) in &ops { write_op(&mut out, *o, *p, n, v); }
            let (msg, used) = Message::parse(&out, MessageLimits::default()).expect("parses");
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(msg.header, header);
            let got: Vec<_> = msg.fields().map(|f| (f.field_type, f.data.to_vec())).collect();
            prop_assert_eq!(got, fields);
            let got: Vec<_> = msg.ops().map(|o| (o.op_type, o.particle, o.name.to_vec(), o.value.to_vec())).collect();
            prop_assert_eq!(got, ops);
        }
    }
}
