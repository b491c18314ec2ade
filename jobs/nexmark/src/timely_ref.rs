//! q1 and q5 written by hand on timely, for `nexmark bench` to compare the generated jobs
//! with what an expert writes directly: same generator, same split of events over the
//! workers (offset and step), same watermarks (4 s bounded out-of-orderness), results
//! discarded (q1: counted; q5: collected, they are few).
//!
//! The source carries the watermark in its capability: it holds it at `max_seen − 4 s`, a
//! lower bound on the event time of everything it will still send, so an operator's input
//! frontier `f` means watermark `f − 1`.
//!
//! q5 is written the way one would by hand, which weir's surface cannot say today: each
//! worker counts bids per auction in 2 s panes, and when a window closes it sends only its
//! own *local* hottest auctions to worker 0, which keeps the global ones (weir sends every
//! auction's count to a `window_all`).

use crate::event::{Bid, Event};
use crate::queries::{q1_map, Q5, Q5_SIZE_MS, Q5_SLIDE_MS};
use crate::source::GeneratorConfig;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use weir::runtime::timely;
use weir::runtime::timely::dataflow::channels::pact::{Exchange, Pipeline};
use weir::runtime::timely::dataflow::operators::generic::operator::source;
use weir::runtime::timely::dataflow::operators::generic::Operator;
use weir::runtime::timely::dataflow::{Scope, Stream};

/// Events a source hands over per batch.
const BATCH: usize = 1024;
/// Bounded out-of-orderness (ms).
const BOUND_MS: i64 = 4_000;

type Vb<T> = timely::container::CapacityContainerBuilder<Vec<T>>;

/// The bids of this worker's share, with the watermark in the capability.
fn bids<'s>(scope: Scope<'s, u64>, cfg: &GeneratorConfig) -> Stream<'s, u64, Vec<Bid>> {
    let (index, peers) = (scope.index() as u64, scope.peers() as u64);
    let total = cfg.events.unwrap_or(u64::MAX);
    let share = if total <= index {
        0
    } else {
        (total - 1 - index) / peers + 1
    };
    let mut events = cfg.iter(index, peers).take(share as usize);
    source::<_, Vb<Bid>, _, _>(scope, "Nexmark", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut max_seen = i64::MIN;
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let mut session = output.session(c);
            let mut done = false;
            for _ in 0..4 {
                let mut batch = Vec::with_capacity(BATCH);
                let mut n = 0;
                for e in events.by_ref().take(BATCH) {
                    n += 1;
                    max_seen = max_seen.max(e.date_time());
                    if let Event::Bid(b) = e {
                        batch.push(b);
                    }
                }
                session.give_container(&mut batch);
                if n < BATCH {
                    done = true;
                    break;
                }
            }
            drop(session);
            if done {
                cap = None;
            } else {
                let low = (max_seen - BOUND_MS).max(0) as u64;
                if low > *c.time() {
                    c.downgrade(&low);
                }
                activator.activate();
            }
        }
    })
}

/// Hand-written q1 on `workers` threads; the number of results.
pub fn q1(cfg: &GeneratorConfig, workers: usize) -> u64 {
    let cfg = cfg.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let count = Rc::new(RefCell::new(0u64));
        let c = Rc::clone(&count);
        let cfg = cfg.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            bids(scope, &cfg).sink(Pipeline, "Count", move |(input, _)| {
                let mut n = c.borrow_mut();
                input.for_each(|_, data| {
                    for b in data.drain(..) {
                        std::hint::black_box(q1_map(b));
                        *n += 1;
                    }
                });
            });
        });
        while worker.step_or_park(None) {}
        let n = *count.borrow();
        n
    });
    match guards {
        Ok(g) => g.join().into_iter().filter_map(Result::ok).sum(),
        Err(_) => 0,
    }
}

/// Hand-written q5 on `workers` threads; its results.
pub fn q5(cfg: &GeneratorConfig, workers: usize) -> Vec<Q5> {
    let cfg = cfg.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let results = Rc::new(RefCell::new(Vec::new()));
        let r = Rc::clone(&results);
        let cfg = cfg.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let local = bids(scope, &cfg).unary_frontier::<Vb<(i64, u64, u64)>, _, _, _>(
                Exchange::new(|b: &Bid| b.auction),
                "LocalHottest",
                |cap, _| {
                    let mut cap = Some(cap);
                    // Pane start → auction → bids.
                    let mut panes: BTreeMap<i64, HashMap<u64, u64>> = BTreeMap::new();
                    // Windows up to this end have fired.
                    let mut fired_until = i64::MIN;
                    move |(input, frontier), output| {
                        input.for_each(|_, data| {
                            for b in data.drain(..) {
                                let pane = b.date_time - b.date_time.rem_euclid(Q5_SLIDE_MS);
                                *panes.entry(pane).or_default().entry(b.auction).or_default() += 1;
                            }
                        });
                        let Some(c) = cap.as_mut() else { return };
                        let (wm, next) = match frontier.frontier().first().copied() {
                            Some(f) if f > *c.time() => (f as i64 - 1, Some(f)),
                            Some(_) => return,
                            None => (i64::MAX, None),
                        };
                        let mut session = output.session(c);
                        // Fire every window [end − 10 s, end) with end − 1 ≤ wm that holds a pane.
                        while let Some(&first) = panes.keys().next() {
                            let end = (first + Q5_SLIDE_MS).max(fired_until + Q5_SLIDE_MS);
                            if end - 1 > wm {
                                break;
                            }
                            let mut counts: HashMap<u64, u64> = HashMap::new();
                            for (_, p) in panes.range(end - Q5_SIZE_MS..end) {
                                for (a, n) in p {
                                    *counts.entry(*a).or_default() += n;
                                }
                            }
                            let max = counts.values().copied().max().unwrap_or(0);
                            for (a, n) in counts {
                                if n == max {
                                    session.give((end, a, n));
                                }
                            }
                            fired_until = end;
                            // A pane is in no later window once the window it starts fired.
                            let expired = end - Q5_SIZE_MS;
                            while panes.keys().next().is_some_and(|&p| p <= expired) {
                                panes.pop_first();
                            }
                        }
                        drop(session);
                        match next {
                            Some(f) => c.downgrade(&f),
                            None => cap = None,
                        }
                    }
                },
            );
            local
                .unary_frontier::<Vb<Q5>, _, _, _>(
                    Exchange::new(|_: &(i64, u64, u64)| 0),
                    "GlobalHottest",
                    |cap, _| {
                        let mut cap = Some(cap);
                        let mut windows: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
                        move |(input, frontier), output| {
                            input.for_each(|_, data| {
                                for (end, a, n) in data.drain(..) {
                                    let w = windows.entry(end).or_default();
                                    if n > w.0 {
                                        *w = (n, vec![a]);
                                    } else if n == w.0 {
                                        w.1.push(a);
                                    }
                                }
                            });
                            let Some(c) = cap.as_mut() else { return };
                            let (wm, next) = match frontier.frontier().first().copied() {
                                Some(f) if f > *c.time() => (f as i64 - 1, Some(f)),
                                Some(_) => return,
                                None => (i64::MAX, None),
                            };
                            let mut session = output.session(c);
                            while let Some(e) = windows.first_entry() {
                                if *e.key() - 1 > wm {
                                    break;
                                }
                                let (end, (num, auctions)) = e.remove_entry();
                                for auction in auctions {
                                    session.give(Q5 {
                                        auction,
                                        num,
                                        window_start: end - Q5_SIZE_MS,
                                        window_end: end,
                                    });
                                }
                            }
                            drop(session);
                            match next {
                                Some(f) => c.downgrade(&f),
                                None => cap = None,
                            }
                        }
                    },
                )
                .sink(Pipeline, "Collect", move |(input, _)| {
                    input.for_each(|_, data| r.borrow_mut().extend(data.drain(..)));
                });
        });
        while worker.step_or_park(None) {}
        let out = results.borrow().clone();
        out
    });
    match guards {
        Ok(g) => g
            .join()
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .collect(),
        Err(_) => Vec::new(),
    }
}
