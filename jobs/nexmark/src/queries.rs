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

// ---------------------------------------------------------------------------------------
// q4: average price per category (updating).

/// An auction's current final price: its highest bid within its lifetime so far.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FinalPrice {
    /// The auction's category.
    pub category: u64,
    /// The auction.
    pub auction: u64,
    /// Its highest bid (cents) with `auction.date_time ≤ bid.date_time ≤ auction.expires`.
    pub price: u64,
}

/// q4's result: the average final price of a category's auctions (integer division, as
/// Flink's `AVG` of a `BIGINT`).
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q4 {
    /// The category.
    pub category: u64,
    /// Average final price (cents).
    pub avg: u64,
}

/// q4's join and `MAX` per auction: keeps the auction (category and lifetime), the bids
/// that came before it, and the highest valid bid; emits the auction's final price as an
/// updating stream (`Insert`, then `UpdateBefore`/`UpdateAfter` when it rises).
pub struct WinningBid {
    /// (category, start, expires).
    pub auction: ValueState<(u64, i64, i64)>,
    /// Bids (price, time) of an auction not seen yet.
    pub waiting: ListState<(u64, i64)>,
    /// The highest valid bid so far.
    pub max: ValueState<u64>,
}

impl WinningBid {
    /// Fresh state descriptors.
    pub fn new() -> Self {
        WinningBid {
            auction: ValueState::new("auction"),
            waiting: ListState::new("waiting-bids"),
            max: ValueState::new("max-price"),
        }
    }

    fn bid(
        &self,
        (category, start, expires): (u64, i64, i64),
        price: u64,
        time: i64,
        ctx: &mut Context<'_, u64, Change<FinalPrice>>,
    ) {
        if time < start || time > expires {
            return;
        }
        let auction = *ctx.key();
        let row = |price| FinalPrice {
            category,
            auction,
            price,
        };
        match ctx.value(&self.max) {
            None => ctx.emit(Change::Insert(row(price))),
            Some(old) if price > old => {
                ctx.emit(Change::UpdateBefore(row(old)));
                ctx.emit(Change::UpdateAfter(row(price)));
            }
            Some(_) => return,
        }
        ctx.update(&self.max, price);
    }
}

impl Default for WinningBid {
    fn default() -> Self {
        WinningBid::new()
    }
}

impl KeyedCoProcessFunction<u64, Auction, Bid> for WinningBid {
    type Out = Change<FinalPrice>;

    fn process_element1(&mut self, a: Auction, ctx: &mut Context<'_, u64, Change<FinalPrice>>) {
        let auction = (a.category, a.date_time, a.expires);
        ctx.update(&self.auction, auction);
        for (price, time) in ctx.list(&self.waiting) {
            self.bid(auction, price, time, ctx);
        }
        ctx.clear_list(&self.waiting);
    }

    fn process_element2(&mut self, b: Bid, ctx: &mut Context<'_, u64, Change<FinalPrice>>) {
        match ctx.value(&self.auction) {
            Some(auction) => self.bid(auction, b.price, b.date_time, ctx),
            None => ctx.add(&self.waiting, (b.price, b.date_time)),
        }
    }
}

/// Average of final prices, with retraction (a final price that rises is taken out and put
/// back in).
pub struct AverageFinal;

impl RetractingAggregator<FinalPrice> for AverageFinal {
    /// (category, sum, count).
    type Acc = (u64, u64, u64);
    type Out = Q4;
    fn create_accumulator(&self) -> (u64, u64, u64) {
        (0, 0, 0)
    }
    fn add(&self, (_, sum, n): (u64, u64, u64), v: FinalPrice) -> (u64, u64, u64) {
        (v.category, sum + v.price, n + 1)
    }
    fn retract(&self, (_, sum, n): (u64, u64, u64), v: FinalPrice) -> (u64, u64, u64) {
        (v.category, sum.wrapping_sub(v.price), n.saturating_sub(1))
    }
    fn result(&self, &(category, sum, n): &(u64, u64, u64)) -> Q4 {
        Q4 {
            category,
            avg: sum.checked_div(n).unwrap_or(0),
        }
    }
}

/// q4: average price per category — each auction's final price (its highest bid between
/// its start and its expiry), averaged per category. Both steps are updating (Flink's
/// regular join and `GROUP BY`s): the output is a changelog (`{"Insert": …}`,
/// `{"UpdateBefore": …}`, `{"UpdateAfter": …}`), whose final table is the answer.
#[weir::job(name = "nexmark-q4", main = false)]
pub fn q4(env: &mut Env) {
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
    let bids = events.flat_map(|e| e.into_bid().into_iter()).name("bids");
    events
        .flat_map(|e| e.into_auction().into_iter())
        .name("auctions")
        .key_by(|a| a.id)
        .connect(bids.key_by(|b| b.auction))
        .process(WinningBid::new())
        .name("final-price")
        .key_by(|c| c.value().category)
        .updating_aggregate(AverageFinal)
        .name("average-per-category")
        .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
        .name("out");
}

// ---------------------------------------------------------------------------------------
// q12: processing-time windows.

/// q12's result: a bidder's bids in a 10 s window of processing time.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q12 {
    /// The bidder.
    pub bidder: u64,
    /// Bids counted in the window.
    pub bid_count: u64,
    /// Window start (wall clock, ms since the Unix epoch).
    pub window_start: i64,
    /// Window end (exclusive).
    pub window_end: i64,
}

/// q12: bids per bidder in 10 s tumbling windows of *processing time* (when the window
/// operator sees them). Not deterministic by nature: its test checks invariants.
#[weir::job(name = "nexmark-q12", main = false)]
pub fn q12(env: &mut Env) {
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
    .flat_map(|e| e.into_bid().map(|b| b.bidder).into_iter())
    .name("bidders")
    .key_by(|b| *b)
    .window(TumblingProcessingTime::seconds(10))
    .process(|bidder, w, bids| {
        Some(Q12 {
            bidder: *bidder,
            bid_count: bids.len() as u64,
            window_start: w.start,
            window_end: w.end,
        })
    })
    .name("bids-per-bidder")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q14, q21, q22: stateless.

/// q14's result.
#[weir::record]
#[derive(PartialEq)]
pub struct Q14 {
    /// Auction.
    pub auction: u64,
    /// Bidder.
    pub bidder: u64,
    /// `0.908 · price`.
    pub price: f64,
    /// `dayTime` (hours 8–18 UTC), `nightTime` (hours ≤ 6 or ≥ 20) or `otherTime`.
    pub bid_time_type: String,
    /// Event time.
    pub date_time: i64,
    /// Padding.
    pub extra: String,
    /// How many `c` the padding holds.
    pub c_counts: u64,
}

/// The hour of the day (UTC) of a time in ms.
pub fn hour_of_day(t: i64) -> i64 {
    t.rem_euclid(DAY_MS) / 3_600_000
}

/// q14: the bids with `1 000 000 < 0.908 · price < 50 000 000`, converted, with the time of
/// day and the `c`s of their padding (Flink's `count_char` function).
pub fn q14_map(b: Bid) -> Option<Q14> {
    let price = EURO_RATE * b.price as f64;
    if !(price > 1_000_000.0 && price < 50_000_000.0) {
        return None;
    }
    let hour = hour_of_day(b.date_time);
    let bid_time_type = if (8..=18).contains(&hour) {
        "dayTime"
    } else if hour <= 6 || hour >= 20 {
        "nightTime"
    } else {
        "otherTime"
    };
    Some(Q14 {
        auction: b.auction,
        bidder: b.bidder,
        price,
        bid_time_type: bid_time_type.to_string(),
        date_time: b.date_time,
        c_counts: b.extra.bytes().filter(|&c| c == b'c').count() as u64,
        extra: b.extra,
    })
}

/// q14: calculation (filter, conversion, user function).
#[weir::job(name = "nexmark-q14", main = false)]
pub fn q14(env: &mut Env) {
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
    .flat_map(|e| e.into_bid().and_then(q14_map).into_iter())
    .name("calculate")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

/// q21's result.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q21 {
    /// Auction.
    pub auction: u64,
    /// Bidder.
    pub bidder: u64,
    /// Price (cents).
    pub price: u64,
    /// Channel.
    pub channel: String,
    /// `0` Apple, `1` Google, `2` Facebook, `3` Baidu, else the URL's `channel_id`.
    pub channel_id: String,
}

/// The value of the URL's first `channel_id=` parameter (Flink's
/// `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`).
pub fn url_channel_id(url: &str) -> Option<&str> {
    const P: &str = "channel_id=";
    url.match_indices(P)
        .find(|(i, _)| *i == 0 || url.as_bytes()[i - 1] == b'&')
        .map(|(i, _)| {
            let rest = &url[i + P.len()..];
            rest.split('&').next().unwrap_or("")
        })
}

/// q21: add a channel id — for the four well-known channels a fixed id, for the others the
/// URL's `channel_id`; bids with neither are dropped.
pub fn q21_map(b: Bid) -> Option<Q21> {
    let known = match b.channel.to_lowercase().as_str() {
        "apple" => Some("0"),
        "google" => Some("1"),
        "facebook" => Some("2"),
        "baidu" => Some("3"),
        _ => None,
    };
    let channel_id = known.or_else(|| url_channel_id(&b.url))?.to_string();
    Some(Q21 {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price,
        channel: b.channel,
        channel_id,
    })
}

/// q21: add channel id.
#[weir::job(name = "nexmark-q21", main = false)]
pub fn q21(env: &mut Env) {
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
    .flat_map(|e| e.into_bid().and_then(q21_map).into_iter())
    .name("channel-id")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

/// q22's result.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q22 {
    /// Auction.
    pub auction: u64,
    /// Bidder.
    pub bidder: u64,
    /// Price (cents).
    pub price: u64,
    /// Channel.
    pub channel: String,
    /// The URL's 4th `/`-separated part (`SPLIT_INDEX(url, '/', 3)`), if any.
    pub dir1: Option<String>,
    /// The 5th.
    pub dir2: Option<String>,
    /// The 6th.
    pub dir3: Option<String>,
}

/// q22: the bid with the first three directories of its URL.
pub fn q22_map(b: Bid) -> Q22 {
    let mut parts = b.url.split('/').skip(3).map(str::to_string);
    let (dir1, dir2, dir3) = (parts.next(), parts.next(), parts.next());
    Q22 {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price,
        channel: b.channel,
        dir1,
        dir2,
        dir3,
    }
}

/// q22: get URL directories.
#[weir::job(name = "nexmark-q22", main = false)]
pub fn q22(env: &mut Env) {
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
    .flat_map(|e| e.into_bid().map(q22_map).into_iter())
    .name("split-url")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q17: auction statistics per day.

/// q17's result: one auction's bids on one day (UTC).
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q17 {
    /// The auction.
    pub auction: u64,
    /// The day, `yyyy-MM-dd`.
    pub day: String,
    /// Bids.
    pub total_bids: u64,
    /// Bids under $100.
    pub rank1_bids: u64,
    /// Bids from $100 to under $10 000.
    pub rank2_bids: u64,
    /// Bids of $10 000 or more.
    pub rank3_bids: u64,
    /// Lowest price (cents).
    pub min_price: u64,
    /// Highest price.
    pub max_price: u64,
    /// Average price (integer division, as Flink's `AVG` of a `BIGINT`).
    pub avg_price: u64,
    /// Sum of the prices.
    pub sum_price: u64,
}

/// `yyyy-MM-dd` (UTC) of a time in ms since the Unix epoch.
pub fn utc_day(t: i64) -> String {
    // Days since 1970-01-01 to a civil date (proleptic Gregorian calendar).
    let z = t.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// q17's statistics of one auction on one day, incrementally.
pub struct DayStats;

impl Aggregator<Bid> for DayStats {
    /// (auction, a time of the day, the statistics).
    type Acc = (u64, i64, [u64; 7]);
    type Out = Q17;
    fn create_accumulator(&self) -> Self::Acc {
        (0, 0, [0, 0, 0, 0, u64::MAX, 0, 0])
    }
    fn add(&self, (_, _, s): Self::Acc, b: Bid) -> Self::Acc {
        let p = b.price;
        (
            b.auction,
            b.date_time,
            [
                s[0] + 1,
                s[1] + u64::from(p < 10_000),
                s[2] + u64::from((10_000..1_000_000).contains(&p)),
                s[3] + u64::from(p >= 1_000_000),
                s[4].min(p),
                s[5].max(p),
                s[6] + p,
            ],
        )
    }
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        let (x, y) = (a.2, b.2);
        let named = if x[0] > 0 { (a.0, a.1) } else { (b.0, b.1) };
        (
            named.0,
            named.1,
            [
                x[0] + y[0],
                x[1] + y[1],
                x[2] + y[2],
                x[3] + y[3],
                x[4].min(y[4]),
                x[5].max(y[5]),
                x[6] + y[6],
            ],
        )
    }
    fn result(&self, (auction, t, s): Self::Acc) -> Q17 {
        Q17 {
            auction,
            day: utc_day(t),
            total_bids: s[0],
            rank1_bids: s[1],
            rank2_bids: s[2],
            rank3_bids: s[3],
            min_price: s[4],
            max_price: s[5],
            avg_price: s[6].checked_div(s[0]).unwrap_or(0),
            sum_price: s[6],
        }
    }
}

/// q17: auction statistics per day. Flink's SQL is an updating `GROUP BY auction, day`;
/// weir computes the same groups as a 1-day tumbling window (UTC days), so each group is
/// emitted once, complete, when its day ends — the final table of Flink's changelog.
#[weir::job(name = "nexmark-q17", main = false)]
pub fn q17(env: &mut Env) {
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
    .window(Tumbling::of(Duration::from_secs(86_400)))
    .aggregate(DayStats)
    .name("auction-day-stats")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q18, q19: rank (updating).

/// The order of q18: the later bid wins; at the same time the higher price, then the rest
/// of the bid (so that a tie is broken the same way on every run).
pub fn q18_rank(b: &Bid) -> (i64, u64, &str, &str, &str) {
    (b.date_time, b.price, &b.channel, &b.url, &b.extra)
}

/// q18's state per (bidder, auction): the last bid.
pub struct LastBid {
    /// The last bid so far.
    pub last: ValueState<Bid>,
}

impl KeyedProcessFunction<(u64, u64), Bid> for LastBid {
    type Out = Change<Bid>;
    fn process_element(&mut self, b: Bid, ctx: &mut Context<'_, (u64, u64), Change<Bid>>) {
        match ctx.value(&self.last) {
            None => ctx.emit(Change::Insert(b.clone())),
            Some(old) if q18_rank(&b) > q18_rank(&old) => {
                ctx.emit(Change::UpdateBefore(old));
                ctx.emit(Change::UpdateAfter(b.clone()));
            }
            Some(_) => return,
        }
        ctx.update(&self.last, b);
    }
}

/// q18: find the last bid of every bidder on every auction (Flink: `ROW_NUMBER() OVER
/// (PARTITION BY bidder, auction ORDER BY dateTime DESC) = 1`). An updating result: the
/// changelog's final table holds one bid per (bidder, auction); ties at the same
/// millisecond are broken by [`q18_rank`].
#[weir::job(name = "nexmark-q18", main = false)]
pub fn q18(env: &mut Env) {
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
    .key_by(|b| (b.bidder, b.auction))
    .process(LastBid {
        last: ValueState::new("last-bid"),
    })
    .name("last-bid")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

/// How many bids q19 keeps per auction.
pub const Q19_TOP: usize = 10;

/// The order of q19 (smaller ranks first): the higher price, then the earlier bid, then
/// the lower bidder id, then the rest of the bid.
pub fn q19_rank(b: &Bid) -> (std::cmp::Reverse<u64>, i64, u64, &str, &str, &str) {
    (
        std::cmp::Reverse(b.price),
        b.date_time,
        b.bidder,
        &b.channel,
        &b.url,
        &b.extra,
    )
}

/// q19's state per auction: its best bids, best first.
pub struct TopBids {
    /// Up to [`Q19_TOP`] bids in [`q19_rank`] order.
    pub top: ValueState<Vec<Bid>>,
}

impl KeyedProcessFunction<u64, Bid> for TopBids {
    type Out = Change<Bid>;
    fn process_element(&mut self, b: Bid, ctx: &mut Context<'_, u64, Change<Bid>>) {
        let mut top = ctx.value(&self.top).unwrap_or_default();
        let at = top.partition_point(|x| q19_rank(x) < q19_rank(&b));
        if at >= Q19_TOP {
            return;
        }
        top.insert(at, b.clone());
        if top.len() > Q19_TOP {
            if let Some(out) = top.pop() {
                ctx.emit(Change::Delete(out));
            }
        }
        ctx.emit(Change::Insert(b));
        ctx.update(&self.top, top);
    }
}

/// q19: the 10 highest bids of every auction (Flink: `ROW_NUMBER() OVER (PARTITION BY
/// auction ORDER BY price DESC) <= 10`, without the rank column). An updating result: a
/// bid entering an auction's top 10 is inserted, the one it pushes out deleted; ties in
/// price are broken by [`q19_rank`].
#[weir::job(name = "nexmark-q19", main = false)]
pub fn q19(env: &mut Env) {
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
    .process(TopBids {
        top: ValueState::new("top-bids"),
    })
    .name("top-10")
    .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
    .name("out");
}

// ---------------------------------------------------------------------------------------
// q20: expand bids with their auction (incremental join).

/// q20's result: a bid with its auction's fields.
#[weir::record]
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q20 {
    /// Auction.
    pub auction: u64,
    /// Bidder.
    pub bidder: u64,
    /// Price (cents).
    pub price: u64,
    /// Channel.
    pub channel: String,
    /// URL.
    pub url: String,
    /// The bid's time.
    pub date_time: i64,
    /// The bid's padding.
    pub extra: String,
    /// Item name.
    pub item_name: String,
    /// Description.
    pub description: String,
    /// Initial bid.
    pub initial_bid: u64,
    /// Reserve.
    pub reserve: u64,
    /// The auction's time.
    pub auction_date_time: i64,
    /// Expiry.
    pub expires: i64,
    /// Seller.
    pub seller: u64,
    /// Category (10).
    pub category: u64,
    /// The auction's padding.
    pub auction_extra: String,
}

/// A bid joined with its auction.
pub fn q20_row(b: Bid, a: &Auction) -> Q20 {
    Q20 {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price,
        channel: b.channel,
        url: b.url,
        date_time: b.date_time,
        extra: b.extra,
        item_name: a.item_name.clone(),
        description: a.description.clone(),
        initial_bid: a.initial_bid,
        reserve: a.reserve,
        auction_date_time: a.date_time,
        expires: a.expires,
        seller: a.seller,
        category: a.category,
        auction_extra: a.extra.clone(),
    }
}

/// q20's join per auction id: the auction once seen (or that it is not in category 10),
/// the bids that came before it.
pub struct ExpandBids {
    /// The auction, if in category 10.
    pub auction: ValueState<Auction>,
    /// Set when the auction is in another category: its bids are dropped.
    pub other: ValueState<bool>,
    /// Bids of an auction not seen yet.
    pub waiting: ListState<Bid>,
}

impl ExpandBids {
    /// Fresh state descriptors.
    pub fn new() -> Self {
        ExpandBids {
            auction: ValueState::new("auction"),
            other: ValueState::new("other-category"),
            waiting: ListState::new("waiting-bids"),
        }
    }
}

impl Default for ExpandBids {
    fn default() -> Self {
        ExpandBids::new()
    }
}

impl KeyedCoProcessFunction<u64, Bid, Auction> for ExpandBids {
    type Out = Q20;

    fn process_element1(&mut self, b: Bid, ctx: &mut Context<'_, u64, Q20>) {
        if let Some(a) = ctx.value(&self.auction) {
            ctx.emit(q20_row(b, &a));
        } else if ctx.value(&self.other).is_none() {
            ctx.add(&self.waiting, b);
        }
    }

    fn process_element2(&mut self, a: Auction, ctx: &mut Context<'_, u64, Q20>) {
        let waiting = ctx.list(&self.waiting);
        ctx.clear_list(&self.waiting);
        if a.category == 10 {
            for b in waiting {
                ctx.emit(q20_row(b, &a));
            }
            ctx.update(&self.auction, a);
        } else {
            ctx.update(&self.other, true);
        }
    }
}

/// q20: expand bid — every bid on an auction of category 10, with the auction's fields
/// (a regular, non-windowed join).
#[weir::job(name = "nexmark-q20", main = false)]
pub fn q20(env: &mut Env) {
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
        .name("auctions");
    events
        .flat_map(|e| e.into_bid().into_iter())
        .name("bids")
        .key_by(|b| b.auction)
        .connect(auctions.key_by(|a| a.id))
        .process(ExpandBids::new())
        .name("auction-join")
        .sink(QuerySink::from_arg(env.arg_or("output", "discard")))
        .name("out");
}
