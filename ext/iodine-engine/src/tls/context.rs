//! A TLS context: what `Iodine::TLS` holds. Certificates chosen by server name (SNI), the
//! CAs trusted to sign the peer's certificate, the ALPN protocols; the server and client
//! configurations made from them; and the reload of the certificate files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::accept::Acceptor;
use super::connect::Connector;
use super::keys;
use super::{provider, TlsError, VERSIONS};

/// Where a certificate comes from.
#[derive(Clone, Debug)]
enum Source {
    /// PEM files, read again on reload.
    Files {
        cert: PathBuf,
        key: PathBuf,
        password: Option<String>,
    },
    /// Made at start for the server name (kept as it is on reload).
    SelfSigned,
}

/// One certificate and the name it answers to (None: only as the default).
#[derive(Clone, Debug)]
struct Entry {
    name: Option<String>,
    source: Source,
    key: Arc<CertifiedKey>,
}

/// The certificates of a context, shared by every listener made from it: a reload is seen by
/// the next handshake of all of them.
#[derive(Debug, Default)]
struct Resolver {
    entries: RwLock<Vec<Entry>>,
}

impl Resolver {
    fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let entries = self.entries.read();
        let named = |want: &str| {
            entries.iter().find(|e| {
                e.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(want))
            })
        };
        let found = name.and_then(|name| {
            named(name).or_else(|| {
                // A wildcard certificate (`*.example.com`) for one label under it.
                let (_, parent) = name.split_once('.')?;
                named(&format!("*.{parent}"))
            })
        });
        // The first certificate is the default (no SNI, or a name no certificate has).
        found.or_else(|| entries.first()).map(|e| e.key.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}

/// The CAs and the protocols (ALPN), set before the context is used.
#[derive(Debug, Default)]
struct Settings {
    trust: Option<RootCertStore>,
    protocols: Vec<String>,
}

/// A TLS context (`Iodine::TLS`): certificates by server name, trusted CAs, ALPN protocols.
#[derive(Debug, Default)]
pub struct TlsContext {
    resolver: Arc<Resolver>,
    settings: Mutex<Settings>,
}

/// Contexts that serve a listener, for [`reload_all`] (SIGHUP).
static SERVING: Mutex<Vec<Weak<TlsContext>>> = Mutex::new(Vec::new());

impl TlsContext {
    /// An empty context: fine for a client; a server needs a certificate.
    pub fn new() -> Arc<TlsContext> {
        Arc::new(TlsContext::default())
    }

    /// Adds a certificate for `name`: from the PEM files `cert` and `key` (an encrypted key
    /// opened with `password`), or, when either file is missing, a new self-signed
    /// certificate for `name`. The first certificate added is the default (for clients that
    /// send no name, or one no certificate has); a name added again replaces its certificate.
    pub fn use_certificate(
        &self,
        name: Option<&str>,
        cert: Option<&Path>,
        key: Option<&Path>,
        password: Option<&str>,
    ) -> Result<(), TlsError> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let entry = match (cert, key, name) {
            (Some(cert), Some(key), _) => Entry {
                name: name.map(str::to_string),
                key: keys::load_pair(cert, key, password)?,
                source: Source::Files {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                    password: password.map(str::to_string),
                },
            },
            (_, _, Some(name)) => {
                if cert.is_some() || key.is_some() {
                    crate::warning!(
                        "TLS: a certificate needs both its file and its key file; using a self-signed certificate for {name}"
                    );
                }
                Entry {
                    name: Some(name.to_string()),
                    key: keys::self_signed(name)?,
                    source: Source::SelfSigned,
                }
            }
            (_, _, None) => {
                return Err(TlsError(
                    "a certificate needs a server name, or a certificate file and its key file"
                        .into(),
                ))
            }
        };
        let mut entries = self.resolver.entries.write();
        match entries
            .iter_mut()
            .find(|e| e.name.is_some() && e.name == entry.name)
        {
            Some(old) => *old = entry,
            None => entries.push(entry),
        }
        Ok(())
    }

    /// Whether the context has a certificate to present.
    pub fn has_certificate(&self) -> bool {
        !self.resolver.entries.read().is_empty()
    }

    /// Trusts the certificates in the PEM file `pem` (CAs or single certificates): a server
    /// then asks every client for a certificate signed by one of them; a client checks the
    /// server against them instead of the system's roots.
    pub fn trust(&self, pem: &Path) -> Result<(), TlsError> {
        let roots = keys::load_roots(pem)?;
        let mut settings = self.settings.lock();
        settings
            .trust
            .get_or_insert_with(RootCertStore::empty)
            .roots
            .extend(roots.roots);
        Ok(())
    }

    /// Offers the protocol `name` in ALPN (after those added before). The first is the one
    /// used when the peer names none of them.
    pub fn add_protocol(&self, name: &str) -> Result<(), TlsError> {
        if name.is_empty() || name.len() > 255 {
            return Err(TlsError(format!(
                "an ALPN protocol name is 1 to 255 bytes, got {name:?}"
            )));
        }
        let mut settings = self.settings.lock();
        if !settings.protocols.iter().any(|p| p == name) {
            settings.protocols.push(name.to_string());
        }
        Ok(())
    }

    /// The ALPN protocols, in the order they were added.
    pub fn protocols(&self) -> Vec<String> {
        self.settings.lock().protocols.clone()
    }

    /// Reads the certificate files again. All of them load, or none changes: a file that
    /// fails keeps every old certificate, and the error is returned (and logged once).
    pub fn reload(&self) -> Result<(), TlsError> {
        let current = self.resolver.entries.read().clone();
        let mut fresh = Vec::with_capacity(current.len());
        for entry in current {
            let key = match &entry.source {
                Source::Files {
                    cert,
                    key,
                    password,
                } => keys::load_pair(cert, key, password.as_deref()).map_err(|e| {
                    crate::error!("TLS reload failed, the old certificates stay: {e}");
                    e
                })?,
                Source::SelfSigned => entry.key.clone(),
            };
            fresh.push(Entry { key, ..entry });
        }
        *self.resolver.entries.write() = fresh;
        Ok(())
    }

    /// The server side for a listener: `also` (`http/1.1` for HTTP) is offered
    /// after the context's own; a handshake must end within `deadline`. A context without
    /// a certificate gets a self-signed one for `host`. `http` makes plain HTTP sent to the
    /// port get a 400.
    pub fn acceptor(
        self: &Arc<Self>,
        also: &[&str],
        deadline: Duration,
        host: &str,
        http: bool,
    ) -> Result<Acceptor, TlsError> {
        if !self.has_certificate() {
            crate::warning!("TLS: no certificate given, using a self-signed one for {host}");
            self.use_certificate(Some(host), None, None, None)?;
        }
        let (trust, mut protocols) = {
            let settings = self.settings.lock();
            (settings.trust.clone(), settings.protocols.clone())
        };
        // The listener's own protocols join the context's (after them: the first stays the
        // one used when none is agreed), as the C gem's HTTP listeners added `http/1.1`.
        for own in also {
            if !protocols.iter().any(|p| p == own) {
                protocols.push(own.to_string());
            }
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError(format!("TLS setup: {e}")))?;
        let builder = match trust {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| {
                            TlsError(format!("TLS: the trusted CAs can't be used: {e}"))
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let plain = builder.with_cert_resolver(self.resolver.clone());
        let mut offered = plain.clone();
        offered.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        let mut serving = SERVING.lock();
        serving.retain(|c| c.strong_count() > 0);
        if !serving.iter().any(|c| c.as_ptr() == Arc::as_ptr(self)) {
            serving.push(Arc::downgrade(self));
        }
        Ok(Acceptor::new(
            Arc::new(offered),
            Arc::new(plain),
            deadline,
            http,
        ))
    }

    /// The client side: the server is checked against the trusted CAs (or the system's roots
    /// when none were given); the context's first certificate from files, if any, is
    /// presented when the server asks for one.
    pub fn connector(&self) -> Result<Connector, TlsError> {
        let (trust, protocols) = {
            let settings = self.settings.lock();
            (settings.trust.clone(), settings.protocols.clone())
        };
        let roots = match trust {
            Some(roots) => Arc::new(roots),
            None => system_roots(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError(format!("TLS setup: {e}")))?
            .with_root_certificates(roots);
        let own = self
            .resolver
            .entries
            .read()
            .iter()
            .find(|e| matches!(e.source, Source::Files { .. }))
            .map(|e| e.key.clone());
        let mut config = match own {
            Some(key) => builder
                .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(Connector::new(Arc::new(config)))
    }
}

/// Reads the certificate files of every context that serves a listener again (SIGHUP).
/// Contexts whose files fail keep their certificates (one error line each).
pub fn reload_all() {
    let serving: Vec<Arc<TlsContext>> = SERVING.lock().iter().filter_map(Weak::upgrade).collect();
    let mut reloaded = 0;
    for context in serving {
        if context.reload().is_ok() {
            reloaded += 1;
        }
    }
    crate::info!("TLS: certificates reloaded for {reloaded} context(s)");
}

/// The system's trusted roots (read once; empty, with a warning, when there are none).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                crate::warning!(
                    "TLS: no system root certificates found; servers can only be verified with Iodine::TLS#trust"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_certificate_is_the_default_and_names_pick_theirs() {
        let tls = TlsContext::new();
        tls.use_certificate(Some("one.test"), None, None, None)
            .unwrap();
        tls.use_certificate(Some("*.two.test"), None, None, None)
            .unwrap();
        let one = tls.resolver.find(Some("one.test")).unwrap();
        let two = tls.resolver.find(Some("a.two.test")).unwrap();
        assert!(!Arc::ptr_eq(&one, &two));
        assert!(Arc::ptr_eq(&tls.resolver.find(None).unwrap(), &one));
        assert!(Arc::ptr_eq(
            &tls.resolver.find(Some("ONE.TEST")).unwrap(),
            &one
        ));
        assert!(Arc::ptr_eq(
            &tls.resolver.find(Some("b.a.two.test")).unwrap(),
            &one
        ));
    }

    #[test]
    fn a_certificate_needs_a_name_or_its_files() {
        let tls = TlsContext::new();
        assert!(tls.use_certificate(None, None, None, None).is_err());
        assert!(!tls.has_certificate());
    }

    #[test]
    fn protocol_names_are_checked_and_kept_in_order() {
        let tls = TlsContext::new();
        tls.add_protocol("h2").unwrap();
        tls.add_protocol("http/1.1").unwrap();
        tls.add_protocol("h2").unwrap();
        assert!(tls.add_protocol("").is_err());
        assert_eq!(tls.protocols(), ["h2", "http/1.1"]);
    }
}
