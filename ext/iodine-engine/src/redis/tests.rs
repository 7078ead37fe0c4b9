//! The engine against a real redis-server (Debian's `redis-server`; the tests that need one
//! say so and pass when it is not installed).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;

/// A redis-server of the test's own, on a free port; killed when dropped.
struct Server {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Server {
    fn start(extra: &[&str]) -> Option<Server> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("redis-server is not installed: skipping (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut server = Server {
            port,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn settings(url: &str, ping: u64) -> Arc<Settings> {
    Arc::new(Settings::parse(url, ping).unwrap())
}

/// Sends a command and waits (up to 5 s) for its reply.
fn ask(redis: &Redis, args: &[&[u8]]) -> Reply {
    let (tx, rx) = std::sync::mpsc::channel();
    redis.command(
        args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_secs(5)).expect("a reply")
}

/// The next delivery (up to 5 s).
fn next(rt: &tokio::runtime::Runtime, rx: &mut mpsc::Receiver<Delivery>) -> Delivery {
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.recv()).await })
        .expect("a delivery in time")
        .expect("the engine runs")
}

/// Waits until Redis counts `n` subscribers of `channel` (PUBSUB NUMSUB).
fn wait_subscribed(redis: &Redis, channel: &[u8], n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Reply::Array(items) = ask(redis, &[b"PUBSUB", b"NUMSUB", channel]) {
            if items.get(1) == Some(&Reply::Integer(n)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "never {n} subscribers");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn urls_are_checked_before_anything_connects() {
    assert!(Settings::parse("redis://localhost:6379/0", 0).is_ok());
    assert!(Settings::parse("redis://u:p%40ss@h:1", 5).is_ok());
    assert_eq!(Settings::parse("redis://h", 0).unwrap().ping, DEFAULT_PING);
    assert_eq!(
        Settings::parse("redis://h", 7).unwrap().ping,
        Duration::from_secs(7)
    );
    for bad in [
        "",
        "localhost:6379",
        "http://h",
        "redis://h:notaport",
        "redis://h:99999",
    ] {
        assert!(Settings::parse(bad, 0).is_err(), "{bad:?} was taken");
    }
    let tls = Settings::parse("rediss://h:6380", 0).unwrap_err();
    assert!(tls.contains("TLS"), "{tls}");
    let long = format!("redis://{}", "h".repeat(MAX_URL));
    assert!(Settings::parse(&long, 0).is_err());
    let hidden = Settings::parse("redis://alice:secret@h:1/2", 0).unwrap();
    assert_eq!(hidden.display_url(), "redis://alice:***@h:1/2");
    let encoded = Settings::parse("redis://:p%40ss@h:1", 0).unwrap();
    assert_eq!(encoded.display_url(), "redis://:***@h:1");
}

#[test]
fn subscribing_commands_are_refused() {
    for name in [
        "subscribe",
        "PSUBSCRIBE",
        "Unsubscribe",
        "punsubscribe",
        "MONITOR",
    ] {
        assert!(refused_command(name.as_bytes()), "{name}");
    }
    assert!(!refused_command(b"PUBLISH"));
}

#[test]
fn messages_come_back_once_with_what_they_matched() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let rt = runtime();
    let binary = Bytes::from(vec![b'b', 0, 0xff, b'\n']);
    let (redis, mut rx) = Redis::start(
        settings(&server.url(), 0),
        [(binary.clone(), false), (Bytes::from("news.*"), true)],
        rt.handle(),
    );
    redis.interest(Bytes::from("news.today"), false, true);
    wait_subscribed(&redis, b"news.today", 1);
    wait_subscribed(&redis, &binary, 1);
    // Matches the exact channel and the pattern: once for each, each saying which.
    redis.publish(Bytes::from("news.today"), Bytes::from("hello"));
    let mut got = [next(&rt, &mut rx), next(&rt, &mut rx)];
    got.sort_by_key(|d| d.pattern.is_some());
    assert_eq!(got[0].pattern, None);
    assert_eq!(got[1].pattern, Some(Bytes::from("news.*")));
    assert!(got
        .iter()
        .all(|d| d.channel == "news.today" && d.message == "hello"));
    // Binary channel names and payloads are bytes, unchanged.
    let payload = Bytes::from((0..=255u8).collect::<Vec<_>>());
    redis.publish(binary.clone(), payload.clone());
    let d = next(&rt, &mut rx);
    assert_eq!(
        (d.channel, d.message, d.pattern),
        (binary.clone(), payload, None)
    );
    // After the last subscriber left, Redis no longer sends it.
    redis.interest(binary.clone(), false, false);
    wait_subscribed(&redis, &binary, 0);
    let stats = redis.stats();
    assert!(stats.connected);
    assert_eq!(stats.messages_in, 3);
    assert_eq!(stats.messages_out, 2);
}

#[test]
fn commands_reply_in_every_shape() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let rt = runtime();
    let (redis, _rx) = Redis::start(settings(&server.url(), 0), [], rt.handle());
    assert_eq!(
        ask(&redis, &[b"SET", b"k", b"\x00v"]),
        Reply::Status(Bytes::from("OK"))
    );
    assert_eq!(
        ask(&redis, &[b"GET", b"k"]),
        Reply::Bulk(Bytes::from(&b"\x00v"[..]))
    );
    assert_eq!(ask(&redis, &[b"GET", b"missing"]), Reply::Nil);
    assert_eq!(ask(&redis, &[b"INCR", b"n"]), Reply::Integer(1));
    ask(&redis, &[b"RPUSH", b"l", b"a", b"b"]);
    assert_eq!(
        ask(&redis, &[b"LRANGE", b"l", b"0", b"-1"]),
        Reply::Array(vec![
            Reply::Bulk(Bytes::from("a")),
            Reply::Bulk(Bytes::from("b"))
        ])
    );
    match ask(&redis, &[b"INCR", b"k"]) {
        Reply::Error(e) => assert!(e.starts_with(b"ERR"), "{e:?}"),
        other => panic!("not an error: {other:?}"),
    }
    match ask(&redis, &[b"NOSUCHCOMMAND"]) {
        Reply::Error(e) => assert!(e.starts_with(b"ERR unknown command"), "{e:?}"),
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn a_restart_resubscribes_and_sends_what_waited() {
    let Some(mut server) = Server::start(&[]) else {
        return;
    };
    let rt = runtime();
    let (redis, mut rx) = Redis::start(
        settings(&server.url(), 0),
        [(Bytes::from("r"), false)],
        rt.handle(),
    );
    wait_subscribed(&redis, b"r", 1);
    server.stop();
    std::thread::sleep(Duration::from_millis(200));
    // Published and asked while Redis is down: they wait for the resubscription.
    redis.publish(Bytes::from("r"), Bytes::from("while down"));
    let (tx, replied) = std::sync::mpsc::channel();
    redis.command(
        vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    server.spawn();
    let back = Instant::now();
    let d = next(&rt, &mut rx);
    assert_eq!(d.message, "while down");
    // The delivery gap after Redis is back: the subscriber's next attempt (backoff ≤ 100 ms),
    // its resubscription, then the publish that waited for it.
    eprintln!(
        "redis restart: delivered {:?} after Redis listened again",
        back.elapsed()
    );
    assert_eq!(
        replied.recv_timeout(Duration::from_secs(5)).unwrap(),
        Reply::Status(Bytes::from("OK"))
    );
    assert!(redis.stats().reconnects >= 1);
    // Exactly once: nothing else arrives.
    let extra =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), rx.recv()).await });
    assert!(extra.is_err(), "a second copy: {extra:?}");
}

#[test]
fn a_wrong_password_is_an_error_never_a_connection() {
    let Some(server) = Server::start(&["--requirepass", "right"]) else {
        return;
    };
    let rt = runtime();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port);
    let (redis, _rx) = Redis::start(settings(&url, 0), [], rt.handle());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!redis.stats().connected);
    let url = format!("redis://:right@127.0.0.1:{}", server.port);
    let (good, _rx) = Redis::start(settings(&url, 0), [], rt.handle());
    assert_eq!(ask(&good, &[b"PING"]), Reply::Status(Bytes::from("PONG")));
    assert!(good.stats().connected);
}

#[test]
fn a_redis_cluster_url_subscribes_on_one_node_and_commands_follow_the_slots() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..3 {
        // Each node keeps its cluster state in a file of its own.
        let conf = dir
            .path()
            .join(format!("nodes-{i}.conf"))
            .display()
            .to_string();
        let Some(node) =
            Server::start(&["--cluster-enabled", "yes", "--cluster-config-file", &conf])
        else {
            return;
        };
        nodes.push(node);
    }
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port));
    }
    let created = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    // Wait until every node agrees the cluster is up.
    let deadline = Instant::now() + Duration::from_secs(15);
    for node in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let url = format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        nodes[0].port, nodes[1].port, nodes[2].port
    );
    let rt = runtime();
    let (redis, mut rx) = Redis::start(settings(&url, 0), [(Bytes::from("c"), false)], rt.handle());
    // Keys on every node's slots.
    for i in 0..20 {
        let key = format!("key-{i}");
        assert_eq!(
            ask(&redis, &[b"SET", key.as_bytes(), b"v"]),
            Reply::Status(Bytes::from("OK")),
            "{key}"
        );
        assert_eq!(
            ask(&redis, &[b"GET", key.as_bytes()]),
            Reply::Bulk(Bytes::from("v"))
        );
    }
    // A PUBLISH reaches the subscriber whichever node it went to; a publish on another node
    // (from outside) too: the cluster broadcasts it.
    redis.publish(Bytes::from("c"), Bytes::from("one"));
    assert_eq!(next(&rt, &mut rx).message, "one");
    let outside = Command::new("redis-cli")
        .args(["-p", &nodes[2].port.to_string(), "publish", "c", "two"])
        .output()
        .unwrap();
    assert!(outside.status.success());
    assert_eq!(next(&rt, &mut rx).message, "two");
    // The node the subscriber is on goes down: it subscribes on another one, and a PUBLISH
    // on a node still up reaches it.
    let on = (0..3)
        .find(|&i| {
            let out = Command::new("redis-cli")
                .args(["-p", &nodes[i].port.to_string(), "pubsub", "numsub", "c"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).lines().nth(1) == Some("1")
        })
        .expect("the subscriber is on a node");
    nodes[on].stop();
    let other = nodes[(on + 1) % 3].port.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("redis-cli")
            .args(["-p", &other, "publish", "c", "three"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never subscribed on another node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(next(&rt, &mut rx).message, "three");
}

#[test]
fn a_sentinel_url_finds_the_master() {
    let Some(master) = Server::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "sentinel monitor mymaster 127.0.0.1 {} 1\nsentinel resolve-hostnames yes\n",
            master.port
        ),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sentinel = Command::new("redis-server")
        .arg(&conf)
        .args([
            "--sentinel",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(sentinel) = sentinel else { return };
    let mut sentinel = Server {
        port,
        child: Some(sentinel),
        extra: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the sentinel did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("redis-sentinel://127.0.0.1:{port}/0?sentinelServiceName=mymaster");
    let rt = runtime();
    let (redis, mut rx) = Redis::start(settings(&url, 0), [(Bytes::from("s"), false)], rt.handle());
    assert_eq!(
        ask(&redis, &[b"SET", b"k", b"v"]),
        Reply::Status(Bytes::from("OK"))
    );
    redis.publish(Bytes::from("s"), Bytes::from("through the master"));
    assert_eq!(next(&rt, &mut rx).message, "through the master");
    // The data went to the master the sentinel named.
    let got = Command::new("redis-cli")
        .args(["-p", &master.port.to_string(), "get", "k"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "v");
    sentinel.stop();
}

#[test]
fn commands_past_the_queue_get_an_error_at_once_while_redis_is_unreachable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = runtime();
    let (redis, _rx) = Redis::start(
        settings(&format!("redis://127.0.0.1:{port}"), 0),
        [],
        rt.handle(),
    );
    let (tx, replies) = std::sync::mpsc::channel();
    for _ in 0..COMMAND_QUEUE + 10 {
        let tx = tx.clone();
        redis.command(
            vec![Bytes::from("PING")],
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
    }
    // Nothing can be sent: the ones past the queue are refused now, the others wait.
    let mut refused = 0;
    while let Ok(reply) = replies.recv_timeout(Duration::from_millis(500)) {
        match reply {
            Reply::Error(e) if e.starts_with(b"ERR iodine: the Redis command queue is full") => {
                refused += 1
            }
            other => panic!("a reply while Redis is unreachable: {other:?}"),
        }
    }
    assert!((9..=10).contains(&refused), "{refused} refused");
    assert!(!redis.stats().connected);
    assert!(redis.stats().queued as usize >= COMMAND_QUEUE - 1);
    // Stopping answers every waiting command (with an error), none is left hanging.
    redis.stop();
    let mut stopped = 0;
    while replies.recv_timeout(Duration::from_secs(2)).is_ok() {
        stopped += 1;
    }
    assert_eq!(refused + stopped, COMMAND_QUEUE + 10);
}

#[test]
fn a_server_that_answers_garbage_is_never_taken_for_redis() {
    // Answers every connection with bytes that are not RESP, and counts the connections.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    if stream.write_all(b"?garbage\r\n\x00\xff").is_err() {
                        break;
                    }
                }
            });
        }
    });
    let rt = runtime();
    let (redis, _rx) = Redis::start(
        settings(&format!("redis://127.0.0.1:{port}"), 0),
        [(Bytes::from("g"), false)],
        rt.handle(),
    );
    let (tx, replied) = std::sync::mpsc::channel();
    redis.command(
        vec![Bytes::from("GET"), Bytes::from("k")],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!redis.stats().connected, "garbage taken for a connection");
    // It tries again with backoff (10 ms doubling to 100 ms): a bounded number of times.
    let tries = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!((2..=40).contains(&tries), "{tries} connections in a second");
    // The command was never sent to it; stopping answers it with an error.
    assert!(replied.try_recv().is_err());
    redis.stop();
    match replied.recv_timeout(Duration::from_secs(2)).unwrap() {
        Reply::Error(e) => assert!(e.starts_with(b"ERR iodine"), "{e:?}"),
        other => panic!("{other:?}"),
    }
}
