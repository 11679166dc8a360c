//! loopgate's domain: the signal ledger and its storage, knowing nothing of chat
//! platforms, mail or HTTP.

pub mod actions;
pub mod clock;
pub mod heartbeat;
pub mod intelligence;
pub mod learning;
pub mod memory;
pub mod model;
pub mod outbox;
pub mod pairing;
pub mod reflect;
pub mod request;
pub mod schedule;
pub mod signal;
pub mod store;
pub mod suggestion;
pub mod tasks;
pub mod workflow;

pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::{Memory, MemoryCandidate, MemoryKind, Origin, RememberOutcome};
pub use signal::{
    Actor, Attachment, Conversation, Family, NewSignal, Signal, SignalId, SignalKind, Source, Trust, Urgency,
};
pub use store::{
    Backend, Durability, IngestOutcome, MemoryHit, MemoryQuery, Retention, SignalQuery, Store, StoreConfig, StoreError,
    SweepReport,
};

#[cfg(feature = "testing")]
pub mod testing;
