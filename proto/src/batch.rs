//! The batch-index field (field 41): a row count, the parent flags, then one row per key.
//! Rows are read in place: each row's fields and ops stay slices of the request body and
//! become a [`Message`] without being copied, and a REPEAT row takes the previous full row's
//! header, fields and ops.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! u32 n_rows | u8 parent_flags | n_rows × row
//! row: u32 index | 20 B digest | u8 row_flags | …
//!   row_flags = REPEAT (0x01): nothing follows
//!   row_flags = 0 (old read-only layout): u8 info1 | u16 n_fields | u16 n_ops | fields | ops
//!   otherwise: u8 info1 | [u8 info2, u8 info3 if INFO] | [u8 info4 if INFO4]
//!              | [u16 generation if GEN] | [u32 record_ttl if TTL]
//!              | u16 n_fields | u16 n_ops | fields | ops
//! ```

use crate::digest::DIGEST_LEN;
use crate::message::{walk_fields, walk_ops, FrameError, Message, MessageLimits, MsgHeader};
use crate::Digest;

/// Row flag bits.
pub mod row_flags {
    /// Reuse the previous full row's header, fields and ops.
    pub const REPEAT: u8 = 0x01;
    /// info2 and info3 follow info1.
    pub const INFO: u8 = 0x02;
    /// A 16-bit generation follows.
    pub const GEN: u8 = 0x04;
    /// A 32-bit record TTL follows.
    pub const TTL: u8 = 0x08;
    /// info4 follows.
    pub const INFO4: u8 = 0x10;
}

/// Bytes before the first row: the row count and the parent flags.
const BATCH_PREFIX_LEN: usize = 5;

/// One row of a batch: the index the client gave it, its digest, and its message.
#[derive(Debug, Clone, Copy)]
pub struct BatchRow<'a> {
    pub index: u32,
    pub digest: Digest,
    pub message: Message<'a>,
}

/// A reader over the rows of a batch-index field.
#[derive(Debug, Clone)]
pub struct BatchRows<'a> {
    buf: &'a [u8],
    pos: usize,
    rows_left: u32,
    limits: MessageLimits,
    /// The last full row's message, which REPEAT rows reuse.
    previous: Option<Message<'a>>,
}

impl<'a> BatchRows<'a> {
    /// Reads the prefix of a batch-index field; returns the reader and the parent flags.
    pub fn parse(field: &'a [u8], limits: MessageLimits) -> Result<(BatchRows<'a>, u8), FrameError> {
        let prefix = field.get(..BATCH_PREFIX_LEN).ok_or(FrameError::Truncated)?;
        let rows = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        Ok((BatchRows { buf: field, pos: BATCH_PREFIX_LEN, rows_left: rows, limits, previous: None }, prefix[4]))
    }

    /// Rows not read yet.
    pub fn rows_left(&self) -> u32 {
        self.rows_left
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.pos.checked_add(n).ok_or(FrameError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(FrameError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads the next row. A malformed row is an error, after which the reader yields
    /// nothing more (the rest of the field cannot be framed).
    pub fn next_row(&mut self) -> Option<Result<BatchRow<'a>, FrameError>> {
        if self.rows_left == 0 {
            return None;
        }
        self.rows_left -= 1;
        let row = self.read_row();
        if row.is_err() {
            self.rows_left = 0;
        }
        Some(row)
    }

    fn read_row(&mut self) -> Result<BatchRow<'a>, FrameError> {
        let index = self.u32()?;
        let digest = Digest::from_slice(self.take(DIGEST_LEN)?).ok_or(FrameError::Truncated)?;
        let flags = self.u8()?;
        if flags & row_flags::REPEAT != 0 {
            // The first row can never repeat; a client that says so is wrong.
            let message = self.previous.ok_or(FrameError::Truncated)?;
            return Ok(BatchRow { index, digest, message });
        }
        let mut header = MsgHeader { info1: self.u8()?, ..Default::default() };
        // flags 0 is the old read-only layout: counts follow info1 directly.
        if flags & row_flags::INFO != 0 {
            header.info2 = self.u8()?;
            header.info3 = self.u8()?;
        }
        if flags & row_flags::INFO4 != 0 {
            header.info4 = self.u8()?;
        }
        if flags & row_flags::GEN != 0 {
            header.generation = self.u16()? as u32;
        }
        if flags & row_flags::TTL != 0 {
            header.record_ttl = self.u32()?;
        }
        header.n_fields = self.u16()?;
        header.n_ops = self.u16()?;
        let rest = &self.buf[self.pos..];
        let fields_len = walk_fields(rest, header.n_fields)?;
        let fields = self.take(fields_len)?;
        let ops_len = walk_ops(&self.buf[self.pos..], header.n_ops)?;
        let ops = self.take(ops_len)?;
        let message = Message::from_regions(header, fields, ops, self.limits)?;
        self.previous = Some(message);
        Ok(BatchRow { index, digest, message })
    }
}

/// Appends a batch-index field's value (what a client sends), for tests and tools.
pub fn encode_row(out: &mut Vec<u8>, index: u32, digest: &Digest, row: Option<&Message<'_>>) {
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(digest.as_bytes());
    let Some(m) = row else {
        out.push(row_flags::REPEAT);
        return;
    };
    let h = m.header;
    out.push(row_flags::INFO | row_flags::GEN | row_flags::TTL | row_flags::INFO4);
    out.extend_from_slice(&[h.info1, h.info2, h.info3, h.info4]);
    out.extend_from_slice(&(h.generation as u16).to_be_bytes());
    out.extend_from_slice(&h.record_ttl.to_be_bytes());
    out.extend_from_slice(&h.n_fields.to_be_bytes());
    out.extend_from_slice(&h.n_ops.to_be_bytes());
    out.extend_from_slice(m.fields_bytes());
    out.extend_from_slice(m.ops_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{write_field, write_op};
    use crate::wire::{info1, FieldType};

    fn row_message(buf: &mut Vec<u8>, n_ops: u16) -> Message<'_> {
        buf.clear();
        MsgHeader { info1: info1::READ, n_fields: 1, n_ops, ..Default::default() }.write(buf);
        write_field(buf, FieldType::Namespace as u8, b"test");
        for i in 0..n_ops {
            write_op(buf, 1, 0, format!("b{i}").as_bytes(), &[]);
        }
        Message::parse(buf, MessageLimits::default()).expect("message").0
    }

    #[test]
    fn rows_round_trip_with_repeats() {
        let mut m = Vec::new();
        let msg = row_message(&mut m, 2);
        let mut field = Vec::new();
        field.extend_from_slice(&3u32.to_be_bytes());
        field.push(0x08);
        let d = |i: u8| Digest::from_slice(&[i; 20]).expect("digest");
        encode_row(&mut field, 7, &d(1), Some(&msg));
        encode_row(&mut field, 9, &d(2), None);
        encode_row(&mut field, 11, &d(3), None);
        let (mut rows, flags) = BatchRows::parse(&field, MessageLimits::default()).expect("prefix");
        assert_eq!(flags, 0x08);
        let mut got = Vec::new();
        while let Some(r) = rows.next_row() {
            let r = r.expect("row");
            assert_eq!(r.message.field(FieldType::Namespace), Some(&b"test"[..]));
            assert_eq!(r.message.ops().count(), 2);
            got.push((r.index, r.digest));
        }
        assert_eq!(got, vec![(7, d(1)), (9, d(2)), (11, d(3))]);
    }

    #[test]
    fn malformed_rows_end_the_batch() {
        // A REPEAT first row, a truncated row, and a row whose field overruns the buffer.
        let mut field = vec![0, 0, 0, 2, 0];
        field.extend_from_slice(&[0; 4]);
        field.extend_from_slice(&[1; 20]);
        field.push(row_flags::REPEAT);
        let (mut rows, _) = BatchRows::parse(&field, MessageLimits::default()).expect("prefix");
        assert!(rows.next_row().expect("a row").is_err());
        assert!(rows.next_row().is_none(), "nothing after a malformed row");
        for cut in 0..BATCH_PREFIX_LEN {
            assert!(BatchRows::parse(&field[..cut], MessageLimits::default()).is_err());
        }
        let mut m = Vec::new();
        let msg = row_message(&mut m, 1);
        let mut full = vec![0, 0, 0, 1, 0];
        encode_row(&mut full, 0, &Digest::from_slice(&[2; 20]).expect("d"), Some(&msg));
        for cut in BATCH_PREFIX_LEN..full.len() {
            let (mut rows, _) = BatchRows::parse(&full[..cut], MessageLimits::default()).expect("prefix");
            assert!(rows.next_row().expect("a row").is_err(), "cut at {cut}");
        }
    }
}
