//! petrel-bench's query workload (`-w Q,<width>`): each operation is a secondary-index query
//! on the integer bin `testbin` for `width` consecutive values from a random key number (the
//! load writes each record's key number into that bin), so a query selects `width` records
//! of a fully loaded key range. The index is created, and waited for, before the run.

use std::time::Duration;

use petrel_client::{Bins, Client, CollectionType, Error, IndexFilter, IndexType, ScanPolicy};

/// The index the workload queries.
pub const INDEX_NAME: &str = "petrel_bench_testbin";
/// The bin it covers.
pub const BIN: &str = "testbin";

/// Creates the workload's index on `namespace`/`set` (no-op when it exists) and waits until
/// every node has built it.
pub async fn ensure_index(client: &Client, namespace: &str, set: &str) -> Result<(), String> {
    client
        .create_index(
            namespace,
            set,
            INDEX_NAME,
            BIN,
            IndexType::Numeric,
            CollectionType::Default,
            Duration::from_secs(600),
        )
        .await
        .map_err(|e| format!("cannot create index {INDEX_NAME}: {e}"))
}

/// One query of `width` values from `first`: Ok(true) when it returned a record.
pub async fn query(
    client: &Client,
    policy: &ScanPolicy,
    namespace: &str,
    set: &str,
    first: u64,
    width: u64,
) -> Result<bool, Error> {
    let last = first.saturating_add(width.saturating_sub(1));
    let filter = IndexFilter::range(BIN, first as i64, last.min(i64::MAX as u64) as i64);
    let mut stream = client.query(policy, namespace, set, Bins::All, &filter).await?;
    let mut found = false;
    while let Some(r) = stream.next().await {
        r?;
        found = true;
    }
    Ok(found)
}
