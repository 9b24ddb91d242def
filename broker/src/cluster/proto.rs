//! The cluster's generated gRPC types (`broker/proto/`): the fan-out links
//! between nodes, each node's report to the others and the archive's copies.

/// Generated from `broker/proto/fanout.proto`.
pub mod fanout {
    tonic::include_proto!("hpfriends.fanout.v1");
}

/// Generated from `broker/proto/nodes.proto`.
pub mod nodes {
    tonic::include_proto!("hpfriends.nodes.v1");
}

/// Generated from `broker/proto/archive.proto`.
pub mod archive {
    tonic::include_proto!("hpfriends.archive.v1");
}
