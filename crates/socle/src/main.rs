//! `socle`: the command line. Thin: each subcommand builds a configuration and calls
//! the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use socle::{Application, Config, Layers, open_store, shutdown_signal, telemetry};

#[derive(Parser)]
#[command(
    name = "socle",
    version,
    about = "Socle: the core of a state's digital services — identity federation, data \
             exchange between administrations, a tamper-evident journal and a citizen space.",
    long_about = None,
    after_help = "Start with `socle demo`, then open http://127.0.0.1:8080.\n\
                  Configuration: a TOML file (--config), overridden by SOCLE_* environment \
                  variables (SOCLE_SERVER__LISTEN sets server.listen), overridden by flags. \
                  See docs/CONFIGURATION.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform with the given configuration.
    Serve(ServeArgs),
    /// Run the platform on the embedded store with demonstration data, and print the
    /// addresses to open.
    Demo(DemoArgs),
    /// Apply pending database migrations and exit.
    Migrate(ConfigArgs),
    /// Verify, export or benchmark the tamper-evident journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Manage service providers (OpenID Connect clients).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage the token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version of this binary and of what it embeds.
    Version,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Service providers registered as OpenID Connect clients.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Back-office accounts (local, until agents log in through identity federation).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from --password-file or standard input.
    Create {
        #[command(flatten)]
        common: ConfigArgs,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// SIRET of the account's organisation (registered in the catalogue).
        #[arg(long)]
        organisation: String,
        /// operator, org_admin, instructor or developer (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A file holding the password (at least 12 characters); default: standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a service provider; prints its client_id and secret (shown once).
    Create(Box<ClientCreateArgs>),
    /// List the registered service providers.
    List(ConfigArgs),
    /// Disable a service provider: its logins and tokens are refused from now on.
    Disable {
        #[command(flatten)]
        common: ConfigArgs,
        /// The client to disable.
        client_id: String,
    },
}

#[derive(Args)]
struct ClientCreateArgs {
    #[command(flatten)]
    common: ConfigArgs,
    /// Name shown to people on the choice and consent pages.
    #[arg(long)]
    name: String,
    /// SIRET of the organisation responsible for the service.
    #[arg(long)]
    organisation: String,
    /// Exact redirect URI (repeat for several).
    #[arg(long = "redirect-uri", required = true)]
    redirect_uris: Vec<String>,
    /// Exact post-logout redirect URI (repeat for several).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Where to POST logout tokens when a session that logged in to the service ends
    /// (OpenID Connect Back-Channel Logout).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// Allowed scope (repeat; default openid identite_pivot email).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Lowest eIDAS level accepted (1, 2 or 3).
    #[arg(long)]
    eidas_level: Option<u8>,
    /// The rules the service is held to: standard (OpenID Connect's, the default) or
    /// franceconnect (32-character state and nonce, signed userinfo, state at logout,
    /// 60-second access tokens).
    #[arg(long, value_parser = ["standard", "franceconnect"])]
    profile: Option<String>,
    /// client_secret_basic (default), client_secret_post, private_key_jwt or none.
    #[arg(long)]
    auth_method: Option<String>,
    /// The client's JWKS (JSON file): private_key_jwt keys, encryption keys.
    #[arg(long, value_name = "FILE")]
    jwks_file: Option<PathBuf>,
    /// Or where Socle fetches the client's JWKS (https).
    #[arg(long)]
    jwks_uri: Option<String>,
    /// ES256 (default) or RS256.
    #[arg(long)]
    id_token_alg: Option<String>,
    /// ES256 or RS256 for signed userinfo; none (the default, but for the
    /// franceconnect profile) for plain JSON.
    #[arg(long)]
    userinfo_alg: Option<String>,
    /// Encrypt ID tokens: RSA-OAEP, RSA-OAEP-256 or ECDH-ES (A256GCM).
    #[arg(long)]
    id_token_encryption: Option<String>,
    /// Encrypt userinfo: RSA-OAEP, RSA-OAEP-256 or ECDH-ES (A256GCM).
    #[arg(long)]
    userinfo_encryption: Option<String>,
    /// Do not ask people to consent (services declared exempt).
    #[arg(long)]
    consent_exempt: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate new token signing keys; the previous ones stay in the JWKS until every
    /// token they signed has expired.
    Rotate {
        #[command(flatten)]
        common: ConfigArgs,
        /// ES256, RS256 or all.
        #[arg(long, default_value = "all")]
        alg: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted), or every invalid setting
    /// with its key and why (exit code 2).
    Check(ConfigArgs),
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Check a journal: every checkpoint's signature, every entry against every signed
    /// root, and consistency with the checkpoint seen by the previous run. Exits 1 naming
    /// the first bad entry on any tampering.
    Verify {
        /// Base URL of a Socle instance, e.g. http://127.0.0.1:8080.
        #[arg(long, conflicts_with_all = ["bundle", "proof"], required_unless_present_any = ["bundle", "proof"])]
        url: Option<String>,
        /// A bundle written by `socle journal export`.
        #[arg(long, value_name = "FILE", conflicts_with = "proof")]
        bundle: Option<PathBuf>,
        /// A proof bundle of one entry (`socle-proof/1`, downloaded from the citizen
        /// space): checks its checkpoint's signature and its inclusion proof.
        #[arg(long, value_name = "FILE")]
        proof: Option<PathBuf>,
        /// Where checkpoints seen are remembered between runs.
        #[arg(long, value_name = "FILE", default_value = "socle-journal-state.json")]
        state: PathBuf,
        /// The expected verifier key (name+hash+key); by default the key is learnt on
        /// first use and must not change afterwards.
        #[arg(long)]
        key: Option<String>,
    },
    /// Check the stored journal offline (the configured data directory or database,
    /// no server needed): every entry's leaf hash, every stored tree node recomputed
    /// from the entries, every checkpoint's root. Exits 1 naming the first mismatch.
    Check {
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Write the journal, up to its latest checkpoint, to a self-contained bundle.
    Export {
        #[command(flatten)]
        common: ConfigArgs,
        /// The bundle file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Measure durable appends per second on the configured store (writes benchmark
    /// entries into its journal: use a scratch database).
    Bench {
        #[command(flatten)]
        common: ConfigArgs,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// How long to append.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Total appends per second (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Print `ack <id>` for every acknowledged append.
        #[arg(long)]
        print_acks: bool,
        /// Print `checkpoint <size> <root>` for every checkpoint signed.
        #[arg(long)]
        print_checkpoints: bool,
        /// Also time the same number of plain single-row INSERTs.
        #[arg(long)]
        baseline: bool,
        /// Stop after this many appends (instead of after --seconds).
        #[arg(long, default_value_t = 0)]
        entries: u64,
        /// Then time this many inclusion and consistency proofs.
        #[arg(long, default_value_t = 0)]
        proofs: usize,
        /// Append to a journal that already has entries (by default the benchmark
        /// refuses: its entries are permanent, never run it on a production journal).
        #[arg(long)]
        existing_journal: bool,
    },
}

#[derive(Args)]
struct ConfigArgs {
    /// Configuration file (TOML). Default: ./socle.toml if it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded store and local state (data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: ConfigArgs,
    /// Address to listen on (server.listen), default 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Extra settings (TOML), e.g. more identity providers; the demo still runs on
    /// the embedded store.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, default 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory of the embedded store, default ./socle-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Delete the demonstration database first and start afresh.
    #[arg(long)]
    reset: bool,
    /// Run the demonstration on this (empty or demo) PostgreSQL database instead of
    /// the embedded store — the browser tests use it; the configuration's
    /// `database.url` is never used by the demo.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "socle {} (database schema {}, DSFR {})",
                env!("CARGO_PKG_VERSION"),
                socle_store::LATEST_SCHEMA_VERSION,
                socle_web::assets::DSFR_VERSION
            );
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => match load(&args, None) {
            Ok(config) => {
                print!("{}", config.redacted());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Journal { command } => journal_command(command),
        Command::Admin {
            command: AdminCommand::Client { command },
        } => client_command(command),
        Command::Admin {
            command:
                AdminCommand::User {
                    command:
                        UserCommand::Create {
                            common,
                            email,
                            name,
                            organisation,
                            roles,
                            password_file,
                        },
                },
        } => {
            let config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let mut parsed = Vec::new();
            for r in &roles {
                match socle_catalogue::people::Role::parse(r) {
                    Some(role) => parsed.push(role),
                    None => {
                        eprintln!(
                            "error: --role {r:?}: use operator, org_admin, instructor or developer"
                        );
                        return ExitCode::from(2);
                    }
                }
            }
            let password = match &password_file {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
                }
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map(|_| line)
                        .map_err(|e| e.to_string())
                }
            };
            let password = match password {
                Ok(p) => p.trim_end_matches(['\r', '\n']).to_string(),
                Err(e) => {
                    eprintln!("error: cannot read the password: {e}");
                    return ExitCode::from(2);
                }
            };
            let c = config.clone();
            run(&config, async move {
                socle::admin_cli::create_user(&c, &email, &name, &organisation, parsed, &password)
                    .await
            })
        }
        Command::Keys {
            command: KeysCommand::Rotate { common, alg },
        } => {
            let config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let algs: Vec<&str> = match alg.as_str() {
                "all" => vec!["ES256", "RS256"],
                "ES256" => vec!["ES256"],
                "RS256" => vec!["RS256"],
                other => {
                    eprintln!("error: --alg {other:?}: use ES256, RS256 or all");
                    return ExitCode::from(2);
                }
            };
            let c = config.clone();
            run(&config, async move {
                socle::admin_cli::rotate_keys(&c, &algs).await
            })
        }
        Command::Migrate(args) => {
            let config = match load(&args, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run(&config, migrate(config.clone()))
        }
        Command::Serve(args) => {
            let config = match load(&args.common, args.listen) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run(&config, serve(config.clone(), false))
        }
        Command::Demo(args) => {
            let mut layers = Layers::new().flag(
                "instance.name",
                Some("Socle (démonstration)".into()),
                "socle demo",
            );
            if let Some(path) = &args.config {
                layers = layers.file(path, true);
            }
            let layers = layers
                .env(environment())
                .flag("server.listen", args.listen, "--listen")
                .flag("data_dir", args.data_dir.map(path_string), "--data-dir");
            let mut config = match Config::from_layers(layers) {
                Ok(c) => c,
                Err(errors) => {
                    eprint!("{errors}");
                    return ExitCode::from(2);
                }
            };
            // The demo runs on the embedded store, unless --database-url names one.
            config.database.url = args.database_url.clone().map(socle::config::Secret::from);
            config.demo = true;
            if args.reset
                && let Err(e) = reset_demo(&config.sqlite_path(), &config.data_dir)
            {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            run(&config, serve(config.clone(), true))
        }
    }
}

fn journal_command(command: JournalCommand) -> ExitCode {
    use socle::journal_cli::{self, Outcome};
    match command {
        JournalCommand::Verify {
            proof: Some(path),
            key,
            ..
        } => journal_cli::verify_proof(&path, key.as_deref()),
        JournalCommand::Verify {
            url,
            bundle,
            state,
            key,
            proof: None,
        } => {
            let runtime = match runtime(2) {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(journal_cli::verify(
                url.as_deref(),
                bundle.as_deref(),
                &state,
                key.as_deref(),
            )) {
                Ok(Outcome::Verified(summary)) => {
                    println!("OK: {summary}");
                    ExitCode::SUCCESS
                }
                Ok(Outcome::Failed(e)) => {
                    match e.index() {
                        Some(index) => println!("TAMPERED: first bad index {index}: {e}"),
                        None => println!("TAMPERED: {e}"),
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        JournalCommand::Check { common } => {
            let config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let c = config.clone();
            let runtime = match runtime(2) {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(journal_cli::check(&c)) {
                Ok(Ok(summary)) => {
                    println!("OK: {summary}");
                    ExitCode::SUCCESS
                }
                Ok(Err(problem)) => {
                    println!("DAMAGED: {problem}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        JournalCommand::Export { common, out } => {
            let config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let c = config.clone();
            run(&config, async move {
                let size = journal_cli::export(&c, &out).await?;
                println!("exported {size} entries to {}", out.display());
                Ok(())
            })
        }
        JournalCommand::Bench {
            common,
            writers,
            seconds,
            rate,
            print_acks,
            print_checkpoints,
            baseline,
            entries,
            proofs,
            existing_journal,
        } => {
            let mut config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Benchmarks write many log lines otherwise.
            config.log.level = "warn".into();
            let opts = journal_cli::BenchOptions {
                writers: writers.max(1),
                seconds,
                rate,
                print_acks,
                print_checkpoints,
                baseline,
                entries,
                proofs,
                existing_journal,
            };
            let c = config.clone();
            run(&config, async move { journal_cli::bench(&c, opts).await })
        }
    }
}

fn client_command(command: ClientCommand) -> ExitCode {
    use socle::admin_cli;
    match command {
        ClientCommand::Create(a) => {
            let a = *a;
            let config = match load(&a.common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let jwks = match &a.jwks_file {
                None => None,
                Some(path) => match std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                {
                    Ok(v) => Some(v),
                    Err(e) => {
                        eprintln!("error: --jwks-file {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
            };
            let input = socle_identity::ClientInput {
                name: a.name,
                organisation: a.organisation,
                sandbox: false,
                profile: a.profile.as_deref().map(|p| match p {
                    "franceconnect" => socle_identity::ClientProfile::Franceconnect,
                    _ => socle_identity::ClientProfile::Standard,
                }),
                redirect_uris: a.redirect_uris,
                post_logout_redirect_uris: a.post_logout_redirect_uris,
                backchannel_logout_uri: a.backchannel_logout_uri,
                backchannel_logout_session_required: false,
                scopes: a.scopes,
                eidas_level: a.eidas_level,
                token_endpoint_auth_method: a.auth_method,
                jwks,
                jwks_uri: a.jwks_uri,
                id_token_signed_response_alg: a.id_token_alg,
                userinfo_signed_response_alg: a.userinfo_alg,
                id_token_encrypted_response_alg: a.id_token_encryption,
                id_token_encrypted_response_enc: None,
                userinfo_encrypted_response_alg: a.userinfo_encryption,
                userinfo_encrypted_response_enc: None,
                consent_exempt: a.consent_exempt,
            };
            let c = config.clone();
            run(
                &config,
                async move { admin_cli::create_client(&c, input).await },
            )
        }
        ClientCommand::List(common) => {
            let config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let c = config.clone();
            run(&config, async move { admin_cli::list_clients(&c).await })
        }
        ClientCommand::Disable { common, client_id } => {
            let config = match load(&common, None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let c = config.clone();
            run(&config, async move {
                admin_cli::disable_client(&c, &client_id).await
            })
        }
    }
}

fn path_string(p: PathBuf) -> String {
    p.display().to_string()
}

/// Builds the configuration layers for `serve`, `migrate` and `config check`; on
/// invalid settings prints them all and returns exit code 2.
fn load(args: &ConfigArgs, listen: Option<String>) -> Result<Config, ExitCode> {
    let layers = match &args.config {
        Some(path) => Layers::new().file(path, true),
        None => Layers::new().file(Path::new("socle.toml"), false),
    };
    let layers = layers
        .env(environment())
        .flag("server.listen", listen, "--listen")
        .flag(
            "data_dir",
            args.data_dir.clone().map(path_string),
            "--data-dir",
        );
    Config::from_layers(layers).map_err(|errors| {
        eprint!("{errors}");
        ExitCode::from(2)
    })
}

/// The multi-threaded runtime of a command; `Err(exit code)` (after saying why) when it
/// cannot start.
fn runtime(code: u8) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(code)
        })
}

fn run(config: &Config, task: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    telemetry::init_logs(&config.log);
    let runtime = match runtime(1) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let applied = store.migrate().await?;
    let status = store.schema_status().await?;
    if applied.is_empty() {
        println!(
            "database schema already at version {} ({} store)",
            status.current,
            store.kind()
        );
    } else {
        println!(
            "applied migration(s) {:?}; database schema now at version {} ({} store)",
            applied,
            status.current,
            store.kind()
        );
    }
    store.close().await;
    Ok(())
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM that arrives once /readyz answers must drain.
    let first = shutdown_signal();
    let stop = async move {
        first.await;
        // A second signal while draining (an operator's second Ctrl-C) stops at once:
        // what the journal acknowledged is already durable; requests in flight fail.
        // Its handlers are installed here, before the drain begins.
        let second = socle::second_signal();
        tokio::spawn(async move {
            let code = second.await;
            // stderr is unbuffered: the line is out before the exit.
            tracing::warn!("second signal: stopping now, without waiting for requests in flight");
            std::process::exit(code);
        });
    };
    let app = Application::build(config.clone()).await?;
    if demo {
        app.seed_demo().await?;
    }
    let scheme = if app.is_tls() { "https" } else { "http" };
    let mut addr = app.local_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let base = format!("{scheme}://{addr}");
    if demo {
        match &config.database.url {
            Some(url) => println!(
                "Socle demo is running on PostgreSQL ({}).",
                socle::config::redact_url(url.expose())
            ),
            None => println!(
                "Socle demo is running on the embedded store ({}).",
                config.sqlite_path().display()
            ),
        }
    } else {
        println!("Socle is running ({} store).", app.store().kind());
    }
    println!("  Home page:           {base}/");
    if demo {
        println!("  Demo service (log in through Socle): {base}/demo/fs/");
        println!("  Citizen space (Mon espace): {base}/mon-espace/");
        println!("  API catalogue:       {base}/catalogue");
        println!(
            "  Gateway credentials and an example call: {} (see README)",
            app.demo_file().display()
        );
        println!(
            "  Back-office API:     POST {base}/api/v1/session with {} (or {}) and password \"{}\"",
            socle_demo::catalogue::DEMO_DEVELOPER,
            socle_demo::catalogue::DEMO_INSTRUCTOR_CAF,
            socle_demo::catalogue::DEMO_PASSWORD
        );
        println!(
            "  Partner space:       {base}/espace-agent — a service asks for a login integration as {}, {} instructs it",
            socle_demo::catalogue::DEMO_DEVELOPER,
            socle_demo::catalogue::DEMO_INSTRUCTOR_PARTNERS
        );
    }
    println!("  API documentation:   {base}/api/docs  (OpenAPI: {base}/api/openapi.json)");
    println!("  Health / readiness:  {base}/healthz  {base}/readyz");
    println!("  Metrics:             {base}/metrics");
    println!(
        "  Journal checkpoint:  {base}/journal/checkpoint  (verify: socle journal verify --url {base})"
    );
    println!("Press Ctrl-C to stop.");
    app.run_until_stopped(stop).await
}

fn reset_demo(db: &Path, data_dir: &Path) -> anyhow::Result<()> {
    use socle_store::EmbeddedKind;
    // Only ever a demonstration's own files: `SOCLE_DATA_DIR` may name a real one.
    if socle_store::embedded_kind(db) == EmbeddedKind::Other {
        anyhow::bail!(
            "{} is not a demonstration database (it has no demo.seeded marker): nothing \
             was removed; choose another --data-dir for the demonstration",
            db.display()
        );
    }
    let mut files = socle_store::embedded_files(db);
    files.push(data_dir.join("demo.json"));
    for path in files {
        match std::fs::remove_file(&path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot remove {}: {e}", path.display()),
        }
    }
    Ok(())
}

/// The process environment for the configuration layers. `std::env::vars` panics on a
/// variable that is not UTF-8 (any variable, not only ours): those are skipped, except
/// a `SOCLE_…` one, which is refused rather than read wrong.
fn environment() -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(n), Ok(v)) => vars.push((n, v)),
            (Ok(n), Err(_)) if n.starts_with("SOCLE_") => {
                eprintln!("socle: the environment variable {n} is not valid UTF-8");
                std::process::exit(2);
            }
            _ => {}
        }
    }
    vars
}
