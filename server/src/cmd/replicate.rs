//! What a write hands the cluster once it is applied here: the record's new image, or its
//! removal, for every other owner of the partition ([`ClusterNode::write_copies`], which owns
//! the message, the targets, the retries and the acknowledgements). The answer waits for the
//! copies unless the client asked for commit level "master".

use std::sync::atomic::Ordering;

use petrel_cluster::{ClusterNode, CommitLevel, WriteCopy};
use petrel_storage::namespace::OperateOutcome;

use super::answer::CmdError;
use super::request::Single;
use crate::node::Node;

/// The copy an operate's outcome calls for: its new image (moved out of the outcome), a
/// removal when the ops removed the record, or nothing when they wrote nothing.
pub(crate) fn of_operate(req: &Single<'_, '_>, outcome: &mut OperateOutcome) -> Option<WriteCopy> {
    match outcome.image.take() {
        Some(image) => Some(WriteCopy::Record {
            digest: req.digest,
            set: req.set.to_vec(),
            meta: outcome.meta,
            image: image.into(),
        }),
        // Generation 0 in the outcome means the record is gone.
        None if outcome.meta.generation == 0 => Some(WriteCopy::Delete { digest: req.digest }),
        None => None,
    }
}

/// Hands `copy` of the record `req` wrote to the cluster; returns once every other owner
/// applied it (or at once, for commit level "master").
pub(crate) async fn send(
    node: &Node,
    cluster: &ClusterNode,
    req: &Single<'_, '_>,
    copy: WriteCopy,
) -> Result<(), CmdError> {
    let commit = if req.commit_master() { CommitLevel::Master } else { CommitLevel::All };
    cluster.write_copies(req.sns.index, copy, commit).await.map_err(|code| {
        // Applied here but not on every owner: the client must not take it as done.
        node.counters.replication_failures.fetch_add(1, Ordering::Relaxed);
        CmdError::Cluster(code)
    })
}
