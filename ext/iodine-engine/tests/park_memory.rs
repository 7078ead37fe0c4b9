//! What an idle keep-alive connection holds once it parked, counted by a global allocator
//! that tracks live bytes (this test binary only).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::http::{HttpSettings, Reply, Request, Response};
use support::{read_response, TestServer};

/// The system allocator, counting the bytes it has handed out and not had back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_parked_keep_alive_connection_holds_no_http_buffers() {
    let handler = |_req: Request, reply: Reply| {
        let _ = reply.send(Response::new(200, vec![], Bytes::from_static(b"hello")));
    };
    let srv = TestServer::start(HttpSettings::default(), Arc::new(handler));
    // Warm up (the runtime's own allocations, the date cache, ...).
    let mut warm = srv.connect();
    warm.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_response(&mut warm);
    drop(warm);
    std::thread::sleep(Duration::from_millis(600));
    const N: usize = 200;
    let before = LIVE.load(Ordering::Relaxed);
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = srv.connect();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(read_response(&mut s).ends_with("hello"));
        clients.push(s);
    }
    // Past PARK_AFTER (250 ms), with room for the timers to fire.
    std::thread::sleep(Duration::from_millis(1500));
    let per_connection = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    // hyper's read buffer alone is 8 KiB: a parked connection keeps its task and socket only.
    assert!(
        per_connection < 4096,
        "{per_connection} bytes per idle connection"
    );
    // And each still serves its next request.
    for s in clients.iter_mut().take(10) {
        s.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(read_response(s).ends_with("hello"));
    }
}
