//! `idle`: many open WebSocket connections, each checked with one echo, held for a while so
//! the server's memory per connection can be read.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Args;
use crate::report::Report;
use crate::setup::{open_all, within};
use crate::stats::Stats;
use crate::target::Target;
use crate::ws::{self, Ws};

/// The echo each connection is checked with.
const PING: &str = "ping";

/// Read buffer per connection: the check's echo is tiny, and the tool's own memory should not
/// grow with the count (tungstenite's default is 128 KiB).
const READ_BUFFER: usize = 256;

/// Opens `--count` connections (`--parallel` handshakes at a time), prints
/// `{"mode":"idle","open":N,"failed":M}` at once, holds them `--hold` seconds, then closes them.
pub async fn run(args: &Args) -> Result<(), String> {
    args.only(&["url", "count", "hold", "parallel"])?;
    let target = Target::parse(args.required("url")?, "ws")?;
    let count = args.get("count", 10_000_usize)?;
    let hold = args.seconds("hold", 5.0)?;
    let parallel = args.get("parallel", 200_usize)?;
    match raise_open_files_limit() {
        Ok(limit) if limit < count as u64 + 64 => {
            eprintln!("wsload: only {limit} open files allowed")
        }
        Ok(_) => {}
        Err(e) => eprintln!("wsload: could not raise the open-files limit: {e}"),
    }

    let stats = Stats::default();
    let conns = open_all(count, parallel, &stats, |_| open_checked(&target)).await;
    stats.log_errors();
    let report = Report::new("idle")
        .int("open", conns.len() as u64)
        .int("failed", stats.errors());
    // The driver reads this line while the connections are held.
    println!("{report}");
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    // Dropping them closes the sockets; the server sees each peer leave.
    drop(conns);
    Ok(())
}

/// Opens one connection and checks it with one echo round trip.
async fn open_checked(target: &Target) -> Result<Ws, String> {
    let mut conn = ws::connect(target, READ_BUFFER).await?;
    within(&target.url, async {
        conn.send(Message::text(PING))
            .await
            .map_err(|e| e.to_string())?;
        let echo = ws::next_data(&mut conn).await?;
        match echo.to_text() {
            Ok(PING) => Ok(()),
            _ => Err(format!("expected the echo {PING:?}, got {echo:?}")),
        }
    })
    .await?;
    Ok(conn)
}

/// Raises the soft open-files limit to the hard one; returns the new limit.
#[allow(unsafe_code)]
pub fn raise_open_files_limit() -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read or write the `rlimit` we pass, which lives across the calls.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if raised {
        Ok(limit.rlim_cur)
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}
