//! MQTT over WebSocket (`connect: { protocol: mqtt }`): topic names and filters (`topic`).

pub mod topic;
