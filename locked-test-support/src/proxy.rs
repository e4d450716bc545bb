//! A TCP fault proxy, for network partitions without `tc netem`: it forwards every
//! connection it accepts to an upstream port on loopback, and on command goes silent
//! (`cut`: bytes held, nothing closed), passes through again (`heal`: the held bytes
//! delivered late, in order), or kills every connection (`reset`).
//!
//! It runs on a thread of its own with a runtime of its own, so it works from sync code
//! and from any test runtime, and outlives a test runtime's shutdown; it stops on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// What every connection obeys: pass or hold, and how many resets so far.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    cut: bool,
    /// Only the server's answers are held: requests still reach it.
    replies_held: bool,
    resets: u64,
}

/// A proxy from `127.0.0.1:<port>` (or the address given) to `127.0.0.1:<upstream>`.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free `127.0.0.1` port and forwards to `127.0.0.1:<upstream_port>`.
    pub fn start(upstream_port: u16) -> Proxy {
        Self::start_on((Ipv4Addr::LOCALHOST, 0).into(), upstream_port)
    }

    /// Listens on `listen` (port 0: a free one) and forwards to `127.0.0.1:<upstream_port>`.
    pub fn start_on(listen: SocketAddr, upstream_port: u16) -> Proxy {
        let listener = std::net::TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("proxy: bind {listen}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port));
        let (state, watch) = watch::channel(State::default());
        let open = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let count = open.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                // Dropping the runtime at the end drops every connection task.
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, upstream, watch, count) => {}
                    }
                });
            })
            .expect("proxy thread");
        Proxy {
            addr,
            state,
            open,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://<host>:<port>/`, the address to give a client instead of the server's.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Goes silent both ways: nothing is forwarded, nothing is closed, new connections
    /// are accepted but silent too; what arrives meanwhile is held, in order.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.cut = true);
    }

    /// Goes silent one way: requests reach the server, its answers are held, in order
    /// (a reply lost in the network, or late: the server acted, the client does not know).
    pub fn hold_replies(&self) {
        self.state.send_modify(|s| s.replies_held = true);
    }

    /// Passes through again: the held bytes are delivered (late, in order).
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            s.cut = false;
            s.replies_held = false;
        });
    }

    /// Closes every current connection abruptly (RST) on both sides; connections
    /// accepted afterwards work as usual (or are held, if the proxy is cut).
    pub fn reset(&self) {
        self.state.send_modify(|s| s.resets += 1);
    }

    /// The connections open through the proxy now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Counted, and given its reset generation, the moment it is accepted.
        let generation = state.borrow().resets;
        let counted = Counted::new(&open);
        tokio::spawn(serve(client, upstream, state.clone(), generation, counted));
    }
}

/// One connection: two pumps until both ends close, or until a reset.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    generation: u64,
    _counted: Counted,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let mut resets = state.clone();
    let reset = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let pumps = async {
            tokio::join!(
                pump(&mut client_read, &mut server_write, state.clone(), false),
                pump(&mut server_read, &mut client_write, state.clone(), true),
            )
        };
        tokio::select! {
            _ = pumps => false,
            _ = resets.wait_for(|s| s.resets != generation) => true,
        }
    };
    if reset {
        // SO_LINGER 0: the close sends RST instead of FIN.
        let _ = (client.set_zero_linger(), server.set_zero_linger());
    }
}

/// Copies `from` to `to`; while the proxy is cut (or, for the server's answers, while
/// they are held), holds what it has read (and stops reading, so the kernel holds the
/// rest) until it is healed. Passes EOF on as a shutdown.
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    mut state: watch::Receiver<State>,
    replies: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let passes = |s: &State| !s.cut && (!replies || !s.replies_held);
        if state.wait_for(passes).await.is_err() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// One open connection in the proxy's count, for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
