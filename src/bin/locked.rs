//! `locked`: inspect and operate the locks of a `locked` deployment from a shell. It reads
//! the same environment as the library (`LOCK_STORE`, `REDIS_URL`/`LOCK_REDIS_URL`,
//! `DATABASE_URL`/`LOCK_DATABASE_URL`, `LOCK_PREFIX`); `--url`, `--store` and `--prefix`
//! override it.
//!
//! The stores it names (the `--store` values and their help, the variables `--url`
//! overrides) come from the library's store registry, `locked::__private::stores()`: a
//! new store needs nothing here.
//!
//! Exit codes: 0 done; 1 the store failed or the configuration is invalid (the message
//! says which and what to do); 2 the command line is wrong; 3 `wait` timed out with the
//! lock still held; 4 `release` was refused (no terminal to confirm on and no `--yes`) or
//! declined at the prompt.

use std::ffi::OsStr;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
use clap::{Parser, Subcommand};
use locked::__private::stores;
use locked::{LOCK_PREFIX, LOCK_STORE, LockInfo, Locker};
use serde_json::{Value, json};

/// Inspect and operate `locked` locks in their store (Redis, a Redis Cluster, Redlock or
/// PostgreSQL).
#[derive(Parser)]
#[command(name = "locked", version, about)]
struct Cli {
    /// The store's URL (comma-separated nodes for `cluster` and `redlock`); default from
    /// the store's variable (see --help).
    #[arg(long, global = true, long_help = url_help())]
    url: Option<String>,
    /// The store; default from LOCK_STORE.
    #[arg(long, global = true, value_parser = StoreName)]
    store: Option<String>,
    /// The key prefix; default from LOCK_PREFIX, else `lock:`.
    #[arg(long, global = true)]
    prefix: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `--store`: any text (an unknown store is the library's `LOCK_STORE` error, exit 1),
/// with the registry's stores as the values `--help` lists.
#[derive(Clone)]
struct StoreName;

impl TypedValueParser for StoreName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(stores().iter().map(|e| {
            let help = match e.feature {
                Some(feature) if !e.is_available() => {
                    format!(
                        "{} (not in this build: needs the `{feature}` feature)",
                        e.help
                    )
                }
                _ => e.help.to_owned(),
            };
            PossibleValue::new(e.name).help(help)
        })))
    }
}

/// `--url`'s long help: which variables each store reads its URL from.
fn url_help() -> String {
    let mut help = "The store's URL (comma-separated nodes for `cluster` and `redlock`), in \
                    place of the store's variable.\n\nDefault, by store:"
        .to_owned();
    let mut names: Vec<&str> = Vec::new();
    let with_url: Vec<_> = stores().iter().filter(|e| !e.url_vars.is_empty()).collect();
    for (i, e) in with_url.iter().enumerate() {
        names.push(e.name);
        if with_url
            .get(i + 1)
            .is_none_or(|next| next.url_vars != e.url_vars)
        {
            let vars = e.url_vars.join(", else ");
            help.push_str(&format!("\n  {}: {vars}", names.join(", ")));
            names.clear();
        }
    }
    help
}

/// Whether `--url` stands for the variable `name`: the first URL variable of a store.
fn is_url_var(name: &str) -> bool {
    stores().iter().any(|e| e.url_vars.first() == Some(&name))
}

#[derive(Subcommand)]
enum Command {
    /// Which store the environment (and flags) select.
    Env {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The held locks whose keys match PATTERN (a Redis glob under the prefix), by SCAN.
    List {
        /// E.g. `order:*`; default every lock.
        #[arg(default_value = "*")]
        pattern: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One lock: holder, time left, fence counter, waiters (on Redlock, every master's view).
    Inspect {
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a lock whoever holds it (asks first, unless --yes).
    Release {
        key: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Block until the lock is free (exit 3 if it is still held after --timeout).
    Wait {
        key: String,
        /// As in the attribute: `500ms`, `10s`, `2m`.
        #[arg(long, default_value = "10s", value_parser = duration)]
        timeout: Duration,
    },
    /// A live view of the locks matching PATTERN, refreshed until `q` or Ctrl-C.
    Watch {
        #[arg(default_value = "*")]
        pattern: String,
        /// How often to refresh, e.g. `1s`.
        #[arg(long, default_value = "1s", value_parser = duration)]
        interval: Duration,
    },
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write `500ms`, `10s` or `2m`"))
}

/// What went wrong, and the exit code that says so.
struct Failure(u8, String);

impl From<locked::LockError> for Failure {
    fn from(e: locked::LockError) -> Self {
        Failure(1, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(Failure(1, format!("could not start the runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

fn fail(Failure(code, message): Failure) -> ExitCode {
    eprintln!("locked: {message}");
    ExitCode::from(code)
}

fn locker(cli: &Cli) -> Result<Locker, Failure> {
    let lookup = |name: &str| match name {
        n if is_url_var(n) && cli.url.is_some() => cli.url.clone(),
        n if n == LOCK_STORE && cli.store.is_some() => cli.store.clone(),
        n if n == LOCK_PREFIX && cli.prefix.is_some() => cli.prefix.clone(),
        n => std::env::var(n).ok(),
    };
    Ok(Locker::from_env_with(lookup)?)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let locker = locker(&cli)?;
    match cli.command {
        Command::Env { json } => {
            let shown = format!("{locker:?}");
            let store = locker.store_name();
            let memory = store == "memory";
            if json {
                println!(
                    "{}",
                    json!({ "locker": shown, "store": store, "memory": memory })
                );
            } else {
                println!("{shown}");
                if memory {
                    println!(
                        "warning: the memory store: locks are not shared between processes; \
                         set LOCK_STORE and REDIS_URL"
                    );
                }
            }
        }
        Command::List { pattern, json } => {
            let infos = locker.list(&pattern).await?;
            if json {
                let all: Vec<Value> = infos.iter().map(to_json).collect();
                println!("{}", Value::Array(all));
            } else {
                print_table(&infos);
            }
        }
        Command::Inspect { key, json } => {
            let info = locker.inspect(&key).await?;
            if json {
                println!("{}", to_json(&info));
            } else {
                print_table(std::slice::from_ref(&info));
                for m in &info.masters {
                    println!(
                        "  master {:<32} {}",
                        m.url,
                        match (&m.error, m.held) {
                            (Some(e), _) => format!("error: {e}"),
                            (None, true) => format!("held {}", ttl(m.remaining)),
                            (None, false) => "free".to_owned(),
                        }
                    );
                }
            }
        }
        Command::Release { key, yes } => {
            let info = locker.inspect(&key).await?;
            if !info.held {
                println!("{}: not held; nothing to release", info.key);
                return Ok(());
            }
            if !yes {
                confirm(&info)?;
            }
            let existed = locker.force_release(&key).await?;
            println!(
                "{}: {}",
                info.key,
                if existed { "released" } else { "already free" }
            );
        }
        Command::Wait { key, timeout } => {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if !locker.is_locked(&key).await? {
                    println!("{}: free", locker.full_key(&key)?);
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Failure(
                        3,
                        format!(
                            "{} is still held after {timeout:?}; inspect it with `locked inspect {key}`",
                            locker.full_key(&key)?
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Command::Watch { pattern, interval } => watch(&locker, &pattern, interval).await?,
    }
    Ok(())
}

/// Asks on the terminal; refuses without one.
fn confirm(info: &LockInfo) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure(
            4,
            format!(
                "refusing to release {} without a terminal to confirm on; pass --yes",
                info.key
            ),
        ));
    }
    eprint!(
        "release {} (holder {}, {} left)? its holder may still be running [y/N] ",
        info.key,
        info.holder.as_deref().unwrap_or("?"),
        ttl(info.remaining)
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure(4, format!("{} not released", info.key)))
    }
}

/// A live view: redraws every `interval` until `q` or Ctrl-C. On a terminal the keys are
/// read as typed (raw mode, restored on the way out); otherwise `q` + Enter on stdin.
async fn watch(locker: &Locker, pattern: &str, interval: Duration) -> Result<(), Failure> {
    let (quit, mut quitting) = tokio::sync::mpsc::unbounded_channel::<()>();
    let raw = std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok();
    std::thread::spawn(move || {
        if raw {
            use crossterm::event::{Event, KeyCode, KeyModifiers, read};
            while let Ok(event) = read() {
                if let Event::Key(key) = event {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if key.code == KeyCode::Char('q') || key.code == KeyCode::Esc || ctrl_c {
                        let _ = quit.send(());
                        return;
                    }
                }
            }
        } else {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if line.trim() == "q" {
                    let _ = quit.send(());
                    return;
                }
            }
        }
    });
    let outcome = async {
        loop {
            let infos = locker.list(pattern).await?;
            let mut screen = format!(
                "\x1b[2J\x1b[Hlocked watch {pattern} (every {interval:?}; q or Ctrl-C to quit)\n\n"
            );
            screen.push_str(&table(&infos));
            // Raw mode does not turn "\n" into a new line at the left margin.
            let screen = if raw {
                screen.replace('\n', "\r\n")
            } else {
                screen
            };
            print!("{screen}");
            let _ = std::io::stdout().flush();
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = quitting.recv() => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    .await;
    if raw {
        let _ = crossterm::terminal::disable_raw_mode();
        println!();
    }
    outcome
}

fn ttl(remaining: Option<Duration>) -> String {
    remaining.map_or_else(|| "-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
}

fn print_table(infos: &[LockInfo]) {
    print!("{}", table(infos));
}

fn table(infos: &[LockInfo]) -> String {
    // A leader's holder carries its identity (`3f9a0c1e.host-1:4242`): the column widens.
    let width = infos
        .iter()
        .filter_map(|i| i.holder.as_deref())
        .map(|h| h.chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    let row = |key: &str, ttl: &str, holder: &str, fence: &str, waiters: &str| {
        format!("{key:<40} {ttl:>9} {holder:<width$} {fence:>20} {waiters:>7}\n")
    };
    let mut out = row("KEY", "TTL", "HOLDER", "FENCE", "WAITERS");
    for i in infos {
        let left = if i.held {
            ttl(i.remaining)
        } else {
            "free".to_owned()
        };
        let fence = i.fence.map_or_else(|| "-".to_owned(), |f| f.to_string());
        let holder = i.holder.as_deref().unwrap_or("-");
        out.push_str(&row(&i.key, &left, holder, &fence, &i.waiters.to_string()));
    }
    out
}

fn to_json(i: &LockInfo) -> Value {
    json!({
        "key": i.key,
        "held": i.held,
        "ttl_ms": i.remaining.map(|d| d.as_millis() as u64),
        "holder": i.holder,
        "fence": i.fence,
        "waiters": i.waiters,
        "masters": i.masters.iter().map(|m| json!({
            "url": m.url,
            "held": m.held,
            "ttl_ms": m.remaining.map(|d| d.as_millis() as u64),
            "holder": m.holder,
            "error": m.error,
        })).collect::<Vec<_>>(),
    })
}
