//! The stream of records a scan yields.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::record::Record;
use crate::Error;

/// Records of a scan, as they arrive from the nodes. Dropping it stops the scan.
#[derive(Debug)]
pub struct RecordStream {
    rx: mpsc::Receiver<Result<Record, Error>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RecordStream {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Record, Error>>, tasks: Vec<JoinHandle<()>>) -> Self {
        RecordStream { rx, tasks }
    }

    /// The next record, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Record, Error>> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for RecordStream {
    type Item = Result<Record, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for RecordStream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
