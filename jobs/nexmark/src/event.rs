//! Nexmark's three event types as weir records, converted from the `nexmark` crate's.
//!
//! Field semantics are the standard ones (Nexmark paper; Flink's nexmark suite): ids are
//! unique per type, prices in cents, `date_time` the event time in milliseconds since the
//! Unix epoch, `extra` padding that brings each event to its average size.

/// A new person (1 in 50 events).
#[weir::record]
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Person {
    /// Unique person id (from 1000).
    pub id: u64,
    /// Full name, e.g. `"vicky noris"`.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number: four groups of four digits.
    pub credit_card: String,
    /// One of ten US cities.
    pub city: String,
    /// One of six US states, lower case as the generator writes them (`az ca id or wa wy`).
    pub state: String,
    /// Event time (ms since the Unix epoch).
    pub date_time: i64,
    /// Padding.
    pub extra: String,
}

/// A new auction (3 in 50 events).
#[weir::record]
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Auction {
    /// Unique auction id (from 1000).
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Starting price in cents.
    pub initial_bid: u64,
    /// Reserve price in cents.
    pub reserve: u64,
    /// Event time (ms since the Unix epoch).
    pub date_time: i64,
    /// When the auction closes (ms since the Unix epoch).
    pub expires: i64,
    /// The selling person's id.
    pub seller: u64,
    /// Category id (10 to 14).
    pub category: u64,
    /// Padding.
    pub extra: String,
}

/// A bid on an auction (46 in 50 events).
#[weir::record]
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The bidding person's id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Channel, e.g. `"Google"` or `"channel-4321"`.
    pub channel: String,
    /// URL the bid came from.
    pub url: String,
    /// Event time (ms since the Unix epoch).
    pub date_time: i64,
    /// Padding.
    pub extra: String,
}

/// One Nexmark event.
#[weir::record]
#[derive(PartialEq, Eq)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event time (ms since the Unix epoch).
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The person, if this is one.
    pub fn into_person(self) -> Option<Person> {
        match self {
            Event::Person(p) => Some(p),
            _ => None,
        }
    }

    /// The auction, if this is one.
    pub fn into_auction(self) -> Option<Auction> {
        match self {
            Event::Auction(a) => Some(a),
            _ => None,
        }
    }

    /// The bid, if this is one.
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }
}

fn id(v: usize) -> u64 {
    v as u64
}

fn millis(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl From<nexmark::event::Event> for Event {
    fn from(e: nexmark::event::Event) -> Self {
        match e {
            nexmark::event::Event::Person(p) => Event::Person(Person {
                id: id(p.id),
                name: p.name,
                email_address: p.email_address,
                credit_card: p.credit_card,
                city: p.city,
                state: p.state,
                date_time: millis(p.date_time),
                extra: p.extra,
            }),
            nexmark::event::Event::Auction(a) => Event::Auction(Auction {
                id: id(a.id),
                item_name: a.item_name,
                description: a.description,
                initial_bid: id(a.initial_bid),
                reserve: id(a.reserve),
                date_time: millis(a.date_time),
                expires: millis(a.expires),
                seller: id(a.seller),
                category: id(a.category),
                extra: a.extra,
            }),
            nexmark::event::Event::Bid(b) => Event::Bid(Bid {
                auction: id(b.auction),
                bidder: id(b.bidder),
                price: id(b.price),
                channel: b.channel,
                url: b.url,
                date_time: millis(b.date_time),
                extra: b.extra,
            }),
        }
    }
}
