//! The access log (`-v` / `log: true`): one line per response, on stderr, written once the
//! response has been sent (so it tells what the client got, not what the app meant).
//!
//! `<peer> - - [<date>] "<METHOD> <path> <version>" <status> <bytes>b <ms>ms`, where bytes
//! are the body bytes actually sent; ` (cut)` follows when the body did not complete.

use std::fmt::Write;
use std::time::{Instant, SystemTime};

use crate::server::Peer;

/// What one log line says, minus what is only known at the end.
#[derive(Debug)]
pub(crate) struct Entry {
    pub peer: Peer,
    pub method: http::Method,
    pub path: String,
    pub version: &'static str,
    pub status: u16,
    pub started: Instant,
}

impl Entry {
    /// Writes the line: `sent` body bytes went out, `complete` unless the body was cut.
    pub(crate) fn write(&self, sent: u64, complete: bool) {
        let mut line = String::with_capacity(128);
        match self.peer {
            Peer::Ip(ip) => {
                let _ = write!(line, "{ip}");
            }
            Peer::Unix => line.push_str("unix"),
        }
        let date = httpdate::fmt_http_date(SystemTime::now());
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let _ = write!(
            line,
            " - - [{date}] \"{} {} {}\" {} {sent}b {ms:.0}ms",
            self.method, self.path, self.version, self.status
        );
        if !complete {
            line.push_str(" (cut)");
        }
        crate::log::raw_line(line);
    }
}
