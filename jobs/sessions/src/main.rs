//! Sessions: click events as JSON lines in (`{"user", "page", "event_time"}`); one record per
//! user session out: `{"user", "start", "end", "events", "pages", "duration_ms"}`.
//!
//! A session is a run of a user's clicks with less than 30 minutes of inactivity between
//! consecutive ones, by *event time* (when the user clicked, not when the click is read):
//! an event-time session window with a 30-minute gap. As in Flink, each click opens a
//! window `[t, t + 30 min)` and windows that overlap or touch merge, so two clicks exactly
//! 30 minutes apart are one session; the session's window ends 30 minutes after its last
//! click, and it fires once the watermark reaches that end − 1.
//!
//! Clicks arrive up to 10 s out of order: watermarks trail the largest event time seen by
//! 10 s (bounded out-of-orderness), generated per source instance right after the source.
//!
//! ```text
//! cargo run --release -p sessions -- run --workers 4 \
//!     --arg input=jobs/sessions/data/clicks.jsonl --arg output=out/sessions
//! ```

use std::collections::BTreeSet;
use weir::prelude::*;

/// A click as it arrives.
#[weir::record]
pub struct Click {
    /// Who clicked.
    pub user: String,
    /// The page they opened.
    pub page: String,
    /// When (milliseconds since the Unix epoch): the event time.
    pub event_time: i64,
}

/// One session of one user.
#[weir::record]
pub struct UserSession {
    /// The user.
    pub user: String,
    /// The session window's start: the first click (ms since the Unix epoch).
    pub start: i64,
    /// The session window's end: 30 minutes after the last click.
    pub end: i64,
    /// Clicks in the session.
    pub events: u64,
    /// Distinct pages opened.
    pub pages: u64,
    /// From the first click to the last, in milliseconds (0 for a single click).
    pub duration_ms: i64,
}

/// Inactivity that closes a session, in minutes.
const GAP_MINUTES: u64 = 30;

/// Summarise the clicks of one session window.
fn summarize(user: &str, window: Window, clicks: Vec<Click>) -> Vec<UserSession> {
    let first = clicks
        .iter()
        .map(|c| c.event_time)
        .min()
        .unwrap_or(window.start);
    let last = clicks
        .iter()
        .map(|c| c.event_time)
        .max()
        .unwrap_or(window.start);
    let pages: BTreeSet<&str> = clicks.iter().map(|c| c.page.as_str()).collect();
    vec![UserSession {
        user: user.to_string(),
        start: window.start,
        end: window.end,
        events: clicks.len() as u64,
        pages: pages.len() as u64,
        duration_ms: last - first,
    }]
}

#[weir::job(name = "sessions")]
fn pipeline(env: &mut Env) {
    env.source(FileSource::json_lines::<Click>(env.arg("input")))
        .name("clicks")
        .watermarks(BoundedOutOfOrderness::seconds(10), |c| c.event_time)
        .name("click-time")
        .key_by(|c| c.user.clone())
        .window(Session::minutes(GAP_MINUTES))
        .process(|user, window, clicks| summarize(user, window, clicks))
        .name("user-sessions")
        .sink(FileSink::json_lines(env.arg("output")))
        .name("sessions");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(page: &str, event_time: i64) -> Click {
        Click {
            user: "u".into(),
            page: page.into(),
            event_time,
        }
    }

    #[test]
    fn summary_counts_clicks_and_distinct_pages() {
        let w = Window {
            start: 1_000,
            end: 1_000 + 30 * 60_000 + 4_000,
        };
        let s = summarize(
            "u",
            w,
            vec![click("/b", 5_000), click("/a", 1_000), click("/b", 3_000)],
        );
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(
            (
                s.user.as_str(),
                s.start,
                s.end,
                s.events,
                s.pages,
                s.duration_ms
            ),
            ("u", w.start, w.end, 3, 2, 4_000)
        );
    }
}
