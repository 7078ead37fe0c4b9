//! The access log (`-v` / `log: true`): one line per response, on stderr.
//!
//! `<peer> - - [<date>] "<METHOD> <path> <version>" <status> <bytes>b <ms>ms`, or
//! `<status> -- <ms>ms` when the length is not known up front (streamed bodies).

use std::fmt::Write;
use std::time::{Instant, SystemTime};

use crate::server::Peer;

/// What one log line says.
pub(crate) struct Entry<'a> {
    pub peer: Peer,
    pub method: &'a str,
    pub path: &'a str,
    pub version: &'static str,
    pub status: u16,
    pub length: Option<u64>,
    pub started: Instant,
}

/// Writes the line.
pub(crate) fn write(entry: &Entry<'_>) {
    let mut line = String::with_capacity(128);
    match entry.peer {
        Peer::Ip(ip) => {
            let _ = write!(line, "{ip}");
        }
        Peer::Unix => line.push_str("unix"),
    }
    let date = httpdate::fmt_http_date(SystemTime::now());
    let ms = entry.started.elapsed().as_secs_f64() * 1000.0;
    let _ = write!(
        line,
        " - - [{date}] \"{} {} {}\" {} ",
        entry.method, entry.path, entry.version, entry.status
    );
    let _ = match entry.length {
        Some(n) => write!(line, "{n}b {ms:.0}ms"),
        None => write!(line, "-- {ms:.0}ms"),
    };
    crate::log::raw_line(line);
}
