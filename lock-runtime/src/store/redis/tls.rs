//! TLS for `rediss://` URLs: the roots a connection trusts, and a client that trusts them.

use redis::Client;

/// The roots a `rediss://` connection trusts, when not the system's (PEM).
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct TlsRoots(pub(crate) Option<Vec<u8>>);

/// A client for `url`, trusting `roots` for TLS when given.
pub(crate) fn client(url: &str, roots: &TlsRoots) -> Result<Client, redis::RedisError> {
    #[cfg(feature = "tls")]
    if let Some(pem) = &roots.0 {
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        return Client::build_with_tls(url, certs);
    }
    let _ = roots;
    Client::open(url)
}
