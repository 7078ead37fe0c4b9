//! Static files from a public folder (`public:` / `-www`), served on the IO threads before
//! the application sees the request: GET and HEAD (OPTIONS answers `Allow`), `index.html`
//! for paths ending in `/`, a `.gz` twin when the client accepts gzip, a quoted `ETag` and
//! `Last-Modified` with `If-None-Match` / `If-Modified-Since` (304), single byte ranges
//! (206 / 416, `If-Range`). Anything else — other methods, paths that are refused or find
//! nothing — goes on to the application.
//!
//! Rules the C gem got wrong and this follows instead: quoted ETags, `If-Modified-Since`,
//! correct suffix ranges, `Vary: Accept-Encoding` when a `.gz` twin exists, PUT/DELETE/PATCH
//! on a file go to the application (no 403). A request with several ranges gets the whole
//! file (200), as RFC 9110 allows.

mod cache;
mod path;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method};

use crate::http::{Body, Response, ResponseBody};

pub use cache::{Cache, Meta};
pub use path::segments;

/// The largest `<code>.html` error page used.
const ERROR_PAGE_LIMIT: u64 = 1024 * 1024;

/// The default `Cache-Control` of static files (the C gem's).
pub const CACHE_CONTROL: &str = "max-age=3600";

/// A public folder.
#[derive(Debug)]
pub struct Public {
    root: PathBuf,
    cache_control: HeaderValue,
    cache: Cache,
}

impl Public {
    /// Serves `root` (which must be a folder) with `cache_control` on every file.
    pub fn new(root: impl AsRef<Path>, cache_control: &str) -> io::Result<Public> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a folder"));
        }
        Ok(Public {
            root,
            cache_control: HeaderValue::from_str(cache_control).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "invalid Cache-Control")
            })?,
            cache: Cache::default(),
        })
    }

    /// The folder (resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder's page for an error the server answers itself (`<code>.html`, at most
    /// 1 MiB), if there is one. Through the cache: a flood of bad requests costs a `stat`
    /// each, not a path resolution and a read.
    pub fn error_page(&self, status: u16) -> Option<Bytes> {
        let (page, _) = self.find(&format!("/{status}.html"))?;
        let (meta, file) = self.cache.file(&page, &page, false).ok()?;
        match (&meta.body, file) {
            (Some(bytes), _) => Some(bytes.clone()),
            (None, Some(mut file)) if meta.len <= ERROR_PAGE_LIMIT => {
                let mut bytes = Vec::with_capacity(meta.len as usize);
                io::Read::read_to_end(&mut io::Read::take(&mut file, meta.len), &mut bytes).ok()?;
                Some(Bytes::from(bytes))
            }
            _ => None,
        }
    }

    /// Where request path `raw` leads (file and gzip twin), remembered by the cache.
    fn find(&self, raw: &str) -> cache::Found {
        self.cache.route(raw, || {
            let file = path::resolve(&self.root, raw)?;
            let twin = gz_twin(&self.root, &file).map(Arc::from);
            Some((Arc::from(file), twin))
        })
    }

    /// The answer for a request, or None when it is the application's.
    pub fn serve(&self, method: &Method, raw_path: &str, headers: &HeaderMap) -> Option<Answer> {
        let head = *method == Method::HEAD;
        if *method != Method::GET && !head && *method != Method::OPTIONS {
            return None;
        }
        let (file, twin) = self.find(raw_path)?;
        if *method == Method::OPTIONS {
            let mut allow = HeaderMap::with_capacity(1);
            allow.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            return Some(Answer::new(200, allow, Body::Empty));
        }
        respond(
            &file,
            twin.as_ref(),
            headers,
            &self.cache_control,
            Some(&self.cache),
        )
        .ok()
    }
}

/// A static answer: its headers are made by the server (valid by construction), so they go
/// to hyper as they are.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, `Content-Length` included (a HEAD answer carries it too).
    pub headers: HeaderMap,
    /// The body.
    pub body: Body,
}

impl Answer {
    fn new(status: u16, headers: HeaderMap, body: Body) -> Answer {
        Answer {
            status,
            headers,
            body,
        }
    }

    /// As a hyper response; `head_request` leaves the body out.
    pub(crate) fn into_hyper(self, head_request: bool) -> hyper::Response<ResponseBody> {
        crate::http::server_made(self.status, self.headers, self.body, head_request)
    }

    /// As an application's response (raw header pairs), to merge with an app's headers.
    pub fn into_response(self) -> Response {
        let mut headers = Vec::with_capacity(self.headers.len());
        let mut last = None;
        for (name, value) in self.headers {
            if let Some(name) = name {
                last = Some(Bytes::copy_from_slice(name.as_str().as_bytes()));
            }
            if let Some(name) = &last {
                headers.push((name.clone(), Bytes::copy_from_slice(value.as_bytes())));
            }
        }
        Response {
            status: self.status,
            headers,
            body: self.body,
        }
    }
}

/// The answer with `file` (or its gzip `twin`, when the client takes gzip) to a GET with
/// `headers`: validators, 304, ranges. Through `cache` when given.
fn respond(
    file: &Arc<Path>,
    twin: Option<&Arc<Path>>,
    headers: &HeaderMap,
    cache_control: &HeaderValue,
    cache: Option<&Cache>,
) -> io::Result<Answer> {
    let served = match twin {
        Some(twin) if accepts_gzip(headers) => twin,
        _ => file,
    };
    let gzip = !Arc::ptr_eq(served, file);
    let (meta, open) = match cache {
        Some(cache) => cache.file(served, file, gzip)?,
        None => {
            let f = File::open(served)?;
            (Arc::new(Meta::of(&f, file, gzip)?), Some(f))
        }
    };
    let mut out = HeaderMap::with_capacity(12);
    out.insert(header::ETAG, meta.etag.clone());
    out.insert(header::LAST_MODIFIED, meta.last_modified.clone());
    out.insert(header::CACHE_CONTROL, cache_control.clone());
    if twin.is_some() {
        out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if not_modified(headers, meta.tag(), meta.mtime) {
        return Ok(Answer::new(304, out, Body::Empty));
    }
    out.insert(header::CONTENT_TYPE, meta.content_type.clone());
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if gzip {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let len = meta.len;
    let (status, start, count) = match range(headers, meta.tag(), meta.mtime, len) {
        Range::Whole => (200, 0, len),
        Range::Part(start, end) => {
            out.insert(
                header::CONTENT_RANGE,
                text(format!("bytes {start}-{end}/{len}")),
            );
            (206, start, end - start + 1)
        }
        Range::Unsatisfiable => {
            out.insert(header::CONTENT_RANGE, text(format!("bytes */{len}")));
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            return Ok(Answer::new(416, out, Body::Empty));
        }
    };
    let body = match (&meta.body, open) {
        (Some(bytes), _) => Body::Full(bytes.slice(start as usize..(start + count) as usize)),
        (None, Some(mut f)) => {
            if start > 0 {
                f.seek(SeekFrom::Start(start))?;
            }
            Body::File(f, count)
        }
        (None, None) => return Err(io::ErrorKind::NotFound.into()),
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    Ok(Answer::new(status, out, body))
}

/// A header value from text the server wrote (always visible ASCII).
fn text(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Headers of a file answer that describe its body: they stay the server's when an app's
/// `X-Sendfile` answer is merged; the app's own other headers win.
const FILE_OWNED: &[&str] = &[
    "content-length",
    "content-range",
    "content-encoding",
    "accept-ranges",
    "etag",
    "last-modified",
    "vary",
];

/// An application's `X-Sendfile` answer: `path` (absolute, chosen by the app) served with
/// every static-file rule (validators, ranges, gzip twin), the app's other headers kept
/// (they win over the file's, except those describing the body). 404 when there is no such
/// regular file. `status` is the app's (used when the file is served whole).
pub fn send_file(
    path: &Path,
    status: u16,
    app_headers: Vec<(Bytes, Bytes)>,
    request: &HeaderMap,
    cache_control: &str,
) -> Response {
    let Some(file) = path
        .canonicalize()
        .ok()
        .filter(|p| p.metadata().is_ok_and(|m| m.is_file()))
    else {
        crate::debug!("X-Sendfile: no file at {}", path.display());
        return Response::new(
            404,
            vec![pair("content-type", "text/plain")],
            Bytes::from_static(b"404 Not Found"),
        );
    };
    let root = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let twin = gz_twin(&root, &file).map(Arc::from);
    let cache_control = HeaderValue::from_str(cache_control)
        .unwrap_or_else(|_| HeaderValue::from_static(CACHE_CONTROL));
    let file: Arc<Path> = Arc::from(file);
    // A non-2xx answer (a 503 maintenance page, a custom 404) keeps its status and sends the
    // whole file: ranges and validators are for the resource itself, not for an error page.
    let success = (200..300).contains(&status);
    let mut plain = HeaderMap::new();
    if !success {
        for value in request.get_all(header::ACCEPT_ENCODING) {
            plain.append(header::ACCEPT_ENCODING, value.clone());
        }
    }
    let request = if success { request } else { &plain };
    let mut answer = match respond(&file, twin.as_ref(), request, &cache_control, None) {
        Ok(answer) => answer.into_response(),
        Err(e) => {
            crate::error!("X-Sendfile: {}: {e}", path.display());
            return Response::new(
                500,
                vec![pair("content-type", "text/plain")],
                Bytes::from_static(b"500 Internal Server Error"),
            );
        }
    };
    if answer.status == 200 {
        answer.status = status;
    }
    for (name, value) in app_headers {
        let lower = String::from_utf8_lossy(&name).to_ascii_lowercase();
        if lower == "x-sendfile" || FILE_OWNED.contains(&lower.as_str()) {
            continue;
        }
        answer
            .headers
            .retain(|(n, _)| !n.as_ref().eq_ignore_ascii_case(lower.as_bytes()));
        answer
            .headers
            .push((Bytes::from(lower.into_bytes()), value));
    }
    answer
}

fn pair(name: &'static str, value: &str) -> (Bytes, Bytes) {
    (
        Bytes::from_static(name.as_bytes()),
        Bytes::copy_from_slice(value.as_bytes()),
    )
}

/// `file.gz` when it exists as a regular file inside the folder (and `file` is no `.gz`).
fn gz_twin(root: &Path, file: &Path) -> Option<PathBuf> {
    if file.extension().is_some_and(|e| e == "gz") {
        return None;
    }
    let mut name = file.as_os_str().to_owned();
    name.push(".gz");
    path::inside(root, Path::new(&name))
}

/// Whether `Accept-Encoding` allows gzip (listed, and not with `q=0`).
/// Whether the client takes gzip (RFC 9110 §12.5.3): a `gzip` (or `x-gzip`) listed with a
/// non-zero weight, or else a `*` with one. An explicit `gzip;q=0` refuses it whatever `*`
/// says; a weight that doesn't parse counts as 0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip: Option<bool> = None;
    let mut any: Option<bool> = None;
    let items = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let weight = parts
            .find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        let accepted = weight > 0.0;
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(gzip.unwrap_or(true) && accepted);
        } else if coding == "*" {
            any = Some(any.unwrap_or(true) && accepted);
        }
    }
    gzip.or(any).unwrap_or(false)
}

fn content_type(file: &Path) -> String {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    match mime.type_() == mime_guess::mime::TEXT || mime.subtype() == "javascript" {
        true => format!("{mime}; charset=utf-8"),
        false => mime.to_string(),
    }
}

/// RFC 9110 §13.1.2/13.1.3: `If-None-Match` (any listed tag, weak compare, or `*`) decides
/// when present; otherwise `If-Modified-Since` (no change since that second).
fn not_modified(headers: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| secs(mtime) <= secs(since))
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

enum Range {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// RFC 9110 §14: one `bytes=` range (`a-b`, `a-`, `-n`); several ranges, other units or a
/// malformed header give the whole file; `If-Range` that no longer matches too.
fn range(headers: &HeaderMap, etag: &str, mtime: SystemTime, len: u64) -> Range {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Range::Whole;
    };
    // An empty file has no bytes to pick: it is sent whole (200), as nginx does.
    if len == 0 {
        return Range::Whole;
    }
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let current = match httpdate::parse_http_date(if_range) {
            Ok(date) => secs(date) == secs(mtime),
            Err(_) => if_range.trim() == etag,
        };
        if !current {
            return Range::Whole;
        }
    }
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match parse(b) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(len.saturating_sub(n), len - 1),
            None => Range::Whole,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return Range::Whole;
            };
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                parse(b)
            };
            match end {
                None => Range::Whole,
                Some(end) if end < start => Range::Whole,
                Some(_) if start >= len => Range::Unsatisfiable,
                Some(end) => Range::Part(start, end.min(len - 1)),
            }
        }
        (true, true) => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, Public) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.txt"), "hello world").unwrap();
        std::fs::write(dir.path().join("app.js"), "js").unwrap();
        std::fs::write(dir.path().join("app.js.gz"), "gzipped").unwrap();
        std::fs::create_dir(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("docs/index.html"), "<p>").unwrap();
        let public = Public::new(dir.path(), CACHE_CONTROL).unwrap();
        (dir, public)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn header_of<'a>(r: &'a Answer, name: &str) -> Option<&'a str> {
        r.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn get(p: &Public, path: &str, h: &[(&'static str, &str)]) -> Option<Answer> {
        p.serve(&Method::GET, path, &headers(h))
    }

    fn body_len(r: &Answer) -> u64 {
        match &r.body {
            Body::File(_, len) => *len,
            Body::Full(b) => b.len() as u64,
            _ => 0,
        }
    }

    #[test]
    fn files_get_their_type_validators_and_cache_control() {
        let (_d, p) = folder();
        let r = get(&p, "/hello.txt", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(body_len(&r), 11);
        assert_eq!(
            header_of(&r, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header_of(&r, "cache-control"), Some("max-age=3600"));
        let etag = header_of(&r, "etag").unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "quoted: {etag}"
        );
        assert!(header_of(&r, "last-modified").is_some());
        assert_eq!(get(&p, "/docs/", &[]).map(|r| r.status), Some(200));
        assert!(get(&p, "/docs", &[]).is_none(), "no redirect: the app's");
        assert!(get(&p, "/nothing", &[]).is_none());
        assert!(p
            .serve(&Method::POST, "/hello.txt", &HeaderMap::new())
            .is_none());
        assert!(p
            .serve(&Method::DELETE, "/hello.txt", &HeaderMap::new())
            .is_none());
        let options = p
            .serve(&Method::OPTIONS, "/hello.txt", &HeaderMap::new())
            .unwrap();
        assert_eq!(header_of(&options, "allow"), Some("GET, HEAD, OPTIONS"));
    }

    #[test]
    fn error_pages_come_from_the_folder_and_follow_its_changes() {
        let (d, p) = folder();
        assert_eq!(p.error_page(404), None);
        std::fs::write(d.path().join("400.html"), "<p>bad</p>").unwrap();
        assert_eq!(p.error_page(400).as_deref(), Some(&b"<p>bad</p>"[..]));
        std::fs::write(d.path().join("400.html"), "<p>worse</p>").unwrap();
        assert_eq!(p.error_page(400).as_deref(), Some(&b"<p>worse</p>"[..]));
        let big = vec![b'x'; ERROR_PAGE_LIMIT as usize + 1];
        std::fs::write(d.path().join("500.html"), &big).unwrap();
        assert_eq!(p.error_page(500), None, "over the limit");
        std::fs::write(d.path().join("500.html"), &big[..100_000]).unwrap();
        assert_eq!(p.error_page(500).map(|b| b.len()), Some(100_000));
    }

    #[test]
    fn validators_give_304() {
        let (_d, p) = folder();
        let r = get(&p, "/hello.txt", &[]).unwrap();
        let etag = header_of(&r, "etag").unwrap().to_owned();
        let modified = header_of(&r, "last-modified").unwrap().to_owned();
        assert_eq!(
            get(&p, "/hello.txt", &[("if-none-match", &etag)])
                .unwrap()
                .status,
            304
        );
        let weak = format!("\"x\", W/{etag}");
        assert_eq!(
            get(&p, "/hello.txt", &[("if-none-match", &weak)])
                .unwrap()
                .status,
            304
        );
        assert_eq!(
            get(&p, "/hello.txt", &[("if-none-match", "\"other\"")])
                .unwrap()
                .status,
            200
        );
        assert_eq!(
            get(&p, "/hello.txt", &[("if-modified-since", &modified)])
                .unwrap()
                .status,
            304
        );
        let old = "Mon, 01 Jan 2001 00:00:00 GMT";
        assert_eq!(
            get(&p, "/hello.txt", &[("if-modified-since", old)])
                .unwrap()
                .status,
            200
        );
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let (_d, p) = folder();
        let part = |range: &str| {
            let r = get(&p, "/hello.txt", &[("range", range)]).unwrap();
            (
                r.status,
                header_of(&r, "content-range").map(str::to_owned),
                body_len(&r),
            )
        };
        assert_eq!(part("bytes=0-4"), (206, Some("bytes 0-4/11".into()), 5));
        assert_eq!(part("bytes=6-"), (206, Some("bytes 6-10/11".into()), 5));
        assert_eq!(part("bytes=-3"), (206, Some("bytes 8-10/11".into()), 3));
        assert_eq!(part("bytes=-50"), (206, Some("bytes 0-10/11".into()), 11));
        assert_eq!(part("bytes=5-100"), (206, Some("bytes 5-10/11".into()), 6));
        assert_eq!(part("bytes=11-"), (416, Some("bytes */11".into()), 0));
        assert_eq!(part("bytes=-0"), (416, Some("bytes */11".into()), 0));
        assert_eq!(part("bytes=0-1,3-4"), (200, None, 11));
        assert_eq!(part("items=0-1"), (200, None, 11));
        assert_eq!(part("bytes=4-2"), (200, None, 11));
        let stale = get(
            &p,
            "/hello.txt",
            &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
        )
        .unwrap();
        assert_eq!(stale.status, 200);
    }

    #[test]
    fn a_gz_twin_is_preferred_when_accepted_and_always_varies() {
        let (_d, p) = folder();
        let r = get(&p, "/app.js", &[("accept-encoding", "br, gzip")]).unwrap();
        assert_eq!(header_of(&r, "content-encoding"), Some("gzip"));
        assert_eq!(
            header_of(&r, "content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(header_of(&r, "vary"), Some("Accept-Encoding"));
        assert_eq!(body_len(&r), 7);
        let plain = get(&p, "/app.js", &[("accept-encoding", "gzip;q=0")]).unwrap();
        assert_eq!(header_of(&plain, "content-encoding"), None);
        assert_eq!(header_of(&plain, "vary"), Some("Accept-Encoding"));
        assert_eq!(body_len(&plain), 2);
        let hello = get(&p, "/hello.txt", &[("accept-encoding", "gzip")]).unwrap();
        assert_eq!(header_of(&hello, "vary"), None);
    }

    #[test]
    fn an_explicit_gzip_q0_refuses_the_twin_whatever_the_wildcard_says() {
        let (_d, p) = folder();
        let encoding = |value: &str| {
            let r = get(&p, "/app.js", &[("accept-encoding", value)]).unwrap();
            header_of(&r, "content-encoding").map(str::to_owned)
        };
        for refused in [
            "gzip;q=0, *",
            "*, gzip;q=0",
            "gzip;Q=0",
            "gzip; q=0.000",
            "*;q=0",
            "br",
        ] {
            assert_eq!(encoding(refused), None, "{refused}");
        }
        for taken in ["*", "gzip;q=0.5", "br, *;q=0.1", "x-gzip", "GZIP"] {
            assert_eq!(encoding(taken).as_deref(), Some("gzip"), "{taken}");
        }
    }

    #[test]
    fn an_empty_file_ignores_ranges() {
        let (dir, p) = folder();
        std::fs::write(dir.path().join("empty.txt"), "").unwrap();
        for range in ["bytes=0-", "bytes=-5", "bytes=0-0", "bytes=3-"] {
            let r = get(&p, "/empty.txt", &[("range", range)]).unwrap();
            assert_eq!((r.status, body_len(&r)), (200, 0), "{range}");
            assert_eq!(header_of(&r, "content-range"), None, "{range}");
        }
    }

    #[test]
    fn x_sendfile_keeps_an_error_status_and_sends_the_whole_page() {
        let (dir, _p) = folder();
        let page = dir.path().join("hello.txt");
        let request = headers(&[("range", "bytes=0-1"), ("if-none-match", "*")]);
        let answer = send_file(&page, 503, Vec::new(), &request, CACHE_CONTROL);
        assert_eq!(answer.status, 503);
        let ok = send_file(&page, 200, Vec::new(), &request, CACHE_CONTROL);
        assert_eq!(ok.status, 304, "validators still apply to a 2xx answer");
        let ranged = send_file(
            &page,
            200,
            Vec::new(),
            &headers(&[("range", "bytes=0-1")]),
            CACHE_CONTROL,
        );
        assert_eq!(ranged.status, 206);
    }
}
