//! The endpoints checked: `http://host:port` each (or all `https://host:port`, with the
//! `tls` feature), an optional `user:password@` whose password is kept out of every message.

use std::fmt;

use crate::error::LockError;
use crate::url::RedactedUrl;

/// The checked endpoints, without credentials, and the user to authenticate as.
#[derive(Clone)]
pub(super) struct Endpoints {
    /// `http://host:port` (or `https://`), without user or password.
    pub(super) urls: Vec<String>,
    pub(super) user: Option<(String, String)>,
    /// Whether they are `https://` (all of them are, or none).
    pub(super) tls: bool,
    /// What their certificates are checked against (`https://` only).
    #[cfg(feature = "tls")]
    pub(super) trust: super::trust::Trust,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Endpoints");
        out.field("urls", &self.urls)
            .field("user", &self.user.as_ref().map(|(user, _)| user));
        #[cfg(feature = "tls")]
        out.field("trust", &self.trust);
        out.finish()
    }
}

impl Endpoints {
    /// `host:port,host:port`, for errors and `Debug`.
    pub(super) fn hosts(&self) -> String {
        self.urls
            .iter()
            .map(|u| {
                u.trim_start_matches("https://")
                    .trim_start_matches("http://")
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn bad(endpoint: &str, why: &str) -> LockError {
    LockError::config(
        "etcd endpoints",
        format!(
            "`{}` is not an etcd endpoint ({why})",
            RedactedUrl::new(endpoint)
        ),
        "write `http://host:2379` (or `https://host:2379`, with the `tls` feature), several \
         comma-separated, e.g. `http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379`",
    )
}

/// An `https://` endpoint in a build without TLS.
fn no_tls(endpoint: &str) -> LockError {
    LockError::config(
        "etcd endpoints",
        format!(
            "`{}` is a TLS endpoint, but `locked` was built without TLS",
            RedactedUrl::new(endpoint)
        ),
        "enable the `tls` feature of `locked` (with `etcd`), or use `http://`",
    )
}

/// `http://` and `https://` endpoints in one list.
fn mixed(http: &str, https: &str) -> LockError {
    LockError::config(
        "etcd endpoints",
        format!(
            "`{}` is `https://` but `{}` is `http://`",
            RedactedUrl::new(https),
            RedactedUrl::new(http)
        ),
        "the endpoints of one cluster are all `https://` (TLS) or all `http://`",
    )
}

/// Checks every endpoint (no I/O).
pub(super) fn parse(endpoints: &[&str]) -> Result<Endpoints, LockError> {
    let mut urls = Vec::new();
    let mut user = None;
    // The first endpoint and whether it is `https://`.
    let mut first: Option<(&str, bool)> = None;
    for raw in endpoints {
        let endpoint = raw.trim();
        if endpoint.is_empty() {
            if endpoints.len() == 1 {
                return Err(LockError::config(
                    "etcd endpoints",
                    "the list of endpoints is empty",
                    "name at least one, e.g. `http://127.0.0.1:2379`",
                ));
            }
            return Err(bad(raw, "an empty entry in the list"));
        }
        let lower = endpoint.to_ascii_lowercase();
        let (tls, rest) = if lower.starts_with("https://") {
            if !cfg!(feature = "tls") {
                return Err(no_tls(endpoint));
            }
            (true, &endpoint["https://".len()..])
        } else if lower.starts_with("http://") {
            (false, &endpoint["http://".len()..])
        } else {
            return Err(bad(
                endpoint,
                "it does not start with `http://` or `https://`",
            ));
        };
        match first {
            None => first = Some((endpoint, tls)),
            Some((other, seen)) if seen != tls => {
                let (http, https) = if tls {
                    (other, endpoint)
                } else {
                    (endpoint, other)
                };
                return Err(mixed(http, https));
            }
            Some(_) => {}
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        if hostport.contains('/') || hostport.contains('?') || hostport.contains('#') {
            return Err(bad(endpoint, "a path is not allowed"));
        }
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(bad(endpoint, "no port, e.g. `:2379`"));
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
            return Err(bad(endpoint, "no host"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(endpoint, "the port is not a number from 1 to 65535"));
        }
        if let Some(userinfo) = userinfo {
            let (name, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if name.is_empty() {
                return Err(bad(endpoint, "an empty user name"));
            }
            let this = (name.to_owned(), password.to_owned());
            match &user {
                Some(seen) if *seen != this => {
                    return Err(bad(endpoint, "the endpoints name different users"));
                }
                _ => user = Some(this),
            }
        }
        let scheme = if tls { "https" } else { "http" };
        urls.push(format!("{scheme}://{hostport}"));
    }
    Ok(Endpoints {
        urls,
        user,
        tls: first.is_some_and(|(_, tls)| tls),
        #[cfg(feature = "tls")]
        trust: super::trust::Trust::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(list: &[&str]) -> String {
        parse(list).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn good_endpoints_parse_and_hide_the_password() {
        let e = parse(&["http://127.0.0.1:2379", " http://u:secret@h2:22379/ "]).unwrap();
        assert_eq!(e.urls, ["http://127.0.0.1:2379", "http://h2:22379"]);
        assert_eq!(e.hosts(), "127.0.0.1:2379,h2:22379");
        assert_eq!(e.user, Some(("u".to_owned(), "secret".to_owned())));
        assert!(!format!("{e:?}").contains("secret"));
    }

    #[test]
    fn bad_endpoints_are_config_errors_naming_them() {
        assert!(err(&[""]).contains("empty"));
        let e = err(&["127.0.0.1:2379"]);
        assert!(
            e.contains("`127.0.0.1:2379`") && e.contains("http://"),
            "{e}"
        );
        assert!(err(&["http://h"]).contains("no port"));
        assert!(err(&["http://h:99999"]).contains("port"));
        assert!(err(&["http://h:2379/v3"]).contains("path"));
        let e = err(&["http://u:secret@h:x"]);
        assert!(e.contains("u:***@h:x") && !e.contains("secret"), "{e}");
        assert!(err(&["http://h:1", ""]).contains("empty entry"));
    }

    #[test]
    fn mixed_schemes_are_a_config_error_naming_both() {
        for list in [
            ["http://a:1", "https://u:secret@b:2"],
            ["https://u:secret@b:2", "http://a:1"],
        ] {
            let e = err(&list);
            assert!(
                e.contains("`https://u:***@b:2`") && !e.contains("secret"),
                "{e}"
            );
            if cfg!(feature = "tls") {
                assert!(
                    e.contains("`http://a:1`") && e.contains("all `https://`"),
                    "{e}"
                );
            } else {
                assert!(e.contains("`tls` feature"), "{e}");
            }
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn https_endpoints_parse_with_tls() {
        let e = parse(&["https://a:2379", "HTTPS://b:2379"]).unwrap();
        assert!(e.tls);
        assert_eq!(e.urls, ["https://a:2379", "https://b:2379"]);
        assert_eq!(e.hosts(), "a:2379,b:2379");
        assert!(!parse(&["http://a:2379"]).unwrap().tls);
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn https_without_tls_is_a_config_error_naming_the_feature() {
        let e = err(&["https://u:secret@h:2379"]);
        assert!(
            e.contains("`https://u:***@h:2379`") && e.contains("`tls` feature"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }
}
