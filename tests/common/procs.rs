//! Real processes a test can kill: a private tansu broker, a private ClickHouse server and the
//! `bluetick` binary itself, each on its own loopback port and directory, each ended by its
//! own PID (SIGKILL for a crash, SIGTERM for a clean stop) and never anything else's.

use bluetick::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
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

fn wait_listening(addr: &str, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
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
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu_binary())
            .current_dir(dir)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(log_file(dir, "tansu.log"))
            .spawn()
            .expect("start tansu");
        wait_listening(&addr, "private tansu", Duration::from_secs(30));
        Broker { child, addr }
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

impl ClickHouseServer {
    pub fn start(dir: &Path, http_port: u16, tcp_port: u16) -> ClickHouseServer {
        let d = dir.display();
        let overrides = [
            format!("--http_port={http_port}"),
            format!("--tcp_port={tcp_port}"),
            format!("--interserver_http_port={}", free_port()),
            format!("--path={d}/data/"),
            format!("--tmp_path={d}/tmp/"),
            format!("--user_files_path={d}/user_files/"),
            format!("--format_schema_path={d}/format_schemas/"),
            format!("--logger.log={d}/clickhouse.log"),
            format!("--logger.errorlog={d}/clickhouse.err.log"),
            "--logger.console=0".to_string(),
        ];
        let child = Command::new("clickhouse-server")
            .current_dir(dir)
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .args(&overrides)
            .stdout(Stdio::null())
            .stderr(log_file(dir, "clickhouse.stderr"))
            .spawn()
            .expect("clickhouse-server from Debian's package (scripts/services.sh install)");
        let addr = format!("127.0.0.1:{http_port}");
        wait_listening(&addr, "private ClickHouse", Duration::from_secs(60));
        ClickHouseServer {
            child,
            url: format!("http://{addr}"),
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        signal(&mut self.child, "TERM");
        reap(&mut self.child, Duration::from_secs(10));
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
            .env("BLUETICK_LOG", "warn")
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
