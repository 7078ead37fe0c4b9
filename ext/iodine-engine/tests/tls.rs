//! TLS on real sockets, with rustls as the client: HTTP and WebSocket over TLS, SNI, ALPN,
//! mTLS, plain HTTP on a TLS port, handshakes that never finish, and keys on disk
//! (encrypted, mismatched, missing).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iodine_engine::http::{Body, HttpSettings, Reply, Request, Response};
use iodine_engine::link::Protocol;
use iodine_engine::tls::TlsContext;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::ws::{frame, read_frame, server, HANDSHAKE};
use support::{read_response, TestServer};

/// A CA, a server certificate it signed for `localhost`/127.0.0.1, a client certificate it
/// signed, and a second CA's client certificate: PEM files in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (cert, Issuer::new(params, key))
        };
        let (ca_cert, issuer) = ca("Test CA");
        write("ca.pem", ca_cert.pem());
        let leaf = |names: Vec<String>, issuer: &Issuer<'_, KeyPair>, file: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, issuer)
                .unwrap();
            write(&format!("{file}.pem"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            &issuer,
            "server",
        );
        leaf(vec!["other.test".into()], &issuer, "other");
        leaf(vec!["client".into()], &issuer, "client");
        let (_, stranger) = ca("Another CA");
        leaf(vec!["client".into()], &stranger, "stranger");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A context serving the `localhost` certificate.
    fn server_context(&self) -> Arc<TlsContext> {
        let tls = TlsContext::new();
        tls.use_certificate(
            Some("localhost"),
            Some(&self.path("server.pem")),
            Some(&self.path("server.key")),
            None,
        )
        .unwrap();
        tls
    }

    /// A rustls client trusting the CA, presenting `client` (a file stem) when given.
    fn client(&self, client: Option<&str>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            #[allow(deprecated)]
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match client {
            Some(stem) => {
                let chain = CertificateDer::pem_file_iter(self.path(&format!("{stem}.pem")))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{stem}.key"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `server` as `name`, handshake done.
fn connect(
    server: &TestServer,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<Tls> {
    let tcp = server.connect();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// An HTTP server over TLS whose app answers the request's path.
fn https(tls: &Arc<TlsContext>, mut settings: HttpSettings) -> TestServer {
    settings.tls = Some(
        tls.acceptor(&["http/1.1"], settings.head_timeout, "localhost", true)
            .unwrap(),
    );
    let handler = |req: Request, reply: Reply| {
        let _ = reply.send(Response {
            status: 200,
            headers: vec![],
            body: Body::Full(bytes::Bytes::from(format!(
                "path {} {}",
                req.uri.path(),
                req.tls
            ))),
        });
    };
    TestServer::start(settings, Arc::new(handler))
}

#[test]
fn http_over_tls_with_alpn_and_keep_alive() {
    let pki = Pki::new();
    let server = https(&pki.server_context(), HttpSettings::default());
    let mut tls = connect(&server, pki.client(None, &["h2", "http/1.1"]), "localhost").unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    for path in ["/a", "/b", "/after-a-park"] {
        if path == "/after-a-park" {
            // Quiet past PARK_AFTER: the connection let hyper go; TLS carries on.
            std::thread::sleep(Duration::from_millis(1500));
        }
        write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let answer = read_response(&mut tls);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("path {path} true")), "{answer}");
    }
    // A client offering only protocols the server doesn't speak still gets the first one
    // (no ALPN agreed), as with the C gem.
    let mut other = connect(&server, pki.client(None, &["spdy/1"]), "localhost").unwrap();
    assert_eq!(other.conn.alpn_protocol(), None);
    other
        .write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut other).ends_with("path /c true"));
}

#[test]
fn websocket_over_tls_echoes_small_and_large_messages() {
    let pki = Pki::new();
    let acceptor = pki
        .server_context()
        .acceptor(&["http/1.1"], Duration::from_secs(5), "localhost", true)
        .unwrap();
    let settings = HttpSettings {
        tls: Some(acceptor),
        ..HttpSettings::default()
    };
    let (server, _seen) = server(Protocol::WebSocket, settings);
    let mut tls = connect(&server, pki.client(None, &[]), "localhost").unwrap();
    tls.write_all(HANDSHAKE.as_bytes()).unwrap();
    let head = read_response(&mut tls);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for size in [5usize, 70_000] {
        let payload = vec![b'x'; size];
        tls.write_all(&frame(0x2, &payload, true)).unwrap();
        assert_eq!(read_frame(&mut tls), Some((0x2, payload)));
    }
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_get_the_first() {
    let pki = Pki::new();
    let tls = pki.server_context();
    tls.use_certificate(
        Some("other.test"),
        Some(&pki.path("other.pem")),
        Some(&pki.path("other.key")),
        None,
    )
    .unwrap();
    let server = https(&tls, HttpSettings::default());
    let client = pki.client(None, &[]);
    assert!(connect(&server, client.clone(), "other.test").is_ok());
    assert!(connect(&server, client.clone(), "localhost").is_ok());
    // "nowhere.test" gets the default (localhost) certificate, which the client refuses.
    assert!(connect(&server, client, "nowhere.test").is_err());
}

#[test]
fn mtls_admits_clients_of_the_trusted_ca_only() {
    let pki = Pki::new();
    let tls = pki.server_context();
    tls.trust(&pki.path("ca.pem")).unwrap();
    let server = https(&tls, HttpSettings::default());
    let mut ok = connect(&server, pki.client(Some("client"), &[]), "localhost").unwrap();
    ok.write_all(b"GET /in HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut ok).ends_with("path /in true"));
    // TLS 1.3: the client learns of the refusal when it next reads.
    for stem in [None, Some("stranger")] {
        let refused = connect(&server, pki.client(stem, &[]), "localhost").and_then(|mut s| {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut buf = [0u8; 64];
            s.read(&mut buf)
        });
        assert!(
            refused.is_err() || refused.is_ok_and(|n| n == 0),
            "{stem:?} was let in"
        );
    }
}

#[test]
fn plain_http_on_a_tls_port_gets_a_400_and_garbage_a_close() {
    let pki = Pki::new();
    let server = https(&pki.server_context(), HttpSettings::default());
    let answer = server.roundtrip_close(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer}");
    // A record that claims to be a handshake but is garbage, and a truncated ClientHello.
    for bytes in [
        &b"\x16\x03\x01\x00\x05hello"[..],
        &b"\x16\x03\x01\x02\x00\x01\x00"[..],
    ] {
        let mut s = server.connect();
        s.write_all(bytes).unwrap();
        if bytes.len() == 7 {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1"));
    }
    // The server still serves TLS clients.
    let mut tls = connect(&server, pki.client(None, &[]), "localhost").unwrap();
    tls.write_all(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut tls).ends_with("path /still true"));
}

#[test]
fn a_handshake_that_never_finishes_is_cut_at_the_deadline() {
    let pki = Pki::new();
    let settings = HttpSettings {
        head_timeout: Duration::from_millis(500),
        ..HttpSettings::default()
    };
    let server = https(&pki.server_context(), settings);
    let mut s = server.connect();
    s.write_all(b"\x16\x03\x01").unwrap(); // the start of a ClientHello, then nothing
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn keys_on_disk_encrypted_mismatched_or_missing() {
    let pki = Pki::new();
    let key = pki.path("server.key");
    // An encrypted PKCS#8 copy of the server key (made with openssl, when there is one).
    let encrypted = pki.path("server.enc.key");
    let made = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&encrypted)
        .status();
    let tls = TlsContext::new();
    let cert = pki.path("server.pem");
    if made.is_ok_and(|s| s.success()) {
        let open = |pass: Option<&str>| {
            tls.use_certificate(Some("localhost"), Some(&cert), Some(&encrypted), pass)
        };
        assert!(open(Some("secret")).is_ok());
        assert!(open(Some("wrong"))
            .unwrap_err()
            .0
            .contains("wrong password"));
        assert!(open(None).unwrap_err().0.contains("encrypted"));
    } else {
        eprintln!("skipped the encrypted key: no openssl to make one");
    }
    let err = |cert: &Path, key: &Path| {
        TlsContext::new()
            .use_certificate(None, Some(cert), Some(key), None)
            .unwrap_err()
            .0
    };
    assert!(err(&cert, &pki.path("other.key")).contains("don't match"));
    assert!(err(&pki.path("missing.pem"), &key).contains("couldn't read"));
    assert!(err(&key, &key).contains("no certificate"));
}

#[test]
fn reload_reads_the_files_again_and_a_bad_file_keeps_the_old_certificate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::copy(pki.path("server.pem"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let tls = TlsContext::new();
    tls.use_certificate(None, Some(&cert), Some(&key), None)
        .unwrap();
    let server = https(&tls, HttpSettings::default());
    let client = pki.client(None, &[]);
    assert!(connect(&server, client.clone(), "localhost").is_ok());
    // The other certificate (for other.test) replaces it: localhost is no longer valid.
    std::fs::copy(pki.path("other.pem"), &cert).unwrap();
    std::fs::copy(pki.path("other.key"), &key).unwrap();
    tls.reload().unwrap();
    assert!(connect(&server, client.clone(), "other.test").is_ok());
    assert!(connect(&server, client.clone(), "localhost").is_err());
    // A broken file: the reload fails and the certificate in use stays.
    std::fs::write(&key, "not a key").unwrap();
    assert!(tls.reload().is_err());
    assert!(connect(&server, client, "other.test").is_ok());
}

#[test]
fn an_http_listener_adds_http_1_1_to_the_contexts_protocols() {
    let pki = Pki::new();
    let tls = pki.server_context();
    tls.add_protocol("chat/1").unwrap();
    let server = https(&tls, HttpSettings::default());
    let h1 = connect(&server, pki.client(None, &["http/1.1"]), "localhost").unwrap();
    assert_eq!(h1.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let chat = connect(
        &server,
        pki.client(None, &["chat/1", "http/1.1"]),
        "localhost",
    )
    .unwrap();
    assert_eq!(chat.conn.alpn_protocol(), Some(&b"chat/1"[..]));
}
