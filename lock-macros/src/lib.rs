//! The `#[locked]` attribute of the [`locked`](https://docs.rs/locked) crate.
//!
//! This crate only parses and expands; all behaviour lives in `lock-runtime`. Use it
//! through `locked::locked`.
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod args;
mod duration;
mod expand;
mod key;
mod signature;
mod suggest;

use proc_macro::TokenStream;

/// All the errors as one, so every bad argument is reported in one build.
pub(crate) fn combine(errors: Vec<syn::Error>) -> Option<syn::Error> {
    errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    })
}

#[doc = include_str!("../ATTRIBUTE.md")]
#[proc_macro_attribute]
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    let tokens: proc_macro2::TokenStream = item.clone().into();
    let result = syn::parse::<args::LockedArgs>(args)
        .and_then(|args| Ok((args, syn::parse::<syn::ItemFn>(item)?)))
        .and_then(|(args, item)| expand::expand(args, item));
    match result {
        Ok(out) => out.into(),
        // As tokio does: emit the fn as written plus the error, so the crate still
        // type-checks and the user sees this one message, not fifty.
        Err(e) => {
            let err = e.to_compile_error();
            quote::quote!(#err #tokens).into()
        }
    }
}
