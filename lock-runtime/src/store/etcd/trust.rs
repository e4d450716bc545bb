//! What an `https://` connection trusts: the CA certificates (PEM) given to the builder
//! (`tls_root_certificate`) or, from the environment, the file `LOCK_ETCD_CA` names; else
//! the system's roots.

use std::fmt;

use etcd_client::{Certificate, TlsOptions};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::LOCK_ETCD_CA;
use crate::error::LockError;
use crate::store::Settings;

/// The builder's setting named in its errors.
const BUILDER_SETTING: &str = "tls_root_certificate";

/// The CA certificates an `https://` connection trusts instead of the system's roots.
#[derive(Clone, Default)]
pub(super) struct Trust {
    /// PEM, one certificate or several; `None`: the system's roots.
    ca: Option<Vec<u8>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.ca {
            Some(_) => "Trust(given CA)",
            None => "Trust(system roots)",
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
        Ok(Self { ca })
    }

    /// The builder's CA, else the file `LOCK_ETCD_CA` names (read and checked now), else
    /// the system's roots.
    pub(super) fn from_env(
        settings: &Settings,
        get: crate::store::registry::Lookup<'_>,
    ) -> Result<Self, LockError> {
        if settings.tls_roots.0.is_some() {
            return Self::from_settings(settings);
        }
        let Some(path) = get(LOCK_ETCD_CA) else {
            return Ok(Self::default());
        };
        let pem = std::fs::read(&path).map_err(|e| {
            LockError::config(
                LOCK_ETCD_CA,
                format!("cannot read the CA certificate `{path}`: {e}"),
                "set it to the path of a PEM file with the certificate of the CA that \
                 signed the etcd members' certificates, e.g. `/etc/etcd/ca.pem`",
            )
        })?;
        check(&pem, LOCK_ETCD_CA, &format!("`{path}`"))?;
        Ok(Self { ca: Some(pem) })
    }

    /// etcd-client's TLS options: the CA given, else the system's roots, the handshake
    /// bounded by `limit`.
    pub(super) fn options(&self, limit: std::time::Duration) -> TlsOptions {
        let options = TlsOptions::new().timeout(limit);
        match &self.ca {
            Some(pem) => options.ca_certificate(Certificate::from_pem(pem)),
            None => options.with_native_roots(),
        }
    }
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
        "give the PEM certificate of the CA that signed the etcd members' certificates",
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
}
