//! A NATS JetStream client for tests, and private servers for outage and credential tests.
//!
//! Tests find the shared server at `WEIR_NATS_URL` (default [`DEFAULT_URL`]); `.ci/run`
//! starts one with JetStream. Streams are shared by every test talking to it: use
//! [`unique_name`] for stream names and subjects.

use super::{free_port_block, unique_seed, Spawned, TempDir};
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where tests look for NATS when `WEIR_NATS_URL` is not set.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The shared server's URL; panics, saying what to do, when nothing answers there.
pub fn url() -> String {
    let url = std::env::var("WEIR_NATS_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let addr = url.trim_start_matches("nats://");
    let up = addr
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
    assert!(
        up,
        "no NATS server at {url}: start one with JetStream (`nats-server -js -a 127.0.0.1 -p 4222`, as .ci/run does) or set WEIR_NATS_URL"
    );
    url
}

/// A name no other test run uses: `<prefix>_<unique>` (valid as a stream name and as a
/// subject token).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:012x}", unique_seed() & 0xffff_ffff_ffff)
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

async fn js(url: &str) -> jetstream::Context {
    let (address, auth) = crate::nats::split_credentials(url);
    let options = match auth {
        crate::nats::Auth::UserPassword(u, p) => {
            async_nats::ConnectOptions::with_user_and_password(u, p)
        }
        crate::nats::Auth::Token(t) => async_nats::ConnectOptions::with_token(t),
        crate::nats::Auth::Url => async_nats::ConnectOptions::new(),
    };
    match options.connect(address.as_str()).await {
        Ok(c) => jetstream::new(c),
        Err(e) => panic!("cannot connect to NATS at {url}: {e}"),
    }
}

/// Create stream `name` capturing `subjects` (file storage) with the given duplicate window
/// (`None`: the server's default, 2 minutes).
pub fn create_stream(url: &str, name: &str, subjects: &[&str], duplicate_window: Option<Duration>) {
    block_on(async {
        let js = js(url).await;
        let config = stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            duplicate_window: duplicate_window.unwrap_or_default(),
            ..Default::default()
        };
        if let Err(e) = js.create_stream(config).await {
            panic!("cannot create stream {name}: {e}");
        }
    });
}

/// Delete stream `name` (ignoring a stream that is not there).
pub fn delete_stream(url: &str, name: &str) {
    block_on(async {
        let _ = js(url).await.delete_stream(name).await;
    });
}

/// The duplicate window stream `name` is configured with.
pub fn duplicate_window(url: &str, name: &str) -> Duration {
    block_on(async {
        let js = js(url).await;
        match js.get_stream(name).await {
            Ok(s) => s.cached_info().config.duplicate_window,
            Err(e) => panic!("cannot read stream {name}: {e}"),
        }
    })
}

/// Publish `payloads` to `subject`, each acknowledged by the stream; returns their
/// sequences.
pub fn publish(url: &str, subject: &str, payloads: &[Vec<u8>]) -> Vec<u64> {
    block_on(async {
        let js = js(url).await;
        let mut seqs = Vec::new();
        // In chunks: the client allows a bounded number of acknowledgements in flight.
        for chunk in payloads.chunks(1_000) {
            let mut acks = Vec::new();
            for p in chunk {
                match js.publish(subject.to_string(), p.clone().into()).await {
                    Ok(a) => acks.push(a),
                    Err(e) => panic!("cannot publish to {subject}: {e}"),
                }
            }
            for a in acks {
                match a.await {
                    Ok(ack) => seqs.push(ack.sequence),
                    Err(e) => panic!("no acknowledgement from {subject}: {e}"),
                }
            }
        }
        seqs
    })
}

/// One message read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id` header, if any.
    pub id: Option<String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Every message stream `name` holds, in sequence order.
pub fn read_stream(url: &str, name: &str) -> Vec<StoredMessage> {
    block_on(async {
        let js = js(url).await;
        let mut stream = match js.get_stream(name).await {
            Ok(s) => s,
            Err(e) => panic!("cannot open stream {name}: {e}"),
        };
        let info = match stream.info().await {
            Ok(i) => i.clone(),
            Err(e) => panic!("cannot read stream {name}: {e}"),
        };
        let total = info.state.messages;
        let mut out = Vec::new();
        if total == 0 {
            return out;
        }
        let consumer = match stream
            .create_consumer(jetstream::consumer::pull::Config {
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(e) => panic!("cannot read stream {name}: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while (out.len() as u64) < total {
            assert!(
                Instant::now() < deadline,
                "reading stream {name} took over 30 s"
            );
            let mut batch = match consumer
                .batch()
                .max_messages(1_000)
                .expires(Duration::from_millis(500))
                .messages()
                .await
            {
                Ok(b) => b,
                Err(e) => panic!("cannot read stream {name}: {e}"),
            };
            while let Some(m) = batch.next().await {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => panic!("cannot read stream {name}: {e}"),
                };
                let sequence = m.info().map(|i| i.stream_sequence).unwrap_or_default();
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.to_string());
                out.push(StoredMessage {
                    sequence,
                    subject: m.subject.to_string(),
                    id,
                    payload: m.payload.to_vec(),
                });
            }
        }
        out
    })
}

/// A private `nats-server` with JetStream on a spare port of 127.0.0.1, optionally with a
/// user and password; stopped (and its storage removed) when dropped.
#[derive(Debug)]
pub struct PrivateServer {
    port: u16,
    process: Option<Spawned>,
    _dir: TempDir,
}

impl PrivateServer {
    /// Start one (`user`: require this user and password).
    pub fn start(user: Option<(&str, &str)>) -> PrivateServer {
        let dir = TempDir::new("nats-server");
        let port = free_port_block(1);
        let mut cmd = Command::new(
            std::env::var("WEIR_NATS_SERVER").unwrap_or_else(|_| "nats-server".into()),
        );
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("store"));
        if let Some((u, p)) = user {
            cmd.args(["--user", u, "--pass", p]);
        }
        let process = Spawned::spawn(cmd);
        super::wait_for_port(port, "nats-server");
        PrivateServer {
            port,
            process: Some(process),
            _dir: dir,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://[user:password@]127.0.0.1:<port>`.
    pub fn url(&self, user: Option<(&str, &str)>) -> String {
        match user {
            Some((u, p)) => format!("nats://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("nats://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill_group();
        }
    }
}
