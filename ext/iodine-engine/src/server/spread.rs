//! A TCP listener spread over the workers of a cluster: one socket per worker slot, all
//! bound to the same address in one `SO_REUSEPORT` group.
//!
//! Workers that share one listening socket do not share its connections: every worker is
//! woken for a new connection, and the first one to run accepts everything queued by then.
//! A burst of connections (WebSocket clients coming back after a deploy) mostly lands on one
//! worker; with 4 workers on 2 cores, a burst of 400 gave the least busy worker 2–20 % of it.
//! In a group, the kernel hashes each new connection (its addresses and ports) to one of the
//! sockets, so each worker gets its share whoever happens to be awake.
//!
//! The master makes the group before it forks ([`Spread::new`]) and keeps every socket open
//! for as long as the cluster runs; worker `slot` accepts from socket `slot`, and a worker that
//! replaces another (a hot restart, a crash) takes the slot of the one it replaces. A worker
//! that leaves only closes its copies: connections waiting in its socket's queue wait for the
//! next worker of the slot. Had the socket itself closed, the kernel would have reset them
//! (measured: closing one of two sockets with 100 connections queued over both reset 45).
//!
//! A slot can still be without a worker for a while: between a worker's end and its
//! replacement's start, or for longer when workers fail as they boot. So each worker also
//! looks at the other slots' sockets every [`RESCUE_EVERY`] and takes what waited there for
//! two looks in a row ([`Rescue`]): a connection hashed to a slot without worker waits at
//! most about twice that long, and a worker too busy to accept shares its queue.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::time::{Interval, MissedTickBehavior};

use super::stream::{Peer, Stream};

/// How often a worker looks at the other workers' sockets for connections left waiting.
pub const RESCUE_EVERY: Duration = Duration::from_millis(100);

/// One TCP address as a group of listening sockets, one per worker slot (bound, listening, not
/// yet attached to a runtime: safe to keep across fork).
#[derive(Debug)]
pub struct Spread {
    /// The sockets of the group; the first is the listener the group was made from.
    sockets: Vec<StdTcpListener>,
    /// The slot of this process's worker: whose socket it accepts from at once.
    slot: usize,
}

impl Spread {
    /// Makes `listener` (bound and listening) the first socket of a group of `workers`
    /// sockets on its address. On failure the listener comes back as it was, with the error.
    ///
    /// The listener was bound without `SO_REUSEPORT`, so that binding a port another server
    /// holds fails. Linux looks at the flag of the sockets already bound when a new one binds
    /// and puts them in a group when the new one listens, so setting it now lets the others
    /// join. The new sockets are bound first and listen only once all are bound: a socket
    /// that was never listening has no connections to lose if a later one fails.
    pub fn new(
        listener: StdTcpListener,
        workers: usize,
    ) -> Result<Spread, (StdTcpListener, io::Error)> {
        let made = listener
            .local_addr()
            .and_then(|addr| {
                SockRef::from(&listener).set_reuse_port(true)?;
                (1..workers)
                    .map(|_| bind_sibling(&listener, addr))
                    .collect()
            })
            .and_then(|siblings: Vec<Socket>| {
                siblings
                    .into_iter()
                    .map(|socket| {
                        socket.listen(super::listener::BACKLOG)?;
                        Ok(StdTcpListener::from(socket))
                    })
                    .collect::<io::Result<Vec<_>>>()
            });
        match made {
            Ok(siblings) => {
                let mut sockets = Vec::with_capacity(workers);
                sockets.push(listener);
                sockets.extend(siblings);
                Ok(Spread { sockets, slot: 0 })
            }
            Err(e) => {
                // Alone again: a later bind of the port must fail as before.
                let _ = SockRef::from(&listener).set_reuse_port(false);
                Err((listener, e))
            }
        }
    }

    /// How many sockets (worker slots) the group has.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether the group is empty (never: it has at least the listener it was made from).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Makes this the listener of worker `slot` (taken modulo the group's size).
    pub fn set_slot(&mut self, slot: usize) {
        self.slot = slot % self.sockets.len().max(1);
    }

    /// The first socket (the listener the group was made from).
    pub fn first(&self) -> &StdTcpListener {
        &self.sockets[0]
    }

    /// Splits the group into this worker's socket and the others (to [`Rescue`]).
    pub(super) fn into_parts(mut self) -> (StdTcpListener, Vec<StdTcpListener>) {
        let own = self.sockets.remove(self.slot);
        (own, self.sockets)
    }
}

/// A new socket bound to `addr` beside `listener`, in its group (not listening yet).
fn bind_sibling(listener: &StdTcpListener, addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(SockRef::from(listener).only_v6()?)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

/// The other workers' sockets of a spread listener, looked at every [`RESCUE_EVERY`].
/// Never registered with the reactor: a worker is not woken for the others' connections,
/// only by its timer (one `poll(2)` of all of them a tick).
///
/// A socket whose queue was not empty at two looks in a row is emptied here: its worker is
/// gone, or too busy to accept. A queue seen once is left to its worker: a healthy worker
/// empties its queue within microseconds, so in a burst its queue is often not empty at one
/// look, and taking it then would undo the spreading.
#[derive(Debug)]
pub struct Rescue {
    sockets: Vec<StdTcpListener>,
    /// Whose queue was not empty at the last look.
    waiting: Vec<bool>,
    /// The sockets to empty now, the one being emptied last.
    due: Vec<usize>,
    tick: Interval,
}

impl Rescue {
    /// Looks after `sockets` (non-blocking). Needs a runtime (its timer).
    pub(super) fn new(sockets: Vec<StdTcpListener>) -> Rescue {
        let mut tick = tokio::time::interval(RESCUE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Rescue {
            waiting: vec![false; sockets.len()],
            due: Vec::new(),
            sockets,
            tick,
        }
    }

    /// The next connection left waiting on one of the sockets. Cancel-safe: a connection is
    /// taken only by a call that returns it.
    pub(super) async fn accept(&mut self) -> io::Result<(Stream, Peer)> {
        if self.sockets.is_empty() {
            return std::future::pending().await;
        }
        loop {
            while let Some(&at) = self.due.last() {
                match self.sockets[at].accept() {
                    Ok((stream, addr)) => return adopt(stream, addr),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.due.pop();
                        self.waiting[at] = false;
                    }
                    Err(e) => {
                        self.due.pop();
                        return Err(e);
                    }
                }
            }
            self.tick.tick().await;
            let ready = self.look()?;
            for (at, ready) in ready.into_iter().enumerate() {
                if ready && self.waiting[at] {
                    self.due.push(at);
                }
                self.waiting[at] = ready;
            }
        }
    }

    /// Which sockets have connections waiting.
    fn look(&self) -> io::Result<Vec<bool>> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds: Vec<PollFd<'_>> = self
            .sockets
            .iter()
            .map(|s| PollFd::new(s, PollFlags::IN))
            .collect();
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&now))?;
        Ok(fds
            .iter()
            .map(|fd| fd.revents().contains(PollFlags::IN))
            .collect())
    }
}

/// An accepted std stream as this runtime's [`Stream`].
fn adopt(stream: std::net::TcpStream, addr: SocketAddr) -> io::Result<(Stream, Peer)> {
    stream.set_nonblocking(true)?;
    let stream = tokio::net::TcpStream::from_std(stream)?;
    // Small responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    Ok((Stream::Tcp(stream), Peer::Ip(addr.ip().to_canonical())))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use super::*;
    use crate::server::{bind, Address, BoundListener, Listener};

    fn loopback(port: u16) -> Address {
        Address::Tcp {
            host: Some("127.0.0.1".into()),
            port,
        }
    }

    fn spread(workers: usize) -> Spread {
        match bind(&loopback(0)).expect("bind").spread(workers) {
            BoundListener::Spread(spread) => spread,
            other => panic!("not spread: {other:?}"),
        }
    }

    impl Spread {
        /// A forked worker's copy of the group.
        fn dup(&self) -> Spread {
            Spread {
                sockets: self
                    .sockets
                    .iter()
                    .map(|s| s.try_clone().expect("dup"))
                    .collect(),
                slot: self.slot,
            }
        }

        fn port(&self) -> u16 {
            self.first().local_addr().expect("addr").port()
        }

        /// Accepts what waits on each socket until `total` were accepted: the count per
        /// socket, and the accepted streams.
        fn drain(&self, total: usize) -> (Vec<usize>, Vec<std::net::TcpStream>) {
            let mut counts = vec![0; self.sockets.len()];
            let mut streams = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while streams.len() < total && Instant::now() < deadline {
                for (i, socket) in self.sockets.iter().enumerate() {
                    while let Ok((stream, _)) = socket.accept() {
                        counts[i] += 1;
                        streams.push(stream);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (counts, streams)
        }
    }

    fn connect(port: u16, count: usize) -> Vec<std::net::TcpStream> {
        (0..count)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect()
    }

    #[test]
    fn the_kernel_spreads_a_burst_over_the_group_and_the_port_stays_taken() {
        let spread = spread(4);
        assert_eq!(spread.len(), 4);
        let again = bind(&loopback(spread.port()));
        assert!(
            again.is_err(),
            "a server without SO_REUSEPORT joined the group"
        );
        let _clients = connect(spread.port(), 400);
        let (counts, _) = spread.drain(400);
        assert_eq!(counts.iter().sum::<usize>(), 400, "{counts:?}");
        // Hashing gives each about 100 (standard deviation 8.7).
        assert!(counts.iter().all(|&n| n >= 50), "{counts:?}");
    }

    #[test]
    fn unix_listeners_and_single_processes_keep_one_socket() {
        assert!(matches!(
            bind(&loopback(0)).expect("bind").spread(1),
            BoundListener::Tcp(_)
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let unix = bind(&Address::Unix(dir.path().join("s.sock"))).expect("bind");
        assert!(matches!(unix.spread(4), BoundListener::Unix(..)));
    }

    #[tokio::test]
    async fn a_worker_takes_its_slot_and_rescues_the_slot_nobody_serves() {
        let master = spread(2);
        let mut worker = BoundListener::Spread(master.dup())
            .for_worker(0)
            .into_async()
            .expect("async");
        let clients = connect(master.port(), 40);
        let started = Instant::now();
        let mut accepted = 0;
        while accepted < clients.len() {
            let next = tokio::time::timeout(Duration::from_secs(2), worker.accept()).await;
            next.expect("a connection left waiting").expect("accept");
            accepted += 1;
        }
        // Those on slot 1 waited for two looks at it, never much more.
        assert!(
            started.elapsed() < RESCUE_EVERY * 5,
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(worker, Listener::Spread(..)));
    }

    #[tokio::test]
    async fn a_worker_that_leaves_hands_its_queue_to_the_next_intact() {
        let master = spread(2);
        let first = BoundListener::Spread(master.dup())
            .for_worker(1)
            .into_async()
            .expect("async");
        let mut clients = connect(master.port(), 100);
        // The worker of slot 1 leaves with connections in its queue; the master's sockets
        // keep them for the next worker.
        drop(first);
        let (counts, mut streams) = master.drain(100);
        assert_eq!(counts.iter().sum::<usize>(), 100, "{counts:?}");
        assert!(counts[1] > 0, "nothing was queued on slot 1: {counts:?}");
        for client in &mut clients {
            client.write_all(b"x").expect("the connection was reset");
        }
        for stream in &mut streams {
            stream.set_nonblocking(false).expect("blocking");
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).expect("read");
            assert_eq!(&byte, b"x");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_is_taken_only_once_it_waited_at_two_looks() {
        let BoundListener::Tcp(other) = bind(&loopback(0)).expect("bind") else {
            unreachable!("a TCP address binds a TCP listener")
        };
        let port = other.local_addr().expect("addr").port();
        let mut rescue = Rescue::new(vec![other]);
        let _client = connect(port, 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !rescue.look().expect("poll")[0] {
            assert!(Instant::now() < deadline, "the connection never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The first look (at once) sees it: its worker may be about to take it.
        let early = tokio::time::timeout(RESCUE_EVERY / 2, rescue.accept()).await;
        assert!(early.is_err(), "taken at the first look");
        // Still there at the next look: taken.
        let late = tokio::time::timeout(RESCUE_EVERY, rescue.accept()).await;
        late.expect("left waiting").expect("accept");
    }
}
