//! Clusters of processes: hosts files, connections between processes, the per-node launcher.
