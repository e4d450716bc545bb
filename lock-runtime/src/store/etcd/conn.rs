//! The client: made on first use (within the connect limit), every request bounded and
//! sent only to a member that has a leader; errors that name the endpoints.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;

use super::endpoints::Endpoints;
use crate::error::{BoxError, StoreError};

/// How long connecting may take.
pub(super) const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// How long one request may take (a cluster without quorum answers nothing).
pub(super) const REQUEST_LIMIT: Duration = Duration::from_secs(3);
/// How long one attempt may take before the request is sent again (to another member,
/// unless the balancer picks the same one): a paused member answers nothing.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(1);

/// The endpoints and, once made, the client.
pub(super) struct Conn {
    pub(super) endpoints: Endpoints,
    client: OnceCell<Client>,
}

impl Conn {
    pub(super) fn new(endpoints: Endpoints) -> Self {
        Self {
            endpoints,
            client: OnceCell::new(),
        }
    }

    /// The client (a clone: cheap, and each call needs its own `&mut`).
    pub(super) async fn client(&self) -> Result<Client, BoxError> {
        let client = self
            .client
            .get_or_try_init(|| async { Box::pin(self.connect()).await })
            .await?;
        Ok(client.clone())
    }

    async fn connect(&self) -> Result<Client, BoxError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_LIMIT)
            .with_timeout(REQUEST_LIMIT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        if let Some((user, password)) = &self.endpoints.user {
            options = options.with_user(user.clone(), password.clone());
        }
        #[cfg(feature = "tls")]
        if self.endpoints.tls {
            options = options.with_tls(self.endpoints.trust.options(CONNECT_LIMIT));
        }
        let limit = CONNECT_LIMIT + REQUEST_LIMIT;
        let connect = Client::connect(&self.endpoints.urls, Some(options));
        match tokio::time::timeout(limit, connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.failed("connect", &Causes(&e))),
            Err(_) => Err(self.failed("connect", &format!("no connection within {limit:?}"))),
        }
    }

    /// A failure of `what`, naming the endpoints (never the password), with a hint that
    /// fits the cause.
    pub(super) fn failed(&self, what: &str, cause: &dyn fmt::Display) -> BoxError {
        let cause = cause.to_string();
        StoreError::boxed(
            "etcd",
            format!(
                "etcd at {}: {what}: {cause}; {}",
                self.endpoints.hosts(),
                hint(&cause, self.endpoints.tls)
            ),
        )
    }

    /// `call` with the client, bounded by [`REQUEST_LIMIT`], its failure named. A call
    /// the balancer sent to a member that is down (connection refused, unavailable), or
    /// that got no answer within [`ATTEMPT_LIMIT`] (a paused member keeps its connection
    /// and answers nothing), goes again, to another, within the limit: every operation
    /// may be sent twice (a take finds the key already the token's, a release finds it
    /// gone).
    pub(super) async fn run<T, F, Fut>(&self, what: &str, call: F) -> Result<T, BoxError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        Ok(self.run_sent(what, call).await?.0)
    }

    /// [`Conn::run`], and whether the call went more than once: an earlier send may then
    /// still land later, after this answer (a paused member resumed), so a lease a take
    /// used then must never serve another hold (it is revoked, not kept as a spare).
    pub(super) async fn run_sent<T, F, Fut>(
        &self,
        what: &str,
        call: F,
    ) -> Result<(T, bool), BoxError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let client = self.client().await?;
        let mut again = false;
        let deadline = tokio::time::Instant::now() + REQUEST_LIMIT;
        let mut pause = Duration::from_millis(5);
        loop {
            // Boxed: a gRPC call's future is large (tonic's), and inlined into the
            // engine's futures it overflowed a test thread's stack in debug builds; the
            // allocation is nothing beside the round trip.
            let attempt = Box::pin(call(client.clone()));
            let until = deadline.min(tokio::time::Instant::now() + ATTEMPT_LIMIT);
            match tokio::time::timeout_at(until, attempt).await {
                Ok(Ok(out)) => return Ok((out, again)),
                Ok(Err(e)) if unavailable(&e) && tokio::time::Instant::now() + pause < deadline => {
                    again = true;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Ok(Err(e)) => return Err(self.failed(what, &Causes(&e))),
                Err(_) if until < deadline => again = true,
                Err(_) => {
                    return Err(self.failed(what, &format!("no answer within {REQUEST_LIMIT:?}")));
                }
            }
        }
    }
}

/// gRPC's `UNAVAILABLE`.
const UNAVAILABLE: i32 = 14;

/// Whether a call failed before a member could act on it, or on a member without a
/// leader: worth sending again (to another member).
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => i32::from(s.code()) == UNAVAILABLE,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// The hint for a member that refused the client's certificate (or its absence).
const CLIENT_CERTIFICATE: &str = "the member refused the client's certificate or its absence: \
     if the members ask for one (`--client-cert-auth`), set `LOCK_ETCD_CERT` and \
     `LOCK_ETCD_KEY` to one their `--trusted-ca-file` signed";

/// What to check, after a failure's text (on `https://` endpoints when `tls`).
fn hint(cause: &str, tls: bool) -> &'static str {
    let cause = cause.to_ascii_lowercase();
    if cause.contains("authentication failed") || cause.contains("invalid auth token") {
        "check the user and password in the endpoints (`http://user:password@host:2379`)"
    } else if cause.contains("user name is empty") {
        "the cluster has auth on: name a user in the endpoints (`http://user:password@host:2379`)"
    } else if cause.contains("permission denied") {
        "grant the user `readwrite` on the key prefix (`etcdctl role grant-permission ROLE \
         --prefix=true readwrite PREFIX`)"
    } else if cause.contains("received fatal alert") {
        // The member ended the handshake: it refused the client's certificate, or its
        // absence.
        CLIENT_CERTIFICATE
    } else if cause.contains("certificate") || cause.contains("tls") {
        "check that the members' certificates are signed by the CA the client trusts \
         (`tls_root_certificate`, `LOCK_ETCD_CA`, else the system's roots) and name the host"
    } else if tls {
        // With TLS 1.3 a member that wants a client certificate and gets none may close
        // the connection after the handshake: the client only sees it closed.
        "check that a majority of the cluster's members is running and reachable; if they \
         ask for a client certificate (`--client-cert-auth`), set `LOCK_ETCD_CERT` and \
         `LOCK_ETCD_KEY` to one their `--trusted-ca-file` signed"
    } else {
        "check that a majority of the cluster's members is running and reachable"
    }
}

/// An etcd-client error and its sources, `a: b: c` (a transport error's own text is
/// only "transport error"; the cause, e.g. a certificate's, is in its sources).
struct Causes<'a>(&'a etcd_client::Error);

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn the_hint_follows_the_cause() {
        let wrong = "etcdserver: authentication failed, invalid user ID or password";
        assert!(hint(wrong, false).contains("user and password"));
        assert!(hint("etcdserver: user name is empty", false).contains("name a user"));
        assert!(hint("etcdserver: permission denied", false).contains("readwrite"));
        assert!(hint("invalid peer certificate: UnknownIssuer", true).contains("CA"));
        assert!(hint("operation was canceled", true).contains("LOCK_ETCD_CERT"));
        let refused = "received fatal alert: BadCertificate";
        assert!(hint(refused, true).contains("LOCK_ETCD_CERT"));
        let plain = hint("operation was canceled", false);
        assert!(plain.contains("majority") && !plain.contains("LOCK_ETCD_CERT"));
    }
}
