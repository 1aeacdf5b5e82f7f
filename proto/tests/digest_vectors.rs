//! Reproduces every row of `shared/testdata/digests.tsv`, vectors produced by the official
//! Aerospike client: the digest and the partition id of each (set, key type, key).

use std::path::PathBuf;

use petrel_proto::{Digest, KeyRef};

fn vectors_path() -> PathBuf {
    if let Ok(dir) = std::env::var("PETREL_TESTDATA") {
        return PathBuf::from(dir).join("digests.tsv");
    }
    // The repository sits beside `shared/` (`<root>/main` next to `<root>/shared`).
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.join("../../shared/testdata/digests.tsv")
}

#[test]
fn every_vector_row_matches() {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut rows = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with("namespace\t") || line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 6, "malformed row: {line:?}");
        let (set, key_type, key, digest_hex, pid) = (cols[1], cols[2], cols[3], cols[4], cols[5]);
        let key_bytes;
        let key = match key_type {
            "string" => KeyRef::Str(key),
            "integer" => KeyRef::Int(key.parse().expect("integer key")),
            "bytes" => {
                key_bytes = hex::decode(key).expect("hex bytes key");
                KeyRef::Bytes(&key_bytes)
            }
            other => panic!("unknown key type {other}"),
        };
        let digest = Digest::compute(set.as_bytes(), key);
        assert_eq!(digest.to_string(), digest_hex, "digest of {line:?}");
        assert_eq!(digest.partition_id(), pid.parse::<u16>().expect("pid"), "pid of {line:?}");
        rows += 1;
    }
    assert!(rows >= 14, "expected every vector row, read {rows}");
}
