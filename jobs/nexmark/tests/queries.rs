//! Correctness of every Nexmark query: the `nexmark` binary runs the query in 2 processes ×
//! 2 workers (over TCP on 127.0.0.1) on a fixed, deterministic set of 10^5 events spanning
//! 1000 s of event time (100 events per second: 100 tumbling 10 s windows, 500 sliding
//! ones), and its output must equal a reference computed here by straightforward code over
//! the same events.
//!
//! The events are the generator's (`GeneratorConfig::events`, which a unit test in the
//! crate proves equal to what the source instances generate together); the references
//! share nothing else with the jobs. Every source instance generates its events in time
//! order, so with the standard 4 s out-of-orderness bound no event is late: every window
//! fires exactly once with all its events, on any cluster shape.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;
use weir_nexmark::queries::{
    FinalPrice, Q1, Q11, Q12, Q14, Q17, Q2, Q20, Q21, Q22, Q3, Q4, Q5, Q8,
};
use weir_nexmark::{Auction, Bid, Event, GeneratorConfig, Person};
use weir_runtime::changelog::{Change, Materialized};
use weir_runtime::serde::de::DeserializeOwned;
use weir_runtime::testing::{assert_all_succeeded, read_parts, JobBinary, Shape, TempDir};

/// Events in every run.
const EVENTS: u64 = 100_000;
/// Events per second of event time.
const EVENT_RATE: u64 = 100;

fn config() -> GeneratorConfig {
    config_at(EVENT_RATE)
}

fn config_at(rate: u64) -> GeneratorConfig {
    GeneratorConfig {
        events: Some(EVENTS),
        event_rate: rate,
        ..GeneratorConfig::default()
    }
}

fn events() -> Vec<Event> {
    config().events(EVENTS)
}

fn bids_at(rate: u64) -> Vec<Bid> {
    config_at(rate)
        .events(EVENTS)
        .into_iter()
        .filter_map(Event::into_bid)
        .collect()
}

/// The final table of a changelog.
fn materialize<T: Eq + std::hash::Hash + Clone + Ord>(
    query: &str,
    changes: Vec<Change<T>>,
) -> Vec<T> {
    let mut table = Materialized::new();
    for c in changes {
        table.apply(c);
    }
    table
        .rows()
        .unwrap_or_else(|e| panic!("{query}: the changelog does not apply: {e}"))
}

fn bids() -> Vec<Bid> {
    events().into_iter().filter_map(Event::into_bid).collect()
}

fn persons() -> Vec<Person> {
    events()
        .into_iter()
        .filter_map(Event::into_person)
        .collect()
}

fn auctions() -> Vec<Auction> {
    events()
        .into_iter()
        .filter_map(Event::into_auction)
        .collect()
}

/// The binary, with room for a debug build on a loaded 2-core machine (a query takes 2 to
/// 20 s there).
fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_nexmark")).with_timeout(Duration::from_secs(240))
}

/// Run `query` in 2 processes × 2 workers on the test's events; its output records.
fn run_query<T: DeserializeOwned>(query: &str) -> Vec<T> {
    run_query_with(query, EVENT_RATE, &[])
}

/// [`run_query`] at another event rate, with more job arguments.
fn run_query_with<T: DeserializeOwned>(query: &str, rate: u64, more: &[&str]) -> Vec<T> {
    let dir = TempDir::new(&format!("nexmark-{query}"));
    let out = dir.join("out");
    let args: Vec<String> = [
        format!("query={query}"),
        format!("events={EVENTS}"),
        format!("event_rate={rate}"),
        format!("output={}", out.display()),
    ]
    .into_iter()
    .chain(more.iter().map(|a| a.to_string()))
    .flat_map(|a| ["--arg".to_string(), a])
    .collect();
    let runs = job().run_shape(Shape::procs(2, 2), dir.path(), &args);
    assert_all_succeeded(&runs);
    for o in &runs {
        assert!(
            !o.stderr.contains("later than its allowed lateness"),
            "{query}: a window dropped late events, though none is late:\n{o}"
        );
    }
    records(query, &out)
}

fn records<T: DeserializeOwned>(query: &str, out: &Path) -> Vec<T> {
    read_parts(out)
        .into_values()
        .flatten()
        .map(|v: Value| {
            serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("{query}: unexpected record {v}: {e}"))
        })
        .collect()
}

/// Sorted, and a readable difference when they differ.
fn assert_same<T: Ord + std::fmt::Debug + Clone>(query: &str, mut got: Vec<T>, mut want: Vec<T>) {
    got.sort();
    want.sort();
    if got != want {
        let g: BTreeSet<&T> = got.iter().collect();
        let w: BTreeSet<&T> = want.iter().collect();
        let mut lines: Vec<String> = w
            .difference(&g)
            .take(10)
            .map(|r| format!("missing    {r:?}"))
            .collect();
        lines.extend(
            g.difference(&w)
                .take(10)
                .map(|r| format!("unexpected {r:?}")),
        );
        panic!(
            "{query}: {} records, the reference has {}:\n{}",
            got.len(),
            want.len(),
            lines.join("\n")
        );
    }
}

fn json_roundtrip(x: f64) -> f64 {
    serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap()
}

fn window_start(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

// ---------------------------------------------------------------------------------------

#[test]
fn the_test_events_span_many_windows_in_nexmark_proportions() {
    let es = events();
    assert_eq!(es.len() as u64, EVENTS);
    let span = es.last().unwrap().date_time() - es[0].date_time();
    assert_eq!(span, 999_990, "1000 s of event time");
    assert_eq!(persons().len(), 2_000);
    assert_eq!(auctions().len(), 6_000);
    assert_eq!(bids().len(), 92_000);
}

#[test]
fn q0_passes_every_bid_through() {
    let got: Vec<Bid> = run_query("q0");
    assert_same("q0", got, bids());
}

#[test]
fn q1_converts_every_price_to_euros() {
    let key = |r: &Q1| (r.date_time, r.auction, r.bidder, r.extra.clone());
    let mut got: Vec<Q1> = run_query("q1");
    let mut want: Vec<Q1> = bids()
        .into_iter()
        .map(|b| Q1 {
            auction: b.auction,
            bidder: b.bidder,
            // Through JSON as the job's output goes: serde_json's default float parser
            // is not exact to the last bit, but it is deterministic.
            price: json_roundtrip(b.price as f64 * 0.908),
            date_time: b.date_time,
            extra: b.extra,
        })
        .collect();
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn q2_selects_bids_on_every_123rd_auction() {
    let got: Vec<Q2> = run_query("q2");
    let want: Vec<Q2> = bids()
        .into_iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| Q2 {
            auction: b.auction,
            price: b.price,
        })
        .collect();
    assert!(want.len() >= 10, "only {} bids selected", want.len());
    assert_same("q2", got, want);
}

#[test]
fn q3_joins_sellers_in_or_id_ca_with_their_category_10_auctions() {
    let got: Vec<Q3> = run_query("q3");
    let people: HashMap<u64, Person> = persons()
        .into_iter()
        .filter(|p| ["or", "id", "ca"].contains(&p.state.as_str()))
        .map(|p| (p.id, p))
        .collect();
    let want: Vec<Q3> = auctions()
        .into_iter()
        .filter(|a| a.category == 10)
        .filter_map(|a| {
            people.get(&a.seller).map(|p| Q3 {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                id: a.id,
            })
        })
        .collect();
    assert!(want.len() >= 100, "only {} matches", want.len());
    // Some auctions come before their seller (ids lead the persons generated so far).
    assert_same("q3", got, want);
}

/// q5 by plain Rust: every window [s, s + 10 s) with s a multiple of 2 s, its auctions with
/// the most bids.
fn q5_reference() -> Vec<Q5> {
    let mut counts: BTreeMap<i64, BTreeMap<u64, u64>> = BTreeMap::new();
    for b in bids() {
        let last = window_start(b.date_time, 2_000);
        let mut s = last;
        while s > b.date_time - 10_000 {
            *counts.entry(s).or_default().entry(b.auction).or_default() += 1;
            s -= 2_000;
        }
    }
    let mut want = Vec::new();
    for (s, per_auction) in counts {
        let max = per_auction.values().copied().max().unwrap();
        for (auction, n) in per_auction {
            if n == max {
                want.push(Q5 {
                    auction,
                    num: n,
                    window_start: s,
                    window_end: s + 10_000,
                });
            }
        }
    }
    assert!(want.len() >= 500, "{} results", want.len());
    want
}

#[test]
fn q5_reports_the_hottest_auctions_of_every_sliding_window() {
    let got: Vec<Q5> = run_query("q5");
    assert_same("q5", got, q5_reference());
}

/// The hand-written timely programs that `nexmark bench` compares with compute the same.
#[test]
fn hand_written_timely_q1_and_q5_compute_the_same() {
    assert_eq!(
        weir_nexmark::timely_ref::q1(&config(), 2),
        bids().len() as u64
    );
    assert_same(
        "timely q5",
        weir_nexmark::timely_ref::q5(&config(), 2),
        q5_reference(),
    );
}

#[test]
fn q7_reports_the_highest_bids_of_every_tumbling_window() {
    let got: Vec<Bid> = run_query("q7");
    let mut by_window: BTreeMap<i64, Vec<Bid>> = BTreeMap::new();
    for b in bids() {
        by_window
            .entry(window_start(b.date_time, 10_000))
            .or_default()
            .push(b);
    }
    let mut want = Vec::new();
    for (_, bs) in by_window {
        let max = bs.iter().map(|b| b.price).max().unwrap();
        want.extend(bs.into_iter().filter(|b| b.price == max));
    }
    assert!(want.len() >= 100, "{} results", want.len());
    assert_same("q7", got, want);
}

#[test]
fn q8_reports_persons_who_sold_in_the_window_they_joined() {
    let got: Vec<Q8> = run_query("q8");
    let sellers: BTreeSet<(u64, i64)> = auctions()
        .into_iter()
        .map(|a| (a.seller, window_start(a.date_time, 10_000)))
        .collect();
    let want: Vec<Q8> = persons()
        .into_iter()
        .filter(|p| sellers.contains(&(p.id, window_start(p.date_time, 10_000))))
        .map(|p| Q8 {
            id: p.id,
            name: p.name,
            window_start: window_start(p.date_time, 10_000),
        })
        .collect();
    assert!(want.len() >= 10, "{} results", want.len());
    assert_same("q8", got, want);
}

#[test]
fn q11_reports_every_bidder_session() {
    let got: Vec<Q11> = run_query("q11");
    let mut times: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for b in bids() {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut want = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let mut start = ts[0];
        let mut last = ts[0];
        let mut n = 0;
        for t in ts {
            // Session windows [t, t + gap) that overlap or touch merge.
            if t - last > 10_000 {
                want.push(Q11 {
                    bidder,
                    bid_count: n,
                    starttime: start,
                    endtime: last + 10_000,
                });
                start = t;
                n = 0;
            }
            last = t;
            n += 1;
        }
        want.push(Q11 {
            bidder,
            bid_count: n,
            starttime: start,
            endtime: last + 10_000,
        });
    }
    assert!(want.len() >= 1000, "{} sessions", want.len());
    assert_same("q11", got, want);
}

#[test]
fn q4_averages_the_final_price_of_each_category() {
    let changes: Vec<Change<Q4>> = run_query("q4");
    let got = materialize("q4", changes);
    let auctions: HashMap<u64, Auction> = auctions().into_iter().map(|a| (a.id, a)).collect();
    let mut final_price: BTreeMap<u64, FinalPrice> = BTreeMap::new();
    for b in bids() {
        let Some(a) = auctions.get(&b.auction) else {
            continue;
        };
        if b.date_time < a.date_time || b.date_time > a.expires {
            continue;
        }
        let e = final_price.entry(a.id).or_insert(FinalPrice {
            category: a.category,
            auction: a.id,
            price: 0,
        });
        e.price = e.price.max(b.price);
    }
    let mut per_category: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for f in final_price.values() {
        let e = per_category.entry(f.category).or_default();
        e.0 += f.price;
        e.1 += 1;
    }
    let want: Vec<Q4> = per_category
        .into_iter()
        .map(|(category, (sum, n))| Q4 {
            category,
            avg: sum / n,
        })
        .collect();
    assert_eq!(want.len(), 5, "{want:?}");
    assert_same("q4", got, want);
}

#[test]
fn q12_counts_every_bid_once_in_well_formed_processing_time_windows() {
    let started = now_ms();
    // Paced to 8000 events/s: 12.5 s of wall clock, so at least two 10 s windows.
    let got: Vec<Q12> = run_query_with("q12", EVENT_RATE, &["pace=8000"]);
    let ended = now_ms();
    let mut want: BTreeMap<u64, u64> = BTreeMap::new();
    for b in bids() {
        *want.entry(b.bidder).or_default() += 1;
    }
    let mut counted: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in &got {
        assert_eq!(r.window_end - r.window_start, 10_000, "{r:?}");
        assert_eq!(r.window_start.rem_euclid(10_000), 0, "{r:?}");
        assert!(
            r.window_end > started && r.window_start <= ended,
            "window outside the run ({started}..{ended}): {r:?}"
        );
        assert!(r.bid_count > 0, "{r:?}");
        assert!(
            seen.insert((r.bidder, r.window_start)),
            "window reported twice: {r:?}"
        );
        *counted.entry(r.bidder).or_default() += r.bid_count;
    }
    assert_eq!(counted, want, "every bid counted exactly once");
    let windows: BTreeSet<i64> = got.iter().map(|r| r.window_start).collect();
    assert!(windows.len() >= 2, "{windows:?}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn q14_converts_filters_and_classifies_bids_over_a_whole_day() {
    // One event per second: 10^5 events span 27.8 hours, every hour of the day.
    let key = |r: &Q14| (r.date_time, r.auction, r.bidder, r.extra.clone());
    let mut got: Vec<Q14> = run_query_with("q14", 1, &[]);
    let mut want: Vec<Q14> = bids_at(1)
        .into_iter()
        .filter_map(|b| {
            let price = b.price as f64 * 0.908;
            if price <= 1_000_000.0 || price >= 50_000_000.0 {
                return None;
            }
            let hour = (b.date_time / 1000 / 3600) % 24;
            let kind = match hour {
                8..=18 => "dayTime",
                0..=6 | 20..=23 => "nightTime",
                _ => "otherTime",
            };
            Some(Q14 {
                auction: b.auction,
                bidder: b.bidder,
                price: json_roundtrip(price),
                bid_time_type: kind.to_string(),
                date_time: b.date_time,
                c_counts: b.extra.matches('c').count() as u64,
                extra: b.extra,
            })
        })
        .collect();
    let kinds: BTreeSet<&str> = want.iter().map(|r| r.bid_time_type.as_str()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn q17_summarises_each_auction_per_day() {
    let got: Vec<Q17> = run_query_with("q17", 1, &[]);
    let mut groups: BTreeMap<(u64, i64), Vec<u64>> = BTreeMap::new();
    for b in bids_at(1) {
        groups
            .entry((b.auction, b.date_time / 86_400_000))
            .or_default()
            .push(b.price);
    }
    let want: Vec<Q17> = groups
        .into_iter()
        .map(|((auction, day), ps)| {
            let sum: u64 = ps.iter().sum();
            Q17 {
                auction,
                // The test's events start on 2024-01-01 and last 28 hours.
                day: match day - 1_704_067_200_000 / 86_400_000 {
                    0 => "2024-01-01".to_string(),
                    1 => "2024-01-02".to_string(),
                    d => panic!("day {d}"),
                },
                total_bids: ps.len() as u64,
                rank1_bids: ps.iter().filter(|&&p| p < 10_000).count() as u64,
                rank2_bids: ps
                    .iter()
                    .filter(|&&p| (10_000..1_000_000).contains(&p))
                    .count() as u64,
                rank3_bids: ps.iter().filter(|&&p| p >= 1_000_000).count() as u64,
                min_price: *ps.iter().min().unwrap(),
                max_price: *ps.iter().max().unwrap(),
                avg_price: sum / ps.len() as u64,
                sum_price: sum,
            }
        })
        .collect();
    let days: BTreeSet<&str> = want.iter().map(|r| r.day.as_str()).collect();
    assert_eq!(days.len(), 2);
    assert_same("q17", got, want);
}

/// q18's and q19's tie-breaks, written out here: the later bid, then the higher price,
/// then channel, url, extra.
fn later(a: &Bid, b: &Bid) -> bool {
    (a.date_time, a.price, &a.channel, &a.url, &a.extra)
        > (b.date_time, b.price, &b.channel, &b.url, &b.extra)
}

#[test]
fn q18_keeps_the_last_bid_of_every_bidder_on_every_auction() {
    let changes: Vec<Change<Bid>> = run_query("q18");
    assert!(
        changes.iter().any(|c| matches!(c, Change::UpdateBefore(_))),
        "some bidders bid twice on an auction"
    );
    let got = materialize("q18", changes);
    let mut last: HashMap<(u64, u64), Bid> = HashMap::new();
    for b in bids() {
        match last.get(&(b.bidder, b.auction)) {
            Some(old) if !later(&b, old) => {}
            _ => {
                last.insert((b.bidder, b.auction), b);
            }
        }
    }
    assert_same("q18", got, last.into_values().collect());
}

#[test]
fn q19_keeps_the_ten_highest_bids_of_every_auction() {
    let changes: Vec<Change<Bid>> = run_query("q19");
    assert!(changes.iter().any(|c| matches!(c, Change::Delete(_))));
    let got = materialize("q19", changes);
    let mut per_auction: BTreeMap<u64, Vec<Bid>> = BTreeMap::new();
    for b in bids() {
        per_auction.entry(b.auction).or_default().push(b);
    }
    let mut want = Vec::new();
    for (_, mut bs) in per_auction {
        bs.sort_by(|a, b| {
            b.price
                .cmp(&a.price)
                .then(a.date_time.cmp(&b.date_time))
                .then(a.bidder.cmp(&b.bidder))
                .then((&a.channel, &a.url, &a.extra).cmp(&(&b.channel, &b.url, &b.extra)))
        });
        bs.truncate(10);
        want.extend(bs);
    }
    assert_same("q19", got, want);
}

#[test]
fn q20_expands_bids_on_category_10_auctions() {
    let got: Vec<Q20> = run_query("q20");
    let auctions: HashMap<u64, Auction> = auctions()
        .into_iter()
        .filter(|a| a.category == 10)
        .map(|a| (a.id, a))
        .collect();
    let want: Vec<Q20> = bids()
        .into_iter()
        .filter_map(|b| {
            let a = auctions.get(&b.auction)?;
            Some(Q20 {
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
            })
        })
        .collect();
    assert!(want.len() >= 1000, "{}", want.len());
    assert_same("q20", got, want);
}

#[test]
fn q21_adds_a_channel_id() {
    let got: Vec<Q21> = run_query("q21");
    let want: Vec<Q21> = bids()
        .into_iter()
        .filter_map(|b| {
            let id = match b.channel.to_lowercase().as_str() {
                "apple" => "0".to_string(),
                "google" => "1".to_string(),
                "facebook" => "2".to_string(),
                "baidu" => "3".to_string(),
                _ => b
                    .url
                    .split('&')
                    .find_map(|part| part.strip_prefix("channel_id="))?
                    .to_string(),
            };
            Some(Q21 {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
                channel_id: id,
            })
        })
        .collect();
    let from_url = want.iter().filter(|r| r.channel_id.len() > 1).count();
    assert!(from_url >= 1000 && from_url < want.len(), "{from_url}");
    assert!(want.len() < bids().len(), "some bids have no channel id");
    assert_same("q21", got, want);
}

#[test]
fn q22_splits_the_url_into_directories() {
    let got: Vec<Q22> = run_query("q22");
    let want: Vec<Q22> = bids()
        .into_iter()
        .map(|b| {
            let parts: Vec<&str> = b.url.split('/').collect();
            let dir = |i: usize| parts.get(i).map(|s| s.to_string());
            Q22 {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                dir1: dir(3),
                dir2: dir(4),
                dir3: dir(5),
                channel: b.channel,
            }
        })
        .collect();
    assert!(want.iter().all(|r| r.dir3.is_some()));
    assert_same("q22", got, want);
}
