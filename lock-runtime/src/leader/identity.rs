//! Who a leader says it is: by default its host name and process id, or a name the
//! service sets; checked before it goes into a token.

use std::sync::{Arc, OnceLock};

use crate::error::LockError;

/// The longest identity a leader may publish, in bytes.
pub(crate) const MAX_IDENTITY: usize = 200;

/// `host:pid`: the host name from the kernel (or `HOSTNAME`), then this process's id;
/// read once per process.
pub(crate) fn default_identity() -> Arc<str> {
    static IDENTITY: OnceLock<Arc<str>> = OnceLock::new();
    IDENTITY.get_or_init(|| read_identity().into()).clone()
}

fn read_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned());
    let mut identity = format!("{}:{}", host, std::process::id());
    identity.retain(|c| !c.is_control());
    identity
}

/// `Ok` when `identity` can be published: 1 to 200 bytes, no control characters (a hand-off
/// ticket is line-based, and listings are read by people).
pub(crate) fn check(identity: &str) -> Result<(), LockError> {
    let problem = if identity.is_empty() {
        "the identity is empty".to_owned()
    } else if identity.len() > MAX_IDENTITY {
        format!(
            "the identity is {} bytes long, over the {MAX_IDENTITY} a leader may publish",
            identity.len()
        )
    } else if identity.chars().any(char::is_control) {
        format!("the identity {identity:?} has a control character")
    } else if identity.chars().any(reorders) {
        format!("the identity {identity:?} has an invisible or direction-changing character")
    } else {
        return Ok(());
    };
    Err(LockError::config(
        "Election::identity",
        problem,
        "give each instance a short printable name, such as its host name and process id \
         (the default)",
    ))
}

/// Characters that change how the text around them shows (bidi controls, zero-width
/// marks), which could make `locked list` show one leader's name as another's.
fn reorders(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_identity_is_host_and_pid_and_publishable() {
        let id = default_identity();
        assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
        check(&id).unwrap();
    }

    #[test]
    fn bad_identities_are_config_errors_that_say_why() {
        for (bad, why) in [
            (String::new(), "empty"),
            ("x".repeat(201), "over the 200"),
            ("a\nb".to_owned(), "control character"),
            ("worker-\u{202E}1".to_owned(), "direction-changing"),
        ] {
            let err = check(&bad).unwrap_err().to_string();
            assert!(
                err.contains("`Election::identity`") && err.contains(why),
                "{err}"
            );
        }
    }
}
