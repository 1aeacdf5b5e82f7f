//! Reads request frame bodies under the node-wide budget on bytes held by requests still
//! arriving. A body's buffer grows as its bytes arrive (doubling from a small start, never
//! past the size the header declared), and every byte of capacity past the first
//! [`BODY_CAPACITY_MIN_BYTES`] is first taken from the budget. Connections which declare
//! large frames and then stall hold almost nothing, together never more than the budget plus
//! that small start per connection (itself bounded by `proto_fd_max`); and small requests
//! (info, single records) never wait behind large ones.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::node::Node;

/// First capacity of a body buffer; what a stalled connection holds at most, beyond what it
/// has sent.
const BODY_CAPACITY_MIN_BYTES: usize = 16 * 1024;
/// How long a client may take to send the rest of a frame it started, budget waits included.
pub const FRAME_BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    Io(std::io::Error),
    /// The client did not send the body within [`FRAME_BODY_DEADLINE`], or the budget stayed
    /// exhausted that long.
    Deadline,
}

/// The budget as a semaphore of bytes.
#[derive(Debug)]
pub struct RequestBudget {
    bytes: Semaphore,
    bytes_max: usize,
}

impl RequestBudget {
    pub fn new(bytes_max: u64) -> Self {
        let bytes_max = (bytes_max as usize).min(Semaphore::MAX_PERMITS);
        RequestBudget { bytes: Semaphore::new(bytes_max), bytes_max }
    }

    /// Bytes now held by requests still arriving.
    pub fn held_bytes(&self) -> usize {
        self.bytes_max - self.bytes.available_permits()
    }
}

/// Reads a body of `size` bytes into `body` (cleared first). The budget taken is given back
/// when this returns: the request is then complete and is served.
pub async fn read_body<R: AsyncRead + Unpin>(
    node: &Node,
    stream: &mut R,
    body: &mut Vec<u8>,
    size: usize,
) -> Result<(), BodyError> {
    body.clear();
    match tokio::time::timeout(FRAME_BODY_DEADLINE, fill(node, stream, body, size)).await {
        Ok(r) => r.map_err(BodyError::Io),
        Err(_) => Err(BodyError::Deadline),
    }
}

async fn fill<R: AsyncRead + Unpin>(
    node: &Node,
    stream: &mut R,
    body: &mut Vec<u8>,
    size: usize,
) -> std::io::Result<()> {
    let budget = &node.request_budget;
    // The capacity this request holds in the budget (a buffer kept from an earlier request
    // counts only as far as this one uses it).
    let mut held: Option<SemaphorePermit<'_>> = None;
    let mut held_bytes = 0usize;
    while body.len() < size {
        if body.len() == held_bytes {
            let target = size.min((held_bytes * 2).max(BODY_CAPACITY_MIN_BYTES));
            let more = target - held_bytes.max(BODY_CAPACITY_MIN_BYTES).min(target);
            if more > 0 {
                let permit = take(node, budget, more).await?;
                match held.as_mut() {
                    Some(p) => p.merge(permit),
                    None => held = Some(permit),
                }
            }
            held_bytes = target;
            body.reserve_exact(target - body.len());
        }
        let room = held_bytes - body.len();
        let mut limited = (&mut *body).limit(room);
        if stream.read_buf(&mut limited).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Takes `bytes` from the budget, waiting while others hold it.
async fn take<'b>(node: &Node, budget: &'b RequestBudget, bytes: usize) -> std::io::Result<SemaphorePermit<'b>> {
    // Steps are at most half a frame, which is under u32::MAX for any allowed frame size.
    let n = u32::try_from(bytes).map_err(|_| std::io::Error::other("request budget step too large"))?;
    if let Ok(p) = budget.bytes.try_acquire_many(n) {
        return Ok(p);
    }
    node.counters.request_budget_waits.fetch_add(1, Ordering::Relaxed);
    budget.bytes.acquire_many(n).await.map_err(|_| std::io::Error::other("request budget closed"))
}
