//! Batch commands: rows read in place from the batch-index field, each run through the
//! single-record path (a row for a partition served elsewhere is forwarded on its own), the
//! answers streamed a frame at a time.

use std::sync::atomic::Ordering;

use petrel_proto::batch::BatchRows;
use petrel_proto::message::{Message, MessageLimits};
use petrel_proto::wire::FieldType;
use petrel_proto::ResultCode;
use petrel_storage::exp::Program;
use tokio::io::AsyncWrite;

use super::answer::{self, Stream};
use super::single;
use crate::node::Node;

pub(crate) async fn run<W: AsyncWrite + Unpin>(
    node: &Node,
    msg: &Message<'_>,
    out: &mut Vec<u8>,
    sink: &mut W,
    hops: u32,
) -> std::io::Result<()> {
    node.counters.batch_index_initiate.fetch_add(1, Ordering::Relaxed);
    // The batch-wide filter, compiled once for every row without a filter of its own.
    let batch_filter_raw = msg.field(FieldType::Filter);
    let batch_filter = match batch_filter_raw.map(Program::compile).transpose() {
        Ok(f) => f,
        Err(e) => {
            answer::error_frame(out, e.result_code(), true);
            return Ok(());
        }
    };
    let Some(field) = msg.field(FieldType::BatchIndex) else {
        answer::error_frame(out, ResultCode::Parameter, true);
        return Ok(());
    };
    let Ok((mut rows, _parent_flags)) = BatchRows::parse(field, MessageLimits::default()) else {
        answer::error_frame(out, ResultCode::Parameter, true);
        return Ok(());
    };
    if rows.rows_left() > node.config.service.batch_max_requests {
        answer::error_frame(out, ResultCode::BatchMaxRequests, true);
        return Ok(());
    }
    let mut stream = Stream::begin(out, sink);
    while let Some(row) = rows.next_row() {
        let Ok(row) = row else {
            // A malformed row ends the batch: what was done is answered, then the error.
            node.counters.malformed_requests.fetch_add(1, Ordering::Relaxed);
            stream.abort(ResultCode::Parameter);
            return Ok(());
        };
        let filter =
            batch_filter.as_ref().zip(batch_filter_raw).map(|(program, raw)| single::BatchFilter { raw, program });
        single::serve_row(node, &row, filter, stream.out, hops).await;
        stream.flush_if_full().await?;
    }
    stream.finish(ResultCode::Ok);
    Ok(())
}
