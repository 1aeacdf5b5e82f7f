//! What a write hands the cluster once it is applied here: the record's new image, or its
//! removal, for every other owner of the partition. The answer waits for the copies unless
//! the client asked for commit level "master".

use petrel_cluster::runtime::ClusterNode;
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{RecordCopy, RecordRef};
use petrel_proto::ResultCode;
use petrel_storage::namespace::OperateOutcome;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::answer::CmdError;
use super::request::Single;
use crate::node::Node;

/// What the other owners must apply after a write here.
pub(crate) enum Copy {
    Record { outcome_image: Vec<u8>, generation: u16, void_time: u32, lut_ms: u64 },
    Delete,
}

impl Copy {
    /// The copy an operate's outcome calls for: its new image, a removal when the ops removed
    /// the record, or nothing when they wrote nothing.
    pub(crate) fn of_operate(outcome: &mut OperateOutcome) -> Option<Copy> {
        match outcome.image.take() {
            Some(image) => Some(Copy::Record {
                outcome_image: image,
                generation: outcome.meta.generation,
                void_time: outcome.meta.void_time,
                lut_ms: outcome.meta.lut_ms,
            }),
            // Generation 0 in the outcome means the record is gone.
            None if outcome.meta.generation == 0 => Some(Copy::Delete),
            None => None,
        }
    }
}

/// Sends `copy` of the record `req` wrote to the partition's other owners; returns once
/// every owner applied it (or at once, for commit level "master").
pub(crate) async fn send(
    node: &Node,
    cluster: &Arc<ClusterNode>,
    req: &Single<'_, '_>,
    copy: Copy,
) -> Result<(), CmdError> {
    let targets = cluster.copy_targets(req.sns.index, req.partition());
    if targets.is_empty() {
        return Ok(());
    }
    let namespace = req.sns.ns.name().to_string();
    let body = match copy {
        Copy::Record { outcome_image, generation, void_time, lut_ms } => Body::ReplicaWrite(RecordCopy {
            namespace,
            digest: req.digest.as_bytes().to_vec(),
            set: req.set.to_vec(),
            generation: generation as u32,
            void_time,
            lut_ms,
            image: outcome_image,
        }),
        Copy::Delete => Body::ReplicaDelete(RecordRef { namespace, digest: req.digest.as_bytes().to_vec() }),
    };
    if req.commit_master() {
        let cluster = Arc::clone(cluster);
        tokio::spawn(async move {
            let _ = cluster.replicate(&targets, body).await;
        });
        return Ok(());
    }
    cluster.replicate(&targets, body).await.map_err(|code: ResultCode| {
        // Applied here but not on every owner: the client must not take it as done.
        node.counters.replication_failures.fetch_add(1, Ordering::Relaxed);
        CmdError::Cluster(code)
    })
}
