//! A long-lived connection's Ruby side: the handler's callbacks run on the Ruby workers, one
//! at a time and in order per connection (the engine's [`Mailbox`]), while different
//! connections run in parallel.
//!
//! The engine reports [`Events`] from its IO threads; each is posted to the connection's
//! mailbox, and the post that finds the mailbox idle queues one bridge job, which runs every
//! event waiting. The Ruby values a connection needs — the `Iodine::Connection` object passed
//! to every callback, the handler and the Rack `env` — are kept in the marked block store
//! (one Array per connection) until `on_close` has run; Rust holds only its id.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use iodine_engine::link::{Events, Kind, Link, Outgoing, Protocol};
use iodine_engine::mailbox::Mailbox;
use iodine_engine::pubsub::Subscriber;
use iodine_engine::sse;
use magnus::value::{LazyId, ReprValue};
use magnus::{Error, RArray, Ruby, Value};

use crate::blocks;
use crate::bridge::{self, Recurring};
use crate::errors;
use crate::subscriptions::Scope;

static ON_OPEN: LazyId = LazyId::new("on_open");
static ON_MESSAGE: LazyId = LazyId::new("on_message");
static ON_DRAINED: LazyId = LazyId::new("on_drained");
static ON_SHUTDOWN: LazyId = LazyId::new("on_shutdown");
static ON_CLOSE: LazyId = LazyId::new("on_close");
static PING: LazyId = LazyId::new("ping");
static CALL: LazyId = LazyId::new("call");

/// Which callbacks the handler has (looked up with `respond_to?` when it is attached).
mod has {
    pub const OPEN: u8 = 1;
    pub const MESSAGE: u8 = 2;
    pub const DRAINED: u8 = 4;
    pub const SHUTDOWN: u8 = 8;
    pub const CLOSE: u8 = 16;
    pub const PING: u8 = 32;
}

/// Indexes of the kept Array.
const OBJECT: isize = 0;
const HANDLER: isize = 1;
const ENV: isize = 2;

/// What happened, for the handler.
enum Event {
    Open,
    Message(Bytes, Kind),
    Drained,
    Shutdown,
    Close,
    /// Let go of the Ruby values (when `on_close` was cut short by a jump).
    Release,
    /// A raw connection was quiet for its timeout: `ping(client)`.
    Timeout,
    /// A raw connection's peer finished sending: close once what came before was handled.
    PeerClosed,
    /// A message for a subscription with a block: `block.call(channel, message)`.
    PubSub {
        block: u64,
        channel: Bytes,
        message: Bytes,
    },
}

/// One connection's state on the binding side.
pub struct Conn {
    link: Arc<Link>,
    mailbox: Mailbox<Event>,
    me: Weak<Conn>,
    /// Id of `[connection object, handler, env]` in the block store; 0 once released.
    kept: AtomicU64,
    callbacks: AtomicU8,
    /// `on_close` started: writes are refused and nothing else runs.
    closing: AtomicBool,
    /// Its subscriptions (without a block: straight to the socket).
    subscriptions: Scope,
    /// A raw listener's factory (id of the kept object, owned by the listener; 0: none):
    /// called when `on_open` is handled, its answer is the handler.
    factory: u64,
    /// The fork generation it was made in (`gvl::fork_generation`).
    generation: u64,
}

impl Conn {
    /// A connection on `link`; its Ruby values come with [`Conn::attach`].
    pub fn new(link: Arc<Link>) -> Arc<Conn> {
        Self::with_factory(link, 0)
    }

    /// A raw listener's connection: when `on_open` is handled, the kept `factory` is called
    /// and its answer becomes the handler (nil, false or true close the connection).
    pub fn with_factory(link: Arc<Link>, factory: u64) -> Arc<Conn> {
        Arc::new_cyclic(|me| Conn {
            link,
            mailbox: Mailbox::new(),
            me: me.clone(),
            kept: AtomicU64::new(0),
            callbacks: AtomicU8::new(0),
            closing: AtomicBool::new(false),
            subscriptions: Scope::default(),
            factory,
            generation: crate::gvl::fork_generation(),
        })
    }

    /// Keeps the connection's Ruby values until `on_close` ran; reads the handler's callbacks.
    pub fn attach(
        &self,
        ruby: &Ruby,
        object: Value,
        handler: Value,
        env: Value,
    ) -> Result<(), Error> {
        let kept = ruby.ary_new_from_values(&[object, handler, env]);
        self.callbacks
            .store(callbacks_of(handler)?, Ordering::Release);
        let id = blocks::keep(ruby, kept.as_value())?;
        self.kept.store(id, Ordering::Release);
        Ok(())
    }

    /// The link the application writes to.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Whether the connection still takes writes (false from `on_close` on).
    pub fn is_open(&self) -> bool {
        !self.closing.load(Ordering::Acquire) && self.link.is_open()
    }

    /// Whether its Ruby values are still kept (until `on_close` returned).
    pub fn is_attached(&self) -> bool {
        self.kept.load(Ordering::Acquire) != 0
    }

    /// Whether it belongs to this process (not a copy a fork made of its parent's).
    pub fn is_ours(&self) -> bool {
        self.generation == crate::gvl::fork_generation()
    }

    fn kept(&self, ruby: &Ruby) -> Option<RArray> {
        match self.kept.load(Ordering::Acquire) {
            0 => None,
            id => blocks::get(ruby, id).and_then(RArray::from_value),
        }
    }

    /// The handler (None once the connection is released).
    pub fn handler(&self, ruby: &Ruby) -> Option<Value> {
        // jump-safe: `entry` of our own Array (rb_ary_entry): no Ruby code, no interrupt check.
        self.kept(ruby).and_then(|k| k.entry::<Value>(HANDLER).ok())
    }

    /// The Rack env of the upgrade request (None once released).
    pub fn env(&self, ruby: &Ruby) -> Option<Value> {
        self.kept(ruby)
            // jump-safe: `entry` of our own Array (rb_ary_entry): no Ruby code, no interrupt check.
            .and_then(|k| k.entry::<Value>(ENV).ok())
            .filter(|v| !v.is_nil())
    }

    /// `handler=`: the old handler's `on_close`, the swap, the new one's `on_open`, run here
    /// (the caller is on a Ruby thread). Subscriptions stay.
    pub fn swap_handler(&self, ruby: &Ruby, new: Value) -> Result<(), Error> {
        let Some(kept) = self.kept(ruby) else {
            return Ok(());
        };
        let object: Value = kept.entry(OBJECT)?;
        let old: Value = kept.entry(HANDLER)?;
        if old.equal(new)? {
            return Ok(());
        }
        if self.has(has::CLOSE) {
            call(ruby, old, &ON_CLOSE, (object,))?;
        }
        kept.store(HANDLER, new)?;
        self.callbacks.store(callbacks_of(new)?, Ordering::Release);
        if self.has(has::OPEN) {
            call(ruby, new, &ON_OPEN, (object,))?;
        }
        Ok(())
    }

    fn has(&self, callback: u8) -> bool {
        self.callbacks.load(Ordering::Acquire) & callback != 0
    }

    fn post(&self, event: Event) {
        if self.mailbox.post(event) {
            if let Some(me) = self.me.upgrade() {
                bridge::push_recurring(me);
            }
        }
    }

    /// A raw listener's connection opens: the factory makes its handler.
    fn adopt(&self, ruby: &Ruby) -> Result<(), Error> {
        let (Some(factory), Some(me)) = (blocks::get(ruby, self.factory), self.me.upgrade()) else {
            self.link.close(None);
            return Ok(());
        };
        let handler = match factory.funcall::<_, _, Value>(LazyId::get_inner_with(&CALL, ruby), ())
        {
            Ok(handler) => handler,
            Err(e) => {
                self.link.close(None);
                return errors::contain(ruby, e);
            }
        };
        // nil, false and true are no handler: the connection closes (no callbacks).
        if !handler.to_bool() || handler.is_kind_of(ruby.class_true_class()) {
            self.link.close(None);
            return Ok(());
        }
        let object = ruby.obj_wrap(crate::ruby_api::connection::Connection::new(me));
        if let Err(e) = self.attach(ruby, object.as_value(), handler, ruby.qnil().as_value()) {
            self.link.close(None);
            return errors::contain(ruby, e);
        }
        if self.has(has::OPEN) {
            call(ruby, handler, &ON_OPEN, (object,))?;
        }
        Ok(())
    }

    /// Runs one event's callback. Only a jump comes back as an error.
    fn dispatch(&self, ruby: &Ruby, event: Event) -> Result<(), Error> {
        if self.factory != 0 && matches!(event, Event::Open) {
            return self.adopt(ruby);
        }
        if matches!(event, Event::PeerClosed) {
            self.link.close(None); // after the messages before it were handled
            return Ok(());
        }
        let Some(kept) = self.kept(ruby) else {
            return Ok(()); // released: the connection is over
        };
        let object: Value = kept.entry(OBJECT)?;
        let handler: Value = kept.entry(HANDLER)?;
        match event {
            Event::Open if self.has(has::OPEN) => call(ruby, handler, &ON_OPEN, (object,)),
            Event::Message(data, kind) if self.has(has::MESSAGE) => {
                let data = match kind {
                    Kind::Binary => ruby.str_from_slice(&data),
                    Kind::Ascii => crate::gvl::checked_utf8_str(&data, true),
                    Kind::Text => crate::gvl::checked_utf8_str(&data, false),
                };
                call(ruby, handler, &ON_MESSAGE, (object, data))
            }
            Event::Drained if self.has(has::DRAINED) => call(ruby, handler, &ON_DRAINED, (object,)),
            Event::Timeout if self.has(has::PING) => call(ruby, handler, &PING, (object,)),
            Event::Shutdown => {
                let ran = if self.has(has::SHUTDOWN) {
                    call(ruby, handler, &ON_SHUTDOWN, (object,))
                } else {
                    Ok(())
                };
                // Goodbye after what on_shutdown wrote (WebSocket: Close 1001).
                self.link.close(Some(1001));
                ran
            }
            Event::Close => {
                self.closing.store(true, Ordering::Release);
                let ran = if self.has(has::CLOSE) {
                    call(ruby, handler, &ON_CLOSE, (object,))
                } else {
                    Ok(())
                };
                // jump-safe: `ran` is returned as it is just below; this only picks who releases.
                if ran.is_ok() {
                    self.release(ruby);
                } else {
                    // A jump: no Ruby may run now; the next runner releases.
                    self.post(Event::Release);
                }
                ran
            }
            Event::Release => {
                self.release(ruby);
                Ok(())
            }
            Event::PubSub {
                block,
                channel,
                message,
            } if !self.closing.load(Ordering::Acquire) => {
                blocks::call_with_message(ruby, block, &channel, &message)
            }
            _ => Ok(()),
        }
    }

    /// After `on_close`: subscriptions cancelled, Ruby values let go.
    fn release(&self, ruby: &Ruby) {
        self.subscriptions.clear(ruby);
        let id = self.kept.swap(0, Ordering::AcqRel);
        if id != 0 {
            blocks::forget(ruby, id);
        }
    }

    /// A connection-bound subscription (replacing one of the same name). Without `block` the
    /// messages go straight to the socket from the IO thread, never entering Ruby. False
    /// when that can't be (closed; binary on an event stream).
    pub fn subscribe(
        &self,
        ruby: &Ruby,
        name: Bytes,
        pattern: bool,
        binary: bool,
        block: Option<Value>,
    ) -> Result<bool, Error> {
        if !self.is_open() || (binary && self.link.protocol() == Protocol::Sse) {
            return Ok(false);
        }
        let (subscriber, kept): (Arc<dyn Subscriber>, Option<u64>) = match block {
            Some(block) => {
                let id = blocks::keep(ruby, block)?;
                let to = ToHandler {
                    conn: self.me.clone(),
                    block: id,
                };
                (Arc::new(to), Some(id))
            }
            None => (
                Arc::new(ToSocket {
                    link: Arc::downgrade(&self.link),
                    binary,
                }),
                None,
            ),
        };
        self.subscriptions
            .subscribe(ruby, name, pattern, subscriber, kept);
        Ok(true)
    }

    /// Ends the subscription `name`; true if there was one.
    pub fn unsubscribe(&self, ruby: &Ruby, name: &[u8]) -> bool {
        self.subscriptions.unsubscribe(ruby, name)
    }

    /// Writes `message` (see [`Link::write`]); false when closed.
    pub fn write(&self, message: Outgoing) -> bool {
        // The link refuses writes once closing; `closing` covers `on_close` itself.
        // jump-safe: the link's write (Rust): a closed link, not a Ruby error.
        !self.closing.load(Ordering::Acquire) && self.link.write(message).is_ok()
    }
}

impl Events for Conn {
    fn on_open(&self) {
        self.post(Event::Open);
    }

    fn on_message(&self, data: Bytes, kind: Kind) {
        self.post(Event::Message(data, kind));
    }

    /// Each message is reported handled by the runner (`Link::handled`): a connection whose
    /// handler is slower than its client stops being read (bounded memory, fair workers).
    fn reports_handled(&self) -> bool {
        true
    }

    fn on_drained(&self) {
        // Before a raw listener's factory ran, the callbacks are not known yet: the first
        // on_drained (right after on_open) waits in the mailbox for the handler.
        let adopting = self.factory != 0 && self.kept.load(Ordering::Acquire) == 0;
        if adopting || self.has(has::DRAINED) {
            self.post(Event::Drained);
        }
    }

    fn on_shutdown(&self) {
        self.post(Event::Shutdown);
    }

    fn on_close(&self) {
        self.post(Event::Close);
    }

    fn on_timeout(&self) {
        // Before the factory ran there is no handler yet: nothing to ping.
        if self.has(has::PING) {
            self.post(Event::Timeout);
        }
    }

    fn on_peer_closed(&self) -> bool {
        self.post(Event::PeerClosed);
        true
    }
}

/// Events one turn of a connection's runner handles at most before it goes behind the
/// other work queued for the Ruby workers (a client that floods can't keep a worker).
const TURN_EVENTS: usize = 32;

/// Time one turn may take before the connection goes behind the other work (checked
/// between events: one slow callback still runs whole).
const TURN_TIME: std::time::Duration = std::time::Duration::from_millis(2);

/// A connection's turn on a worker: it runs its waiting events (queued by reference: a
/// connection scheduled once per batch of events, with no allocation).
impl Recurring for Conn {
    fn run(self: Arc<Self>, ruby: &Ruby) -> Result<(), Error> {
        let conn = self;
        let began = std::time::Instant::now();
        let mut handled = 0;
        loop {
            if handled == TURN_EVENTS || (handled > 0 && began.elapsed() >= TURN_TIME) {
                // The turn is over. The mailbox is still ours (it was not seen empty): the
                // connection, queued again behind everything else, takes the rest in order
                // (during a stop too: the workers empty the queue before they leave).
                bridge::requeue(conn);
                return Ok(());
            }
            let Some(event) = conn.mailbox.next() else {
                return Ok(());
            };
            handled += 1;
            let received = match &event {
                Event::Message(data, _) => Some(data.len()),
                _ => None,
            };
            let ran = conn.dispatch(ruby, event);
            if let Some(len) = received {
                // Handled (or dropped): the session may read again.
                conn.link.handled(len);
            }
            if let Err(jump) = ran {
                // The mailbox is still ours: the connection, queued again, takes the rest.
                bridge::requeue(conn);
                return Err(jump);
            }
        }
    }
}

/// A subscription without a block: each message is written to the socket as it is.
struct ToSocket {
    link: Weak<Link>,
    binary: bool,
}

impl Subscriber for ToSocket {
    fn deliver(&self, _channel: &Bytes, message: &Bytes) {
        let Some(link) = self.link.upgrade() else {
            return;
        };
        let out = match link.protocol() {
            Protocol::WebSocket if self.binary || !is_utf8(message) => {
                Outgoing::Binary(message.clone())
            }
            Protocol::WebSocket => Outgoing::Text(message.clone()),
            Protocol::Sse => match sse_event(message, None, None, None) {
                Some(event) => Outgoing::Raw(event),
                None => return,
            },
            Protocol::Raw => Outgoing::Raw(message.clone()),
        };
        // jump-safe: the link's write (Rust): a closed link drops the message, as a gone subscriber does.
        let _ = link.write(out);
    }
}

thread_local! {
    /// The last message checked by [`is_utf8`] and the answer: one message published to a
    /// thousand subscribers is checked once. The message is held (not just its address), so
    /// its memory can't be reused by another message while it is remembered.
    static CHECKED: std::cell::RefCell<Option<(Bytes, bool)>> = const { std::cell::RefCell::new(None) };
}

/// Whether a published message can go out as a text frame (valid UTF-8; the session sends
/// text as it is, without checking it again).
fn is_utf8(message: &Bytes) -> bool {
    CHECKED.with_borrow_mut(|checked| {
        if let Some((seen, valid)) = checked {
            if seen.as_ptr() == message.as_ptr() && seen.len() == message.len() {
                return *valid;
            }
        }
        // jump-safe: a UTF-8 check of Rust bytes, no Ruby call.
        let valid = std::str::from_utf8(message).is_ok();
        *checked = Some((message.clone(), valid));
        valid
    })
}

/// A subscription with a block: the block runs in the connection's turn.
struct ToHandler {
    conn: Weak<Conn>,
    block: u64,
}

impl Subscriber for ToHandler {
    fn deliver(&self, channel: &Bytes, message: &Bytes) {
        if let Some(conn) = self.conn.upgrade() {
            conn.post(Event::PubSub {
                block: self.block,
                channel: channel.clone(),
                message: message.clone(),
            });
        }
    }
}

/// An SSE event on the wire (None when there is nothing to send).
pub fn sse_event(
    data: &[u8],
    event: Option<&[u8]>,
    id: Option<&[u8]>,
    retry: Option<u64>,
) -> Option<Bytes> {
    sse::Event {
        data,
        event,
        id,
        retry,
    }
    .encode()
}

/// The callbacks `handler` answers.
fn callbacks_of(handler: Value) -> Result<u8, Error> {
    let mut found = 0;
    for (name, bit) in [
        ("on_open", has::OPEN),
        ("on_message", has::MESSAGE),
        ("on_drained", has::DRAINED),
        ("on_shutdown", has::SHUTDOWN),
        ("on_close", has::CLOSE),
        ("ping", has::PING),
    ] {
        if handler.respond_to(name, false)? {
            found |= bit;
        }
    }
    Ok(found)
}

/// `handler.<name>(*args)`: exceptions are logged (the connection goes on), jumps returned.
fn call(
    ruby: &Ruby,
    handler: Value,
    name: &LazyId,
    args: impl magnus::ArgList,
) -> Result<(), Error> {
    handler
        .funcall::<_, _, Value>(LazyId::get_inner_with(name, ruby), args)
        .map(|_| ())
        .or_else(|e| errors::contain(ruby, e))
}
