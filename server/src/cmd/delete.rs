//! Deletes: the record is removed here (generation policy checked), then on the other owners,
//! and only then answered.

use petrel_proto::ResultCode;
use petrel_storage::RecordMeta;

use super::answer::{self, CmdError};
use petrel_cluster::WriteCopy;

use super::replicate;
use super::request::Single;
use crate::node::Node;

pub(crate) async fn apply(
    node: &Node,
    req: &Single<'_, '_>,
    out: &mut Vec<u8>,
    row_index: u32,
) -> Result<(), CmdError> {
    let policy = req.write_policy()?;
    req.sns.ns.delete_filtered(&req.digest, policy.generation, req.filter())?;
    if let Some(cluster) = node.cluster() {
        replicate::send(node, cluster, req, WriteCopy::Delete { digest: req.digest }).await?;
    }
    answer::begin(out, ResultCode::Ok, RecordMeta::default(), row_index);
    Ok(())
}
