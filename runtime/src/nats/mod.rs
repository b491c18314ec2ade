//! NATS JetStream connector (cargo feature `nats`): [`NatsSource`] reads a stream with its
//! stream sequences as positions (kept in weir's checkpoints, no durable consumer), and
//! [`NatsSink`] publishes with JetStream acknowledgements and a deterministic `Nats-Msg-Id`
//! per record, so that the server de-duplicates what a recovered job publishes again.
//!
//! As in the Kafka connector, each open source instance fetches on a thread of its own with
//! a current-thread tokio runtime (the worker never waits on the network), and each sink
//! instance publishes from its worker thread on a runtime of its own.
//!
//! Servers are given as a URL: `nats://host:4222`, with credentials either in it
//! (`nats://user:password@host:4222`) or set on the builder (`.user_and_password(…)`,
//! `.token(…)`). TLS is not built in.

mod sink;
mod source;

pub use sink::{NatsSink, NatsSinkWriter};
pub use source::{NatsSource, NatsSourceReader, NatsStart};

use crate::error::{Result, RuntimeError};
use async_nats::jetstream;
use std::time::{Duration, Instant};

/// How long to retry reaching the server (at start and for every fetch or publish) before
/// the job fails.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a connector authenticates, beyond what the URL says.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) enum Auth {
    /// What the URL carries (or nothing).
    #[default]
    Url,
    /// A user and password.
    UserPassword(String, String),
    /// A token.
    Token(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Auth::Url => f.write_str("Url"),
            Auth::UserPassword(u, _) => write!(f, "UserPassword({u}, ***)"),
            Auth::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// `url` with any password (or token) replaced by `***`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    match rest.rfind('@') {
        Some(at) => {
            let creds = &rest[..at];
            let user = creds.split(':').next().unwrap_or_default();
            if creds.contains(':') {
                format!("{scheme}{user}:***@{}", &rest[at + 1..])
            } else {
                format!("{scheme}***@{}", &rest[at + 1..])
            }
        }
        None => url.to_string(),
    }
}

/// `url` without credentials, and the credentials it carried (`user:password@` or
/// `token@`): the client does not read them from the URL itself.
pub(crate) fn split_credentials(url: &str) -> (String, Auth) {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let Some(at) = rest.rfind('@') else {
        return (url.to_string(), Auth::Url);
    };
    let (creds, host) = (&rest[..at], &rest[at + 1..]);
    let auth = match creds.split_once(':') {
        Some((user, password)) => Auth::UserPassword(user.to_string(), password.to_string()),
        None => Auth::Token(creds.to_string()),
    };
    (format!("{scheme}{host}"), auth)
}

/// A current-thread runtime for one source or sink instance.
fn runtime(what: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::external(format!("{what}: cannot start an I/O runtime: {e}")))
}

/// Exponential backoff: 100 ms doubling up to 2 s.
struct Backoff {
    delay: Duration,
    since: Option<Instant>,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            delay: Duration::from_millis(100),
            since: None,
        }
    }
    /// Wait before the next attempt; `false` once `limit` has passed since the first failure.
    async fn wait(&mut self, limit: Duration) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(2));
        true
    }
    /// Whether this is the first failure since the last success.
    fn first(&self) -> bool {
        self.since.is_none()
    }
    fn reset(&mut self) {
        *self = Backoff::new();
    }
}

/// Connect to the server, retrying unreachable servers with backoff for at most `limit`.
/// Rejected credentials fail at once: retrying cannot fix them.
async fn connect(
    url: &str,
    auth: &Auth,
    limit: Duration,
    what: &str,
) -> Result<async_nats::Client> {
    let (address, in_url) = split_credentials(url);
    // Credentials given on the builder win over ones in the URL.
    let auth = if *auth == Auth::Url { &in_url } else { auth };
    let mut backoff = Backoff::new();
    loop {
        let mut options = async_nats::ConnectOptions::new()
            .name("weir")
            .connection_timeout(Duration::from_secs(5))
            // Reconnect for ever after a connection was made; weir's own deadlines (fetch
            // and publish retries) decide when the job fails.
            .max_reconnects(None);
        options = match auth {
            Auth::Url => options,
            Auth::UserPassword(u, p) => options.user_and_password(u.clone(), p.clone()),
            Auth::Token(t) => options.token(t.clone()),
        };
        match options.connect(address.as_str()).await {
            Ok(client) => return Ok(client),
            Err(e) => {
                use async_nats::ConnectErrorKind as K;
                match e.kind() {
                    K::AuthorizationViolation | K::Authentication => {
                        return Err(RuntimeError::user(format!(
                            "{what}: the NATS server at {} rejected the credentials ({e}); check the user and password (or token) in the URL or on the builder",
                            redact(url)
                        )))
                    }
                    K::ServerParse | K::Dns => {
                        return Err(RuntimeError::user(format!(
                            "{what}: cannot use the NATS URL {} ({e}); pass it as nats://host:port",
                            redact(url)
                        )))
                    }
                    _ => {}
                }
                if backoff.first() {
                    tracing::warn!("{what}: cannot reach the NATS server at {} ({e}); retrying with backoff for up to {} s", redact(url), limit.as_secs());
                }
                if !backoff.wait(limit).await {
                    return Err(RuntimeError::external(format!(
                        "{what}: cannot reach the NATS server at {} within {} s: {e}; check that it runs and the address is right",
                        redact(url),
                        limit.as_secs()
                    )));
                }
            }
        }
    }
}

/// A JetStream context on `client` whose requests (stream lookups, publish
/// acknowledgements) time out after 5 s.
fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client)
}

/// The error for a JetStream stream that does not exist (or JetStream being off).
fn missing_stream(what: &str, url: &str, stream: &str, e: &dyn std::fmt::Display) -> RuntimeError {
    RuntimeError::user(format!(
        "{what}: JetStream stream `{stream}` does not exist on {} ({e}); create it (e.g. `nats stream add {stream}`) or check its name",
        redact(url)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets_in_messages() {
        assert_eq!(
            redact("nats://weir:s3cret@127.0.0.1:4222"),
            "nats://weir:***@127.0.0.1:4222"
        );
        assert_eq!(redact("nats://tok@h:1"), "nats://***@h:1");
        assert_eq!(redact("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(
            split_credentials("nats://weir:s3cret@127.0.0.1:4222"),
            (
                "nats://127.0.0.1:4222".to_string(),
                Auth::UserPassword("weir".into(), "s3cret".into())
            )
        );
        assert_eq!(
            split_credentials("nats://tok@h:1"),
            ("nats://h:1".to_string(), Auth::Token("tok".into()))
        );
        assert_eq!(split_credentials("h:1"), ("h:1".to_string(), Auth::Url));
        let a = Auth::UserPassword("u".into(), "p4ss".into());
        assert!(!format!("{a:?}").contains("p4ss"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod server_tests;
