//! The registry: what the crate knows of each store besides its [`Store`](super::Store)
//! impl. Each store declares one [`Entry`], once, beside its code (`memory::ENTRY`,
//! `redis::REDIS`, `redis::CLUSTER`, `redis::REDLOCK`, `postgres::ENTRY`, `sqlite::ENTRY`,
//! `mysql::ENTRY`); the list in `dispatch.rs` names them, and [`stores`] is that list, in
//! its order.
//!
//! Everything that used to match on store names reads the registry instead:
//! [`Locker::from_env`](crate::Locker::from_env) (which entry `LOCK_STORE` names, or
//! which one the environment implies, and how to open its store),
//! [`Locker::store_name`](crate::Locker::store_name), and the `locked` CLI's `--store`
//! help and `--url` override. The CLI reaches it through `__private` (not public API).
//!
//! A store behind a cargo feature keeps its entry when the feature is off (its folder
//! compiles the entry, not the store), with no way to open it: naming it then is a
//! `Config` error that says which feature to enable.

use std::fmt;

use super::AnyStore;
use super::settings::Settings;
use crate::error::LockError;

/// The variable that names the store (`Locker::from_env`).
pub(crate) const LOCK_STORE: &str = "LOCK_STORE";

/// A lookup of one environment variable: `None` when unset or empty.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How a store is opened from the environment: the builder's store settings and the
/// variables. A `Config` error names the variable at fault.
pub(crate) type OpenFromEnv = fn(&Settings, Lookup<'_>) -> Result<AnyStore, LockError>;

/// Whether a store is chosen when `LOCK_STORE` is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implied {
    /// Only when `LOCK_STORE` names it.
    Never,
    /// When one of its URL variables is set (the first such store in the list).
    ByUrl,
    /// When no store is implied by a URL (the memory store, with a warning).
    Fallback,
}

/// What one store declares about itself.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Its `LOCK_STORE` value, and what
    /// [`Locker::store_name`](crate::Locker::store_name) answers.
    pub name: &'static str,
    /// One line for the CLI's `--store` help.
    pub help: &'static str,
    /// The URL schemes it takes, with `://` (`redis://`); none for the memory store.
    pub schemes: &'static [&'static str],
    /// The variables its URL is read from, the first set one winning; the CLI's `--url`
    /// overrides the first.
    pub url_vars: &'static [&'static str],
    /// Its other variables (PostgreSQL's `LOCK_DATABASE_LISTEN_URL`).
    pub other_vars: &'static [&'static str],
    /// What to set the URL to, ending the "no URL is set" error: "e.g. `redis://...`".
    pub url_example: &'static str,
    /// The cargo feature of `locked` it needs, if any.
    pub feature: Option<&'static str>,
    /// Whether it is chosen when `LOCK_STORE` is unset.
    pub implied: Implied,
    /// How to open it from the environment; `None` when its feature is off.
    pub(crate) open_from_env: Option<OpenFromEnv>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("schemes", &self.schemes)
            .field("url_vars", &self.url_vars)
            .field("other_vars", &self.other_vars)
            .field("feature", &self.feature)
            .field("implied", &self.implied)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// Whether this build can open it (its feature, if any, is on).
    pub fn is_available(&self) -> bool {
        self.open_from_env.is_some()
    }

    /// Whether `url` is one of its schemes' (`redis://...` for the Redis stores).
    pub fn takes_url(&self, url: &str) -> bool {
        let url = url.trim_start();
        self.schemes.iter().any(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        })
    }

    /// Its URL: the first of [`Entry::url_vars`] set, with the variable's name.
    pub(crate) fn url(&self, get: Lookup<'_>) -> Option<(&'static str, String)> {
        self.url_vars
            .iter()
            .find_map(|&var| get(var).map(|url| (var, url)))
    }

    /// Its URL, or the `Config` error that says which variable to set and to what.
    pub(crate) fn require_url(&self, get: Lookup<'_>) -> Result<(&'static str, String), LockError> {
        self.url(get).ok_or_else(|| {
            let set = match self.url_vars {
                [] => "its URL".to_owned(),
                [only] => (*only).to_owned(),
                [preferred @ .., common] => format!("{common} (or {})", preferred.join(" or ")),
            };
            LockError::config(
                LOCK_STORE,
                format!("the `{}` store needs a URL, and none is set", self.name),
                format!("set {set} to {}", self.url_example),
            )
        })
    }

    /// Opens it from the environment, or says which feature to enable.
    pub(crate) fn open(&self, settings: &Settings, get: Lookup<'_>) -> Result<AnyStore, LockError> {
        match (self.open_from_env, self.feature) {
            (Some(open), _) => open(settings, get),
            (None, feature) => Err(LockError::config(
                LOCK_STORE,
                format!("this build of `locked` has no `{}` store", self.name),
                format!(
                    "enable the `{}` feature of `locked`",
                    feature.unwrap_or(self.name)
                ),
            )),
        }
    }
}

/// Every store, in the list's order (see `dispatch.rs`), those whose feature is off
/// included (see [`Entry::is_available`]).
pub fn stores() -> &'static [Entry] {
    super::dispatch::STORES
}

/// The entry `LOCK_STORE` names (already trimmed and lowercased).
pub(crate) fn find(name: &str) -> Option<&'static Entry> {
    stores().iter().find(|e| e.name == name)
}

/// The entry the environment implies when `LOCK_STORE` is unset, and whether it is the
/// fallback (no URL of an implied store set).
pub(crate) fn implied(get: Lookup<'_>) -> Option<(&'static Entry, bool)> {
    let by_url = stores()
        .iter()
        .filter(|e| e.implied == Implied::ByUrl && e.is_available())
        .find(|e| e.url(get).is_some());
    by_url.map(|e| (e, false)).or_else(|| {
        stores()
            .iter()
            .find(|e| e.implied == Implied::Fallback)
            .map(|e| (e, true))
    })
}

/// The first store that takes `url`'s scheme.
pub(crate) fn by_scheme(url: &str) -> Option<&'static Entry> {
    stores().iter().find(|e| e.takes_url(url))
}

/// The names of every store, for an error: "`memory`, `redis` or `postgres`".
pub(crate) fn names() -> String {
    let names: Vec<String> = stores().iter().map(|e| format!("`{}`", e.name)).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A `Config` error of a store's open code re-attributed to the variable its value came from.
pub(crate) fn from_var(var: &'static str) -> impl Fn(LockError) -> LockError {
    move |e| match e {
        LockError::Config { message, .. } => LockError::Config {
            setting: var.to_owned(),
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let all = stores();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.name, e.name.to_ascii_lowercase());
            assert!(all[..i].iter().all(|o| o.name != e.name), "{}", e.name);
        }
        assert!(all.iter().any(|e| e.implied == Implied::Fallback));
    }

    #[test]
    fn every_store_with_a_url_has_a_scheme_and_a_variable() {
        for e in stores() {
            assert_eq!(e.schemes.is_empty(), e.url_vars.is_empty(), "{}", e.name);
            assert!(e.schemes.iter().all(|s| s.ends_with("://")), "{}", e.name);
            assert!(!e.help.is_empty());
            // Only a feature can leave a store out of a build.
            assert!(e.feature.is_some() || e.is_available(), "{}", e.name);
        }
    }

    #[test]
    fn schemes_find_their_store() {
        assert_eq!(by_scheme("redis://h:6379").map(|e| e.name), Some("redis"));
        assert_eq!(by_scheme("REDISS://h").map(|e| e.name), Some("redis"));
        assert_eq!(
            by_scheme("postgresql://h/db").map(|e| e.name),
            Some("postgres")
        );
        assert_eq!(by_scheme("mysql://h/db").map(|e| e.name), Some("mysql"));
        assert!(by_scheme("mariadb://h/db").is_none());
    }

    #[test]
    fn names_list_every_store() {
        let names = names();
        for e in stores() {
            assert!(names.contains(&format!("`{}`", e.name)), "{names}");
        }
        assert!(names.contains(" or "), "{names}");
    }
}
