//! Real processes a test can kill: a private tansu broker, a private ClickHouse server and the
//! `bluetick` binary itself, each on its own loopback port and directory, each ended by its
//! own PID (SIGKILL for a crash, SIGTERM for a clean stop) and never anything else's.

use bluetick::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now, and never handed out before in this process.
///
/// Servers are told their ports before they bind them (a cluster's three ClickHouse servers,
/// three ports each), and the kernel may offer a port again while its first taker has not
/// bound it yet: two servers given one port left a shard's native port to another server's
/// interserver HTTP, and each query to that shard waited ClickHouse's receive_timeout three
/// times over (15 min).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

/// A fresh directory under the system temp dir, for one process's state and logs.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(super::unique(prefix));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("log file")
}

/// Waits until something listens on loopback `port`.
pub fn wait_port(port: u16, what: &str) {
    wait_listening(&format!("127.0.0.1:{port}"), what, Duration::from_secs(60));
}

fn wait_listening(addr: &str, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks `GET <target>` of the HTTP server on loopback `port` until it answers 200, for at
/// most `within`; panics with `what` and the last answer. Each answer is read with a timeout,
/// so a server that accepts and never answers is asked again.
pub fn wait_http_200(port: u16, target: &str, what: &str, within: Duration) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + within;
    loop {
        let mut answer = String::new();
        let asked = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(format!("GET {target} HTTP/1.0\r\n\r\n").as_bytes())?;
            c.read_to_string(&mut answer)
        });
        if asked.is_ok() && answer.starts_with("HTTP/1.0 200") {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `signal` (a `kill -s` name) to `child` by its PID, unless it was already reaped
/// (its PID may belong to another process by now).
fn signal(child: &mut Child, signal: &str) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status();
}

/// Waits up to `within` for `child` to exit, then SIGKILLs it.
fn reap(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tansu_binary() -> String {
    if let Ok(path) = std::env::var("BLUETICK_TANSU") {
        return path;
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
        .arg("tansu-path")
        .output()
        .expect("scripts/services.sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        Path::new(&path).exists(),
        "tansu not found at {path:?}: run `scripts/services.sh install` (or set BLUETICK_TANSU)"
    );
    path
}

/// A private tansu with sqlite storage in `dir`: killing it and starting it again on the same
/// directory and port is a broker crash and restart that keeps its log.
pub struct Broker {
    child: Child,
    pub addr: String,
}

impl Broker {
    pub fn start(dir: &Path, port: u16) -> Broker {
        Broker::start_with(dir, port, port, false)
    }

    /// A broker listening on `port` that tells clients to connect to `advertised` (a TLS
    /// terminator in front of it), requiring SASL when `authentication`.
    pub fn start_with(dir: &Path, port: u16, advertised: u16, authentication: bool) -> Broker {
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let mut cmd = Command::new(tansu_binary());
        cmd.current_dir(dir)
            .args(["broker", "--listener-url", &url])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
            ])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if authentication {
            cmd.arg("--authentication");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log_file(dir, "tansu.log"))
            .spawn()
            .expect("start tansu");
        wait_listening(&addr, "private tansu", Duration::from_secs(30));
        Broker { child, addr }
    }

    /// Stores a SCRAM-SHA-256 user in the broker's store (the broker must not require
    /// authentication yet: start it again with it afterwards).
    pub fn create_user(&self, name: &str, password: &str) {
        let status = Command::new(tansu_binary())
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr),
            ])
            .args([name, password, "--mechanism", "scram256"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tansu user create");
        assert!(status.success(), "tansu user create");
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        signal(&mut self.child, "TERM");
        reap(&mut self.child, Duration::from_secs(10));
    }

    /// SIGKILL: the broker gets no chance to flush or say goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private ClickHouse server (Debian's `clickhouse-server`, the one `.ci/run` installs) with
/// its data, ports and logs in `dir`, so a test can crash and restart it without touching the
/// shared server other tests use.
pub struct ClickHouseServer {
    child: Child,
    pub url: String,
}

/// What a private ClickHouse serves besides plain HTTP.
#[derive(Default)]
pub struct ClickHouseExtras {
    /// HTTPS port, certificate and key.
    pub https: Option<(u16, PathBuf, PathBuf)>,
    /// A users.xml and the environment its `from_env` passwords come from.
    pub users: Option<(PathBuf, Vec<(String, String)>)>,
    /// Files for the server's `config.d/`, merged over the package's config.xml.
    pub config_d: Vec<PathBuf>,
}

impl ClickHouseServer {
    pub fn start(dir: &Path, http_port: u16, tcp_port: u16) -> ClickHouseServer {
        ClickHouseServer::start_with(dir, http_port, tcp_port, ClickHouseExtras::default())
    }

    pub fn start_with(
        dir: &Path,
        http_port: u16,
        tcp_port: u16,
        extras: ClickHouseExtras,
    ) -> ClickHouseServer {
        let d = dir.display();
        let mut overrides = vec![
            format!("--http_port={http_port}"),
            format!("--tcp_port={tcp_port}"),
            format!("--interserver_http_port={}", free_port()),
            // Replicas fetch parts from each other at this address.
            "--interserver_http_host=127.0.0.1".to_string(),
            format!("--path={d}/data/"),
            format!("--tmp_path={d}/tmp/"),
            format!("--user_files_path={d}/user_files/"),
            format!("--format_schema_path={d}/format_schemas/"),
            format!("--logger.log={d}/clickhouse.log"),
            format!("--logger.errorlog={d}/clickhouse.err.log"),
            "--logger.console=0".to_string(),
        ];
        if let Some((port, cert, key)) = &extras.https {
            overrides.push(format!("--https_port={port}"));
            overrides.push(format!(
                "--openSSL.server.certificateFile={}",
                cert.display()
            ));
            overrides.push(format!("--openSSL.server.privateKeyFile={}", key.display()));
            overrides.push("--openSSL.server.dhParamsFile=".to_string());
        }
        let mut cmd = Command::new("clickhouse-server");
        if let Some((users, env)) = &extras.users {
            overrides.push(format!("--users_config={}", users.display()));
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        // config.d is found beside the config file: a copy of the package's, with ours beside it.
        let mut config = PathBuf::from("/etc/clickhouse-server/config.xml");
        if !extras.config_d.is_empty() {
            let conf_dir = dir.join("conf");
            std::fs::create_dir_all(conf_dir.join("config.d")).expect("config dir");
            std::fs::copy(&config, conf_dir.join("config.xml")).expect("package config.xml");
            for file in &extras.config_d {
                let name = file.file_name().expect("a file name");
                std::fs::copy(file, conf_dir.join("config.d").join(name)).expect("config.d file");
            }
            config = conf_dir.join("config.xml");
            if extras.users.is_none() {
                overrides.push("--users_config=/etc/clickhouse-server/users.xml".to_string());
            }
        }
        let child = cmd
            .current_dir(dir)
            .arg(format!("--config-file={}", config.display()))
            .arg("--")
            .args(&overrides)
            .stdout(Stdio::null())
            .stderr(log_file(dir, "clickhouse.stderr"))
            .spawn()
            .expect("clickhouse-server from Debian's package (scripts/services.sh install)");
        let addr = format!("127.0.0.1:{http_port}");
        wait_listening(&addr, "private ClickHouse", Duration::from_secs(60));
        // ClickHouse answers /ping only once it has tried every listener it was given.
        let never = format!("ClickHouse on {http_port} never answered /ping");
        wait_http_200(http_port, "/ping", &never, Duration::from_secs(60));
        // A port taken by another process meanwhile is only logged by ClickHouse, which goes
        // on without that listener; a test would then talk to whatever holds the port.
        let errors = std::fs::read_to_string(dir.join("clickhouse.err.log")).unwrap_or_default();
        if let Some(line) = errors
            .lines()
            .find(|l| l.contains("Address already in use"))
        {
            panic!("private ClickHouse in {d} could not listen: {line}");
        }
        ClickHouseServer {
            child,
            url: format!("http://{addr}"),
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        signal(&mut self.child, "TERM");
        reap(&mut self.child, Duration::from_secs(10));
    }
}

/// stunnel terminating TLS on `accept` in front of a plain listener on `connect`.
pub struct Stunnel {
    child: Child,
}

impl Stunnel {
    pub fn start(dir: &Path, accept: u16, connect: u16, cert: &Path, key: &Path) -> Stunnel {
        let conf = dir.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[tls]\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\ncert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("stunnel config");
        let child = Command::new("stunnel4")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log_file(dir, "stunnel.log"))
            .spawn()
            .expect("stunnel4 from Debian's package (scripts/services.sh install)");
        wait_listening(
            &format!("127.0.0.1:{accept}"),
            "stunnel",
            Duration::from_secs(15),
        );
        Stunnel { child }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA, a server certificate it signs (for `localhost` and 127.0.0.1), and another CA
/// that signed nothing here, made with the `openssl` CLI.
pub struct Pki {
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
    /// The other CA's key: with `wrong_ca` it makes a server certificate nobody here trusts.
    pub wrong_ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        let run = |args: &[&str]| {
            let status = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl");
            assert!(status.success(), "openssl {args:?}");
        };
        let self_signed = |key: &str, cert: &str, cn: &str| {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
            ]);
        };
        self_signed("ca.key", "ca.pem", "bluetick test CA");
        self_signed("wrong-ca.key", "wrong-ca.pem", "someone else's CA");
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        // ClickHouse may run as another user: the test key is no secret.
        for f in ["server.key", "server.pem", "ca.pem", "wrong-ca.key"] {
            let _ = Command::new("chmod")
                .args(["644", &dir.join(f).to_string_lossy()])
                .status();
        }
        Pki {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            wrong_ca_key: dir.join("wrong-ca.key"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// The `bluetick` binary running one subcommand with a config file written from `cfg`.
pub struct Bluetick {
    child: Child,
    pub role: &'static str,
}

impl Bluetick {
    /// Starts `bluetick <role>` and waits until `wait_addr` accepts connections.
    pub fn start(cfg: &Config, role: &'static str, dir: &Path, wait_addr: &str) -> Bluetick {
        let path = dir.join(format!("{role}.toml"));
        std::fs::write(&path, toml::to_string(cfg).expect("config as TOML")).expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_bluetick"))
            .arg("--config")
            .arg(&path)
            .arg(role)
            .env(
                "BLUETICK_LOG",
                std::env::var("BLUETICK_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_file(dir, &format!("{role}.log")))
            .spawn()
            .expect("start bluetick");
        wait_listening(wait_addr, role, Duration::from_secs(30));
        Bluetick { child, role }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: a crash, with whatever was in flight.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the graceful exit.
    pub fn stop(mut self) {
        signal(&mut self.child, "TERM");
        reap(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Bluetick {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus Pushgateway (Debian's `prometheus-pushgateway`), in memory.
pub struct Pushgateway {
    child: Child,
    pub url: String,
}

impl Pushgateway {
    pub fn start(dir: &Path) -> Pushgateway {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log_file(dir, "pushgateway.log"))
            .spawn()
            .expect("prometheus-pushgateway from Debian's package (scripts/services.sh install)");
        wait_listening(&addr, "pushgateway", Duration::from_secs(15));
        Pushgateway {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
