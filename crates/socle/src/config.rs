//! Configuration: defaults, then a TOML file, then `SOCLE_*` environment variables,
//! then command-line flags, each layer overriding the one before.
//!
//! Every setting is read by one line of [`Config::from_layers`], which records *all*
//! invalid settings (with their key path, where the value came from and why it is
//! wrong) instead of stopping at the first, so `socle config check` can list them.
//! Keys marked secret may be given as `KEY_file` (a path whose content is the value);
//! they are held as [`Secret`] (`secrecy`): never in a log or a `Debug` output, and
//! redacted when the configuration is printed. The printed configuration is the
//! settings' own serialisation (serde), so a new key is printed without more code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use socle_core::InstanceName;
use toml::Value;

/// Environment variables starting with this prefix are reserved for the test suite.
const TEST_ENV_PREFIX: &str = "SOCLE_TEST_";

/// Keys whose values are secrets: redacted when printed, and settable from a file.
const SECRET_KEYS: &[&str] = &["database.url", "identity.master_key", "admin.token"];

/// A secret setting (`secrecy`): never printed, in a `Debug` output or serialised
/// (it shows as `***`); the code that needs it calls [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(SecretString::from(s))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::from(s.to_string())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Serialises with `Display` (addresses, names).
fn display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A duration as the configuration writes it (`"30s"`, `"500ms"`).
fn human_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// A list as strings (`["10.0.0.0/8"]`).
fn display_all<T: fmt::Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// A database URL with its passwords redacted.
fn redacted_url<S: Serializer>(url: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&redact_url(u.expose())),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where the embedded store and other local state live.
    pub data_dir: PathBuf,
    pub instance: InstanceConfig,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub tls: Option<TlsConfig>,
    pub journal: JournalSettings,
    pub identity: IdentitySettings,
    pub admin: AdminSettings,
    pub gateway: GatewaySettings,
    pub citizen: CitizenSettings,
    /// Set by `socle demo` (not a setting): mounts the demonstration identity provider
    /// and service.
    #[serde(skip)]
    pub demo: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceConfig {
    #[serde(serialize_with = "display")]
    pub name: InstanceName,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    #[serde(serialize_with = "display")]
    pub listen: SocketAddr,
    #[serde(serialize_with = "human_duration")]
    pub shutdown_timeout: Duration,
    #[serde(serialize_with = "human_duration")]
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// The address people and services use to reach Socle (issuer base); `None`:
    /// `http://` + the bound address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Reverse proxies and load balancers in front of Socle (addresses or CIDR ranges)
    /// whose `X-Forwarded-For` names the client for per-client limits.
    #[serde(serialize_with = "display_all")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where `serve` answers `/metrics` (Prometheus): its own listener, on loopback by
    /// default, never the public address (per-service counters can be correlated with
    /// the public journal). `demo` serves them on the main address.
    #[serde(serialize_with = "display")]
    pub metrics_listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseConfig {
    /// `None`: the embedded SQLite store in `data_dir`.
    #[serde(
        serialize_with = "redacted_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<Secret>,
    pub max_connections: u32,
    #[serde(serialize_with = "human_duration")]
    pub acquire_timeout: Duration,
    /// Apply pending migrations at start (otherwise `/readyz` reports them).
    pub auto_migrate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,socle_store=debug`.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalSettings {
    /// Checkpoint origin and key name; `None`: derived from the instance name when the
    /// journal is created, then fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Shortest time between two checkpoints while entries arrive (at most 1 s).
    #[serde(serialize_with = "human_duration")]
    pub checkpoint_interval: Duration,
    /// Requests per second one client may make to the public `/journal/*` endpoints.
    pub rate_limit: u32,
    /// Longest an entry may wait in the journal's queue unsequenced before the platform
    /// fails closed (exchanges, logins and consents refused, `/readyz` 503).
    #[serde(serialize_with = "human_duration")]
    pub max_unsequenced: Duration,
}

/// Identity federation settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentitySettings {
    /// Seals signing keys at rest (32 bytes, base64 or hex). `None`: kept in
    /// `data_dir/master.key`, created on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Secret>,
    #[serde(serialize_with = "human_duration")]
    pub session_lifetime: Duration,
    #[serde(serialize_with = "human_duration")]
    pub code_lifetime: Duration,
    #[serde(serialize_with = "human_duration")]
    pub access_token_lifetime: Duration,
    #[serde(serialize_with = "human_duration")]
    pub id_token_lifetime: Duration,
    /// Upstream identity providers (`[[identity.providers]]`).
    pub providers: Vec<IdentityProviderConfig>,
}

/// One upstream identity provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityProviderConfig {
    pub id: String,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    pub eidas_levels: Vec<u8>,
    pub scope: String,
    #[serde(serialize_with = "human_duration")]
    pub timeout: Duration,
}

/// The administration API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminSettings {
    /// Bearer token of `/api/admin/*`; `None`: the admin API is closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// Gateway settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewaySettings {
    /// Longest wait to connect to a provider.
    #[serde(serialize_with = "human_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for a provider's whole answer (then 504).
    #[serde(serialize_with = "human_duration")]
    pub timeout: Duration,
    /// Lifetime of `client_credentials` access tokens.
    #[serde(serialize_with = "human_duration")]
    pub token_lifetime: Duration,
    /// Calls per second one client address may make to an open API.
    pub open_rate_limit: u32,
    /// How long the gateway keeps serving when it cannot re-read the habilitations in
    /// force (a revoked one could still pass); past it, calls get `503 gateway_stale`.
    #[serde(serialize_with = "human_duration")]
    pub stale_after: Duration,
    /// The gateway's own address, on a host of its own (`https://api.socle.gouv.fr`):
    /// `/gateway/…` is then served on that host only, and that host serves nothing
    /// else, so providers' content never shares an origin with the platform's pages.
    /// `None`: the gateway is under `server.public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// Citizen space settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CitizenSettings {
    /// eIDAS level asked of identity providers when people log in (1 to 3).
    pub eidas_level: u8,
    /// SIRET of the organisation operating the platform (controller of the space).
    pub organisation: String,
    /// How often the opt-in digests of new exchanges are looked at (each person gets
    /// one a day at most).
    #[serde(serialize_with = "human_duration")]
    pub digest_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where a value came from, to tell the operator which line to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{} (from {o}): {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every invalid setting found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            plural(self.0.len())
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The raw layers, before validation.
#[derive(Debug, Default, Clone)]
pub struct Layers {
    values: BTreeMap<String, (Value, Origin)>,
    errors: Vec<ConfigError>,
}

impl Layers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TOML file. A missing file is an error only when `required`.
    pub fn file(mut self, path: &Path, required: bool) -> Self {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return self,
            Err(e) => {
                self.errors.push(ConfigError {
                    key: "(file)".into(),
                    origin: Some(Origin::File(path.to_path_buf())),
                    message: format!("cannot read the configuration file: {e}"),
                });
                return self;
            }
        };
        match text.parse::<toml::Table>() {
            Ok(table) => {
                let mut flat = Vec::new();
                flatten("", &Value::Table(table), &mut flat);
                for (key, value) in flat {
                    self.set(key, value, Origin::File(path.to_path_buf()));
                }
            }
            Err(e) => self.errors.push(ConfigError {
                key: "(file)".into(),
                origin: Some(Origin::File(path.to_path_buf())),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }),
        }
        self
    }

    /// Adds `SOCLE_*` variables: `SOCLE_SERVER__LISTEN` sets `server.listen`
    /// (a double underscore separates sections; names are case-insensitive).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("SOCLE_") else {
                continue;
            };
            if name.starts_with(TEST_ENV_PREFIX) || rest.is_empty() {
                continue;
            }
            let key = rest.to_lowercase().replace("__", ".");
            self.set(key, Value::String(value), Origin::Env(name));
        }
        self
    }

    /// Adds a command-line flag's value.
    pub fn flag(mut self, key: &str, value: Option<String>, flag: &'static str) -> Self {
        if let Some(v) = value {
            self.set(key.to_string(), Value::String(v), Origin::Flag(flag));
        }
        self
    }

    fn set(&mut self, key: String, value: Value, origin: Origin) {
        // A secret and its `_file` form are one setting: the later layer wins whole.
        if let Some(base) = key.strip_suffix("_file") {
            self.values.remove(base);
        } else {
            self.values.remove(&format!("{key}_file"));
        }
        self.values.insert(key, (value, origin));
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Reads typed values out of the layers, collecting every error.
struct Reader {
    values: BTreeMap<String, (Value, Origin)>,
    used: BTreeSet<String>,
    errors: Vec<ConfigError>,
}

impl Reader {
    fn raw(&mut self, key: &str) -> Option<(Value, Origin)> {
        self.used.insert(key.to_string());
        let file_key = format!("{key}_file");
        if SECRET_KEYS.contains(&key) {
            self.used.insert(file_key.clone());
            if let Some((v, origin)) = self.values.get(&file_key).cloned() {
                let Some(path) = v.as_str() else {
                    self.fail(&file_key, Some(origin), "must be a file path (a string)");
                    return None;
                };
                return match std::fs::read_to_string(path) {
                    Ok(content) => Some((Value::String(content.trim_end().to_string()), origin)),
                    Err(e) => {
                        self.fail(&file_key, Some(origin), &format!("cannot read {path}: {e}"));
                        None
                    }
                };
            }
        }
        self.values.get(key).cloned()
    }

    fn fail(&mut self, key: &str, origin: Option<Origin>, message: &str) {
        self.errors.push(ConfigError {
            key: key.into(),
            origin,
            message: message.into(),
        });
    }

    /// Reads `key` with `parse`, or returns `default` (also after an error, so that the
    /// remaining settings are still checked).
    fn get<T>(&mut self, key: &str, default: T, parse: impl Fn(&Value) -> Result<T, String>) -> T {
        match self.raw(key) {
            None => default,
            Some((v, origin)) => match parse(&v) {
                Ok(t) => t,
                Err(message) => {
                    self.fail(key, Some(origin), &message);
                    default
                }
            },
        }
    }

    fn opt<T>(&mut self, key: &str, parse: impl Fn(&Value) -> Result<T, String>) -> Option<T> {
        let (v, origin) = self.raw(key)?;
        match parse(&v) {
            Ok(t) => Some(t),
            Err(message) => {
                self.fail(key, Some(origin), &message);
                None
            }
        }
    }

    fn origin(&self, key: &str) -> Option<Origin> {
        self.values.get(key).map(|(_, o)| o.clone())
    }
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, found {}", other.type_str())),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn socket_addr(v: &Value) -> Result<SocketAddr, String> {
    let text = scalar_text(v);
    text.parse()
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:8080 or [::1]:8080"))
}

fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Boolean(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!(
            "expected true or false, found {}",
            scalar_text(other)
        )),
    }
}

fn positive_u32(v: &Value) -> Result<u32, String> {
    let text = scalar_text(v);
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

/// `["10.0.0.0/8", "192.0.2.7"]` (or, from an environment variable, the same
/// comma-separated): addresses and CIDR ranges.
fn networks(v: &Value) -> Result<Vec<ipnet::IpNet>, String> {
    let items: Vec<String> = match v {
        Value::Array(a) => a.iter().map(string).collect::<Result<_, _>>()?,
        Value::String(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        other => {
            return Err(format!(
                "expected a list of addresses, found {}",
                other.type_str()
            ));
        }
    };
    items
        .iter()
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    format!("{item:?} is not an address or a CIDR range such as 10.0.0.0/8")
                })
        })
        .collect()
}

/// `"30s"`, `"500ms"`, `"2m"`, `"1h"`, or a number of seconds.
pub fn duration(v: &Value) -> Result<Duration, String> {
    let text = scalar_text(v);
    let t = text.trim();
    let (number, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\", \"500ms\" or \"2m\""))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("{text:?} must be more than 0 and at most 24h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `"1MiB"`, `"512KiB"`, `"2MB"`, or a number of bytes.
pub fn byte_size(v: &Value) -> Result<usize, String> {
    let text = scalar_text(v);
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"1MiB\", \"512KiB\" or 65536"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, kB or MB)"
            ));
        }
    };
    let bytes = n.saturating_mul(factor);
    if bytes == 0 || bytes > (1 << 30) {
        return Err(format!("{text:?} must be more than 0 and at most 1GiB"));
    }
    usize::try_from(bytes).map_err(|_| "too large for this platform".to_string())
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Config {
    /// Validates the layers into a configuration, or lists every problem.
    pub fn from_layers(layers: Layers) -> Result<Config, ConfigErrors> {
        let mut r = Reader {
            values: layers.values,
            used: BTreeSet::new(),
            errors: layers.errors,
        };

        let default_name = InstanceName::parse("Socle").map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "instance.name".into(),
                origin: None,
                message: e.0,
            }])
        })?;
        let name = r.get("instance.name", default_name, |v| {
            InstanceName::parse(&string(v)?).map_err(|e| e.0)
        });

        let default_listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let server = ServerConfig {
            listen: r.get("server.listen", default_listen, socket_addr),
            shutdown_timeout: r.get("server.shutdown_timeout", Duration::from_secs(30), duration),
            request_timeout: r.get("server.request_timeout", Duration::from_secs(30), duration),
            body_limit: r.get("server.body_limit", 1 << 20, byte_size),
            public_url: r.opt("server.public_url", public_url),
            trusted_proxies: r.get("server.trusted_proxies", Vec::new(), networks),
            metrics_listen: r.get(
                "server.metrics_listen",
                ([127, 0, 0, 1], 9464).into(),
                socket_addr,
            ),
        };

        let url = r.opt("database.url", |v| {
            let url = string(v)?;
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Ok(Secret::from(url))
            } else {
                Err(
                    "must be a postgres://user@host:port/database URL (leave it unset for the \
                     embedded SQLite store in data_dir)"
                        .into(),
                )
            }
        });
        let database = DatabaseConfig {
            url,
            max_connections: r.get("database.max_connections", 8, positive_u32),
            acquire_timeout: r.get("database.acquire_timeout", Duration::from_secs(3), duration),
            auto_migrate: r.get("database.auto_migrate", true, boolean),
        };

        let format = r.get("log.format", LogFormat::Human, |v| {
            match string(v)?.as_str() {
                "human" => Ok(LogFormat::Human),
                "json" => Ok(LogFormat::Json),
                other => Err(format!(
                    "{other:?} is not a log format: use \"human\" or \"json\""
                )),
            }
        });
        let level = r.get("log.level", "info".to_string(), |v| {
            let s = string(v)?;
            tracing_subscriber::EnvFilter::try_new(&s)
                .map(|_| s.clone())
                .map_err(|e| {
                    format!(
                        "{s:?} is not a log filter (e.g. \"info\" or \"info,socle=debug\"): {e}"
                    )
                })
        });
        let log = LogConfig { format, level };

        let cert = r.opt("tls.cert_file", readable_file);
        let key = r.opt("tls.key_file", readable_file);
        let tls = match (cert, key) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) if r.origin("tls.key_file").is_none() => {
                let origin = r.origin("tls.cert_file");
                r.fail(
                    "tls.key_file",
                    origin,
                    "must be set together with tls.cert_file",
                );
                None
            }
            (None, Some(_)) if r.origin("tls.cert_file").is_none() => {
                let origin = r.origin("tls.key_file");
                r.fail(
                    "tls.cert_file",
                    origin,
                    "must be set together with tls.key_file",
                );
                None
            }
            _ => None, // the unreadable one was already reported
        };

        let journal = JournalSettings {
            origin: r.opt("journal.origin", |v| {
                let s = string(v)?;
                if socle_journal::note::valid_key_name(&s) {
                    Ok(s)
                } else {
                    Err(format!("{s:?} is not a valid origin: non-empty, no spaces, no '+' (e.g. \"socle.example.gouv.fr/journal\")"))
                }
            }),
            checkpoint_interval: r.get("journal.checkpoint_interval", Duration::from_millis(500), |v| {
                let d = duration(v)?;
                if d < Duration::from_millis(50) || d > Duration::from_secs(1) {
                    Err("must be between 50ms and 1s (checkpoints are signed at least once a second)".into())
                } else {
                    Ok(d)
                }
            }),
            rate_limit: r.get("journal.rate_limit", 50, positive_u32),
            max_unsequenced: r.get(
                "journal.max_unsequenced",
                Duration::from_secs(5),
                |v| {
                    let d = duration(v)?;
                    if d < Duration::from_millis(200) || d > Duration::from_secs(3600) {
                        Err("must be between 200ms and 1h".into())
                    } else {
                        Ok(d)
                    }
                },
            ),
        };

        let between = |min: Duration, max: Duration| {
            move |v: &Value| {
                let d = duration(v)?;
                if d < min || d > max {
                    Err(format!(
                        "must be between {} and {}",
                        format_duration(min),
                        format_duration(max)
                    ))
                } else {
                    Ok(d)
                }
            }
        };
        let lifetime =
            move |min: u64, max: u64| between(Duration::from_secs(min), Duration::from_secs(max));
        let lifetime_ms = move |min: u64, max: u64| {
            between(Duration::from_millis(min), Duration::from_millis(max))
        };
        let identity = IdentitySettings {
            master_key: r.opt("identity.master_key", |v| {
                let s = string(v)?;
                socle_identity::MasterKey::parse(&s)
                    .map(|_| Secret::from(s))
                    .map_err(|e| e.to_string())
            }),
            session_lifetime: r.get(
                "identity.session_lifetime",
                Duration::from_secs(1800),
                lifetime(60, 86_400),
            ),
            code_lifetime: r.get(
                "identity.code_lifetime",
                Duration::from_secs(30),
                lifetime(5, 600),
            ),
            access_token_lifetime: r.get(
                "identity.access_token_lifetime",
                Duration::from_secs(300),
                lifetime(10, 3600),
            ),
            id_token_lifetime: r.get(
                "identity.id_token_lifetime",
                Duration::from_secs(300),
                lifetime(10, 3600),
            ),
            providers: {
                let raw = r.raw("identity.providers");
                match raw {
                    None => Vec::new(),
                    Some((v, origin)) => match providers(&v) {
                        Ok(p) => p,
                        Err(message) => {
                            r.fail("identity.providers", Some(origin), &message);
                            Vec::new()
                        }
                    },
                }
            },
        };
        let admin = AdminSettings {
            token: r.opt("admin.token", |v| {
                let s = string(v)?;
                if s.len() < 32 {
                    Err("must be at least 32 characters (generate one with `openssl rand -base64 32`)".into())
                } else {
                    Ok(Secret::from(s))
                }
            }),
        };

        let gateway = GatewaySettings {
            connect_timeout: r.get(
                "gateway.connect_timeout",
                Duration::from_secs(2),
                lifetime_ms(50, 60_000),
            ),
            timeout: r.get(
                "gateway.timeout",
                Duration::from_secs(10),
                lifetime_ms(100, 300_000),
            ),
            token_lifetime: r.get(
                "gateway.token_lifetime",
                Duration::from_secs(900),
                lifetime(60, 86_400),
            ),
            open_rate_limit: r.get("gateway.open_rate_limit", 10, positive_u32),
            stale_after: r.get(
                "gateway.stale_after",
                Duration::from_secs(10),
                lifetime(2, 300),
            ),
            public_url: r.opt("gateway.public_url", |v| {
                let s = public_url(v)?;
                if url::Url::parse(&s).is_ok_and(|u| u.path() != "/") {
                    return Err(format!(
                        "{s:?} must be an origin only (https://api.example.gouv.fr): the gateway is served at its /gateway/"
                    ));
                }
                Ok(s)
            }),
        };
        if let (Some(g), Some(p)) = (&gateway.public_url, &server.public_url)
            && url_host(g) == url_host(p)
        {
            let origin = r.origin("gateway.public_url");
            r.fail(
                "gateway.public_url",
                origin,
                "must be on another host than server.public_url (that is its point: the providers' answers on an origin of their own)",
            );
        }

        let citizen = CitizenSettings {
            eidas_level: r.get("citizen.eidas_level", 1, |v| {
                let n = positive_u32(v)?;
                if (1..=3).contains(&n) {
                    Ok(n as u8)
                } else {
                    Err("must be 1, 2 or 3 (eidas1 to eidas3)".into())
                }
            }),
            organisation: r.get("citizen.organisation", "13002526500013".to_string(), |v| {
                let s = string(v)?;
                match socle_core::siret::siret_problem(&s) {
                    None => Ok(s),
                    Some(p) => Err(p),
                }
            }),
            digest_interval: r.get(
                "citizen.digest_interval",
                Duration::from_secs(600),
                lifetime(1, 86_400),
            ),
        };

        let data_dir = r.get("data_dir", PathBuf::from("socle-data"), |v| {
            let s = string(v)?;
            if s.trim().is_empty() {
                Err("must not be empty".into())
            } else {
                Ok(PathBuf::from(s))
            }
        });

        let unknown: Vec<(String, Origin)> = r
            .values
            .iter()
            .filter(|(k, _)| !r.used.contains(*k))
            .map(|(k, (_, o))| (k.clone(), o.clone()))
            .collect();
        for (key, origin) in unknown {
            r.fail(
                &key,
                Some(origin),
                "unknown setting (see docs/CONFIGURATION.md)",
            );
        }

        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        Ok(Config {
            instance: InstanceConfig { name },
            server,
            database,
            log,
            tls,
            journal,
            identity,
            admin,
            gateway,
            citizen,
            data_dir,
            demo: false,
        })
    }

    /// The SQLite file used when no `database.url` is set.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("socle.db")
    }

    /// The effective configuration as TOML, secrets redacted (their keys show `***`;
    /// a setting left unset is not printed).
    pub fn redacted(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

/// The host of a URL already checked by [`public_url`], in lower case.
pub fn url_host(u: &str) -> Option<String> {
    url::Url::parse(u).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    })
}

/// An address people or services use to reach Socle: an http(s) URL with a host and
/// no query, without its trailing `/`.
fn public_url(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    let u = url::Url::parse(&s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "{s:?} must be an http(s) URL such as https://socle.example.gouv.fr"
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// `[[identity.providers]]`: an array of tables.
fn providers(v: &Value) -> Result<Vec<IdentityProviderConfig>, String> {
    let Value::Array(items) = v else {
        return Err("must be an array of tables ([[identity.providers]])".into());
    };
    let mut out: Vec<IdentityProviderConfig> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let at = |m: String| format!("provider #{}: {m}", n + 1);
        let Value::Table(t) = item else {
            return Err(at("must be a table".into()));
        };
        const KNOWN: &[&str] = &[
            "id",
            "label",
            "logo",
            "issuer",
            "discovery_url",
            "client_id",
            "client_secret",
            "client_secret_file",
            "eidas_levels",
            "scope",
            "timeout",
        ];
        if let Some(k) = t.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(at(format!("unknown key {k:?}")));
        }
        let text = |k: &str| -> Result<Option<String>, String> {
            match t.get(k) {
                None => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
                Some(_) => Err(at(format!("{k} must be a non-empty string"))),
            }
        };
        let need = |k: &str| -> Result<String, String> {
            text(k)?.ok_or_else(|| at(format!("{k} is required")))
        };
        let id = need("id")?;
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(at(format!("id {id:?} may only contain a-z, 0-9 and '-'")));
        }
        if out.iter().any(|p| p.id == id) {
            return Err(at(format!("id {id:?} is used twice")));
        }
        let issuer = need("issuer")?;
        url::Url::parse(&issuer).map_err(|e| at(format!("issuer {issuer:?} is not a URL: {e}")))?;
        let client_secret = match (text("client_secret")?, text("client_secret_file")?) {
            (Some(s), None) => s,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map(|s| s.trim_end().to_string())
                .map_err(|e| at(format!("cannot read client_secret_file {path}: {e}")))?,
            (Some(_), Some(_)) => {
                return Err(at(
                    "set client_secret or client_secret_file, not both".into()
                ));
            }
            (None, None) => {
                return Err(at(
                    "client_secret (or client_secret_file) is required".into()
                ));
            }
        };
        let eidas_levels = match t.get("eidas_levels") {
            None => vec![1],
            Some(Value::Array(a)) => {
                let mut levels = Vec::new();
                for l in a {
                    match l.as_integer() {
                        Some(x @ 1..=3) => levels.push(x as u8),
                        _ => return Err(at("eidas_levels must list levels 1, 2 or 3".into())),
                    }
                }
                if levels.is_empty() {
                    return Err(at("eidas_levels must not be empty".into()));
                }
                levels
            }
            Some(_) => return Err(at("eidas_levels must be an array such as [1, 2]".into())),
        };
        let timeout = match t.get("timeout") {
            None => Duration::from_secs(5),
            Some(v) => duration(v).map_err(|e| at(format!("timeout: {e}")))?,
        };
        out.push(IdentityProviderConfig {
            label: text("label")?.unwrap_or_else(|| id.clone()),
            logo: text("logo")?,
            discovery_url: text("discovery_url")?,
            client_id: need("client_id")?,
            scope: text("scope")?.unwrap_or_else(|| {
                "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username".into()
            }),
            id,
            issuer,
            client_secret: Secret::from(client_secret),
            eidas_levels,
            timeout,
        });
    }
    Ok(out)
}

fn readable_file(v: &Value) -> Result<PathBuf, String> {
    let path = PathBuf::from(string(v)?);
    std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(path)
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A database URL with its passwords replaced by `***`: the one after the user name,
/// and query parameters such as `?password=` or `?sslpassword=` (libpq and sqlx read
/// both).
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<redacted: unparsable URL>".into();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        ["password", "secret", "token"]
            .iter()
            .any(|s| k.contains(s))
    };
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_layers(Layers::new()).unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.database.url, None);
        assert_eq!(c.server.body_limit, 1 << 20);
    }

    #[test]
    fn the_gateway_host_differs_from_the_platform_host() {
        let layers = Layers::new().env(env(&[
            ("SOCLE_SERVER__PUBLIC_URL", "https://socle.example.gouv.fr"),
            (
                "SOCLE_GATEWAY__PUBLIC_URL",
                "https://SOCLE.example.gouv.fr:8443",
            ),
        ]));
        let errors = Config::from_layers(layers).unwrap_err().0;
        assert_eq!(errors[0].key, "gateway.public_url");
        let layers = Layers::new().env(env(&[
            ("SOCLE_SERVER__PUBLIC_URL", "https://socle.example.gouv.fr"),
            (
                "SOCLE_GATEWAY__PUBLIC_URL",
                "https://api.socle.example.gouv.fr/",
            ),
        ]));
        let c = Config::from_layers(layers).unwrap();
        assert_eq!(
            c.gateway.public_url.as_deref(),
            Some("https://api.socle.example.gouv.fr")
        );
        let layers = Layers::new().env(env(&[(
            "SOCLE_GATEWAY__PUBLIC_URL",
            "https://api.socle.example.gouv.fr/passerelle",
        )]));
        assert!(Config::from_layers(layers).is_err());
        assert_eq!(url_host("http://[::1]:8080").as_deref(), Some("::1"));
    }

    #[test]
    fn precedence_file_env_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("socle.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1000\"\nshutdown_timeout = 5\n",
        )
        .unwrap();
        let layers = Layers::new().file(&file, true).env(env(&[
            ("SOCLE_SERVER__LISTEN", "127.0.0.1:2000"),
            ("SOCLE_TEST_X", "ignored"),
        ]));
        let c = Config::from_layers(layers.clone()).unwrap();
        assert_eq!(c.server.listen.port(), 2000);
        assert_eq!(c.server.shutdown_timeout, Duration::from_secs(5));
        let c = Config::from_layers(layers.flag(
            "server.listen",
            Some("127.0.0.1:3000".into()),
            "--listen",
        ))
        .unwrap();
        assert_eq!(c.server.listen.port(), 3000);
    }

    #[test]
    fn every_error_is_listed_with_its_key_and_origin() {
        let layers = Layers::new().env(env(&[
            ("SOCLE_SERVER__LISTEN", "nowhere"),
            ("SOCLE_LOG__FORMAT", "xml"),
            ("SOCLE_DATABASE__URL", "mysql://x"),
            ("SOCLE_SERVER__SHUTDOWN_TIMEOUT", "10 parsecs"),
            ("SOCLE_SERVRE__LISTEN", "typo"),
            ("SOCLE_TLS__CERT_FILE", "/nonexistent/cert.pem"),
        ]));
        let errors = Config::from_layers(layers).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.shutdown_timeout",
                "database.url",
                "log.format",
                "tls.cert_file",
                "servre.listen"
            ]
        );
        assert!(
            errors[0].to_string().contains("SOCLE_SERVER__LISTEN"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn secrets_from_files_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db_url");
        std::fs::write(&secret, "postgres://u:hunter2@db/socle\n").unwrap();
        let layers = Layers::new().env(env(&[(
            "SOCLE_DATABASE__URL_FILE",
            secret.to_str().unwrap(),
        )]));
        let c = Config::from_layers(layers).unwrap();
        assert_eq!(
            c.database.url.as_ref().map(Secret::expose),
            Some("postgres://u:hunter2@db/socle")
        );
        let shown = c.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://u:***@db/socle"), "{shown}");
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same_once_its_secrets_are_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let key = socle_identity::MasterKey::generate_text();
        let token = "an-admin-token-of-at-least-thirty-two-characters";
        let file = dir.path().join("socle.toml");
        std::fs::write(
            &file,
            format!(
                r#"data_dir = "/var/lib/socle"
[instance]
name = "Socle test"
[server]
listen = "127.0.0.1:9443"
public_url = "https://socle.example.gouv.fr"
trusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
shutdown_timeout = "7s"
request_timeout = "11s"
body_limit = 4096
[database]
url = "postgres://socle@db.example.gouv.fr/socle?sslmode=require"
max_connections = 3
acquire_timeout = "2s"
auto_migrate = false
[log]
format = "json"
level = "debug"
[journal]
origin = "socle.example.gouv.fr/journal"
checkpoint_interval = "700ms"
rate_limit = 7
[identity]
master_key = "{key}"
session_lifetime = "600s"
code_lifetime = "20s"
access_token_lifetime = "120s"
id_token_lifetime = "240s"
[[identity.providers]]
id = "fc"
label = "FranceConnect"
logo = "https://example.gouv.fr/fc.svg"
issuer = "https://fc.example.gouv.fr/api/v2"
discovery_url = "https://fc.example.gouv.fr/api/v2/.well-known/openid-configuration"
client_id = "socle"
client_secret = "the-provider-secret"
eidas_levels = [1, 2]
scope = "openid given_name family_name"
timeout = "3s"
[gateway]
connect_timeout = "1s"
timeout = "4s"
token_lifetime = "300s"
stale_after = "5s"
open_rate_limit = 3
[citizen]
eidas_level = 2
organisation = "13002526500013"
[admin]
token = "{token}"
"#
            ),
        )
        .unwrap();
        let original = Config::from_layers(Layers::new().file(&file, true)).unwrap();
        let printed = original.redacted();
        assert!(
            !printed.contains(&key)
                && !printed.contains(token)
                && !printed.contains("the-provider-secret"),
            "{printed}"
        );
        let filled: String = printed
            .lines()
            .map(|l| match l.split_once(" = ") {
                Some(("master_key", _)) => format!("master_key = \"{key}\""),
                Some(("token", _)) => format!("token = \"{token}\""),
                Some(("client_secret", _)) => "client_secret = \"the-provider-secret\"".into(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let again = dir.path().join("again.toml");
        std::fs::write(&again, filled).unwrap();
        let read_back = Config::from_layers(Layers::new().file(&again, true)).unwrap();
        assert_eq!(read_back, original, "{printed}");
    }

    #[test]
    fn passwords_in_the_query_are_redacted_too() {
        assert_eq!(
            redact_url("postgres://u@db/socle?sslmode=require&password=hunter2&SSLPassword=x"),
            "postgres://u@db/socle?sslmode=require&password=***&SSLPassword=***"
        );
        assert_eq!(
            redact_url("postgres://u:p@db/socle?application_name=socle"),
            "postgres://u:***@db/socle?application_name=socle"
        );
        assert_eq!(redact_url("not a url"), "<redacted: unparsable URL>");
    }

    #[test]
    fn trusted_proxies_from_a_file_or_the_environment() {
        let from = |v: Value| networks(&v);
        assert_eq!(
            from(Value::String("10.1.2.3/8, 192.0.2.7".into())).unwrap(),
            vec![
                "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert!(from(Value::String("".into())).unwrap().is_empty());
        let e = from(Value::Array(vec![Value::String("proxy.example".into())])).unwrap_err();
        assert!(e.contains("\"proxy.example\" is not an address"), "{e}");
        assert!(from(Value::Integer(3)).is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(byte_size(&Value::String("2MiB".into())).unwrap(), 2 << 20);
        assert!(byte_size(&Value::String("0".into())).is_err());
        assert_eq!(
            duration(&Value::String("250ms".into())).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            duration(&Value::Integer(2)).unwrap(),
            Duration::from_secs(2)
        );
        assert!(duration(&Value::String("-1s".into())).is_err());
    }
}
