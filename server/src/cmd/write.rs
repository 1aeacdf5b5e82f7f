//! Writes: an operate whose ops change the record (put, increment, append, prepend, touch,
//! collection modifications, record removal by op). Applied here, copied to the other owners,
//! and only then answered.

use petrel_storage::ops::OperateRequest;
use petrel_storage::StorageError;

use super::answer::{self, CmdError};
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
    let ops = req.ops()?;
    if ops.is_empty() {
        return Err(StorageError::Parameter("write without ops").into());
    }
    let request = OperateRequest { digest: req.digest, set: req.set, key: req.key(), policy, ops: &ops };
    let mut outcome = req.sns.ns.operate_filtered(&request, req.filter())?;
    if let Some(cluster) = node.cluster() {
        if let Some(copy) = replicate::of_operate(req, &mut outcome) {
            replicate::send(node, cluster, req, copy).await?;
            tracing::trace!(pid = req.partition(), digest = %req.digest, "write copied to every owner");
        }
    }
    answer::operate(out, &outcome, row_index);
    Ok(())
}
