//! [`Settings`]: what opening any store needs besides its URL, as the builder sets it
//! (`LockerBuilder::tls_root_certificate`, `schema`, `listen_url`, `database`). The builder keeps one
//! and passes it down; the registry's entries open their store with it.

use std::fmt;

use super::redis::TlsRoots;
use crate::url::RedactedUrl;

/// The store settings of a `LockerBuilder`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The roots a `rediss://` or `https://` (etcd) connection trusts (default: the
    /// system's).
    pub(crate) tls_roots: TlsRoots,
    /// The PostgreSQL schema of the lock tables (default `locked`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) schema: String,
    /// The PostgreSQL URL the release listener connects to (default: the store's URL).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) listen_url: Option<ListenUrl>,
    /// The MySQL database of the lock tables (default: the URL's).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) database: Option<String>,
}

impl Default for Settings {
    /// The system's TLS roots, schema `locked`, no listen URL, the MySQL URL's database.
    fn default() -> Self {
        Self {
            tls_roots: TlsRoots::default(),
            schema: "locked".to_owned(),
            listen_url: None,
            database: None,
        }
    }
}

/// `LockerBuilder::listen_url`'s URL, whose `Debug` hides the password.
#[derive(Clone)]
pub(crate) struct ListenUrl(pub(crate) String);

impl fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains("://") {
            fmt::Debug::fmt(&RedactedUrl::new(&self.0), f)
        } else {
            // `host=... password=...`: nothing of it is shown.
            f.write_str("\"***\"")
        }
    }
}
