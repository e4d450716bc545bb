//! The endpoints checked: `http://host:port` each, an optional `user:password@` whose
//! password is kept out of every message.

use std::fmt;

use crate::error::LockError;
use crate::url::RedactedUrl;

/// The checked endpoints, without credentials, and the user to authenticate as.
#[derive(Clone)]
pub(super) struct Endpoints {
    /// `http://host:port`, without user or password.
    pub(super) urls: Vec<String>,
    pub(super) user: Option<(String, String)>,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("urls", &self.urls)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl Endpoints {
    /// `host:port,host:port`, for errors and `Debug`.
    pub(super) fn hosts(&self) -> String {
        self.urls
            .iter()
            .map(|u| u.trim_start_matches("http://"))
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
        "write `http://host:2379`, several comma-separated, e.g. \
         `http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379`",
    )
}

/// Checks every endpoint (no I/O).
pub(super) fn parse(endpoints: &[&str]) -> Result<Endpoints, LockError> {
    let mut urls = Vec::new();
    let mut user = None;
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
        let rest = if lower.starts_with("https://") {
            return Err(bad(
                endpoint,
                "TLS endpoints are not supported by this build; use `http://`",
            ));
        } else if lower.starts_with("http://") {
            &endpoint["http://".len()..]
        } else {
            return Err(bad(endpoint, "it does not start with `http://`"));
        };
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
        urls.push(format!("http://{hostport}"));
    }
    Ok(Endpoints { urls, user })
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
        assert!(err(&["https://h:2379"]).contains("TLS"));
        assert!(err(&["http://h:1", ""]).contains("empty entry"));
    }
}
