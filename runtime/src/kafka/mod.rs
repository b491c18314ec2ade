//! Kafka connector (cargo feature `kafka`): [`KafkaSource`] and [`KafkaSink`] on rskafka, a
//! pure-Rust client, so job binaries stay static and need no C library.
//!
//! No consumer group is used: partitions are assigned to source instances by weir
//! (partition `p` → instance `p mod parallelism`) and read positions are weir's to keep
//! ([`KafkaSourceReader::positions`]), which is what lets checkpoints store them.
//!
//! Each open source or sink instance runs its own current-thread tokio runtime: the source
//! on a fetch thread of its own (the worker never waits on the network), the sink on the
//! worker thread while it produces a batch.

mod format;
mod sink;
mod source;

pub use format::KafkaFormat;
pub use sink::{partition_for_key, KafkaSink, KafkaSinkWriter, KeyFn, Partitioner, RoundRobin};
pub use source::{KafkaSource, KafkaSourceReader, StartFrom};

use crate::error::{Result, RuntimeError};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use std::time::Duration;

/// How long to retry reaching the brokers (at start and for every request) before failing.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// The client id weir's connections announce to the broker.
const CLIENT_ID: &str = "weir";

/// Split a broker list `host:port,host:port` into addresses.
fn parse_brokers(brokers: &str, what: &str) -> Result<Vec<String>> {
    let list: Vec<String> = brokers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        return Err(RuntimeError::user(format!(
            "{what}: the broker list is empty; pass brokers as `host:port[,host:port…]`, e.g. --arg brokers=127.0.0.1:9092"
        )));
    }
    if let Some(bad) = list.iter().find(|b| !b.contains(':')) {
        return Err(RuntimeError::user(format!(
            "{what}: broker `{bad}` has no port; pass brokers as `host:port[,host:port…]`"
        )));
    }
    Ok(list)
}

/// A current-thread runtime for one source or sink instance.
fn runtime(what: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::external(format!("{what}: cannot start an I/O runtime: {e}")))
}

/// Retries with exponential backoff (100 ms doubling up to 2 s) for at most `deadline`.
fn backoff(deadline: Duration) -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        base: 2.0,
        deadline: Some(deadline),
    }
}

/// Connect to the cluster, retrying for at most `deadline`.
async fn connect(brokers: &[String], deadline: Duration, what: &str) -> Result<Client> {
    ClientBuilder::new(brokers.to_vec())
        .client_id(CLIENT_ID)
        .backoff_config(backoff(deadline))
        .build()
        .await
        .map_err(|e| {
            RuntimeError::external(format!(
                "{what}: cannot reach the Kafka brokers {} within {} s: {e}; check that they run and the address is right",
                brokers.join(","),
                deadline.as_secs()
            ))
        })
}

/// The partitions of `topic`, or a user error when it does not exist.
async fn partitions_of(
    client: &Client,
    topic: &str,
    brokers: &[String],
    what: &str,
) -> Result<Vec<i32>> {
    let topics = client.list_topics().await.map_err(|e| {
        RuntimeError::external(format!(
            "{what}: cannot list the topics of {}: {e}",
            brokers.join(",")
        ))
    })?;
    match topics.into_iter().find(|t| t.name == topic) {
        Some(t) if !t.partitions.is_empty() => Ok(t.partitions.into_iter().collect()),
        _ => Err(RuntimeError::user(format!(
            "{what}: topic `{topic}` does not exist on {}; create it or check its name",
            brokers.join(",")
        ))),
    }
}

/// The end of a partition: the offset the next record produced to it will get (its high
/// watermark). Taken from a fetch response as well as from a list-offsets request, because
/// some brokers (tansu 0.6) answer the latter with the base offset of the last batch + 1.
async fn partition_end(pc: &PartitionClient) -> rskafka::client::error::Result<i64> {
    let listed = pc.get_offset(OffsetAt::Latest).await?;
    let earliest = pc.get_offset(OffsetAt::Earliest).await?;
    let (_, high_watermark) = pc.fetch_records(earliest, 1..65_536, 10).await?;
    Ok(listed.max(high_watermark))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorDomain;

    #[test]
    fn broker_lists_are_split_and_checked() {
        assert_eq!(
            parse_brokers(" a:1, b:2 ,", "x").unwrap(),
            ["a:1".to_string(), "b:2".to_string()]
        );
        let e = parse_brokers(" , ", "kafka source `s`").unwrap_err();
        assert_eq!(e.domain, ErrorDomain::User);
        assert!(
            e.message
                .starts_with("kafka source `s`: the broker list is empty"),
            "{}",
            e.message
        );
        let e = parse_brokers("localhost", "x").unwrap_err();
        assert!(
            e.message.contains("`localhost` has no port"),
            "{}",
            e.message
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod broker_tests;
