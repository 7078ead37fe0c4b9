//! What a public folder remembers between requests, so that a hot file costs one `stat` and
//! no disk read:
//!
//! - **routes**: where a request path leads (the resolved file and its `.gz` twin, or
//!   nowhere), for [`ROUTE_TTL`]; a symlink or file that changes is seen after at most that.
//! - **files**: each served file's validators and type, and the bytes of small files
//!   (≤ [`SMALL_FILE`]). An entry is used only while the file's size, modification time and
//!   inode are unchanged (checked by a `stat` on every request); otherwise it is reloaded.
//!
//! Both maps are bounded ([`ROUTES`], [`FILES`], [`BYTES`]); one that is full is emptied and
//! fills again with what is hot. A flood of distinct paths therefore costs at most the bound,
//! never more memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;
use parking_lot::Mutex;

/// How long a resolved request path is trusted.
pub const ROUTE_TTL: Duration = Duration::from_secs(1);
/// Most request paths remembered.
pub const ROUTES: usize = 4096;
/// Most files remembered.
pub const FILES: usize = 1024;
/// Files up to this size are kept in memory.
pub const SMALL_FILE: u64 = 64 * 1024;
/// Most bytes of file contents kept in memory.
pub const BYTES: usize = 32 * 1024 * 1024;

/// Where a request path leads: the file, and its `.gz` twin if it has one.
pub type Found = Option<(Arc<Path>, Option<Arc<Path>>)>;

/// A file's validators and type, shared by its answers (and its bytes when small).
#[derive(Debug)]
pub struct Meta {
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Device and inode: a file replaced by another of the same size and time is reloaded.
    id: (u64, u64),
    /// The quoted `ETag`.
    pub etag: HeaderValue,
    /// `Last-Modified`.
    pub last_modified: HeaderValue,
    /// `Content-Type` (of the file asked for, also when its gzip twin is served).
    pub content_type: HeaderValue,
    /// The contents, for a small file read through the cache.
    pub body: Option<Bytes>,
}

impl Meta {
    /// The validators of the file open as `file` (`served`, answering a request for
    /// `asked`); `gzip` when it is a twin served gzip-encoded.
    pub fn of(file: &File, asked: &Path, gzip: bool) -> io::Result<Meta> {
        let stat = file.metadata()?;
        let mtime = stat.modified().unwrap_or(UNIX_EPOCH);
        let nanos = mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let len = stat.len();
        let etag = format!("\"{len:x}-{nanos:x}{}\"", if gzip { "-gz" } else { "" });
        Ok(Meta {
            len,
            mtime,
            id: (stat.dev(), stat.ino()),
            etag: super::text(etag),
            last_modified: super::text(httpdate::fmt_http_date(mtime)),
            content_type: super::text(super::content_type(asked)),
            body: None,
        })
    }

    /// The `ETag` as text (made here, always ASCII).
    pub fn tag(&self) -> &str {
        self.etag.to_str().unwrap_or_default()
    }

    /// Whether `stat` still describes the file this was made from.
    fn matches(&self, stat: &std::fs::Metadata) -> bool {
        stat.len() == self.len
            && stat.modified().unwrap_or(UNIX_EPOCH) == self.mtime
            && (stat.dev(), stat.ino()) == self.id
    }
}

#[derive(Debug)]
struct Route {
    found: Found,
    at: Instant,
}

#[derive(Debug, Default)]
struct Maps {
    routes: HashMap<Box<str>, Route>,
    files: HashMap<(Arc<Path>, bool), Arc<Meta>>,
    bytes: usize,
}

/// A public folder's memory (see the module docs).
#[derive(Debug, Default)]
pub struct Cache {
    maps: Mutex<Maps>,
}

impl Cache {
    /// Where `raw` leads, from memory when resolved less than [`ROUTE_TTL`] ago, else from
    /// `resolve` (then remembered).
    pub fn route(&self, raw: &str, resolve: impl FnOnce() -> Found) -> Found {
        if let Some(route) = self.maps.lock().routes.get(raw) {
            if route.at.elapsed() < ROUTE_TTL {
                return route.found.clone();
            }
        }
        let found = resolve();
        let mut maps = self.maps.lock();
        if maps.routes.len() >= ROUTES {
            maps.routes.clear();
        }
        maps.routes.insert(
            raw.into(),
            Route {
                found: found.clone(),
                at: Instant::now(),
            },
        );
        found
    }

    /// `served`'s validators (and bytes, when small), with the file open when its bytes are
    /// not in memory. `asked` names the type; `gzip` marks a twin.
    pub fn file(
        &self,
        served: &Arc<Path>,
        asked: &Path,
        gzip: bool,
    ) -> io::Result<(Arc<Meta>, Option<File>)> {
        let stat = std::fs::metadata(served)?;
        let key = (served.clone(), gzip);
        let known = self.maps.lock().files.get(&key).cloned();
        if let Some(meta) = known.filter(|m| m.matches(&stat)) {
            if meta.body.is_some() {
                return Ok((meta, None));
            }
            return Ok((meta, Some(File::open(served)?)));
        }
        let mut file = File::open(served)?;
        let mut meta = Meta::of(&file, asked, gzip)?;
        if meta.len > SMALL_FILE {
            let meta = Arc::new(meta);
            self.keep(key, meta.clone());
            return Ok((meta, Some(file)));
        }
        let mut bytes = Vec::with_capacity(meta.len as usize);
        (&mut file).take(meta.len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != meta.len {
            // Changed while read: served from the file this time, remembered next time.
            drop(file);
            let file = File::open(served)?;
            let meta = Meta::of(&file, asked, gzip)?;
            return Ok((Arc::new(meta), Some(file)));
        }
        meta.body = Some(Bytes::from(bytes));
        let meta = Arc::new(meta);
        self.keep(key, meta.clone());
        Ok((meta, None))
    }

    /// Remembers `meta`, emptying the map first when it is full.
    fn keep(&self, key: (Arc<Path>, bool), meta: Arc<Meta>) {
        let size = meta.body.as_ref().map_or(0, Bytes::len);
        let mut maps = self.maps.lock();
        if maps.files.len() >= FILES || maps.bytes + size > BYTES {
            maps.files.clear();
            maps.bytes = 0;
        }
        if let Some(old) = maps.files.insert(key, meta) {
            maps.bytes -= old.body.as_ref().map_or(0, Bytes::len);
        }
        maps.bytes += size;
    }

    /// Files and content bytes remembered.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        let maps = self.maps.lock();
        (maps.files.len(), maps.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_file_is_read_once_and_reloaded_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path: Arc<Path> = Arc::from(dir.path().join("a.txt").as_path());
        std::fs::write(&path, "one").unwrap();
        let cache = Cache::default();
        let (first, file) = cache.file(&path, &path, false).unwrap();
        assert!(file.is_none());
        assert_eq!(first.body.as_deref(), Some(&b"one"[..]));
        let (again, _) = cache.file(&path, &path, false).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "served from memory");
        // Same size, new contents and time.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "two").unwrap();
        let (changed, _) = cache.file(&path, &path, false).unwrap();
        assert_eq!(changed.body.as_deref(), Some(&b"two"[..]));
        assert_ne!(changed.etag, first.etag);
        assert_eq!(cache.held(), (1, 3));
    }

    #[test]
    fn large_files_are_not_kept_and_the_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        let big: Arc<Path> = Arc::from(dir.path().join("big").as_path());
        std::fs::write(&big, vec![b'x'; SMALL_FILE as usize + 1]).unwrap();
        let cache = Cache::default();
        let (meta, file) = cache.file(&big, &big, false).unwrap();
        assert!(meta.body.is_none() && file.is_some());
        assert_eq!(cache.held(), (1, 0));
        for i in 0..FILES + 10 {
            let p: Arc<Path> = Arc::from(dir.path().join(format!("f{i}")).as_path());
            std::fs::write(&p, "x").unwrap();
            cache.file(&p, &p, false).unwrap();
        }
        let (files, bytes) = cache.held();
        assert!(
            files <= FILES && bytes <= FILES,
            "{files} files, {bytes} bytes"
        );
    }

    #[test]
    fn routes_are_remembered_for_their_ttl_only() {
        let cache = Cache::default();
        let mut calls = 0;
        for _ in 0..3 {
            cache.route("/x", || {
                calls += 1;
                None
            });
        }
        assert_eq!(calls, 1);
        for i in 0..ROUTES + 1 {
            cache.route(&format!("/{i}"), || None);
        }
        assert!(cache.maps.lock().routes.len() <= ROUTES);
    }
}
