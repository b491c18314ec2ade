//! The Nexmark source: the `nexmark` crate's generator as a weir [`Source`].
//!
//! Event `n` (from 0) is a pure function of `n` and the configuration: its type comes from
//! `n mod 50` (1 person, 3 auctions, 46 bids), its fields from a random generator seeded
//! with `n`, its time from the base time and the event rate (`base_time + n · 1000 /
//! event_rate` ms, rounded). So the events do not depend on how many source instances make
//! them: instance `k` of `p` generates the events `k, k + p, k + 2p, …` (the generator's
//! offset and step), each instance in increasing time, and together they generate every
//! event once. Watermarks are assigned per instance on the mixed stream, before it is split
//! by type, so an instance that happens to make no events of one type does not hold that
//! type's event time back.

use crate::event::Event;
use nexmark::config::NexmarkConfig;
use nexmark::EventGenerator;
use std::time::Instant;
use weir::prelude::*;
use weir::runtime::error::{Result, RuntimeError};
use weir::runtime::sources::{Poll, SourceContext};

/// 2024-01-01T00:00:00Z: the default time of event 0, a midnight, so daily and hourly
/// buckets (q14, q17) start at the first event.
pub const DEFAULT_BASE_TIME: i64 = 1_704_067_200_000;

/// The default event rate (events per second of event time), the generator's own default.
pub const DEFAULT_EVENT_RATE: u64 = 10_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// How many events in all (`None`: without end).
    pub events: Option<u64>,
    /// Events per second of *event time* (sets how far apart their timestamps are).
    pub event_rate: u64,
    /// Time of event 0 (ms since the Unix epoch).
    pub base_time: i64,
    /// Wall-clock pacing of the whole source (events per second), if any.
    pub pace: Option<f64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            events: Some(1_000_000),
            event_rate: DEFAULT_EVENT_RATE,
            base_time: DEFAULT_BASE_TIME,
            pace: None,
        }
    }
}

impl GeneratorConfig {
    /// The configuration from the job's arguments: `events` (a count, or `unbounded`),
    /// `event_rate` (events per second of event time), `base_time` (ms), `pace` (wall-clock
    /// events per second, 0 for as fast as possible).
    pub fn from_args(
        events: &str,
        event_rate: &str,
        base_time: &str,
        pace: &str,
    ) -> std::result::Result<Self, String> {
        let events = match events.trim() {
            "unbounded" => None,
            s => Some(s.parse::<u64>().map_err(|_| {
                format!("--arg events={s}: expected a number of events or `unbounded`")
            })?),
        };
        let event_rate = event_rate
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|r| *r > 0 && *r <= 1_000_000_000)
            .ok_or_else(|| {
                format!("--arg event_rate={event_rate}: expected events per second of event time, 1 to 10^9")
            })?;
        let base_time = base_time
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|t| *t >= 0)
            .ok_or_else(|| {
                format!(
                    "--arg base_time={base_time}: expected milliseconds since the Unix epoch, ≥ 0"
                )
            })?;
        let pace = match pace.trim().parse::<f64>() {
            Ok(p) if p.abs() < f64::MIN_POSITIVE => None,
            Ok(p) if p.is_finite() && p > 0.0 => Some(p),
            _ => {
                return Err(format!(
                "--arg pace={pace}: expected wall-clock events per second (0: as fast as possible)"
            ))
            }
        };
        Ok(GeneratorConfig {
            events,
            event_rate,
            base_time,
            pace,
        })
    }

    /// The `nexmark` crate's configuration: fixed base time, one constant rate, one
    /// timeline shared by every instance, in-order events.
    pub fn nexmark(&self) -> NexmarkConfig {
        let rate = usize::try_from(self.event_rate).unwrap_or(usize::MAX);
        NexmarkConfig {
            base_time: u64::try_from(self.base_time).unwrap_or(0),
            first_rate: rate,
            next_rate: rate,
            num_event_generators: 1,
            out_of_order_group_size: 1,
            ..NexmarkConfig::default()
        }
    }

    /// The events `offset, offset + step, …` of this configuration, without end.
    pub fn iter(&self, offset: u64, step: u64) -> impl Iterator<Item = Event> {
        EventGenerator::new(self.nexmark())
            .with_offset(offset)
            .with_step(step.max(1))
            .map(Event::from)
    }

    /// The first `n` events in order (what a bounded source of `n` events generates over
    /// all its instances): for tests and references.
    pub fn events(&self, n: u64) -> Vec<Event> {
        self.iter(0, 1).take(n as usize).collect()
    }
}

/// How many of the events `0..count` instance `k` of `p` generates (those `≡ k mod p`).
fn share(count: u64, k: u64, p: u64) -> u64 {
    if count <= k {
        0
    } else {
        (count - 1 - k) / p + 1
    }
}

/// The Nexmark event source.
///
/// ```text
/// env.source(NexmarkSource::from_args(env.arg_or("events", "1000000"), …))
/// ```
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    config: std::result::Result<GeneratorConfig, String>,
}

impl NexmarkSource {
    /// A source generating what `config` says.
    pub fn new(config: GeneratorConfig) -> Self {
        NexmarkSource { config: Ok(config) }
    }

    /// A source configured by the job's arguments (see [`GeneratorConfig::from_args`]); a
    /// bad argument stops the job at start-up with a message naming it.
    pub fn from_args(
        events: impl AsRef<str>,
        event_rate: impl AsRef<str>,
        base_time: impl AsRef<str>,
        pace: impl AsRef<str>,
    ) -> Self {
        NexmarkSource {
            config: GeneratorConfig::from_args(
                events.as_ref(),
                event_rate.as_ref(),
                base_time.as_ref(),
                pace.as_ref(),
            ),
        }
    }
}

impl Source for NexmarkSource {
    type Item = Event;
    type Reader = NexmarkReader;

    fn describe(&self) -> String {
        match &self.config {
            Ok(c) => format!(
                "nexmark generator ({}, {} events/s of event time{})",
                c.events
                    .map_or("unbounded".to_string(), |n| format!("{n} events")),
                c.event_rate,
                c.pace
                    .map_or(String::new(), |p| format!(", paced at {p}/s"))
            ),
            Err(_) => "nexmark generator (misconfigured)".to_string(),
        }
    }

    fn is_bounded(&self) -> bool {
        matches!(&self.config, Ok(c) if c.events.is_some())
    }

    fn open(&self, ctx: &SourceContext) -> Result<NexmarkReader> {
        let config = self
            .config
            .clone()
            .map_err(|e| RuntimeError::user(format!("nexmark source `{}`: {e}", ctx.operator)))?;
        if ctx.parallelism == 0 || ctx.instance >= ctx.parallelism {
            return Err(RuntimeError::internal(format!(
                "nexmark source `{}`: opened as instance {} of {}",
                ctx.operator, ctx.instance, ctx.parallelism
            )));
        }
        let p = ctx.parallelism as u64;
        let k = ctx.instance as u64;
        let limit = match config.events {
            Some(n) => share(n, k, p),
            None => u64::MAX,
        };
        Ok(NexmarkReader {
            events: EventGenerator::new(config.nexmark())
                .with_offset(k)
                .with_step(p),
            generated: 0,
            limit,
            total: config.events.map(|_| limit),
            pace: config.pace.map(|r| (Instant::now(), r / p as f64)),
        })
    }
}

/// An open [`NexmarkSource`] instance.
pub struct NexmarkReader {
    events: EventGenerator,
    generated: u64,
    limit: u64,
    total: Option<u64>,
    /// When the instance opened, and its share of the pace.
    pace: Option<(Instant, f64)>,
}

impl SourceReader for NexmarkReader {
    type Item = Event;

    fn poll<F: FnMut(Event)>(&mut self, budget: usize, mut out: F) -> Result<Poll> {
        let remaining = self.limit - self.generated;
        if remaining == 0 {
            return Ok(Poll::Done);
        }
        let mut n = remaining.min(u64::try_from(budget).unwrap_or(u64::MAX));
        let mut paced = false;
        if let Some((start, per_second)) = self.pace {
            let due = (start.elapsed().as_secs_f64() * per_second) as u64;
            let allowed = due.saturating_add(1).saturating_sub(self.generated);
            if allowed < n {
                n = allowed;
                paced = true;
            }
        }
        for e in self.events.by_ref().take(n as usize) {
            out(Event::from(e));
        }
        self.generated += n;
        Ok(if self.generated == self.limit {
            Poll::Done
        } else if paced {
            Poll::Idle
        } else {
            Poll::More
        })
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.generated, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(instance: usize, parallelism: usize) -> SourceContext {
        SourceContext {
            job: "nexmark".into(),
            operator: "events".into(),
            instance,
            parallelism,
        }
    }

    fn drain(src: &NexmarkSource, k: usize, p: usize) -> Vec<Event> {
        let mut r = src.open(&ctx(k, p)).unwrap();
        let mut out = Vec::new();
        while r.poll(7, |e| out.push(e)).unwrap() != Poll::Done {}
        out
    }

    fn cfg(events: u64, rate: u64) -> GeneratorConfig {
        GeneratorConfig {
            events: Some(events),
            event_rate: rate,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn instances_split_the_events_by_offset_and_step() {
        let c = cfg(1003, 100);
        let all = c.events(1003);
        let src = NexmarkSource::new(c);
        for p in [1usize, 2, 3, 4] {
            let mut got: Vec<(usize, Event)> = Vec::new();
            for k in 0..p {
                for (j, e) in drain(&src, k, p).into_iter().enumerate() {
                    got.push((k + j * p, e));
                }
            }
            got.sort_by_key(|(i, _)| *i);
            assert_eq!(got.len(), all.len(), "p = {p}");
            assert!(
                got.into_iter().map(|(_, e)| e).eq(all.iter().cloned()),
                "p = {p}"
            );
        }
    }

    #[test]
    fn proportions_rate_base_time_and_determinism() {
        let c = cfg(5000, 100);
        let events = c.events(5000);
        assert_eq!(events, c.events(5000), "same config, same events");
        let persons = events
            .iter()
            .filter(|e| matches!(e, Event::Person(_)))
            .count();
        let auctions = events
            .iter()
            .filter(|e| matches!(e, Event::Auction(_)))
            .count();
        assert_eq!((persons, auctions), (100, 300));
        // 100 events per second of event time: event n at base + 10 n ms, in order.
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.date_time(), DEFAULT_BASE_TIME + 10 * n as i64);
        }
        let Event::Person(p) = &events[0] else {
            panic!("event 0 is a person")
        };
        assert_eq!(p.id, 1000);
        let Event::Bid(b) = &events[4] else {
            panic!("event 4 is a bid")
        };
        assert!(
            b.auction >= 1000 && b.bidder >= 1000 && b.price > 0,
            "{b:?}"
        );
    }

    #[test]
    fn bad_arguments_are_user_errors_naming_the_argument() {
        for (args, name) in [
            (["x", "1", "0", "0"], "events"),
            (["10", "0", "0", "0"], "event_rate"),
            (["10", "1", "-5", "0"], "base_time"),
            (["10", "1", "0", "-1"], "pace"),
        ] {
            let src = NexmarkSource::from_args(args[0], args[1], args[2], args[3]);
            let err = src.open(&ctx(0, 1)).err().unwrap();
            assert_eq!(err.domain, weir::runtime::error::ErrorDomain::User);
            assert!(
                err.message.contains(&format!("--arg {name}=")),
                "{}",
                err.message
            );
        }
        let ok = NexmarkSource::from_args("unbounded", "1000", "0", "0");
        assert!(!ok.is_bounded());
    }
}
