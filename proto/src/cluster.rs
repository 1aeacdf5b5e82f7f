//! Messages between Petrel nodes (heartbeat port 3002, fabric port 3001), as protobuf
//! through prost. These are Petrel's own; clients never see them.
//!
//! Every message carries a `version`: a receiver refuses a version it does not know instead
//! of misreading it. New fields get new tags; tags are never reused.

/// Version of the heartbeat messages this build speaks.
pub const HEARTBEAT_VERSION: u32 = 1;

/// A heartbeat pulse: who the sender is, how to reach it, whom it hears, and the cluster it
/// believes in.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pulse {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(string, tag = "3")]
    pub cluster_name: String,
    /// Heartbeat endpoints (`host:port`) the sender can be reached at.
    #[prost(string, repeated, tag = "4")]
    pub heartbeat_endpoints: Vec<String>,
    /// Fabric endpoints, for replica writes and migrations.
    #[prost(string, repeated, tag = "5")]
    pub fabric_endpoints: Vec<String>,
    /// Service endpoints, as told to clients.
    #[prost(string, repeated, tag = "6")]
    pub service_endpoints: Vec<String>,
    /// Node ids the sender currently hears (its adjacency list).
    #[prost(uint64, repeated, tag = "7")]
    pub adjacency: Vec<u64>,
    /// The sender's current cluster key (0 = none).
    #[prost(uint64, tag = "8")]
    pub cluster_key: u64,
    /// The sender's current member list, highest id first (the principal first).
    #[prost(uint64, repeated, tag = "9")]
    pub members: Vec<u64>,
    /// Heartbeat endpoints of nodes in the adjacency list, so a node that knows one seed
    /// learns how to reach everyone: parallel to `adjacency`.
    #[prost(string, repeated, tag = "10")]
    pub adjacency_endpoints: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn pulse_round_trips() {
        let p = Pulse {
            version: HEARTBEAT_VERSION,
            node_id: 0xBB90_1000_0000_0C02,
            cluster_name: "prod".into(),
            heartbeat_endpoints: vec!["127.0.0.2:3002".into()],
            adjacency: vec![1, 2],
            adjacency_endpoints: vec!["127.0.0.3:3002".into(), "127.0.0.4:3002".into()],
            cluster_key: 0x1234,
            members: vec![3, 2, 1],
            ..Default::default()
        };
        let bytes = p.encode_to_vec();
        assert_eq!(Pulse::decode(bytes.as_slice()).expect("decodes"), p);
        assert!(Pulse::decode(&[0xff, 0xff, 0xff][..]).is_err());
    }
}
