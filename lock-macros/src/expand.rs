//! The expansion: the only module that writes code. It keeps the user's fn and replaces
//! only its block; every decision is a call into `#krate::__private` (the runtime).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, Ident, ItemFn, LitStr, ReturnType};

use crate::args::{Hold, LockedArgs, Millis};
use crate::key::{self, Template};
use crate::signature::{self, Signature};

/// Checks everything, then expands; on any error, the caller emits the fn untouched plus
/// the errors, so one mistake gives one message.
pub(crate) fn expand(args: LockedArgs, item: ItemFn) -> syn::Result<TokenStream> {
    let sig = signature::check(&item)?;
    let keys: Vec<(LitStr, Template)> = match (&args.key, &args.keys) {
        (Some(k), _) => vec![(k.clone(), key::parse(k, &sig.bound)?)],
        (None, Some((_, ks))) => {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            for k in ks {
                match key::parse(k, &sig.bound) {
                    Ok(t) => out.push((k.clone(), t)),
                    Err(e) => errors.push(e),
                }
            }
            if let Some(e) = crate::combine(errors) {
                return Err(e);
            }
            out
        }
        (None, None) => return Err(syn::Error::new(Span::call_site(), "missing `key`")),
    };
    let fallback_args = match &args.fallback {
        Some(path) => Some(fallback_args(&sig, path)?),
        None => None,
    };
    Ok(generate(&args, &item, &keys, fallback_args))
}

/// The arguments a fallback is called with: the fn's own, in order.
fn fallback_args(sig: &Signature, path: &syn::Path) -> syn::Result<Vec<Ident>> {
    sig.params
        .iter()
        .map(|p| {
            p.name.clone().ok_or_else(|| {
                let mut e = syn::Error::new(
                    p.span,
                    "a `fallback` is called with the same arguments, so each parameter needs a name; \
                     bind this pattern to a name and destructure it in the body",
                );
                e.combine(syn::Error::new(path.span(), "`fallback` given here"));
                e
            })
        })
        .collect()
}

fn generate(
    args: &LockedArgs,
    item: &ItemFn,
    keys: &[(LitStr, Template)],
    fallback_args: Option<Vec<Ident>>,
) -> TokenStream {
    let krate = match &args.krate {
        Some(path) => quote!(#path),
        None => quote!(::locked),
    };
    let p = quote!(#krate::__private);
    let ms = |m: &Option<Millis>| match m {
        Some(Millis { ms }) => quote!(#p::Some(#p::CoreDuration::from_millis(#ms))),
        None => quote!(#p::None),
    };
    let opt_bool = |b: Option<bool>| match b {
        Some(v) => quote!(#p::Some(#v)),
        None => quote!(#p::None),
    };
    let (ttl, timeout, retry, max_hold) = (
        ms(&args.ttl),
        ms(&args.timeout),
        ms(&args.retry_interval),
        ms(&args.max_hold),
    );
    let (renew, logging, fencing) = (
        opt_bool(args.renew),
        opt_bool(args.logging),
        opt_bool(args.fencing),
    );
    // The key template(s) as written: the metrics label, bounded by the code, not the data.
    let label = keys
        .iter()
        .map(|(lit, _)| lit.value())
        .collect::<Vec<_>>()
        .join(", ");
    let mode = if args.try_mode {
        quote!(#p::Mode::Try)
    } else {
        quote!(#p::Mode::Wait)
    };
    let fn_name = item.sig.ident.to_string();
    let hold = match args.hold.map(|(_, h)| h) {
        None => quote!(#p::Hold::Lock),
        Some(Hold::Permits(n)) => quote!(#p::Hold::Permits(#n)),
        Some(Hold::Read) => quote!(#p::Hold::Read),
        Some(Hold::Write) => quote!(#p::Hold::Write),
    };

    let spec = Ident::new("__LOCKED_SPEC", Span::mixed_site());
    let key_var = Ident::new("__locked_key", Span::mixed_site());
    let held = Ident::new("__locked_held", Span::mixed_site());
    let err = Ident::new("__locked_err", Span::mixed_site());
    let body = Ident::new("__locked_body", Span::mixed_site());
    let out = Ident::new("__locked_out", Span::mixed_site());

    // `locker = X`: `&X` coerced to `&Locker`, so a `LazyLock<Locker>` static works too.
    let locker = match &args.locker {
        Some(expr) => {
            let l = format_ident!("__locked_locker", span = Span::mixed_site());
            quote_spanned!(expr.span()=> #p::Some({ let #l: &#p::Locker = &#expr; #l }))
        }
        None => quote!(#p::None),
    };

    // Input:  key = "order:{id}:{self.shop}"
    // Output: __private::key(&["order:", ":", ""], &[format!("{}", id), format!("{}", self.shop)])
    // Each `format!` is spanned at the literal, so a missing `Display` is reported there.
    let key_exprs = keys.iter().map(|(lit, t)| {
        let lits = &t.lits;
        let values = t.places.iter().map(|place| {
            let path = place.iter().enumerate().map(|(i, seg)| {
                let tok: TokenStream = if seg.chars().all(|c| c.is_ascii_digit()) {
                    let idx = syn::Index {
                        index: seg.parse().unwrap_or(0),
                        span: lit.span(),
                    };
                    quote!(#idx)
                } else {
                    let id = Ident::new(seg, lit.span());
                    quote!(#id)
                };
                if i == 0 { tok } else { quote!(.#tok) }
            });
            quote_spanned!(lit.span()=> #p::format!("{}", #(#path)*))
        });
        quote!(#p::key(&[#(#lits),*], &[#(#values),*]))
    });
    let key_exprs: Vec<TokenStream> = key_exprs.collect();
    let key_value = if args.keys.is_some() {
        quote!([#(#key_exprs),*])
    } else {
        let k = &key_exprs[0];
        quote!(#k)
    };
    let acquire = if args.keys.is_some() {
        quote!(acquire_all)
    } else {
        quote!(acquire)
    };

    let (ret_ty, ret_span) = match &item.sig.output {
        ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
        ReturnType::Default => (quote!(()), item.sig.paren_token.span.close()),
    };
    let is_impl_trait = matches!(&item.sig.output, ReturnType::Type(_, ty) if matches!(**ty, syn::Type::ImplTrait(_)));

    // Without a fallback, a lock failure leaves through the return type, which must be
    // `Result<T, E>` with `E: From<LockError>`: checked by a trait, reported at the type.
    let fail = match (&args.fallback, &fallback_args) {
        (Some(path), Some(call_args)) => quote_spanned!(path.span()=> #path(#(#call_args),*).await),
        _ => quote_spanned!(ret_span=> #p::lock_failed::<#ret_ty>(#err)),
    };

    // Pins the body's return type so `?` and literals infer as in a plain fn (tracing's
    // "fake return edge").
    let fake_return = if is_impl_trait {
        quote!()
    } else {
        let r = format_ident!("__locked_ret", span = Span::mixed_site());
        quote_spanned!(ret_span=>
            #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::needless_return, clippy::empty_loop)]
            if false {
                let #r: #ret_ty = loop {};
                return #r;
            }
        )
    };

    let inner_attrs = item
        .attrs
        .iter()
        .filter(|a| matches!(a.style, AttrStyle::Inner(_)));
    let outer_attrs = item
        .attrs
        .iter()
        .filter(|a| matches!(a.style, AttrStyle::Outer));
    let stmts = &item.block.stmts;
    let vis = &item.vis;
    let sig = &item.sig;
    // With a fallback, the body borrows the arguments instead of taking them, so the
    // fallback can still be called with them if the lock is lost mid-body.
    let move_kw = if args.fallback.is_some() {
        quote!()
    } else {
        quote!(move)
    };

    // Input:  #[locked(key = "order:{id}", ttl = "30s")] async fn process(id: u64) -> R { BODY }
    // Output: async fn process(id: u64) -> R {
    //             static SPEC: Spec = Spec { site: "module::process", label: "order:{id}",
    //                                        ttl: Some(30s), .. };
    //             let key = __private::key(&["order:", ""], &[format!("{}", id)]);
    //             let held = match __private::acquire(&SPEC, locker, key).await {
    //                 Ok(held) => held,
    //                 Err(err) => return lock_failed::<R>(err),   // or `fallback(id).await`
    //             };
    //             let body = async move { BODY };
    //             match __private::hold(held, body).await { Ok(out) => out, Err(err) => lock_failed(err) }
    //         }
    let spec_item = quote! {
        static #spec: #p::Spec = #p::Spec {
            site: #p::concat!(#p::module_path!(), "::", #fn_name),
            label: #label,
            ttl: #ttl,
            timeout: #timeout,
            retry_interval: #retry,
            max_hold: #max_hold,
            mode: #mode,
            renew: #renew,
            logging: #logging,
            fencing: #fencing,
            hold: #hold,
        };
    };

    if args.leader.is_some() {
        let campaign = Ident::new("__locked_campaign", Span::mixed_site());
        // Input:  #[locked(key = "scheduler", leader)] async fn schedule() -> R { BODY }
        // Output: async fn schedule() -> R {
        //             static SPEC: Spec = ..;
        //             let mut campaign = match __private::campaign(&SPEC, locker, key) { .. };
        //             loop {
        //                 let held = match campaign.elect().await { Ok(h) => h, Err(e) => return lock_failed(e) };
        //                 let body = async { BODY };   // borrows the arguments: each term runs it anew
        //                 match campaign.lead(held, body).await {
        //                     Ok(out) => return out,
        //                     Err(e) if campaign.lost(&e) => continue,   // campaign again
        //                     Err(e) => return lock_failed(e),
        //                 }
        //             }
        //         }
        return quote! {
            #(#outer_attrs)*
            #vis #sig {
                #(#inner_attrs)*
                #spec_item
                let mut #campaign = match #p::campaign(&#spec, #locker, #key_value) {
                    #p::Ok(#campaign) => #campaign,
                    #p::Err(#err) => {
                        let _ = &#err;
                        return #fail;
                    }
                };
                loop {
                    let #held = match #campaign.elect().await {
                        #p::Ok(#held) => #held,
                        #p::Err(#err) => {
                            let _ = &#err;
                            return #fail;
                        }
                    };
                    let #body = async {
                        #fake_return
                        #(#stmts)*
                    };
                    match #campaign.lead(#held, #body).await {
                        #p::Ok(#out) => return #out,
                        #p::Err(#err) if #campaign.lost(&#err) => continue,
                        #p::Err(#err) => {
                            let _ = &#err;
                            return #fail;
                        }
                    }
                }
            }
        };
    }

    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #spec_item
            let #key_var = #key_value;
            let #held = match #p::#acquire(&#spec, #locker, #key_var).await {
                #p::Ok(#held) => #held,
                #p::Err(#err) => {
                    let _ = &#err;
                    return #fail;
                }
            };
            let #body = async #move_kw {
                #fake_return
                #(#stmts)*
            };
            match #p::hold(#held, #body).await {
                #p::Ok(#out) => #out,
                #p::Err(#err) => {
                    let _ = &#err;
                    #fail
                }
            }
        }
    }
}
