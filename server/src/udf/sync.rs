//! Catching up with the cluster's UDF modules: every second a clustered node reads each peer's
//! `udf-catalog` and applies the changes later than its own: a removal at once, a module by
//! reading its source from the peers (`udf-get`) and registering it only when the source's
//! SHA-1 is the one the catalog names (an older or newer source on the way is not taken).

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use super::{hex, CATALOG_SCOPE};
use crate::catalog::peer_entries;
use crate::info::param;
use crate::node::Node;

/// Pulls every peer's UDF catalog and applies what is later than this node's.
pub(crate) async fn pull_from_peers(node: &Node) {
    for ((scope, name), change) in peer_entries(node, "udf-catalog").await {
        if scope != CATALOG_SCOPE || !node.udfs.catalog.is_later(&scope, &name, change.stamp_ms) {
            continue;
        }
        match &change.definition {
            None => {
                let answer = node.udfs.info_remove(&format!("filename={name};stamp={}", change.stamp_ms));
                tracing::info!(module = name, %answer, "UDF module removal taken from a peer");
            }
            Some(sha1_hex) => take_module(node, &name, sha1_hex, change.stamp_ms).await,
        }
    }
}

/// Registers module `name` with the source whose SHA-1 is `sha1_hex`, read from a peer.
async fn take_module(node: &Node, name: &str, sha1_hex: &str, stamp_ms: u64) {
    let Some(cluster) = node.cluster() else { return };
    let b64 = base64::engine::general_purpose::STANDARD;
    for (_, answer) in cluster.info_on_peers(&format!("udf-get:filename={name}")).await {
        let Some(source) = param(&answer, "content").and_then(|c| b64.decode(c).ok()) else { continue };
        if hex(&Sha1::digest(&source)) != sha1_hex {
            continue;
        }
        let line = format!("filename={name};content={};stamp={}", b64.encode(&source), stamp_ms);
        let result = node.udfs.info_put(&line);
        tracing::info!(module = name, %result, "UDF module taken from a peer");
        return;
    }
    tracing::debug!(module = name, "no peer holds the UDF module its catalog names yet");
}
