//! Called by the `#[locked]` expansion; not public API. Nothing here is covered by semver.
#![allow(missing_docs)]

use std::future::Future;
use std::time::Duration;

pub use core::concat;
pub use core::module_path;
pub use core::option::Option::{None, Some};
pub use core::result::Result::{Err, Ok};
pub use core::time::Duration as CoreDuration;
pub use std::format;

pub use crate::leader::attribute::{Campaign, campaign};
pub use crate::locker::Locker;

use crate::error::LockError;

use crate::guard::LockGuard;
use crate::options::LockOptions;
use crate::store::Kind;

/// What one `#[locked]` site asked for; `None` means "the locker's default".
#[derive(Debug)]
pub struct Spec {
    pub site: &'static str,
    /// The key template(s), the `key` label of metrics.
    pub label: &'static str,
    pub ttl: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retry_interval: Option<Duration>,
    pub max_hold: Option<Duration>,
    pub mode: Mode,
    pub renew: Option<bool>,
    pub logging: Option<bool>,
    pub fencing: Option<bool>,
    pub hold: Hold,
}

/// What an annotated fn holds: `permits = N`, `read`, `write`, or by default the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Lock,
    Permits(u32),
    Read,
    Write,
}

impl Hold {
    fn kind(self) -> Kind {
        match self {
            Hold::Lock => Kind::Lock,
            Hold::Permits(permits) => Kind::Permit { permits },
            Hold::Read => Kind::Read,
            Hold::Write => Kind::Write,
        }
    }
}

/// Wait up to `timeout`, or try once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Wait,
    Try,
}

impl Spec {
    pub(crate) fn options(&self, defaults: LockOptions) -> LockOptions {
        let mut o = defaults.label(self.label);
        if let Some(v) = self.ttl {
            o = o.ttl(v);
        }
        if let Some(v) = self.timeout {
            o = o.timeout(v);
        }
        if let Some(v) = self.retry_interval {
            o = o.retry_interval(v);
        }
        if let Some(v) = self.max_hold {
            o = o.max_hold(v);
        }
        if let Some(v) = self.renew {
            o = o.renew(v);
        }
        if let Some(v) = self.logging {
            o = o.logging(v);
        }
        if let Some(v) = self.fencing {
            o = o.fencing(v);
        }
        o
    }
}

/// A lock taken for a `#[locked]` body, with the options it runs under.
#[derive(Debug)]
pub struct Held {
    guard: LockGuard,
    opts: LockOptions,
}

/// The key from a template's literal parts and its formatted placeholders.
pub fn key(literals: &[&str], values: &[String]) -> Result<String, LockError> {
    crate::keys::build_key(literals, values)
}

/// Takes the lock for one call of an annotated fn.
pub async fn acquire(
    spec: &'static Spec,
    locker: Option<&Locker>,
    key: Result<String, LockError>,
) -> Result<Held, LockError> {
    acquire_all(spec, locker, [key]).await
}

/// Takes every lock of a `keys = [...]` call, all or none.
pub async fn acquire_all<const N: usize>(
    spec: &'static Spec,
    locker: Option<&Locker>,
    keys: [Result<String, LockError>; N],
) -> Result<Held, LockError> {
    let keys = keys.into_iter().collect::<Result<Vec<_>, _>>()?;
    let locker = match locker {
        Some(l) => l,
        None => crate::global::global()?,
    };
    let opts = spec.options(locker.options());
    let keys = locker.inner.full_keys(&keys)?;
    let guard = crate::acquire::lock(
        &locker.inner,
        keys,
        spec.hold.kind(),
        &opts,
        match spec.mode {
            Mode::Wait => crate::acquire::Mode::Wait,
            Mode::Try => crate::acquire::Mode::Try,
        },
        spec.site,
    )
    .await?;
    Ok(Held { guard, opts })
}

/// Runs the body under the lock: renews, cancels on loss, releases.
pub async fn hold<F: Future>(held: Held, body: F) -> Result<F::Output, LockError> {
    crate::renew::hold(held.guard, &held.opts, body).await
}

/// The way a lock failure leaves an annotated fn without a `fallback`.
#[diagnostic::on_unimplemented(
    message = "`#[locked]` needs the function to return `Result<T, E>` with `E: From<locked::LockError>`, found `{Self}`",
    label = "a lock failure cannot be returned as this type",
    note = "return a `Result` whose error type implements `From<locked::LockError>`, or add `fallback = other_fn` to the attribute"
)]
pub trait LockFailure {
    fn lock_failure(err: LockError) -> Self;
}

impl<T, E: From<LockError>> LockFailure for Result<T, E> {
    fn lock_failure(err: LockError) -> Self {
        Err(E::from(err))
    }
}

/// Turns a lock failure into the annotated fn's return value.
pub fn lock_failed<R: LockFailure>(err: LockError) -> R {
    R::lock_failure(err)
}
