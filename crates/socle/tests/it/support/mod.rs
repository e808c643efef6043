//! Test kit: fresh databases per test on either backend, real servers on port 0, the
//! real binary when a test needs a process (signals, exit codes, `kill -9`).

pub mod back_office;
pub mod gateway;
pub mod identity;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use socle::config::Layers;
use socle::{Application, Config};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for an `async fn name(Backend)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        )+
    };
}

/// The server that PostgreSQL tests use: `SOCLE_TEST_POSTGRES_URL`, by default the
/// local server with trust authentication. A test that cannot reach it fails.
pub fn postgres_admin_url() -> String {
    std::env::var("SOCLE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A fresh, empty database, removed when dropped.
pub enum TestDb {
    Sqlite { dir: tempfile::TempDir },
    Postgres { name: String, url: String },
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::Sqlite {
                dir: tempfile::tempdir().unwrap(),
            },
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("socle_test_{}", random_suffix());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL tests need a server at {admin} (set SOCLE_TEST_POSTGRES_URL): {e}"
                    )
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&name);
                TestDb::Postgres {
                    name,
                    url: url.to_string(),
                }
            }
        }
    }

    /// The data directory (for SQLite, where `socle.db` lives).
    pub fn data_dir(&self) -> PathBuf {
        match self {
            TestDb::Sqlite { dir } => dir.path().to_path_buf(),
            TestDb::Postgres { name, .. } => std::env::temp_dir().join(name),
        }
    }

    pub fn database_url(&self) -> Option<String> {
        match self {
            TestDb::Sqlite { .. } => None,
            TestDb::Postgres { url, .. } => Some(url.clone()),
        }
    }

    /// A configuration pointing at this database, listening on a free port.
    pub fn config(&self) -> Config {
        let mut layers = Layers::new()
            .flag("server.listen", Some("127.0.0.1:0".into()), "test")
            .flag(
                "data_dir",
                Some(self.data_dir().display().to_string()),
                "test",
            )
            .flag("instance.name", Some("Socle test".into()), "test")
            .flag("server.metrics_listen", Some("127.0.0.1:0".into()), "test");
        if let Some(url) = self.database_url() {
            layers = layers.flag("database.url", Some(url), "test");
        }
        Config::from_layers(layers).unwrap()
    }

    /// Environment variables that make the binary use this database.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "SOCLE_DATA_DIR".to_string(),
                self.data_dir().display().to_string(),
            ),
            (
                "SOCLE_SERVER__METRICS_LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
        ];
        if let Some(url) = self.database_url() {
            env.push(("SOCLE_DATABASE__URL".into(), url));
        }
        env
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name, .. } = self {
            let name = name.clone();
            let admin = postgres_admin_url();
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&name));
            // Drop is synchronous: drop the database from a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// A server running in this process.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` answers (`None` in demo mode: the main address).
    pub metrics_addr: Option<SocketAddr>,
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
    pub store: socle_store::Store,
    pub journal: Option<socle_journal::Journal>,
    pub gateway: Option<socle_gateway::Gateway>,
    pub consents: Option<socle_gateway::Consents>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::new(backend).await;
        let mut config = db.config();
        tweak(&mut config);
        Self::start(db, config).await
    }

    /// Starts a new server on this one's database (stopped in place first, or its
    /// store tampered with meanwhile), with `config`.
    pub async fn restart(mut self, config: Config) -> TestApp {
        let db = std::mem::replace(&mut self.db, TestDb::new(Backend::Sqlite).await);
        drop(self);
        TestApp::start(db, config).await
    }

    pub async fn start(db: TestDb, config: Config) -> TestApp {
        let app = Application::build(config)
            .await
            .expect("application builds");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let store = app.store().clone();
        let journal = app.journal().cloned();
        let gateway = app.gateway().cloned();
        let consents = app.consents().cloned();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            metrics_addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop: Some(tx),
            task: Some(task),
            db,
            store,
            journal,
            gateway,
            consents,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The Prometheus text, from wherever this node serves it.
    pub async fn metrics(&self) -> String {
        let url = match self.metrics_addr {
            Some(a) => format!("http://{a}/metrics"),
            None => self.url("/metrics"),
        };
        let r = self.client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Stops the server gracefully but keeps the database (other nodes may use it).
    pub async fn stop_in_place(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Stops the server gracefully and returns how `run_until_stopped` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The `socle` binary, started as a child process.
pub struct Process {
    pub child: Child,
    pub base: String,
    pub stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_socle")
}

/// Runs `socle ARGS` to completion with `env`, returning (exit code, stdout, stderr).
pub fn run_binary(args: &[&str], env: &[(String, String)], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().cloned())
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Process {
    /// Starts `socle serve` on a free port and waits until `/healthz` answers.
    pub async fn serve(env: &[(String, String)]) -> Process {
        let port = free_port().await;
        let logs = tempfile::tempdir().unwrap();
        let stderr_path = logs.path().join("stderr.log");
        let child = Command::new(binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().cloned())
            .current_dir(logs.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let process = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr_path,
            _logs: logs,
        };
        process.wait_healthy().await;
        process
    }

    pub async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("socle did not become healthy; stderr:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, returning its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A TCP relay in front of a real server, which a test can cut to simulate the
/// server going away (listener closed, every open connection dropped).
pub struct Relay {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tasks2 = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let t = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks2.lock().await.push(t);
            }
        });
        Relay {
            addr,
            tasks,
            accept,
        }
    }

    /// Closes the listener and every relayed connection.
    pub async fn cut(&self) {
        self.accept.abort();
        for t in self.tasks.lock().await.drain(..) {
            t.abort();
        }
        // Wait until the port really refuses connections.
        for _ in 0..100 {
            if TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The verified pivot identity of the demo FI's person `login`.
pub fn demo_identity(login: &str) -> socle_identity::pivot::Identity {
    let person = socle_demo::fi::people()
        .into_iter()
        .find(|p| p.login == login)
        .unwrap();
    socle_identity::pivot::Identity::from_claims(person.claims.as_object().unwrap()).unwrap()
}

/// Reads a request's head (through the blank line) from a socket a mock server
/// accepted; `None` when the client went away first.
pub async fn read_head(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}

/// The OpenAPI document of a one-operation quotient-familial API.
pub fn qf_openapi(version: &str) -> String {
    serde_json::json!({
        "openapi": version, "info": {"title": "QF", "version": "1.0.0"},
        "paths": {"/quotient-familial": {"get": {"responses": {"200": {"description": "ok"}}}}}
    })
    .to_string()
}

/// The answer's media type (its `Content-Type` without parameters).
pub fn media_type(r: &reqwest::Response) -> String {
    r.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}
