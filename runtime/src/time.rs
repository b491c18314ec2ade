//! Event time: windows and window assigners, with Flink's exact semantics.
//!
//! - Event time is `i64` milliseconds since the Unix epoch.
//! - Bounded out-of-orderness emits `max_seen − bound − 1` (Flink's
//!   `BoundedOutOfOrdernessWatermarks`); monotonous timestamps are the special case bound 0.
//! - A window `[start, end)` fires when the watermark reaches `end − 1` (its `max_timestamp`).
//! - A record is late for a window when `end − 1 + allowed_lateness ≤ watermark`.
//! - Windows align to the epoch (0) unless an offset is given: the start of the tumbling
//!   window of `t` is `t − ((t − offset) mod size)` with a non-negative modulo.

use crate::data::EventTime;
use std::time::Duration;

/// A window of event (or processing) time: `[start, end)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    /// First millisecond in the window.
    pub start: EventTime,
    /// First millisecond after the window.
    pub end: EventTime,
}

impl Window {
    /// The largest timestamp in the window (`end − 1`): the window fires when the watermark
    /// reaches it.
    pub fn max_timestamp(&self) -> EventTime {
        self.end - 1
    }
    /// Whether two windows overlap or touch (session merging).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }
    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Flink's `TimeWindow.getWindowStartWithOffset`.
pub fn window_start(timestamp: EventTime, offset: i64, size: i64) -> EventTime {
    let remainder = (timestamp - offset).rem_euclid(size);
    timestamp - remainder
}

/// How a keyed or global window operator groups records into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window length in ms.
        size: i64,
        /// Alignment offset in ms.
        offset: i64,
    },
    /// Fixed-size windows starting every `slide`.
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        slide: i64,
        /// Alignment offset in ms.
        offset: i64,
    },
    /// Windows of activity separated by gaps of at least `gap` ms.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
}

impl WindowAssigner {
    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Self {
        WindowAssigner::Tumbling {
            size: millis(size),
            offset: 0,
        }
    }
    /// Sliding windows of `size` every `slide`.
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        WindowAssigner::Sliding {
            size: millis(size),
            slide: millis(slide),
            offset: 0,
        }
    }
    /// Session windows with an inactivity `gap`.
    pub fn session(gap: Duration) -> Self {
        WindowAssigner::Session { gap: millis(gap) }
    }
    /// Shift window alignment by `offset` (tumbling and sliding).
    pub fn with_offset(self, offset: Duration) -> Self {
        match self {
            WindowAssigner::Tumbling { size, .. } => WindowAssigner::Tumbling {
                size,
                offset: millis(offset),
            },
            WindowAssigner::Sliding { size, slide, .. } => WindowAssigner::Sliding {
                size,
                slide,
                offset: millis(offset),
            },
            s => s,
        }
    }

    /// The windows a record at `ts` belongs to, earliest first. Sessions: the record's own
    /// proto-window `[ts, ts + gap)`, merged by the operator.
    pub fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            WindowAssigner::Tumbling { size, offset } => {
                let start = window_start(ts, offset, size);
                out.push(Window {
                    start,
                    end: start + size,
                });
            }
            WindowAssigner::Sliding {
                size,
                slide,
                offset,
            } => {
                let last = window_start(ts, offset, slide);
                let mut start = last;
                while start > ts - size {
                    out.push(Window {
                        start,
                        end: start + size,
                    });
                    start -= slide;
                }
                out.reverse();
            }
            WindowAssigner::Session { gap } => out.push(Window {
                start: ts,
                end: ts + gap,
            }),
        }
    }

    /// The pane (slice) a record at `ts` goes to: every window is a union of whole panes, so
    /// a record is stored once, not once per window (sliding windows with panes of
    /// `gcd(size, slide)`). `None` for sessions.
    pub fn pane(&self, ts: EventTime) -> Option<Window> {
        match *self {
            WindowAssigner::Tumbling { size, offset } => {
                let s = window_start(ts, offset, size);
                Some(Window {
                    start: s,
                    end: s + size,
                })
            }
            WindowAssigner::Sliding {
                size,
                slide,
                offset,
            } => {
                let p = gcd(size, slide);
                let s = window_start(ts, offset, p);
                Some(Window {
                    start: s,
                    end: s + p,
                })
            }
            WindowAssigner::Session { .. } => None,
        }
    }

    /// The windows that end within a pane (fire at the pane's end).
    pub fn windows_ending_in(&self, pane: &Window) -> Option<Window> {
        match *self {
            WindowAssigner::Tumbling { .. } => Some(*pane),
            WindowAssigner::Sliding {
                size,
                slide,
                offset,
            } => {
                // A window ends at pane.end iff pane.end - offset is a multiple of slide.
                if (pane.end - offset).rem_euclid(slide) == 0 {
                    Some(Window {
                        start: pane.end - size,
                        end: pane.end,
                    })
                } else {
                    None
                }
            }
            WindowAssigner::Session { .. } => None,
        }
    }

    /// Whether this is a session assigner (windows merge).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }
}

/// Which clock a window follows, or whether it counts records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Event time: fires on watermarks (the default for [`WindowAssigner`]s).
    EventTime(WindowAssigner),
    /// Processing time: records are assigned by the wall clock when they arrive and windows
    /// fire when the wall clock passes their end (and, for a bounded input, at its end).
    ProcessingTime(WindowAssigner),
    /// Count windows: fire every `n` records of a key. A partial window at the end of a
    /// bounded input is not emitted (as in Flink); the run says how many records that left.
    Count(u64),
}

impl From<WindowAssigner> for WindowKind {
    fn from(a: WindowAssigner) -> Self {
        WindowKind::EventTime(a)
    }
}

/// Tumbling processing-time windows: `TumblingProcessingTime::seconds(10)`.
pub struct TumblingProcessingTime;

impl TumblingProcessingTime {
    /// Windows of `size`.
    pub fn of(size: Duration) -> WindowKind {
        WindowKind::ProcessingTime(WindowAssigner::tumbling(size))
    }
    /// Windows of `n` milliseconds.
    pub fn millis(n: u64) -> WindowKind {
        Self::of(Duration::from_millis(n))
    }
    /// Windows of `n` seconds.
    pub fn seconds(n: u64) -> WindowKind {
        Self::of(Duration::from_secs(n))
    }
}

/// Sliding processing-time windows: `SlidingProcessingTime::seconds(10, 2)`.
pub struct SlidingProcessingTime;

impl SlidingProcessingTime {
    /// Windows of `size` every `slide`.
    pub fn of(size: Duration, slide: Duration) -> WindowKind {
        WindowKind::ProcessingTime(WindowAssigner::sliding(size, slide))
    }
    /// Sizes in milliseconds.
    pub fn millis(size: u64, slide: u64) -> WindowKind {
        Self::of(Duration::from_millis(size), Duration::from_millis(slide))
    }
    /// Sizes in seconds.
    pub fn seconds(size: u64, slide: u64) -> WindowKind {
        Self::of(Duration::from_secs(size), Duration::from_secs(slide))
    }
}

/// Processing-time session windows: `SessionProcessingTime::seconds(30)`.
pub struct SessionProcessingTime;

impl SessionProcessingTime {
    /// Sessions closed by a gap of `gap`.
    pub fn with_gap(gap: Duration) -> WindowKind {
        WindowKind::ProcessingTime(WindowAssigner::session(gap))
    }
    /// Gap in milliseconds.
    pub fn millis(n: u64) -> WindowKind {
        Self::with_gap(Duration::from_millis(n))
    }
    /// Gap in seconds.
    pub fn seconds(n: u64) -> WindowKind {
        Self::with_gap(Duration::from_secs(n))
    }
}

/// Tumbling count windows: `CountWindow::of(100)` fires every 100 records of a key.
pub struct CountWindow;

impl CountWindow {
    /// Windows of `n` records.
    pub fn of(n: u64) -> WindowKind {
        WindowKind::Count(n)
    }
}

/// The wall clock in milliseconds since the Unix epoch (processing time).
pub fn now_millis() -> EventTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Tumbling event-time windows: `Tumbling::minutes(5)`, `Tumbling::of(duration)`.
pub struct Tumbling;

impl Tumbling {
    /// Windows of `size`.
    pub fn of(size: Duration) -> WindowAssigner {
        WindowAssigner::tumbling(size)
    }
    /// Windows of `n` milliseconds.
    pub fn millis(n: u64) -> WindowAssigner {
        Self::of(Duration::from_millis(n))
    }
    /// Windows of `n` seconds.
    pub fn seconds(n: u64) -> WindowAssigner {
        Self::of(Duration::from_secs(n))
    }
    /// Windows of `n` minutes.
    pub fn minutes(n: u64) -> WindowAssigner {
        Self::of(Duration::from_secs(n * 60))
    }
}

/// Sliding event-time windows: `Sliding::seconds(10, 2)` (size, slide).
pub struct Sliding;

impl Sliding {
    /// Windows of `size` starting every `slide`.
    pub fn of(size: Duration, slide: Duration) -> WindowAssigner {
        WindowAssigner::sliding(size, slide)
    }
    /// Sizes in milliseconds.
    pub fn millis(size: u64, slide: u64) -> WindowAssigner {
        Self::of(Duration::from_millis(size), Duration::from_millis(slide))
    }
    /// Sizes in seconds.
    pub fn seconds(size: u64, slide: u64) -> WindowAssigner {
        Self::of(Duration::from_secs(size), Duration::from_secs(slide))
    }
    /// Sizes in minutes.
    pub fn minutes(size: u64, slide: u64) -> WindowAssigner {
        Self::of(
            Duration::from_secs(size * 60),
            Duration::from_secs(slide * 60),
        )
    }
}

/// Event-time session windows: `Session::minutes(30)` (the inactivity gap).
pub struct Session;

impl Session {
    /// Sessions closed by a gap of `gap`.
    pub fn with_gap(gap: Duration) -> WindowAssigner {
        WindowAssigner::session(gap)
    }
    /// Gap in milliseconds.
    pub fn millis(n: u64) -> WindowAssigner {
        Self::with_gap(Duration::from_millis(n))
    }
    /// Gap in seconds.
    pub fn seconds(n: u64) -> WindowAssigner {
        Self::with_gap(Duration::from_secs(n))
    }
    /// Gap in minutes.
    pub fn minutes(n: u64) -> WindowAssigner {
        Self::with_gap(Duration::from_secs(n * 60))
    }
}

pub(crate) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(a: WindowAssigner, ts: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        a.assign(ts, &mut v);
        v.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_aligns_to_epoch_and_offset() {
        let t = WindowAssigner::tumbling(Duration::from_secs(5));
        assert_eq!(windows(t, 0), vec![(0, 5000)]);
        assert_eq!(windows(t, 4999), vec![(0, 5000)]);
        assert_eq!(windows(t, 5000), vec![(5000, 10000)]);
        assert_eq!(windows(t, -1), vec![(-5000, 0)]);
        let o = t.with_offset(Duration::from_secs(1));
        assert_eq!(windows(o, 500), vec![(-4000, 1000)]);
        assert_eq!(windows(o, 1000), vec![(1000, 6000)]);
    }

    #[test]
    fn sliding_assigns_every_covering_window() {
        let s = WindowAssigner::sliding(Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(
            windows(s, 11_000),
            vec![
                (2000, 12000),
                (4000, 14000),
                (6000, 16000),
                (8000, 18000),
                (10000, 20000)
            ]
        );
        assert_eq!(
            s.pane(11_000),
            Some(Window {
                start: 10_000,
                end: 12_000
            })
        );
        assert_eq!(
            s.windows_ending_in(&Window {
                start: 10_000,
                end: 12_000
            }),
            Some(Window {
                start: 2000,
                end: 12_000
            })
        );
        let odd = WindowAssigner::sliding(Duration::from_millis(10), Duration::from_millis(4));
        assert_eq!(odd.pane(5), Some(Window { start: 4, end: 6 }));
        assert_eq!(odd.windows_ending_in(&Window { start: 4, end: 6 }), None);
        assert_eq!(
            odd.windows_ending_in(&Window { start: 6, end: 8 }),
            Some(Window { start: -2, end: 8 })
        );
    }

    #[test]
    fn sessions_touching_merge() {
        let a = Window { start: 0, end: 10 };
        assert!(a.intersects(&Window { start: 10, end: 20 }));
        assert!(!a.intersects(&Window { start: 11, end: 20 }));
        assert_eq!(
            a.cover(&Window { start: 5, end: 30 }),
            Window { start: 0, end: 30 }
        );
    }
}
