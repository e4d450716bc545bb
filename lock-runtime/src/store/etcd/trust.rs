//! What an `https://` connection trusts: the CA certificates (PEM) given to the builder
//! (`tls_root_certificate`) or, from the environment, the file `LOCK_ETCD_CA` names; else
//! the system's roots. And, from the environment only, the client certificate and key it
//! shows to members that ask for one (`LOCK_ETCD_CERT`, `LOCK_ETCD_KEY`).

use std::fmt;

use etcd_client::{Certificate, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{LOCK_ETCD_CA, LOCK_ETCD_CERT, LOCK_ETCD_KEY};
use crate::error::LockError;
use crate::store::Settings;

/// The builder's setting named in its errors.
const BUILDER_SETTING: &str = "tls_root_certificate";

/// The CA certificates an `https://` connection trusts instead of the system's roots,
/// and the client certificate it shows.
#[derive(Clone, Default)]
pub(super) struct Trust {
    /// PEM, one certificate or several; `None`: the system's roots.
    ca: Option<Vec<u8>>,
    /// The client certificate and its key, PEM.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (&self.ca, &self.identity) {
            (Some(_), None) => "Trust(given CA)",
            (None, None) => "Trust(system roots)",
            (Some(_), Some(_)) => "Trust(given CA, client certificate)",
            (None, Some(_)) => "Trust(system roots, client certificate)",
        })
    }
}

impl Trust {
    /// The builder's CA (`tls_root_certificate`), checked, else the system's roots.
    pub(super) fn from_settings(settings: &Settings) -> Result<Self, LockError> {
        let ca = settings.tls_roots.0.clone();
        if let Some(pem) = &ca {
            check(pem, BUILDER_SETTING, "the certificate given")?;
        }
        Ok(Self { ca, identity: None })
    }

    /// The builder's CA, else the file `LOCK_ETCD_CA` names, else the system's roots; and
    /// the client certificate and key the files `LOCK_ETCD_CERT` and `LOCK_ETCD_KEY` name
    /// (both or neither). The files are read and checked now.
    pub(super) fn from_env(
        settings: &Settings,
        get: crate::store::registry::Lookup<'_>,
    ) -> Result<Self, LockError> {
        let mut trust = Self::from_settings(settings)?;
        if trust.ca.is_none()
            && let Some(path) = get(LOCK_ETCD_CA)
        {
            let pem = read(LOCK_ETCD_CA, &path, "the CA certificate")?;
            check(&pem, LOCK_ETCD_CA, &format!("`{path}`"))?;
            trust.ca = Some(pem);
        }
        trust.identity = match (get(LOCK_ETCD_CERT), get(LOCK_ETCD_KEY)) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert_pem = read(LOCK_ETCD_CERT, &cert, "the client certificate")?;
                check(&cert_pem, LOCK_ETCD_CERT, &format!("`{cert}`"))?;
                let key_pem = read(LOCK_ETCD_KEY, &key, "the client key")?;
                if let Err(e) = PrivateKeyDer::from_pem_slice(&key_pem) {
                    return Err(LockError::config(
                        LOCK_ETCD_KEY,
                        format!("`{key}` holds no PEM private key ({e})"),
                        "give the PEM key of the client certificate `LOCK_ETCD_CERT` names",
                    ));
                }
                Some((cert_pem, key_pem))
            }
            (Some(_), None) => return Err(half(LOCK_ETCD_CERT, LOCK_ETCD_KEY)),
            (None, Some(_)) => return Err(half(LOCK_ETCD_KEY, LOCK_ETCD_CERT)),
        };
        Ok(trust)
    }

    /// etcd-client's TLS options: the CA given, else the system's roots, the handshake
    /// bounded by `limit`.
    pub(super) fn options(&self, limit: std::time::Duration) -> TlsOptions {
        let options = TlsOptions::new().timeout(limit);
        let options = match &self.ca {
            Some(pem) => options.ca_certificate(Certificate::from_pem(pem)),
            None => options.with_native_roots(),
        };
        match &self.identity {
            Some((cert, key)) => options.identity(Identity::from_pem(cert, key)),
            None => options,
        }
    }
}

/// Half a client identity: `set` without `unset`.
fn half(set: &str, unset: &str) -> LockError {
    LockError::config(
        unset,
        format!("{set} is set but {unset} is not"),
        "set both (the client certificate's PEM file and its key's) or neither",
    )
}

/// The file at `path`, or a `Config` error at `var` that says what it should hold.
fn read(var: &str, path: &str, what: &str) -> Result<Vec<u8>, LockError> {
    std::fs::read(path).map_err(|e| {
        LockError::config(
            var,
            format!("cannot read {what} `{path}`: {e}"),
            format!("set {var} to the path of a readable PEM file with {what}"),
        )
    })
}

/// A `Config` error at `setting` unless `pem` holds at least one certificate and
/// nothing unreadable.
fn check(pem: &[u8], setting: &str, what: &str) -> Result<(), LockError> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        if let Err(e) = cert {
            return Err(not_pem(setting, &format!("{what} is not PEM ({e})")));
        }
        count += 1;
    }
    if count == 0 {
        return Err(not_pem(
            setting,
            &format!("{what} holds no `-----BEGIN CERTIFICATE-----` block"),
        ));
    }
    Ok(())
}

fn not_pem(setting: &str, problem: &str) -> LockError {
    LockError::config(
        setting,
        problem,
        "give PEM certificates (`-----BEGIN CERTIFICATE-----`): the CA's that signed the \
         etcd members' certificates, or for `LOCK_ETCD_CERT` the client's",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUYQ==\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_ca_must_hold_a_certificate() {
        assert!(check(PEM.as_bytes(), LOCK_ETCD_CA, "x").is_ok());
        let e = check(b"not a certificate", LOCK_ETCD_CA, "`/ca.pem`").unwrap_err();
        assert!(e.to_string().contains("`/ca.pem` holds no"), "{e}");
        assert!(matches!(e, LockError::Config { setting, .. } if setting == LOCK_ETCD_CA));
    }

    #[test]
    fn the_file_lock_etcd_ca_names_is_read_now() {
        let settings = Settings::default();
        let none = |_: &str| None;
        assert!(Trust::from_env(&settings, &none).unwrap().ca.is_none());
        let missing = |v: &str| (v == LOCK_ETCD_CA).then(|| "/nonexistent/ca.pem".to_owned());
        let e = Trust::from_env(&settings, &missing).unwrap_err();
        assert!(e.to_string().contains("`/nonexistent/ca.pem`"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, PEM).unwrap();
        let path = path.to_string_lossy().into_owned();
        let given = move |v: &str| (v == LOCK_ETCD_CA).then(|| path.clone());
        let trust = Trust::from_env(&settings, &given).unwrap();
        assert_eq!(trust.ca.as_deref(), Some(PEM.as_bytes()));
        assert_eq!(format!("{trust:?}"), "Trust(given CA)");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let settings = Settings::default();
        let cert_only = |v: &str| (v == LOCK_ETCD_CERT).then(|| "/c.pem".to_owned());
        let e = Trust::from_env(&settings, &cert_only).unwrap_err();
        assert!(matches!(&e, LockError::Config { setting, .. } if setting == LOCK_ETCD_KEY));
        assert!(e.to_string().contains("LOCK_ETCD_CERT is set"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, PEM).unwrap();
        std::fs::write(&key, "no key here").unwrap();
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let both = move |v: &str| match v {
            LOCK_ETCD_CERT => Some(cert.clone()),
            LOCK_ETCD_KEY => Some(key.clone()),
            _ => None,
        };
        let e = Trust::from_env(&settings, &both).unwrap_err();
        assert!(matches!(&e, LockError::Config { setting, .. } if setting == LOCK_ETCD_KEY));
    }
}
