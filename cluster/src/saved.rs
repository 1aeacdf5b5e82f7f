//! Partition versions kept on disk for the namespaces whose records are (the device
//! namespaces), so that a node started again on its data reports what it holds: in a
//! whole-cluster restart those copies are the cluster's data; when live members hold newer
//! ones, the plan replaces them (see `Plan::compute_with_restored`).
//!
//! The file, `<state_dir>/partition-versions`, is written anew (to a temporary name, then
//! renamed) at most every [`SAVE_EVERY_MS`] when a version changed: per persistent namespace,
//! its name length (u8), name, and 4096 versions (u64 little-endian), then a CRC-32 of all
//! that. A missing or damaged file means nothing held.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use petrel_proto::PARTITIONS_COUNT;

use crate::node::ClusterNode;

/// How often changed versions are written. A restart reports what it finds as restored
/// versions, distinct per node (`plan::restored_version`), so a version older than the data
/// (or copies that differ under one version) only makes the restored copies merge.
const SAVE_EVERY_MS: u64 = 250;

const FILE_NAME: &str = "partition-versions";

/// The saved versions of the namespaces named `names` (those that persist), in that order;
/// None for a namespace the file does not hold.
pub(crate) fn load(state_dir: &Path, names: &[&str]) -> Vec<Option<Vec<u64>>> {
    let mut out = vec![None; names.len()];
    let Ok(bytes) = std::fs::read(state_dir.join(FILE_NAME)) else { return out };
    if bytes.len() < 4 {
        return out;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        tracing::warn!(dir = %state_dir.display(), "saved partition versions are damaged; starting as holding nothing");
        return out;
    }
    let mut at = 0;
    while at < body.len() {
        let n = body[at] as usize;
        let end = at + 1 + n + 8 * PARTITIONS_COUNT;
        if end > body.len() {
            return vec![None; names.len()];
        }
        let name = &body[at + 1..at + 1 + n];
        let versions: Vec<u64> =
            body[at + 1 + n..end].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        if let Some(i) = names.iter().position(|m| m.as_bytes() == name) {
            out[i] = Some(versions);
        }
        at = end;
    }
    out
}

fn encode(names: &[&str], versions: &[&[u64]]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, v) in names.iter().zip(versions) {
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        for x in v.iter() {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn save(state_dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp: PathBuf = state_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_data()?;
    std::fs::rename(&tmp, state_dir.join(FILE_NAME))
}

impl ClusterNode {
    /// Writes the versions of the persistent namespaces whenever they changed, until the
    /// node stops (and once more then).
    pub(crate) async fn keep_versions_saved(self: Arc<Self>, state_dir: PathBuf, persistent: Vec<usize>) {
        let names: Vec<String> = persistent.iter().map(|&i| self.namespaces[i].name().to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut stop = self.stop.subscribe();
        let mut last: Option<Vec<u8>> = None;
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(SAVE_EVERY_MS)) => false,
                _ = stop.changed() => true,
            };
            let bytes = {
                let v = self.versions.lock();
                let chosen: Vec<&[u64]> = persistent.iter().map(|&i| v[i].as_slice()).collect();
                encode(&names, &chosen)
            };
            if last.as_ref() != Some(&bytes) {
                let (dir, b) = (state_dir.clone(), bytes.clone());
                match tokio::task::spawn_blocking(move || save(&dir, &b)).await {
                    Ok(Ok(())) => last = Some(bytes),
                    Ok(Err(e)) => {
                        tracing::error!(dir = %state_dir.display(), error = %e, "saving partition versions failed")
                    }
                    Err(_) => {}
                }
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_damage_means_nothing_held() {
        let dir = std::env::temp_dir().join(format!("petrel-saved-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a: Vec<u64> = (0..PARTITIONS_COUNT as u64).collect();
        let b = vec![7u64; PARTITIONS_COUNT];
        save(&dir, &encode(&["test", "bar"], &[&a, &b])).expect("save");
        assert_eq!(load(&dir, &["bar", "other", "test"]), vec![Some(b.clone()), None, Some(a.clone())]);
        let mut bytes = std::fs::read(dir.join(FILE_NAME)).expect("read");
        bytes[10] ^= 1;
        std::fs::write(dir.join(FILE_NAME), &bytes).expect("write");
        assert_eq!(load(&dir, &["test"]), vec![None]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
