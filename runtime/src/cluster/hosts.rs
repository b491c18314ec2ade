//! Hosts files: the nodes of a cluster, one `IP:PORT` a line, and every process's address.
//!
//! ```text
//! # sales-analytics, production
//! 10.0.0.1:7000      # node 0: processes 0..P listen on ports 7000..7000+P
//! 10.0.0.2:7000      # node 1
//! [fd00::3]:7000     # node 2 (IPv6)
//! ```
//!
//! Node `n` (its line among the non-blank, non-comment lines, from 0) runs the processes
//! `n*P .. n*P+P` (P = `--procs-per-node`); its local process `k` listens on `IP:PORT+k`.

use crate::error::{Result, RuntimeError};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// One node of a hosts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Node index: its position among the file's address lines, from 0.
    pub index: usize,
    /// Base address: the node's local process `k` listens on this IP and port `+ k`.
    pub addr: SocketAddr,
    /// Line number in the file, from 1 (for error messages).
    pub line: usize,
}

/// The address of one process of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessAddr {
    /// Global process index (`node * procs_per_node + local`).
    pub process: usize,
    /// Node index.
    pub node: usize,
    /// Index of the process among its node's processes.
    pub local: usize,
    /// Where it listens for the other processes.
    pub addr: SocketAddr,
}

impl fmt::Display for ProcessAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "process {} (node {}, {})",
            self.process, self.node, self.addr
        )
    }
}

/// A parsed hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    origin: String,
    nodes: Vec<Node>,
}

impl Hosts {
    /// Read and parse the hosts file at `path`. Errors name the file and, for a bad line,
    /// the line number.
    pub fn load(path: &Path) -> Result<Hosts> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RuntimeError::user(format!(
                "cannot read hosts file `{origin}`: {e}; pass --hosts with a file listing one IP:PORT per node"
            ))
        })?;
        Hosts::parse(&text, &origin)
    }

    /// Parse hosts-file text; `origin` names it in error messages (usually the path).
    pub fn parse(text: &str, origin: &str) -> Result<Hosts> {
        let mut nodes: Vec<Node> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let addr: SocketAddr = content.parse().map_err(|_| {
                let hint = if content.contains(char::is_whitespace) {
                    "write one address per line"
                } else if !content.contains(':') {
                    "add the port, as in 10.0.0.1:7000"
                } else {
                    "write an IPv4 address and port like 10.0.0.1:7000 or an IPv6 one like [fd00::1]:7000; host names are not resolved"
                };
                RuntimeError::user(format!("{origin}:{line}: `{content}` is not IP:PORT: {hint}"))
            })?;
            if addr.port() == 0 {
                return Err(RuntimeError::user(format!(
                    "{origin}:{line}: port 0 is not allowed: give the fixed base port the node's processes listen on"
                )));
            }
            if let Some(prev) = nodes.iter().find(|n| n.addr == addr) {
                return Err(RuntimeError::user(format!(
                    "{origin}:{line}: duplicate address {addr} (already on line {}): give every node its own IP:PORT",
                    prev.line
                )));
            }
            nodes.push(Node {
                index: nodes.len(),
                addr,
                line,
            });
        }
        if nodes.is_empty() {
            return Err(RuntimeError::user(format!(
                "hosts file `{origin}` lists no nodes: write one IP:PORT per line, one line per node"
            )));
        }
        Ok(Hosts {
            origin: origin.to_string(),
            nodes,
        })
    }

    /// Where the file came from (its path), as used in messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The nodes, in file order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the file lists no node (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Check that `node` is a line of the file.
    pub fn check_node(&self, node: usize) -> Result<()> {
        if node < self.nodes.len() {
            return Ok(());
        }
        let n = self.nodes.len();
        Err(RuntimeError::user(format!(
            "--node {node} is out of range: hosts file `{}` lists {n} node{} (0 to {}); pass the index of this machine's line",
            self.origin,
            if n == 1 { "" } else { "s" },
            n - 1
        )))
    }

    /// The address of every process of the cluster when every node runs `procs_per_node`
    /// processes, indexed by global process index. Fails if a port would pass 65535 or two
    /// processes would share an address.
    pub fn processes(&self, procs_per_node: usize) -> Result<Vec<ProcessAddr>> {
        if procs_per_node == 0 {
            return Err(RuntimeError::user("--procs-per-node must be at least 1"));
        }
        let mut out: Vec<ProcessAddr> = Vec::with_capacity(self.nodes.len() * procs_per_node);
        for n in &self.nodes {
            let last = usize::from(n.addr.port()) + procs_per_node - 1;
            if last > usize::from(u16::MAX) {
                return Err(RuntimeError::user(format!(
                    "{}:{}: node {} needs ports {} to {last} for {procs_per_node} processes, past 65535: pick a lower base port",
                    self.origin,
                    n.line,
                    n.index,
                    n.addr.port()
                )));
            }
            for local in 0..procs_per_node {
                let mut addr = n.addr;
                // `last` fits in u16, so every port up to it does.
                addr.set_port(
                    u16::try_from(usize::from(n.addr.port()) + local).unwrap_or(u16::MAX),
                );
                let process = n.index * procs_per_node + local;
                if let Some(other) = out.iter().find(|p| p.addr == addr) {
                    return Err(RuntimeError::user(format!(
                        "{}:{}: process {process} (node {}) would listen on {addr}, which process {} (node {}, line {}) uses too: space the base ports of nodes on one IP at least {procs_per_node} apart",
                        self.origin,
                        n.line,
                        n.index,
                        other.process,
                        other.node,
                        self.nodes[other.node].line
                    )));
                }
                out.push(ProcessAddr {
                    process,
                    node: n.index,
                    local,
                    addr,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Hosts::parse(text, "hosts.txt") {
            Ok(h) => panic!("expected an error, got {h:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_nodes_comments_and_blank_lines() {
        let text = "# cluster\n\n10.0.0.1:7000\n  10.0.0.2:7000   # second\n[fd00::3]:9000\n\n";
        let h = Hosts::parse(text, "hosts.txt").unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.nodes()[0],
            Node {
                index: 0,
                addr: "10.0.0.1:7000".parse().unwrap(),
                line: 3
            }
        );
        assert_eq!(h.nodes()[1].line, 4);
        assert_eq!(
            h.nodes()[2].addr,
            "[fd00::3]:9000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(h.origin(), "hosts.txt");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        assert_eq!(
            err("10.0.0.1:7000\nnode-b:7000\n"),
            "hosts.txt:2: `node-b:7000` is not IP:PORT: write an IPv4 address and port like 10.0.0.1:7000 or an IPv6 one like [fd00::1]:7000; host names are not resolved"
        );
        assert!(err("# c\n10.0.0.1\n")
            .starts_with("hosts.txt:2: `10.0.0.1` is not IP:PORT: add the port"));
        assert!(err("10.0.0.1:7000 10.0.0.2:7000\n").contains("one address per line"));
        assert!(err("10.0.0.1:99999\n").starts_with("hosts.txt:1: "));
        assert!(err("fd00::1:7000\n").starts_with("hosts.txt:1: "));
        assert!(err("10.0.0.1:0\n").starts_with("hosts.txt:1: port 0"));
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(err("# nothing\n\n").contains("lists no nodes"));
    }

    #[test]
    fn duplicate_addresses_are_refused() {
        assert_eq!(
            err("10.0.0.1:7000\n10.0.0.2:7000\n\n10.0.0.1:7000\n"),
            "hosts.txt:4: duplicate address 10.0.0.1:7000 (already on line 1): give every node its own IP:PORT"
        );
    }

    #[test]
    fn node_out_of_range() {
        let h = Hosts::parse("10.0.0.1:7000\n10.0.0.2:7000\n", "hosts.txt").unwrap();
        assert!(h.check_node(1).is_ok());
        assert_eq!(
            h.check_node(2).unwrap_err().to_string(),
            "--node 2 is out of range: hosts file `hosts.txt` lists 2 nodes (0 to 1); pass the index of this machine's line"
        );
    }

    #[test]
    fn process_addresses() {
        let h = Hosts::parse("127.0.0.1:7000\n127.0.0.1:7100\n", "hosts.txt").unwrap();
        let p = h.processes(3).unwrap();
        assert_eq!(p.len(), 6);
        for (i, pa) in p.iter().enumerate() {
            assert_eq!(pa.process, i);
            assert_eq!(pa.node, i / 3);
            assert_eq!(pa.local, i % 3);
        }
        assert_eq!(p[0].addr, "127.0.0.1:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(p[2].addr, "127.0.0.1:7002".parse::<SocketAddr>().unwrap());
        assert_eq!(p[4].addr, "127.0.0.1:7101".parse::<SocketAddr>().unwrap());
        assert_eq!(p[4].to_string(), "process 4 (node 1, 127.0.0.1:7101)");
    }

    #[test]
    fn port_overflow_and_overlapping_ranges() {
        let h = Hosts::parse("10.0.0.1:7000\n10.0.0.2:65534\n", "hosts.txt").unwrap();
        assert!(h.processes(2).is_ok());
        assert_eq!(
            h.processes(3).unwrap_err().to_string(),
            "hosts.txt:2: node 1 needs ports 65534 to 65536 for 3 processes, past 65535: pick a lower base port"
        );
        let h = Hosts::parse("127.0.0.1:7000\n127.0.0.1:7001\n", "hosts.txt").unwrap();
        assert!(h.processes(1).is_ok());
        let e = h.processes(2).unwrap_err().to_string();
        assert!(e.starts_with("hosts.txt:2: process 2 (node 1) would listen on 127.0.0.1:7001, which process 1 (node 0, line 1) uses too"), "{e}");
    }
}
