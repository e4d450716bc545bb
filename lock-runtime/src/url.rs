//! `RedactedUrl`: a store URL that never shows its credentials.

use std::fmt;

/// A URL shown without its password: `redis://user:***@host:6379/0`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedactedUrl(String);

impl RedactedUrl {
    pub(crate) fn new(url: &str) -> Self {
        let redacted = match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let userinfo = &url[scheme_end + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                } else {
                    format!("{}***{}", &url[..scheme_end + 3], &url[at..])
                }
            }
            _ => url.to_owned(),
        };
        Self(redacted)
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_url_hides_password() {
        let u = RedactedUrl::new("redis://app:s3cret@db:6379/0").to_string();
        assert_eq!(u, "redis://app:***@db:6379/0");
        assert!(!u.contains("s3cret"));
    }

    #[test]
    fn redacted_url_hides_lone_password() {
        let u = RedactedUrl::new("redis://s3cret@db").to_string();
        assert_eq!(u, "redis://***@db");
    }

    #[test]
    fn redacted_url_keeps_plain_url() {
        assert_eq!(
            RedactedUrl::new("redis://127.0.0.1:1/").to_string(),
            "redis://127.0.0.1:1/"
        );
    }
}
