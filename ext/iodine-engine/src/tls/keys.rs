//! Certificates and keys: PEM files (plain or encrypted PKCS#8 keys) and self-signed ones.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::{provider, TlsError};

/// How long a self-signed certificate is valid (the C gem's 180 days).
const SELF_SIGNED_DAYS: i64 = 180;

/// The certificate chain in a PEM file (the server's own certificate first).
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "the certificate file {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "the certificate file {} holds no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

/// The private key in a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or an encrypted PKCS#8
/// key opened with `password`.
pub fn load_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "key")?;
    let text = String::from_utf8_lossy(&pem);
    if let Some(block) = pem_block(&text, "ENCRYPTED PRIVATE KEY") {
        let Some(password) = password else {
            return Err(TlsError(format!(
                "the key file {} is encrypted: give its password (-tls-pass)",
                path.display()
            )));
        };
        return decrypt(block, password).map_err(|why| {
            TlsError(format!(
                "couldn't open the key file {}: {why}",
                path.display()
            ))
        });
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError(format!(
            "the key file {} uses OpenSSL's legacy encryption: convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`",
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError(format!(
            "the key file {} holds no private key ({e})",
            path.display()
        ))
    })
}

/// A certificate and the key it was issued for, checked to belong together.
pub fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                TlsError("the certificate and the private key don't match".into())
            }
            other => TlsError(format!("unusable certificate or key: {other}")),
        })
}

/// The certificate and key of `cert` and `key` (files), checked.
pub fn load_pair(
    cert: &Path,
    key: &Path,
    password: Option<&str>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_chain(cert)?;
    let der = load_key(key, password)?;
    certified(chain, der).map_err(|TlsError(why)| {
        TlsError(format!("{} and {}: {why}", cert.display(), key.display()))
    })
}

/// A new self-signed certificate for `name` (a host name or an IP address): ECDSA P-256,
/// valid from yesterday for 180 days, `name` as its common name and alternative name.
pub fn self_signed(name: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let fail = |e: rcgen::Error| {
        TlsError(format!(
            "couldn't make a self-signed certificate for {name}: {e}"
        ))
    };
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    let signing = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&signing).map_err(fail)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing.serialize_der()));
    certified(vec![cert.der().clone()], key)
}

/// The certificates of the CAs (or single certificates) in a PEM file, as trust roots.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_chain(path)? {
        roots.add(cert).map_err(|e| {
            TlsError(format!(
                "{} holds an unusable certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        TlsError(format!(
            "couldn't read the {what} file {}: {e}",
            path.display()
        ))
    })
}

/// The text of the first PEM block labeled `label`, armor included.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// An encrypted PKCS#8 key (PBES2), opened.
fn decrypt(block: &str, password: &str) -> Result<PrivateKeyDer<'static>, String> {
    use pkcs8::der::Decode;
    let (_, der) =
        pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|e| format!("bad PEM ({e})"))?;
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der)
        .map_err(|e| format!("not an encrypted PKCS#8 key ({e})"))?;
    let plain = info
        .decrypt(password)
        .map_err(|_| "wrong password (or an encryption scheme other than PBES2)".to_string())?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        plain.as_bytes().to_vec(),
    )))
}
