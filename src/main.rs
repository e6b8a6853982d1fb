//! The `todo-api` command: serve (the default), or mint a token for curl and tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use todo_api::{auth, Config};

const USAGE: &str = "\
todo-api: the Todo REST API (see README.md and docs/API.md)

Usage:
  todo-api                      serve (configured by the environment and ./.env)
  todo-api token --sub ID [--email E] [--name N] [--ttl 1h]
                                print an HS256 token signed with BETTER_AUTH_SECRET,
                                with JWT_ISSUER / JWT_AUDIENCE as iss / aud if set
                                (options also as --sub=ID)
  todo-api --help | --version

Environment: DATABASE_URL, PGSSLROOTCERT, BETTER_AUTH_SECRET, BETTER_AUTH_URL, JWKS_URL,
JWT_ISSUER, JWT_AUDIENCE, CORS_ORIGINS, HOST, PORT, WORKERS, DB_POOL_SIZE,
DB_STATEMENT_CACHE, RUST_LOG.";

/// glibc's malloc serves a block from its own heaps once a block that large was freed, and
/// keeps what it frees there: after a few lists of 27 MB the server held 450–570 MB for good
/// (and 16 concurrent ones peaked at 500 MB). A fixed threshold keeps blocks of 256 KiB and
/// more in mappings of their own, given back when freed: 16 MB idle after the same, 65 MB
/// at the peak. The smaller blocks every request uses are not affected.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_system() {
    extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    /// glibc's malloc.h.
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    // SAFETY: mallopt only changes a setting of the allocator; called once, before any
    // thread that allocates has been started.
    if unsafe { mallopt(M_MMAP_THRESHOLD, 256 * 1024) } != 1 {
        eprintln!("todo-api: could not set malloc's mmap threshold; carrying on");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_system() {}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("-h" | "--help" | "help") => print(USAGE),
        Some("-V" | "--version") => print(&format!("todo-api {}", env!("CARGO_PKG_VERSION"))),
        Some("token") => token(&args[1..]),
        Some(other) => {
            say(&format!("todo-api: unknown argument {other:?}\n\n{USAGE}"));
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    return_large_blocks_to_the_system();
    // `RUST_LOG` too may come from `.env`, so the logger is built from the same lookup.
    let lookup = todo_api::config::env_or_dotenv();
    let mut logger = env_logger::Builder::new();
    let filter = lookup("RUST_LOG").filter(|f| !f.trim().is_empty());
    if let Some(warning) = filter
        .as_deref()
        .and_then(todo_api::logsink::misread_log_filter)
    {
        say(&format!("todo-api: {warning}"));
    }
    logger.parse_filters(filter.as_deref().unwrap_or("info"));
    logger.format(todo_api::logsink::format);
    match todo_api::logsink::start(std::io::stderr()) {
        Ok(sink) => {
            logger.target(env_logger::Target::Pipe(Box::new(sink)));
        }
        // Without its thread the log is written by the logging threads themselves.
        Err(e) => eprintln!("todo-api: no log writer thread ({e}); writing the log directly"),
    }
    logger.init();
    let code = run(Config::from_lookup(lookup));
    todo_api::logsink::flush();
    code
}

fn run(config: Result<Config, String>) -> ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    // Signals go through a socket pair so the main thread can simply block on it.
    let (mut signals, writer) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return fail(&format!("cannot create the signal pipe: {e}")),
    };
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let registered = writer
            .try_clone()
            .and_then(|w| signal_hook::low_level::pipe::register(signal, w));
        if let Err(e) = registered {
            return fail(&format!("cannot handle signal {signal}: {e}"));
        }
    }
    let server = match todo_api::start(config) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let _ = signals.read(&mut [0u8]);
    log::info!("shutting down: finishing requests in flight");
    server.shutdown();
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// What `todo-api token` was asked to sign.
struct TokenRequest {
    sub: String,
    email: Option<String>,
    name: Option<String>,
    ttl: Duration,
}

fn token(args: &[String]) -> ExitCode {
    let request = match parse_token_args(args) {
        Ok(Some(request)) => request,
        Ok(None) => return print(USAGE),
        Err(message) => return usage_error(&message),
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if config.secret_is_generated {
        return fail("BETTER_AUTH_SECRET is not set (environment or .env): nothing to sign with");
    }
    let signed = auth::mint_for(
        &config,
        &request.sub,
        request.email.as_deref(),
        request.name.as_deref(),
        request.ttl,
    );
    match signed {
        Ok(token) => print(&token),
        Err(why) => usage_error(&why),
    }
}

/// The options of `todo-api token`, each as `--opt value` or `--opt=value`; `None` when
/// `--help` (or `-h`) asks for the usage instead.
fn parse_token_args(args: &[String]) -> Result<Option<TokenRequest>, String> {
    let (mut sub, mut email, mut name, mut ttl) = (None, None, None, Duration::from_secs(3600));
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, value.to_string()),
            _ => match it.next() {
                Some(value) => (arg.as_str(), value.clone()),
                None => return Err(format!("{arg} needs a value")),
            },
        };
        match flag {
            "--sub" => sub = Some(value),
            "--email" => email = Some(value),
            "--name" => name = Some(value),
            "--ttl" => {
                ttl = parse_ttl(&value)
                    .ok_or_else(|| format!("--ttl {value:?}: use e.g. 90s, 15m, 1h, 7d"))?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let Some(sub) = sub.filter(|s| !s.is_empty()) else {
        return Err("--sub is required".into());
    };
    Ok(Some(TokenRequest {
        sub,
        email,
        name,
        ttl,
    }))
}

fn parse_ttl(s: &str) -> Option<Duration> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    // Saturating: a ttl too long for any token is refused when signing, with the limit.
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Writes `text` and a line feed to stdout. A reader that stopped reading early
/// (`todo-api --help | head -3`) closed the pipe on purpose: that is no error worth a word
/// (`println!` would panic on it). Any other failure to write is said, and fails the command.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("todo-api: cannot write to stdout: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes a message and a line feed to stderr; if stderr is closed, the message is lost
/// rather than turned into a panic (`eprintln!`).
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn usage_error(message: &str) -> ExitCode {
    say(&format!("todo-api token: {message}\n\n{USAGE}"));
    ExitCode::from(2)
}

fn fail(message: &str) -> ExitCode {
    // After what was logged before it.
    todo_api::logsink::flush();
    say(&format!("todo-api: {message}"));
    ExitCode::FAILURE
}
