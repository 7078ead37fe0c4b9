//! Pub/sub inside one process: a [`Broker`] from channel names (exact, or Redis-style
//! [`glob`] patterns) to [`Subscriber`]s. Delivery is a call on the publisher's thread; a
//! subscriber that runs app code hands the message on (the binding queues it for a Ruby
//! worker), one that writes to a socket does so from the IO threads.

mod broker;
pub mod glob;

pub use broker::{broker, Broker, Subscriber, SubscriptionId, Watcher};
