//! The master's hub: the sockets to the workers, polled by the master's main thread.
//!
//! [`Hub::poll`] waits (without any thread of its own) until a worker sends frames, a worker
//! goes away, someone wakes it ([`HubWaker`], safe from any thread and from a signal's
//! unblocking function), or the timeout passes. Messages for the master's own subscribers
//! are delivered through the broker as they are routed; the caller then runs whatever that
//! queued for Ruby.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::router::{PeerId, Router, MASTER};
use super::wire::{Decoder, Frame, Reach, PEER_BACKLOG};
use super::Uplink;
use crate::pubsub::broker;
use crate::redis::Reply;

/// How many times a turn reads every worker again while publishes keep arriving.
const SWEEPS: usize = 4;

struct Peer {
    id: PeerId,
    /// The Redis engine whose Redis process this is (None: a worker).
    engine: Option<u8>,
    stream: UnixStream,
    decoder: Decoder,
    out: VecDeque<Bytes>,
    /// Bytes of `out[0]` already written.
    offset: usize,
    queued: usize,
    warned: bool,
}

/// A publish read from a worker: who sent it, its reach, channel and message.
type Publish = (PeerId, Reach, Bytes, Bytes);

/// What the master (Ruby, on any thread) sends, waiting for the next poll.
enum Outgoing {
    /// A publish to route.
    Publish(Reach, Bytes, Bytes),
    /// An `EnginePublish` or a `Command` (numbered by [`pending`]) for a Redis process.
    ToEngine(Frame),
    /// The cluster-wide interest, for a Redis engine.
    Interest(u8, Bytes, bool, bool),
}

type Outbox = Mutex<Vec<Outgoing>>;

/// Frames kept for a Redis process that is not connected (starting, or being replaced).
const ENGINE_WAITING: usize = 8192;

/// A Redis engine, as the master sees it.
#[derive(Default)]
struct Engine {
    /// The cluster-wide interest its engine hooks reported (sent to each new Redis process).
    interest: HashSet<(Bytes, bool)>,
    /// Its Redis process, when connected.
    peer: Option<PeerId>,
    /// Frames for it while it has none.
    waiting: VecDeque<Frame>,
}

/// Who asked for a command the master passed on: a worker (and its number for it), or
/// the master itself (MASTER and the [`pending`] number).
#[derive(Clone, Copy)]
struct Request {
    from: PeerId,
    id: u64,
    engine: u8,
}

/// The master's end of every worker's socket pair.
pub struct Hub {
    peers: Vec<Peer>,
    router: Router,
    next: PeerId,
    wake_read: UnixStream,
    waker: HubWaker,
    outbox: Arc<Outbox>,
    /// Publishes read in the last sweep of a turn that never went quiet: routed next turn.
    held: Vec<Publish>,
    /// Changes of the cluster-wide interest (name, pattern, subscribed): the first
    /// subscriber of a channel anywhere in the cluster, or its last one, for the root's
    /// engines ([`Hub::take_interest_changes`]).
    changes: Vec<(Bytes, bool, bool)>,
    /// The Redis engines, by number.
    engines: HashMap<u8, Engine>,
    /// Commands passed on to a Redis process, by the master's number for them.
    requests: HashMap<u64, Request>,
    next_request: u64,
    /// Runs after each worker's read in a turn's first pass (tests stage races with it).
    #[cfg(test)]
    after_read: Option<Box<dyn FnMut(usize)>>,
}

/// Wakes a [`Hub::poll`] from any thread.
#[derive(Clone)]
pub struct HubWaker {
    write: Arc<UnixStream>,
}

impl HubWaker {
    /// Makes the current (or next) poll return.
    pub fn wake(&self) {
        let _ = (&*self.write).write(b"!");
    }
}

/// What a poll saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Workers whose socket closed (or broke): gone from the routing table.
    pub gone: Vec<PeerId>,
    /// Messages delivered to the master's own subscribers.
    pub delivered: usize,
}

impl Hub {
    /// A hub with no workers.
    pub fn new() -> io::Result<Hub> {
        let (wake_read, wake_write) = UnixStream::pair()?;
        wake_read.set_nonblocking(true)?;
        wake_write.set_nonblocking(true)?;
        Ok(Hub {
            peers: Vec::new(),
            router: Router::new(),
            changes: Vec::new(),
            next: 1,
            wake_read,
            waker: HubWaker {
                write: Arc::new(wake_write),
            },
            outbox: Arc::default(),
            held: Vec::new(),
            engines: HashMap::new(),
            requests: HashMap::new(),
            next_request: 1,
            #[cfg(test)]
            after_read: None,
        })
    }

    /// A new socket pair for a worker about to be forked: the master's end is kept here, the
    /// other is returned for the child (the master closes its copy after the fork).
    pub fn pair(&mut self) -> io::Result<(PeerId, UnixStream)> {
        let (id, theirs) = self.add_peer(None)?;
        self.router.add(id);
        Ok((id, theirs))
    }

    /// A new socket pair for the Redis process of engine `engine` about to be forked (it
    /// replaces the previous one): it is told the engine's interest first, then what waited.
    pub fn pair_engine(&mut self, engine: u8) -> io::Result<(PeerId, UnixStream)> {
        let (id, theirs) = self.add_peer(Some(engine))?;
        let state = self.engines.entry(engine).or_default();
        state.peer = Some(id);
        let mut frames: Vec<Frame> = state
            .interest
            .iter()
            .map(|(name, pattern)| Frame::Subscribe {
                name: name.clone(),
                pattern: *pattern,
            })
            .collect();
        frames.extend(state.waiting.drain(..));
        if let Some(peer) = self.peers.iter_mut().find(|p| p.id == id) {
            for frame in frames {
                send(peer, frame.to_bytes());
            }
        }
        Ok((id, theirs))
    }

    fn add_peer(&mut self, engine: Option<u8>) -> io::Result<(PeerId, UnixStream)> {
        let (mine, theirs) = UnixStream::pair()?;
        mine.set_nonblocking(true)?;
        let id = self.next;
        self.next += 1;
        self.peers.push(Peer {
            id,
            engine,
            stream: mine,
            decoder: Decoder::new(),
            out: VecDeque::new(),
            offset: 0,
            queued: 0,
            warned: false,
        });
        Ok((id, theirs))
    }

    /// Every descriptor the hub holds (a forked worker closes its copies).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.wake_read.as_raw_fd(), self.waker.write.as_raw_fd()];
        fds.extend(self.peers.iter().map(|p| p.stream.as_raw_fd()));
        fds
    }

    /// The hub's waker.
    pub fn waker(&self) -> HubWaker {
        self.waker.clone()
    }

    /// How publishes made in the master reach the cluster (set it as the process uplink).
    pub fn uplink(&self) -> Arc<dyn Uplink> {
        Arc::new(MasterUplink {
            outbox: self.outbox.clone(),
            waker: self.waker.clone(),
        })
    }

    /// Workers connected.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no worker is connected.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every channel and pattern some process of the cluster subscribes to.
    pub fn names(&self) -> Vec<(Bytes, bool)> {
        self.router.names()
    }

    /// The master's own subscribers for `name` began (`on`) or ended: counted with the
    /// workers' for the cluster-wide interest.
    pub fn local_interest(&mut self, name: Bytes, pattern: bool, on: bool) {
        if let Some(now) = self.router.interest(MASTER, name.clone(), pattern, on) {
            self.changes.push((name, pattern, now));
        }
    }

    /// The cluster-wide interest changes since the last call, in order.
    pub fn take_interest_changes(&mut self) -> Vec<(Bytes, bool, bool)> {
        std::mem::take(&mut self.changes)
    }

    /// Waits up to `timeout` (None: until something happens) for frames, departures or a
    /// wake-up; routes what came.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<Polled> {
        let mut polled = Polled::default();
        self.route_outbox(&mut polled);
        let timeout = if self.held.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let ready: Vec<(bool, bool, bool)> = {
            let mut fds = Vec::with_capacity(self.peers.len() + 1);
            fds.push(PollFd::new(&self.wake_read, PollFlags::IN));
            for p in &self.peers {
                let mut flags = PollFlags::IN;
                if !p.out.is_empty() {
                    flags |= PollFlags::OUT;
                }
                fds.push(PollFd::from_borrowed_fd(p.stream.as_fd(), flags));
            }
            let timespec = timeout.map(|t| Timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: t.subsec_nanos() as _,
            });
            match poll(&mut fds, timespec.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(polled),
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|f| {
                    let r = f.revents();
                    (
                        r.intersects(PollFlags::IN),
                        r.intersects(PollFlags::OUT),
                        r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
                    )
                })
                .collect()
        };
        if ready[0].0 {
            let mut sink = [0u8; 256];
            while matches!((&self.wake_read).read(&mut sink), Ok(n) if n > 0) {}
        }
        let mut broken = Vec::new();
        // Subscriptions are applied as they are read, publishes only routed once every worker
        // has been read again after them. A worker subscribes (and says so) before its client
        // can hear about it, so a publish that client then causes elsewhere was written after
        // the subscription: reading every worker once more after reading the publish is
        // sure to find that subscription, even if the subscriber's socket was read (empty)
        // just before.
        let mut publishes = std::mem::take(&mut self.held);
        let mut fresh = Vec::new();
        for (i, (_, writable, hangup)) in ready.into_iter().skip(1).enumerate() {
            match self.read_peer(i, &mut fresh) {
                Ok(true) if !hangup => {}
                Ok(_) | Err(_) => broken.push(i),
            }
            if writable && flush(&mut self.peers[i]).is_err() {
                broken.push(i);
            }
            #[cfg(test)]
            if let Some(hook) = self.after_read.as_mut() {
                hook(i);
            }
        }
        for _ in 0..SWEEPS {
            if fresh.is_empty() {
                break;
            }
            publishes.append(&mut fresh);
            self.sweep(&mut fresh, &mut broken);
        }
        // Still arriving after a few sweeps (a flood): the last ones wait for the next turn,
        // which then does not block.
        self.held = fresh;
        for (from, reach, channel, message) in publishes {
            self.route(Some(from), reach, channel, message, &mut polled);
        }
        self.route_outbox(&mut polled);
        broken.sort_unstable();
        broken.dedup();
        for i in broken.into_iter().rev() {
            let peer = self.peers.remove(i);
            if let Some(engine) = peer.engine {
                self.engine_gone(engine, peer.id);
                polled.gone.push(peer.id);
                continue;
            }
            self.requests.retain(|_, r| r.from != peer.id);
            let ended = self.router.remove(peer.id);
            self.changes.extend(
                ended
                    .into_iter()
                    .map(|(name, pattern)| (name, pattern, false)),
            );
            polled.gone.push(peer.id);
        }
        Ok(polled)
    }

    /// Reads every worker once more; those whose socket closed are added to `broken`.
    fn sweep(&mut self, publishes: &mut Vec<Publish>, broken: &mut Vec<usize>) {
        for i in 0..self.peers.len() {
            if !matches!(self.read_peer(i, publishes), Ok(true)) {
                broken.push(i);
            }
        }
    }

    /// Reads what peer `i` sent: its interests are applied, its publishes collected for
    /// routing; false when its socket closed.
    fn read_peer(&mut self, i: usize, publishes: &mut Vec<Publish>) -> io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        let mut open = true;
        loop {
            match (&self.peers[i].stream).read(&mut chunk) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => self.peers[i].decoder.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let from = self.peers[i].id;
        loop {
            let frame = match self.peers[i].decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    crate::error!(
                        "cluster: a worker sent a broken frame ({}); dropping it",
                        e.0
                    );
                    return Ok(false);
                }
            };
            match frame {
                Frame::Subscribe { name, pattern } => {
                    if let Some(now) = self.router.interest(from, name.clone(), pattern, true) {
                        self.changes.push((name, pattern, now));
                    }
                }
                Frame::Unsubscribe { name, pattern } => {
                    if let Some(now) = self.router.interest(from, name.clone(), pattern, false) {
                        self.changes.push((name, pattern, now));
                    }
                }
                Frame::Publish {
                    reach,
                    channel,
                    message,
                } => publishes.push((from, reach, channel, message)),
                Frame::Message {
                    pattern,
                    channel,
                    message,
                } => self.route_message(pattern, channel, message),
                Frame::Reply { id, reply } => self.route_reply(id, reply),
                Frame::EnginePublish { engine, .. } => self.forward(engine, frame),
                Frame::Command { engine, id, args } => {
                    self.request(Request { from, id, engine }, args);
                }
            }
        }
        Ok(open)
    }

    /// Passes a command on to its engine's Redis process, numbered by the master.
    fn request(&mut self, request: Request, args: Bytes) {
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(id, request);
        self.forward(
            request.engine,
            Frame::Command {
                engine: request.engine,
                id,
                args,
            },
        );
    }

    /// Sends `frame` to the Redis process of `engine`, or keeps it until there is one.
    fn forward(&mut self, engine: u8, frame: Frame) {
        let state = self.engines.entry(engine).or_default();
        if let Some(peer) = state
            .peer
            .and_then(|id| self.peers.iter_mut().find(|p| p.id == id))
        {
            send(peer, frame.to_bytes());
            return;
        }
        if state.waiting.len() < ENGINE_WAITING {
            state.waiting.push_back(frame);
            return;
        }
        crate::warning!(
            "Redis: {ENGINE_WAITING} requests wait for the Redis process; dropping some"
        );
        if let Frame::Command { id, .. } = frame {
            self.route_reply(
                id,
                Reply::failure("ERR iodine: too many commands wait for the Redis process")
                    .to_bytes(),
            );
        }
    }

    /// The Redis process of `engine` is gone: the commands it was answering get errors.
    fn engine_gone(&mut self, engine: u8, peer: PeerId) {
        if let Some(state) = self.engines.get_mut(&engine) {
            if state.peer == Some(peer) {
                state.peer = None;
            }
        }
        let lost: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.engine == engine)
            .map(|(id, _)| *id)
            .collect();
        let why = Reply::failure("ERR iodine: the Redis process ended before replying").to_bytes();
        for id in lost {
            self.route_reply(id, why.clone());
        }
    }

    /// A message from Redis: to the workers subscribed to what it matched, and here.
    fn route_message(&mut self, pattern: Option<Bytes>, channel: Bytes, message: Bytes) {
        let peers = self.router.route_message(pattern.as_deref(), &channel);
        if !peers.is_empty() {
            let frame = Frame::Message {
                pattern: pattern.clone(),
                channel: channel.clone(),
                message: message.clone(),
            }
            .to_bytes();
            for peer in self.peers.iter_mut().filter(|p| peers.contains(&p.id)) {
                send(peer, frame.clone());
            }
        }
        broker().deliver_from_redis(pattern.as_ref(), &channel, &message);
    }

    /// A reply from a Redis process: to whoever asked.
    fn route_reply(&mut self, id: u64, reply: Bytes) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        if request.from == MASTER {
            let reply = crate::redis::resp::decode(&reply).unwrap_or_else(|e| {
                Reply::failure(format!("ERR iodine: a broken reply ({})", e.0))
            });
            crate::redis::pending::complete(request.id, reply);
            return;
        }
        if let Some(peer) = self.peers.iter_mut().find(|p| p.id == request.from) {
            send(
                peer,
                Frame::Reply {
                    id: request.id,
                    reply,
                }
                .to_bytes(),
            );
        }
    }

    fn route_outbox(&mut self, polled: &mut Polled) {
        let queued = std::mem::take(&mut *self.outbox.lock());
        for outgoing in queued {
            match outgoing {
                Outgoing::Publish(reach, channel, message) => {
                    self.route(None, reach, channel, message, polled)
                }
                Outgoing::ToEngine(Frame::Command { engine, id, args }) => {
                    self.request(
                        Request {
                            from: MASTER,
                            id,
                            engine,
                        },
                        args,
                    );
                }
                Outgoing::ToEngine(frame) => {
                    if let Frame::EnginePublish { engine, .. } = frame {
                        self.forward(engine, frame);
                    }
                }
                Outgoing::Interest(engine, name, pattern, on) => {
                    let state = self.engines.entry(engine).or_default();
                    let key = (name.clone(), pattern);
                    let changed = match on {
                        true => state.interest.insert(key),
                        false => state.interest.remove(&key),
                    };
                    if changed && state.peer.is_some() {
                        let frame = match on {
                            true => Frame::Subscribe { name, pattern },
                            false => Frame::Unsubscribe { name, pattern },
                        };
                        self.forward(engine, frame);
                    }
                }
            }
        }
    }

    fn route(
        &mut self,
        from: Option<PeerId>,
        reach: Reach,
        channel: Bytes,
        message: Bytes,
        polled: &mut Polled,
    ) {
        let route = self.router.route(from, reach, &channel);
        if !route.peers.is_empty() {
            // Workers get it as a plain publish (they deliver in their process only).
            let frame = Frame::Publish {
                reach: Reach::Cluster,
                channel: channel.clone(),
                message: message.clone(),
            }
            .to_bytes();
            for peer in self
                .peers
                .iter_mut()
                .filter(|p| route.peers.contains(&p.id))
            {
                send(peer, frame.clone());
            }
        }
        if route.local {
            polled.delivered += broker().publish(&channel, &message);
        }
    }
}

/// Queues `frame` for `peer` and writes what the socket takes now.
fn send(peer: &mut Peer, frame: Bytes) {
    if peer.queued + frame.len() > PEER_BACKLOG {
        if !peer.warned {
            crate::warning!(
                "cluster: a worker is not reading its messages ({PEER_BACKLOG} bytes wait); \
                 dropping some"
            );
            peer.warned = true;
        }
        return;
    }
    peer.queued += frame.len();
    peer.out.push_back(frame);
    let _ = flush(peer);
}

/// Writes queued bytes until the socket is full.
fn flush(peer: &mut Peer) -> io::Result<()> {
    while let Some(front) = peer.out.front() {
        match (&peer.stream).write(&front[peer.offset..]) {
            Ok(n) => {
                peer.offset += n;
                if peer.offset == front.len() {
                    peer.queued -= front.len();
                    peer.out.pop_front();
                    peer.offset = 0;
                    peer.warned = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Publishes made in the master wait in the outbox for the hub's next poll.
struct MasterUplink {
    outbox: Arc<Outbox>,
    waker: HubWaker,
}

impl Uplink for MasterUplink {
    fn publish(&self, reach: Reach, channel: Bytes, message: Bytes) {
        self.outbox
            .lock()
            .push(Outgoing::Publish(reach, channel, message));
        self.waker.wake();
    }

    fn to_engine(&self, frame: Frame) {
        self.outbox.lock().push(Outgoing::ToEngine(frame));
        self.waker.wake();
    }

    fn engine_interest(&self, engine: u8, name: Bytes, pattern: bool, on: bool) {
        self.outbox
            .lock()
            .push(Outgoing::Interest(engine, name, pattern, on));
        self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Subscriber;

    fn frame_of(stream: &mut UnixStream) -> Frame {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut decoder = Decoder::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(f) = decoder.next_frame().unwrap() {
                return f;
            }
            let n = stream.read(&mut chunk).expect("a frame");
            assert!(n > 0, "closed");
            decoder.push(&chunk[..n]);
        }
    }

    fn write(stream: &mut UnixStream, frame: Frame) {
        stream.write_all(&frame.to_bytes()).unwrap();
    }

    fn poll_until(hub: &mut Hub, mut done: impl FnMut(&Polled) -> bool) -> Polled {
        for _ in 0..100 {
            let p = hub.poll(Some(Duration::from_millis(50))).unwrap();
            if done(&p) {
                return p;
            }
        }
        panic!("the hub never got there");
    }

    #[test]
    fn a_publish_reaches_the_other_subscribed_workers_and_the_master() {
        struct Count(Mutex<usize>);
        impl Subscriber for Count {
            fn deliver(&self, _: &Bytes, _: &Bytes) {
                *self.0.lock() += 1;
            }
        }
        let mut hub = Hub::new().unwrap();
        let (_, mut a) = hub.pair().unwrap();
        let (_, mut b) = hub.pair().unwrap();
        let (_, mut c) = hub.pair().unwrap();
        let count = Arc::new(Count(Mutex::new(0)));
        let id = broker().subscribe(Bytes::from("hub-test"), false, count.clone());
        write(
            &mut b,
            Frame::Subscribe {
                name: Bytes::from("hub-*"),
                pattern: true,
            },
        );
        write(
            &mut c,
            Frame::Subscribe {
                name: Bytes::from("other"),
                pattern: false,
            },
        );
        wait_names(&mut hub, 2);
        write(
            &mut a,
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("hub-test"),
                message: Bytes::from("hello"),
            },
        );
        poll_until(&mut hub, |p| p.delivered == 1);
        assert_eq!(
            frame_of(&mut b),
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("hub-test"),
                message: Bytes::from("hello"),
            }
        );
        assert_eq!(*count.0.lock(), 1);
        broker().unsubscribe(id);
        // c subscribes to nothing that matched: it got nothing.
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(c.read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        // A worker leaving is reported.
        drop(a);
        let polled = poll_until(&mut hub, |p| !p.gone.is_empty());
        assert_eq!(polled.gone, vec![1]);
        assert_eq!(hub.len(), 2);
    }

    /// Polls until the workers reported `n` interests.
    fn wait_names(hub: &mut Hub, n: usize) {
        for _ in 0..100 {
            if hub.names().len() == n {
                return;
            }
            hub.poll(Some(Duration::from_millis(50))).unwrap();
        }
        panic!("the interests never arrived");
    }

    #[test]
    fn a_subscription_read_in_the_same_turn_as_a_publish_gets_it() {
        let mut hub = Hub::new().unwrap();
        let (_, mut first) = hub.pair().unwrap();
        let (_, mut second) = hub.pair().unwrap();
        // The second worker subscribes, then (causally later) the first one publishes; both
        // frames wait in their sockets for one poll, the publisher's read first.
        write(
            &mut second,
            Frame::Subscribe {
                name: Bytes::from("same-turn"),
                pattern: false,
            },
        );
        write(
            &mut first,
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("same-turn"),
                message: Bytes::from("m"),
            },
        );
        hub.poll(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(
            frame_of(&mut second),
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("same-turn"),
                message: Bytes::from("m"),
            }
        );
    }

    #[test]
    fn a_subscription_written_after_its_socket_was_read_still_gets_the_publish_it_caused() {
        let mut hub = Hub::new().unwrap();
        let (_, mut subscriber) = hub.pair().unwrap();
        let (_, publisher) = hub.pair().unwrap();
        // The race: the subscriber's socket is read (nothing there yet), then it subscribes and
        // its client causes a publish on the other worker, read next in the same pass.
        let mut publisher = Some(publisher);
        let mut subscriber_writer = Some(subscriber.try_clone().unwrap());
        hub.after_read = Some(Box::new(move |i| {
            if i == 0 {
                if let (Some(mut s), Some(mut p)) = (subscriber_writer.take(), publisher.take()) {
                    write(
                        &mut s,
                        Frame::Subscribe {
                            name: Bytes::from("late"),
                            pattern: false,
                        },
                    );
                    write(
                        &mut p,
                        Frame::Publish {
                            reach: Reach::Cluster,
                            channel: Bytes::from("late"),
                            message: Bytes::from("caused"),
                        },
                    );
                    // Kept open until the hook is dropped.
                    std::mem::forget(p);
                }
            }
        }));
        // Something for the poll to wake on.
        hub.waker().wake();
        hub.poll(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(
            frame_of(&mut subscriber),
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("late"),
                message: Bytes::from("caused"),
            }
        );
    }

    #[test]
    fn a_publish_from_the_master_wakes_the_poll_and_reaches_workers() {
        let mut hub = Hub::new().unwrap();
        let (_, mut w) = hub.pair().unwrap();
        write(
            &mut w,
            Frame::Subscribe {
                name: Bytes::from("from-master"),
                pattern: false,
            },
        );
        wait_names(&mut hub, 1);
        let uplink = hub.uplink();
        let started = std::time::Instant::now();
        uplink.publish(
            Reach::Siblings,
            Bytes::from("from-master"),
            Bytes::from("m"),
        );
        hub.poll(Some(Duration::from_secs(5))).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the waker did not wake"
        );
        assert_eq!(
            frame_of(&mut w),
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("from-master"),
                message: Bytes::from("m"),
            }
        );
    }
}
