//! `Ticket`: what a hand-off string carries (the store, the keys, the owner's token, the
//! fencing token, the ttl and what kind of hold it is), and its encoding.

use crate::error::Invalid;
use crate::store::Kind;

/// A held lock, as handed to another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The store's description (no credentials): a hand-off only restores on the same.
    pub(crate) store: String,
    pub(crate) keys: Vec<String>,
    pub(crate) token: String,
    pub(crate) fence: Option<u64>,
    pub(crate) ttl_ms: u64,
    /// A lock, a semaphore's permit, or a read/write lock's reader or writer.
    pub(crate) kind: Kind,
}

const MAGIC: &str = "locked-handoff-v2.";

impl Ticket {
    /// One line, opaque to a casual reader (hex), prefixed with its format.
    pub(crate) fn encode(&self) -> String {
        let fence = self.fence.map(|f| f.to_string()).unwrap_or_default();
        let mut fields = vec![self.store.as_str(), fence.as_str(), self.token.as_str()];
        let ttl = self.ttl_ms.to_string();
        let kind = self.kind.tag();
        fields.push(&ttl);
        fields.push(&kind);
        fields.extend(self.keys.iter().map(String::as_str));
        format!("{MAGIC}{}", hex::encode(fields.join("\n")))
    }

    /// The ticket in `text`, or what is wrong with it.
    pub(crate) fn decode(text: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                "the text given is not a hand-off string from `LockGuard::handoff`",
                "pass the string `handoff` returned, whole and unchanged",
            )
        };
        let body = text.trim().strip_prefix(MAGIC).ok_or_else(bad)?;
        let bytes = hex::decode(body).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut fields = text.split('\n');
        let store = fields.next().ok_or_else(bad)?.to_owned();
        let fence = match fields.next().ok_or_else(bad)? {
            "" => None,
            f => Some(f.parse().map_err(|_| bad())?),
        };
        let token = fields.next().ok_or_else(bad)?.to_owned();
        let ttl_ms = fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let kind = Kind::from_tag(fields.next().ok_or_else(bad)?).ok_or_else(bad)?;
        let keys: Vec<String> = fields.map(str::to_owned).collect();
        if keys.is_empty() || token.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            store,
            keys,
            token,
            fence,
            ttl_ms,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_round_trips_and_garbage_is_refused() {
        let t = Ticket {
            store: "redis(redis://h:6379/)".into(),
            keys: vec!["lock:a".into(), "lock:b".into()],
            token: "0123456789abcdef".into(),
            fence: Some(42),
            ttl_ms: 30_000,
            kind: Kind::Lock,
        };
        let text = t.encode();
        assert!(text.starts_with("locked-handoff-v2."));
        assert!(
            !text.contains("0123456789abcdef"),
            "the token is not in plain sight"
        );
        assert_eq!(Ticket::decode(&text).unwrap(), t);
        for kind in [Kind::Permit { permits: 3 }, Kind::Read, Kind::Write] {
            let t = Ticket { kind, ..t.clone() };
            assert_eq!(Ticket::decode(&t.encode()).unwrap(), t);
        }
        for garbage in ["", "hello", "locked-handoff-v2.zz", "locked-handoff-v2.00"] {
            assert!(Ticket::decode(garbage).is_err(), "{garbage}");
        }
    }
}
