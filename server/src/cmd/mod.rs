//! The data commands (AS_MSG frames), one module per command behind [`Command`]: each frame
//! is parsed once, classified, and handed to its command, which executes it, has writes
//! replicated, and answers into the connection's output buffer.
//!
//! * [`request`] parses a single-record request (namespace, digest, policies, ops);
//!   [`single`] carries it through routing, execution and answer; [`read`], [`write`] and
//!   [`delete`] execute it; [`replicate`] hands a write's outcome to the cluster.
//! * [`batch`] runs the rows of a batch through the single-record path.
//! * [`background`] runs scans and queries with write ops as jobs.
//! * [`scan`] walks partitions, for scans and (through [`index_query`]) index queries.
//! * [`answer`] builds answer messages and streams long answers.

mod aggregate;
mod answer;
pub mod background;
mod batch;
mod delete;
mod index_query;
mod read;
mod read_touch;
mod replicate;
mod request;
mod scan;
mod single;
mod udf;
mod write;

use std::sync::atomic::Ordering;

use petrel_proto::message::{Message, MessageLimits};
use petrel_proto::wire::{info1, info3, FieldType};
use petrel_proto::ResultCode;
use tokio::io::AsyncWrite;

use crate::node::Node;

/// What a frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// One record: read, exists, operate, write or delete.
    Single,
    /// Many records by digest (the batch-index field).
    Batch,
    /// Partitions walked in digest order.
    Scan,
}

impl Command {
    fn of(msg: &Message<'_>) -> Command {
        let h = msg.header;
        if h.info1 & info1::BATCH != 0 {
            Command::Batch
        } else if h.info3 & info3::PARTITION_DONE != 0
            || msg.field(FieldType::PidArray).is_some()
            || msg.field(FieldType::DigestArray).is_some()
            || msg.field(FieldType::IndexRange).is_some()
            // A scan or query over every partition (background jobs) names no record.
            || (msg.field(FieldType::TaskId).is_some()
                && msg.field(FieldType::Digest).is_none()
                && msg.field(FieldType::Key).is_none())
        {
            Command::Scan
        } else {
            Command::Single
        }
    }
}

/// Answers one AS_MSG frame body. Streams to `sink` when the answer is long. `hops` counts
/// the nodes a forwarded request has passed through (0 from a client).
pub async fn handle<W: AsyncWrite + Unpin>(
    node: &Node,
    body: &[u8],
    out: &mut Vec<u8>,
    sink: &mut W,
    hops: u32,
) -> std::io::Result<()> {
    let msg = match Message::parse(body, MessageLimits::default()) {
        Ok((msg, _)) => msg,
        Err(e) => {
            tracing::debug!(error = %e, "malformed message");
            node.counters.malformed_requests.fetch_add(1, Ordering::Relaxed);
            answer::error_frame(out, ResultCode::Parameter, true);
            return Ok(());
        }
    };
    match Command::of(&msg) {
        Command::Single => {
            single::serve_frame(node, msg, body, out, hops).await;
            Ok(())
        }
        Command::Batch => batch::run(node, &msg, out, sink, hops).await,
        Command::Scan => scan::run(node, &msg, out, sink).await,
    }
}
