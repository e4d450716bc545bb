//! `LockedArgs`: the arguments of `#[locked(...)]`, parsed with their spans.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitBool, LitStr, Meta, Path, Token};

use crate::duration;

/// Every argument name, in the order the docs list them.
const NAMES: &[&str] = &[
    "key",
    "keys",
    "ttl",
    "timeout",
    "retry_interval",
    "max_hold",
    "try_lock",
    "mode",
    "fallback",
    "locker",
    "logging",
    "renew",
    "fencing",
    "permits",
    "read",
    "write",
    "leader",
    "crate",
];

/// A duration argument: its value in ms and the literal, for spans.
pub(crate) struct Millis {
    pub(crate) ms: u64,
}

/// What a call holds, when not an exclusive lock: `permits = N`, `read` or `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    Permits(u32),
    Read,
    Write,
}

/// The parsed `#[locked(...)]` arguments.
#[derive(Default)]
pub(crate) struct LockedArgs {
    pub(crate) key: Option<LitStr>,
    pub(crate) keys: Option<(Span, Vec<LitStr>)>,
    pub(crate) ttl: Option<Millis>,
    pub(crate) timeout: Option<Millis>,
    pub(crate) retry_interval: Option<Millis>,
    pub(crate) max_hold: Option<Millis>,
    pub(crate) try_mode: bool,
    pub(crate) fallback: Option<Path>,
    pub(crate) locker: Option<Expr>,
    pub(crate) logging: Option<bool>,
    pub(crate) renew: Option<bool>,
    pub(crate) fencing: Option<bool>,
    /// `permits`, `read` or `write`, with the argument's span.
    pub(crate) hold: Option<(Span, Hold)>,
    /// `leader`, with its span: run only while this instance leads the key.
    pub(crate) leader: Option<Span>,
    /// Where `try_lock`, `mode`, `renew` and `keys` were written, for `leader`'s errors.
    pub(crate) spans: Vec<(String, Span)>,
    pub(crate) krate: Option<Path>,
}

impl Parse for LockedArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        let mut args = LockedArgs::default();
        let mut seen: Vec<String> = Vec::new();
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut push = |e: syn::Error| errors.push(e);
        for meta in metas {
            let path = meta.path();
            let name = path
                .get_ident()
                .map(ToString::to_string)
                .or_else(|| (path.segments.len() == 1).then(|| path.segments[0].ident.to_string()))
                .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""));
            if let Some(prev) = seen.iter().find(|n| slot(n) == slot(&name)) {
                let msg = if *prev == name {
                    format!("`{name}` set multiple times; keep one")
                } else if slot(&name) == "hold" {
                    let mut pair = [prev.as_str(), name.as_str()];
                    pair.sort_unstable();
                    match pair {
                        ["read", "write"] => "`read` and `write` cannot both be set: a call \
                            holds one side of a read/write lock; annotate the readers with \
                            `read` and the writers with `write`"
                            .to_owned(),
                        [a, b] => format!(
                            "`{a}` and `{b}` cannot both be set: a key is either a semaphore \
                             (`permits = N`) or a read/write lock (`read` / `write`)"
                        ),
                    }
                } else {
                    "`try_lock` and `mode` both set the mode; keep one".to_owned()
                };
                push(syn::Error::new(path.span(), msg));
                continue;
            }
            seen.push(name.clone());
            args.spans.push((name.clone(), path.span()));
            if let Err(e) = args.apply(&name, &meta) {
                push(e);
            }
        }
        if let (Some(_), Some((keys_span, _))) = (&args.key, &args.keys) {
            errors.push(syn::Error::new(
                *keys_span,
                "`key` and `keys` cannot both be set; put every key in `keys = [...]`",
            ));
        }
        if let (Some((span, hold)), Some(_)) = (&args.hold, &args.keys) {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "`{}` takes one key: a semaphore or read/write lock is on a single `key`, \
                     not `keys = [...]`",
                    hold_name(*hold)
                ),
            ));
        }
        if let (Some((span, hold)), Some(true)) = (&args.hold, args.fencing) {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "`{}` cannot be fenced: its holders are concurrent, so no one token can \
                     fence them; drop `fencing`",
                    hold_name(*hold)
                ),
            ));
        }
        if let Some(leader) = args.leader {
            errors.extend(leader_conflicts(&args, leader));
        }
        if args.key.is_none() && args.keys.is_none() && errors.is_empty() {
            errors.push(syn::Error::new(
                Span::call_site(),
                "missing `key`: write `#[locked(key = \"order:{id}\")]`, with `{param}` for arguments",
            ));
        }
        match crate::combine(errors) {
            Some(e) => Err(e),
            None => Ok(args),
        }
    }
}

/// What cannot go with `leader`, each reported at the argument that conflicts.
fn leader_conflicts(args: &LockedArgs, leader: Span) -> Vec<syn::Error> {
    let at = |name: &str| {
        args.spans
            .iter()
            .find(|(n, _)| n == name)
            .map_or(leader, |(_, span)| *span)
    };
    let mut errors = Vec::new();
    let mut push = |span: Span, msg: String| {
        let mut e = syn::Error::new(span, msg);
        e.combine(syn::Error::new(leader, "`leader` given here"));
        errors.push(e);
    };
    if args.try_mode {
        let name = if args.spans.iter().any(|(n, _)| n == "mode") {
            "mode"
        } else {
            "try_lock"
        };
        push(
            at(name),
            format!(
                "`{name}` cannot go with `leader`: a leader campaigns until it leads; to run a \
                 job only if no one else runs it now, drop `leader` and keep `try_lock`"
            ),
        );
    }
    if let Some((span, hold)) = args.hold {
        push(
            span,
            format!(
                "`{}` cannot go with `leader`: one instance leads a key, so leadership is an \
                 exclusive lock; drop `{}` or `leader`",
                hold_name(hold),
                hold_name(hold)
            ),
        );
    }
    if args.keys.is_some() {
        push(
            at("keys"),
            "`keys` cannot go with `leader`: a leader leads one key; write `key = \"...\"`"
                .to_owned(),
        );
    }
    if args.fencing.is_some() {
        push(
            at("fencing"),
            "`fencing` cannot go with `leader`: a term is fenced wherever the store offers \
             it (read its number with `locked::fencing_token()`); drop `fencing`"
                .to_owned(),
        );
    }
    if args.renew == Some(false) {
        push(
            at("renew"),
            "`renew = false` cannot go with `leader`: a term lasts as long as its lease is \
             renewed; drop `renew`, and bound the term with `max_hold` if it should end"
                .to_owned(),
        );
    }
    errors
}

/// Arguments that set the same thing share a slot.
fn slot(name: &str) -> &str {
    match name {
        "mode" => "try_lock",
        "permits" | "read" | "write" => "hold",
        other => other,
    }
}

/// The argument that asked for `hold`.
fn hold_name(hold: Hold) -> &'static str {
    match hold {
        Hold::Permits(_) => "permits",
        Hold::Read => "read",
        Hold::Write => "write",
    }
}

impl LockedArgs {
    fn apply(&mut self, name: &str, meta: &Meta) -> syn::Result<()> {
        match name {
            "key" => self.key = Some(string(name, meta)?),
            "keys" => self.keys = Some(key_list(meta)?),
            "ttl" => self.ttl = Some(millis(name, meta)?),
            "timeout" => self.timeout = Some(millis(name, meta)?),
            "retry_interval" => self.retry_interval = Some(millis(name, meta)?),
            "max_hold" => self.max_hold = Some(millis(name, meta)?),
            "try_lock" => {
                flag(name, meta)?;
                self.try_mode = true;
            }
            "mode" => {
                let lit = string(name, meta)?;
                self.try_mode = match lit.value().as_str() {
                    "try" => true,
                    "wait" => false,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "unknown `mode` {other:?}; expected \"wait\" (the default) or \"try\""
                            ),
                        ));
                    }
                };
            }
            "fallback" => self.fallback = Some(path_value(name, meta, "fallback = other_fn")?),
            "locker" => self.locker = Some(value(name, meta, "locker = MY_LOCKER")?.clone()),
            "logging" => self.logging = Some(boolean(name, meta)?),
            "renew" => self.renew = Some(boolean(name, meta)?),
            "fencing" => {
                self.fencing = Some(match meta {
                    Meta::Path(_) => true,
                    _ => boolean(name, meta)?,
                })
            }
            "permits" => self.hold = Some((meta.path().span(), Hold::Permits(permits(meta)?))),
            "read" | "write" => {
                flag(name, meta)?;
                let hold = if name == "read" {
                    Hold::Read
                } else {
                    Hold::Write
                };
                self.hold = Some((meta.path().span(), hold));
            }
            "leader" => {
                flag(name, meta)?;
                self.leader = Some(meta.path().span());
            }
            "crate" => {
                let lit = string(name, meta)?;
                self.krate = Some(lit.parse::<Path>().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        format!(
                            "`crate` must be a path, e.g. `crate = \"::locked\"`, found {:?}",
                            lit.value()
                        ),
                    )
                })?);
            }
            _ => return Err(unknown(name, meta)),
        }
        Ok(())
    }
}

fn unknown(name: &str, meta: &Meta) -> syn::Error {
    let list: Vec<String> = NAMES.iter().map(|n| format!("`{n}`")).collect();
    let mut msg = format!(
        "unknown argument `{name}`; expected one of {}",
        list.join(", ")
    );
    let renamed = match name {
        "try" | "trylock" | "try_mode" | "nowait" => Some("try_lock"),
        "expire" | "expiry" | "lease" => Some("ttl"),
        "wait" | "wait_timeout" => Some("timeout"),
        "retry" | "retry_delay" => Some("retry_interval"),
        _ => None,
    };
    let near = renamed.or_else(|| crate::suggest::closest(name, NAMES.iter().copied()));
    if let Some(near) = near {
        msg = format!(
            "unknown argument `{name}`; did you mean `{near}`? expected one of {}",
            list.join(", ")
        );
    }
    syn::Error::new(meta.path().span(), msg)
}

fn value<'a>(name: &str, meta: &'a Meta, example: &str) -> syn::Result<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Ok(&nv.value),
        _ => Err(syn::Error::new(
            meta.span(),
            format!("`{name}` takes a value: write `{example}`"),
        )),
    }
}

fn string(name: &str, meta: &Meta) -> syn::Result<LitStr> {
    let example = match name {
        "key" => "key = \"order:{id}\"".to_owned(),
        "mode" => "mode = \"try\"".to_owned(),
        "crate" => "crate = \"::locked\"".to_owned(),
        _ => format!("{name} = \"30s\""),
    };
    match value(name, meta, &example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` takes a string literal: write `{example}`"),
        )),
    }
}

fn millis(name: &str, meta: &Meta) -> syn::Result<Millis> {
    let lit = string(name, meta)?;
    Ok(Millis {
        ms: duration::parse_ms(name, &lit)?,
    })
}

fn permits(meta: &Meta) -> syn::Result<u32> {
    const EXAMPLE: &str = "permits = 3";
    match value("permits", meta, EXAMPLE)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => match n.base10_parse::<u32>() {
            Ok(0) => Err(syn::Error::new(
                n.span(),
                "`permits` must be at least 1: a semaphore of 0 permits admits no one",
            )),
            Ok(v) => Ok(v),
            Err(_) => Err(syn::Error::new(
                n.span(),
                format!("`permits` must be a whole number from 1 to {}", u32::MAX),
            )),
        },
        other => Err(syn::Error::new(
            other.span(),
            format!("`permits` takes an integer literal: write `{EXAMPLE}`"),
        )),
    }
}

fn boolean(name: &str, meta: &Meta) -> syn::Result<bool> {
    let example = format!("{name} = false");
    match value(name, meta, &example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(LitBool { value, .. }),
            ..
        }) => Ok(*value),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` takes `true` or `false`: write `{example}`"),
        )),
    }
}

fn flag(name: &str, meta: &Meta) -> syn::Result<()> {
    match meta {
        Meta::Path(_) => Ok(()),
        _ => Err(syn::Error::new(
            meta.span(),
            format!("`{name}` takes no value: write `{name}` alone"),
        )),
    }
}

fn path_value(name: &str, meta: &Meta, example: &str) -> syn::Result<Path> {
    match value(name, meta, example)? {
        Expr::Path(p) if p.qself.is_none() => Ok(p.path.clone()),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Err(syn::Error::new(
            s.span(),
            format!("`{name}` takes a path, not a string: write `{example}`"),
        )),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` takes a path: write `{example}`"),
        )),
    }
}

fn key_list(meta: &Meta) -> syn::Result<(Span, Vec<LitStr>)> {
    const EXAMPLE: &str = "keys = [\"account:{from}\", \"account:{to}\"]";
    let span = meta.path().span();
    match value("keys", meta, EXAMPLE)? {
        Expr::Array(arr) if !arr.elems.is_empty() => arr
            .elems
            .iter()
            .map(|e| match e {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Ok(s.clone()),
                other => Err(syn::Error::new(
                    other.span(),
                    format!("each of `keys` is a string literal: write `{EXAMPLE}`"),
                )),
            })
            .collect::<syn::Result<Vec<_>>>()
            .map(|keys| (span, keys)),
        other => Err(syn::Error::new(
            other.span(),
            format!("`keys` takes a non-empty list of string literals: write `{EXAMPLE}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(tokens: proc_macro2::TokenStream) -> String {
        syn::parse2::<LockedArgs>(tokens)
            .err()
            .expect("a parse error")
            .to_string()
    }

    #[test]
    fn parse_full_argument_list() {
        let args: LockedArgs = syn::parse_quote!(
            key = "order:{id}",
            ttl = "30s",
            timeout = "5s",
            retry_interval = "50ms",
            try_lock,
            fallback = skip,
            locker = LOCKER,
            logging = false,
            renew = false,
            fencing,
            max_hold = "1h",
            crate = "::my_locked"
        );
        assert_eq!(args.ttl.map(|m| m.ms), Some(30_000));
        assert!(args.try_mode);
        assert_eq!(args.logging, Some(false));
        assert_eq!(args.fencing, Some(true));
        assert!(args.krate.is_some());
    }

    #[test]
    fn parse_unknown_argument_suggests_and_lists() {
        let msg = err(quote::quote!(key = "a", tll = "1s"));
        assert!(
            msg.starts_with("unknown argument `tll`; did you mean `ttl`? expected one of `key`"),
            "{msg}"
        );
    }

    #[test]
    fn parse_duplicate_argument_is_error() {
        assert_eq!(
            err(quote::quote!(key = "a", ttl = "1s", ttl = "2s")),
            "`ttl` set multiple times; keep one"
        );
    }

    #[test]
    fn parse_missing_key_is_error() {
        assert!(err(quote::quote!(ttl = "1s")).starts_with("missing `key`"));
    }

    #[test]
    fn parse_mode_and_try_lock_conflict() {
        assert_eq!(
            err(quote::quote!(key = "a", try_lock, mode = "try")),
            "`try_lock` and `mode` both set the mode; keep one"
        );
    }

    #[test]
    fn parse_key_and_keys_conflict() {
        assert!(
            err(quote::quote!(key = "a", keys = ["b"]))
                .starts_with("`key` and `keys` cannot both be set")
        );
    }

    #[test]
    fn parse_permits_read_and_write() {
        let args: LockedArgs = syn::parse_quote!(key = "a", permits = 3);
        assert_eq!(args.hold.map(|h| h.1), Some(Hold::Permits(3)));
        let args: LockedArgs = syn::parse_quote!(key = "a", read);
        assert_eq!(args.hold.map(|h| h.1), Some(Hold::Read));
        assert!(err(quote::quote!(key = "a", permits = 0)).contains("at least 1"));
        assert!(err(quote::quote!(key = "a", permits = "3")).contains("integer literal"));
        assert!(err(quote::quote!(key = "a", read, write)).starts_with("`read` and `write`"));
        assert!(err(quote::quote!(key = "a", permits = 2, read)).contains("either a semaphore"));
        assert!(err(quote::quote!(keys = ["a"], write)).contains("takes one key"));
        assert!(err(quote::quote!(key = "a", read, fencing)).contains("cannot be fenced"));
    }

    #[test]
    fn parse_leader_and_what_cannot_go_with_it() {
        let args: LockedArgs = syn::parse_quote!(key = "scheduler", leader, ttl = "10s");
        assert!(args.leader.is_some());
        assert!(
            err(quote::quote!(key = "a", leader, try_lock))
                .starts_with("`try_lock` cannot go with `leader`")
        );
        assert!(
            err(quote::quote!(key = "a", leader, mode = "try"))
                .starts_with("`mode` cannot go with `leader`")
        );
        assert!(
            err(quote::quote!(key = "a", leader, permits = 2))
                .starts_with("`permits` cannot go with `leader`")
        );
        assert!(
            err(quote::quote!(key = "a", read, leader))
                .starts_with("`read` cannot go with `leader`")
        );
        assert!(
            err(quote::quote!(keys = ["a"], leader)).starts_with("`keys` cannot go with `leader`")
        );
        assert!(
            err(quote::quote!(key = "a", leader, renew = false))
                .starts_with("`renew = false` cannot go")
        );
        assert!(err(quote::quote!(key = "a", leader = true)).contains("takes no value"));
        assert!(err(quote::quote!(key = "a", leader, fencing)).starts_with("`fencing` cannot go"));
        let _: LockedArgs = syn::parse_quote!(key = "a", leader, mode = "wait", renew = true);
    }

    #[test]
    fn parse_bad_values_explain_the_form() {
        assert!(err(quote::quote!(key = 5)).contains("`key` takes a string literal"));
        assert!(err(quote::quote!(key = "a", ttl = 30)).contains("`ttl` takes a string literal"));
        assert!(
            err(quote::quote!(key = "a", fallback = "f")).contains("takes a path, not a string")
        );
        assert!(err(quote::quote!(key = "a", logging = "no")).contains("`true` or `false`"));
        assert!(err(quote::quote!(key = "a", try_lock = true)).contains("takes no value"));
        assert!(err(quote::quote!(key = "a", mode = "spin")).contains("unknown `mode`"));
        assert!(err(quote::quote!(key = "a", ttl = "0s")).contains("greater than zero"));
    }
}
