//! The DSL's method names, in one place.

/// `env.source(...)`
pub const SOURCE: &str = "source";
/// `.map(f)`
pub const MAP: &str = "map";
/// `.filter(f)`
pub const FILTER: &str = "filter";
/// `.flat_map(f)`
pub const FLAT_MAP: &str = "flat_map";
/// `.key_by(f)`
pub const KEY_BY: &str = "key_by";
/// `.reduce(f)`
pub const REDUCE: &str = "reduce";
/// `.union(streams...)`
pub const UNION: &str = "union";
/// `.sink(s)`
pub const SINK: &str = "sink";
/// `.parallelism(n)`
pub const PARALLELISM: &str = "parallelism";
/// `.name("...")`
pub const NAME: &str = "name";
/// `.disable_chaining()`
pub const DISABLE_CHAINING: &str = "disable_chaining";
/// `.start_new_chain()`
pub const START_NEW_CHAIN: &str = "start_new_chain";
/// `.chain_with_previous()`
pub const CHAIN_WITH_PREVIOUS: &str = "chain_with_previous";
/// `.slot_sharing_group("...")`
pub const SLOT_SHARING_GROUP: &str = "slot_sharing_group";
/// `.watermarks(strategy, |r| ts)`
pub const WATERMARKS: &str = "watermarks";
/// `.window(assigner)`
pub const WINDOW: &str = "window";
/// `.window_all(assigner)`
pub const WINDOW_ALL: &str = "window_all";
/// `.allowed_lateness(duration)` on a windowed stream
pub const ALLOWED_LATENESS: &str = "allowed_lateness";
/// `.aggregate(aggregator)` on a windowed stream
pub const AGGREGATE: &str = "aggregate";
/// `.process(f)` on a windowed stream
pub const PROCESS: &str = "process";
/// `.late_data()` on a window's result
pub const LATE_DATA: &str = "late_data";
/// `.side_output(TAG)` on a process function's result
pub const SIDE_OUTPUT: &str = "side_output";
/// `a.connect(b)`
pub const CONNECT: &str = "connect";
/// `.broadcast()`
pub const BROADCAST: &str = "broadcast";
/// `a.join(b)`
pub const JOIN: &str = "join";
/// `a.interval_join(b)`
pub const INTERVAL_JOIN: &str = "interval_join";
/// `.between(lower_ms, upper_ms)` on an interval join
pub const BETWEEN: &str = "between";
/// `.apply(f)` on a windowed join
pub const APPLY: &str = "apply";
/// `.updating_aggregate(agg)` on a keyed changelog stream
pub const UPDATING_AGGREGATE: &str = "updating_aggregate";
/// `a.updating_join(b)`
pub const UPDATING_JOIN: &str = "updating_join";
/// `env.arg("name")`
pub const ARG: &str = "arg";
/// `env.arg_or("name", default)`
pub const ARG_OR: &str = "arg_or";

/// Stream operators.
pub const OPERATORS: &[&str] = &[
    SOURCE,
    MAP,
    FILTER,
    FLAT_MAP,
    KEY_BY,
    REDUCE,
    UNION,
    SINK,
    WATERMARKS,
    WINDOW,
    WINDOW_ALL,
    AGGREGATE,
    PROCESS,
    LATE_DATA,
    SIDE_OUTPUT,
    CONNECT,
    BROADCAST,
    JOIN,
    INTERVAL_JOIN,
    UPDATING_AGGREGATE,
    UPDATING_JOIN,
];
/// Operator settings.
pub const SETTINGS: &[&str] = &[
    PARALLELISM,
    NAME,
    DISABLE_CHAINING,
    START_NEW_CHAIN,
    CHAIN_WITH_PREVIOUS,
    SLOT_SHARING_GROUP,
];
/// Everything a chain may call, for "did you mean".
pub const ALL_METHODS: &[&str] = &[
    SOURCE,
    MAP,
    FILTER,
    FLAT_MAP,
    KEY_BY,
    REDUCE,
    UNION,
    SINK,
    WATERMARKS,
    WINDOW,
    WINDOW_ALL,
    ALLOWED_LATENESS,
    AGGREGATE,
    PROCESS,
    LATE_DATA,
    SIDE_OUTPUT,
    CONNECT,
    BROADCAST,
    JOIN,
    INTERVAL_JOIN,
    UPDATING_AGGREGATE,
    UPDATING_JOIN,
    BETWEEN,
    APPLY,
    PARALLELISM,
    NAME,
    DISABLE_CHAINING,
    START_NEW_CHAIN,
    CHAIN_WITH_PREVIOUS,
    SLOT_SHARING_GROUP,
];
