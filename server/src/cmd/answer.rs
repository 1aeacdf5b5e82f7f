//! Answer messages: a result code, the record's metadata and its bins, written into the
//! connection's output buffer through named header fields ([`MessageMark`]); error answers
//! and error frames; streamed answers (batches, scans) written out in frames as they grow.

use petrel_proto::message::{begin_frame, end_frame, write_op, MessageMark, MsgHeader};
use petrel_proto::wire::{info3, FrameType};
use petrel_proto::ResultCode;
use petrel_storage::namespace::OperateOutcome;
use petrel_storage::{RecordMeta, StorageError};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A streamed answer is written out once this much of it is buffered.
const STREAM_FLUSH_BYTES: usize = 256 * 1024;

/// Why a command failed: a storage outcome, or a code from the cluster (no copy on the
/// other owners, partition unavailable).
#[derive(Debug)]
pub(crate) enum CmdError {
    Storage(StorageError),
    Cluster(ResultCode),
}

impl From<StorageError> for CmdError {
    fn from(e: StorageError) -> Self {
        CmdError::Storage(e)
    }
}

impl CmdError {
    pub(crate) fn result_code(&self) -> ResultCode {
        match self {
            CmdError::Storage(e) => e.result_code(),
            CmdError::Cluster(code) => *code,
        }
    }
}

/// Begins an answer message with `code` and `meta`; `row_index` is the batch row it answers
/// (0 for a single command). The op count is set by [`MessageMark::set_n_ops`] afterwards.
pub(crate) fn begin(out: &mut Vec<u8>, code: ResultCode, meta: RecordMeta, row_index: u32) -> MessageMark {
    MessageMark::begin(
        out,
        &MsgHeader {
            result_code: code.code(),
            generation: meta.generation as u32,
            record_ttl: meta.void_time,
            transaction_ttl: row_index,
            ..Default::default()
        },
    )
}

/// An answer carrying only `code`.
pub(crate) fn code(out: &mut Vec<u8>, code: ResultCode, row_index: u32) {
    begin(out, code, RecordMeta::default(), row_index);
}

/// An answer for a failed command. A generation mismatch reports the record's generation.
pub(crate) fn error(out: &mut Vec<u8>, err: &CmdError, row_index: u32) {
    let meta = match err {
        CmdError::Storage(StorageError::Generation { actual }) => {
            RecordMeta { generation: *actual, ..Default::default() }
        }
        _ => RecordMeta::default(),
    };
    begin(out, err.result_code(), meta, row_index);
}

/// A whole frame holding one message with `code`; `last` marks the end of a stream.
pub(crate) fn error_frame(out: &mut Vec<u8>, code: ResultCode, last: bool) {
    let start = begin_frame(out);
    MsgHeader { result_code: code.code(), info3: if last { info3::LAST } else { 0 }, ..Default::default() }.write(out);
    end_frame(out, start, FrameType::Message as u8);
}

/// An operate's answer: its metadata and one op per result (a nil particle for a result
/// without value).
pub(crate) fn operate(out: &mut Vec<u8>, outcome: &OperateOutcome, row_index: u32) {
    let mark = begin(out, ResultCode::Ok, outcome.meta, row_index);
    for r in &outcome.results {
        match &r.value {
            Some(p) => write_op(out, r.op_type as u8, p.particle, &r.bin, &p.bytes),
            None => write_op(out, r.op_type as u8, 0, &r.bin, &[]),
        }
    }
    mark.set_n_ops(out, saturating_u16(outcome.results.len()));
}

pub(crate) fn saturating_u16(n: usize) -> u16 {
    n.min(u16::MAX as usize) as u16
}

/// A long answer (batch, scan) built in the output buffer and written to `sink` a frame at a
/// time, so that its memory stays bounded whatever its length.
pub(crate) struct Stream<'o, 's, W> {
    pub out: &'o mut Vec<u8>,
    sink: &'s mut W,
    frame_start: usize,
}

impl<'o, 's, W: AsyncWrite + Unpin> Stream<'o, 's, W> {
    pub(crate) fn begin(out: &'o mut Vec<u8>, sink: &'s mut W) -> Self {
        let frame_start = begin_frame(out);
        Stream { out, sink, frame_start }
    }

    /// Once the frame being built holds enough, closes it, writes it out and begins the next.
    pub(crate) async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.out.len() - self.frame_start >= STREAM_FLUSH_BYTES {
            end_frame(self.out, self.frame_start, FrameType::Message as u8);
            self.sink.write_all(self.out).await?;
            self.out.clear();
            self.frame_start = begin_frame(self.out);
        }
        Ok(())
    }

    /// Ends the stream with a last message carrying `code`.
    pub(crate) fn finish(self, code: ResultCode) {
        MsgHeader { info3: info3::LAST, result_code: code.code(), ..Default::default() }.write(self.out);
        end_frame(self.out, self.frame_start, FrameType::Message as u8);
    }

    /// Ends the frame being built, then adds a separate last frame with `code` (a batch cut
    /// short: what was done is answered, then the error).
    pub(crate) fn abort(self, code: ResultCode) {
        end_frame(self.out, self.frame_start, FrameType::Message as u8);
        error_frame(self.out, code, true);
    }
}
