//! The Nexmark queries as weir jobs, one `#[weir::job]` each, with their result types and
//! the functions they use (kept here so tests and benchmarks can name them).
//!
//! Every query reads the same source: Nexmark events with watermarks of 4 s bounded
//! out-of-orderness (the standard suite's), assigned on the mixed event stream right after
//! the source, then split by type with `flat_map`. Semantics follow the Flink nexmark
//! suite's SQL; where weir's result differs in form (an updating result emitted as a
//! changelog, a tie broken deterministically) the query's doc says so.
//!
//! Arguments of every query: `query` (which one), `output` (a directory, or `discard`),
//! `events`, `event_rate`, `base_time`, `pace` (see [`crate::GeneratorConfig::from_args`]).

use crate::event::{Auction, Bid, Person};
use crate::sink::QuerySink;
use crate::source::NexmarkSource;
use weir::prelude::*;

/// q1's dollar-to-euro rate.
pub const EURO_RATE: f64 = 0.908;

/// Window sizes (ms).
pub const Q5_SIZE_MS: i64 = 10_000;
/// q5's slide (ms).
pub const Q5_SLIDE_MS: i64 = 2_000;
/// q7 and q8's tumbling window (ms).
pub const TUMBLE_MS: i64 = 10_000;
/// q11's session gap (ms).
pub const SESSION_GAP_MS: i64 = 10_000;
/// A day (ms), q17's window.
pub const DAY_MS: i64 = 86_400_000;

// ---------------------------------------------------------------------------------------
// q0, q1, q2: stateless.

/// q1's result: the bid with its price in euros.
#[weir::record]
#[derive(PartialEq)]
pub struct Q1 {
    /// Auction.
    pub auction: u64,
    /// Bidder.
    pub bidder: u64,
    /// `0.908 · price`.
    pub price: f64,
    /// Event time.
    pub date_time: i64,
    /// Padding.
    pub extra: String,
}

/// q1: currency conversion.
pub fn q1_map(b: Bid) -> Q1 {
    Q1 {
        auction: b.auction,
        bidder: b.bidder,
        price: EURO_RATE * b.price as f64,
        date_time: b.date_time,
        extra: b.extra,
    }
}

/// q2's result.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q2 {
    /// Auction (a multiple of 123).
    pub auction: u64,
    /// Price in cents.
    pub price: u64,
}

/// q0: pass-through — every bid, unchanged.
#[weir::job(name = "nexmark-q0", main = false)]
pub fn q0(env: &mut Env) {
    let _query = env.arg("query");
    env.source(NexmarkSource::from_args(
        env.arg_or("events", "1000000"),
        env.arg_or("event_rate", "10000"),
        env.arg_or("base_time", "1704067200000"),
        env.arg_or("pace", "0"),
    ))
    .name("events")
    .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
    .name("event-time")
    .flat_map(|e| e.into_bid().into_iter())
    .name("bids")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

/// q1: currency conversion — every bid with its price in euros (`0.908 · price`).
#[weir::job(name = "nexmark-q1", main = false)]
pub fn q1(env: &mut Env) {
    let _query = env.arg("query");
    env.source(NexmarkSource::from_args(
        env.arg_or("events", "1000000"),
        env.arg_or("event_rate", "10000"),
        env.arg_or("base_time", "1704067200000"),
        env.arg_or("pace", "0"),
    ))
    .name("events")
    .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
    .name("event-time")
    .flat_map(|e| e.into_bid().into_iter())
    .name("bids")
    .map(q1_map)
    .name("to-euro")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

/// q2: selection — auction and price of the bids on auctions whose id is a multiple of 123.
#[weir::job(name = "nexmark-q2", main = false)]
pub fn q2(env: &mut Env) {
    let _query = env.arg("query");
    env.source(NexmarkSource::from_args(
        env.arg_or("events", "1000000"),
        env.arg_or("event_rate", "10000"),
        env.arg_or("base_time", "1704067200000"),
        env.arg_or("pace", "0"),
    ))
    .name("events")
    .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
    .name("event-time")
    .flat_map(|e| e.into_bid().into_iter())
    .name("bids")
    .filter(|b| b.auction % 123 == 0)
    .name("selection")
    .map(|b| Q2 {
        auction: b.auction,
        price: b.price,
    })
    .name("project")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q3: local item suggestion (incremental join).

/// q3's result: a seller in Oregon, Idaho or California and one of their auctions in
/// category 10.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q3 {
    /// Seller's name.
    pub name: String,
    /// Seller's city.
    pub city: String,
    /// Seller's state.
    pub state: String,
    /// The auction.
    pub id: u64,
}

/// Whether a person is in one of q3's states (the generator writes states in lower case).
pub fn q3_state(p: &Person) -> bool {
    matches!(p.state.as_str(), "or" | "id" | "ca")
}

/// q3's join, per person id: the person (once seen) and the auctions that came before them.
/// Both inputs are append-only, so every match is emitted once, when its second side
/// arrives, whatever the order.
pub struct Q3Join {
    /// The seller: (name, city, state).
    pub person: ValueState<(String, String, String)>,
    /// Auctions of a seller not seen yet.
    pub waiting: ListState<u64>,
}

impl Q3Join {
    /// Fresh state descriptors.
    pub fn new() -> Self {
        Q3Join {
            person: ValueState::new("person"),
            waiting: ListState::new("waiting-auctions"),
        }
    }
}

impl Default for Q3Join {
    fn default() -> Self {
        Q3Join::new()
    }
}

impl KeyedCoProcessFunction<u64, Person, Auction> for Q3Join {
    type Out = Q3;

    fn process_element1(&mut self, p: Person, ctx: &mut Context<'_, u64, Q3>) {
        for id in ctx.list(&self.waiting) {
            ctx.emit(Q3 {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                id,
            });
        }
        ctx.clear_list(&self.waiting);
        ctx.update(&self.person, (p.name, p.city, p.state));
    }

    fn process_element2(&mut self, a: Auction, ctx: &mut Context<'_, u64, Q3>) {
        match ctx.value(&self.person) {
            Some((name, city, state)) => ctx.emit(Q3 {
                name,
                city,
                state,
                id: a.id,
            }),
            None => ctx.add(&self.waiting, a.id),
        }
    }
}

/// q3: local item suggestion — persons in OR, ID or CA joined with their auctions in
/// category 10 (a regular, non-windowed join; state grows with the persons, as in Flink).
#[weir::job(name = "nexmark-q3", main = false)]
pub fn q3(env: &mut Env) {
    let _query = env.arg("query");
    let events = env
        .source(NexmarkSource::from_args(
            env.arg_or("events", "1000000"),
            env.arg_or("event_rate", "10000"),
            env.arg_or("base_time", "1704067200000"),
            env.arg_or("pace", "0"),
        ))
        .name("events")
        .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
        .name("event-time");
    let auctions = events
        .flat_map(|e| e.into_auction().into_iter())
        .name("auctions")
        .filter(|a| a.category == 10)
        .name("category-10");
    events
        .flat_map(|e| e.into_person().into_iter())
        .name("persons")
        .filter(q3_state)
        .name("or-id-ca")
        .key_by(|p| p.id)
        .connect(auctions.key_by(|a| a.seller))
        .process(Q3Join::new())
        .name("seller-join")
        .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
        .name("out");
}

// ---------------------------------------------------------------------------------------
// q5: hot items.

/// Bids of one auction in one window.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct AuctionCount {
    /// The auction.
    pub auction: u64,
    /// Its bids in the window.
    pub count: u64,
}

/// Counts an auction's bids, incrementally (per pane of the sliding window).
pub struct CountBids;

impl Aggregator<Bid> for CountBids {
    type Acc = AuctionCount;
    type Out = AuctionCount;
    fn create_accumulator(&self) -> AuctionCount {
        AuctionCount {
            auction: 0,
            count: 0,
        }
    }
    fn add(&self, acc: AuctionCount, b: Bid) -> AuctionCount {
        AuctionCount {
            auction: b.auction,
            count: acc.count + 1,
        }
    }
    fn merge(&self, a: AuctionCount, b: AuctionCount) -> AuctionCount {
        AuctionCount {
            auction: if a.count > 0 { a.auction } else { b.auction },
            count: a.count + b.count,
        }
    }
    fn result(&self, acc: AuctionCount) -> AuctionCount {
        acc
    }
}

/// q5's result: an auction with the most bids in a 10 s window (ties: all of them).
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q5 {
    /// The auction.
    pub auction: u64,
    /// Its bids in the window.
    pub num: u64,
    /// Window start (ms).
    pub window_start: i64,
    /// Window end (ms, exclusive).
    pub window_end: i64,
}

/// The auctions with the most bids among one window's counts.
pub fn q5_hottest(window_end: i64, counts: Vec<AuctionCount>) -> Vec<Q5> {
    let max = counts.iter().map(|c| c.count).max().unwrap_or(0);
    counts
        .into_iter()
        .filter(|c| c.count == max)
        .map(|c| Q5 {
            auction: c.auction,
            num: c.count,
            window_start: window_end - Q5_SIZE_MS,
            window_end,
        })
        .collect()
}

/// q5: hot items — per 10 s window sliding by 2 s, the auction(s) with the most bids.
///
/// Bids are counted per auction in the sliding window (panes of 2 s: each bid is added
/// once, to one pane). A count carries its window's `end − 1` as event time, so a 2 s
/// tumbling window downstream holds exactly the counts of one sliding window; it picks the
/// largest. (The second step is `window_all`: one instance, as Flink's global max.)
#[weir::job(name = "nexmark-q5", main = false)]
pub fn q5(env: &mut Env) {
    let _query = env.arg("query");
    env.source(NexmarkSource::from_args(
        env.arg_or("events", "1000000"),
        env.arg_or("event_rate", "10000"),
        env.arg_or("base_time", "1704067200000"),
        env.arg_or("pace", "0"),
    ))
    .name("events")
    .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
    .name("event-time")
    .flat_map(|e| e.into_bid().into_iter())
    .name("bids")
    .key_by(|b| b.auction)
    .window(Sliding::seconds(10, 2))
    .aggregate(CountBids)
    .name("bids-per-auction")
    .window_all(Tumbling::seconds(2))
    .process(|_, w, counts| q5_hottest(w.end, counts))
    .name("hottest")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q7: highest bid.

/// Keeps the bids with the highest price seen (all of them on a tie).
pub struct MaxBids;

fn keep_max(mut acc: Vec<Bid>, b: Bid) -> Vec<Bid> {
    match acc.first().map(|m| m.price) {
        Some(p) if p > b.price => {}
        Some(p) if p == b.price => acc.push(b),
        _ => {
            acc.clear();
            acc.push(b);
        }
    }
    acc
}

fn merge_max(a: Vec<Bid>, b: Vec<Bid>) -> Vec<Bid> {
    b.into_iter().fold(a, keep_max)
}

impl Aggregator<Bid> for MaxBids {
    type Acc = Vec<Bid>;
    type Out = Vec<Bid>;
    fn create_accumulator(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add(&self, acc: Vec<Bid>, b: Bid) -> Vec<Bid> {
        keep_max(acc, b)
    }
    fn merge(&self, a: Vec<Bid>, b: Vec<Bid>) -> Vec<Bid> {
        merge_max(a, b)
    }
    fn result(&self, acc: Vec<Bid>) -> Vec<Bid> {
        acc
    }
}

/// Combines per-auction maxima into the window's.
pub struct MaxOfMaxBids;

impl Aggregator<Vec<Bid>> for MaxOfMaxBids {
    type Acc = Vec<Bid>;
    type Out = Vec<Bid>;
    fn create_accumulator(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add(&self, acc: Vec<Bid>, bs: Vec<Bid>) -> Vec<Bid> {
        merge_max(acc, bs)
    }
    fn merge(&self, a: Vec<Bid>, b: Vec<Bid>) -> Vec<Bid> {
        merge_max(a, b)
    }
    fn result(&self, acc: Vec<Bid>) -> Vec<Bid> {
        acc
    }
}

/// q7: highest bid — per 10 s tumbling window, the bid(s) with the highest price.
///
/// Each auction's highest bids per window first (keyed, in parallel), then the window's
/// highest of those (one instance). The result is the bids of the window `[start, end)`
/// whose price is the window's maximum. (Flink's SQL joins the maximum back with
/// `dateTime BETWEEN end − 10 s AND end`, both ends included, so it would also report a
/// bid at exactly `end` — of the next window — with the same price; that is an artefact
/// of the SQL, not the query's intent, and weir does not reproduce it.)
#[weir::job(name = "nexmark-q7", main = false)]
pub fn q7(env: &mut Env) {
    let _query = env.arg("query");
    env.source(NexmarkSource::from_args(
        env.arg_or("events", "1000000"),
        env.arg_or("event_rate", "10000"),
        env.arg_or("base_time", "1704067200000"),
        env.arg_or("pace", "0"),
    ))
    .name("events")
    .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
    .name("event-time")
    .flat_map(|e| e.into_bid().into_iter())
    .name("bids")
    .key_by(|b| b.auction)
    .window(Tumbling::seconds(10))
    .aggregate(MaxBids)
    .name("max-per-auction")
    .window_all(Tumbling::seconds(10))
    .aggregate(MaxOfMaxBids)
    .name("max-per-window")
    .flat_map(|bids| bids)
    .name("highest-bids")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q8: new users (window join).

/// q8's result: a person who opened an auction in the 10 s window they registered in.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q8 {
    /// Person id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// The window's start (ms).
    pub window_start: i64,
}

/// The start of the 10 s tumbling window holding `t`.
pub fn tumble_start(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

/// q8: new users — persons joined, per 10 s tumbling window, with the sellers of that
/// window's auctions. The auctions are first reduced to one record per seller and window
/// (Flink's `GROUP BY seller, window`), so each person is reported once per window.
#[weir::job(name = "nexmark-q8", main = false)]
pub fn q8(env: &mut Env) {
    let _query = env.arg("query");
    let events = env
        .source(NexmarkSource::from_args(
            env.arg_or("events", "1000000"),
            env.arg_or("event_rate", "10000"),
            env.arg_or("base_time", "1704067200000"),
            env.arg_or("pace", "0"),
        ))
        .name("events")
        .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
        .name("event-time");
    let sellers = events
        .flat_map(|e| e.into_auction().map(|a| a.seller).into_iter())
        .name("sellers")
        .key_by(|s| *s)
        .window(Tumbling::seconds(10))
        .reduce(|s, _| s)
        .name("seller-per-window");
    events
        .flat_map(|e| e.into_person().into_iter())
        .name("persons")
        .key_by(|p| p.id)
        .join(sellers.key_by(|s| *s))
        .window(Tumbling::seconds(10))
        .apply(|p, _| Q8 {
            id: p.id,
            name: p.name.clone(),
            window_start: tumble_start(p.date_time, TUMBLE_MS),
        })
        .name("new-sellers")
        .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
        .name("out");
}

// ---------------------------------------------------------------------------------------
// q11: user sessions.

/// q11's result: a bidder's session (bids at most 10 s apart) and its bid count.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q11 {
    /// The bidder.
    pub bidder: u64,
    /// Bids in the session.
    pub bid_count: u64,
    /// Session start: the first bid's time.
    pub starttime: i64,
    /// Session end: the last bid's time + 10 s.
    pub endtime: i64,
}

/// Counts a bidder's bids in a session and keeps their first and last time (which make the
/// session window: `[first, last + gap)`), incrementally.
pub struct SessionCount;

impl Aggregator<Bid> for SessionCount {
    type Acc = Q11;
    type Out = Q11;
    fn create_accumulator(&self) -> Q11 {
        Q11 {
            bidder: 0,
            bid_count: 0,
            starttime: i64::MAX,
            endtime: i64::MIN,
        }
    }
    fn add(&self, acc: Q11, b: Bid) -> Q11 {
        Q11 {
            bidder: b.bidder,
            bid_count: acc.bid_count + 1,
            starttime: acc.starttime.min(b.date_time),
            endtime: acc.endtime.max(b.date_time + SESSION_GAP_MS),
        }
    }
    fn merge(&self, a: Q11, b: Q11) -> Q11 {
        Q11 {
            bidder: if a.bid_count > 0 { a.bidder } else { b.bidder },
            bid_count: a.bid_count + b.bid_count,
            starttime: a.starttime.min(b.starttime),
            endtime: a.endtime.max(b.endtime),
        }
    }
    fn result(&self, acc: Q11) -> Q11 {
        acc
    }
}

/// q11: user sessions — per bidder, sessions of bids at most 10 s apart, with their count.
#[weir::job(name = "nexmark-q11", main = false)]
pub fn q11(env: &mut Env) {
    let _query = env.arg("query");
    env.source(NexmarkSource::from_args(
        env.arg_or("events", "1000000"),
        env.arg_or("event_rate", "10000"),
        env.arg_or("base_time", "1704067200000"),
        env.arg_or("pace", "0"),
    ))
    .name("events")
    .watermarks(BoundedOutOfOrderness::seconds(4), |e| e.date_time())
    .name("event-time")
    .flat_map(|e| e.into_bid().into_iter())
    .name("bids")
    .key_by(|b| b.bidder)
    .window(Session::seconds(10))
    .aggregate(SessionCount)
    .name("sessions")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}
