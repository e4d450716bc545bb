//! The node layer's errors: a failure at one node (naming it), and a write too few
//! replicas acknowledged.

use std::fmt;

use crate::error::BoxError;
use crate::store::Replicas;

/// A failure at one node, naming it.
#[derive(Debug)]
pub(crate) struct NodeError {
    host: String,
    source: BoxError,
}

impl NodeError {
    pub(crate) fn new(host: impl fmt::Display, source: impl Into<BoxError>) -> Self {
        Self {
            host: host.to_string(),
            source: source.into(),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis at {}: {}", self.host, self.source)
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Too few replicas acknowledged a write in time.
#[derive(Debug)]
pub(super) struct TooFewReplicas {
    pub(super) acked: i64,
    pub(super) wanted: Replicas,
    pub(super) what: &'static str,
}

impl fmt::Display for TooFewReplicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "only {} of {} replica(s) acknowledged the {} within {:?}; {}: check the \
             replicas' health and link, or lower `replicas`",
            self.acked,
            self.wanted.count,
            self.what,
            self.wanted.within,
            if self.what == "lock" {
                "the lock was released again"
            } else {
                "the renewal does not count"
            }
        )
    }
}

impl std::error::Error for TooFewReplicas {}
