//! A ClickHouse cluster on loopback for the scale-out tests: one ZooKeeper (Debian's
//! `zookeeper`, on the machine's Java) and three ClickHouse 18.16 servers in a
//! `remote_servers` cluster `bluetick` of two shards, the first with two replicas.
//! Each process has its own ports and directory and is ended by its own PID.

use super::procs::{free_port, wait_http_200, wait_port, ClickHouseExtras, ClickHouseServer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The cluster's name in `remote_servers`: two shards.
pub const CLUSTER: &str = "bluetick";

/// The same servers as one shard of servers 0 and 1 (for the one-shard figures).
pub const ONE_SHARD: &str = "one_shard";

/// Which shard each server belongs to: shard 1 = servers 0 and 1, shard 2 = server 2.
pub const SHARD_OF: [usize; 3] = [1, 1, 2];

pub struct ZooKeeper {
    child: Child,
    pub port: u16,
}

impl ZooKeeper {
    pub fn start(dir: &Path) -> ZooKeeper {
        let port = free_port();
        let data = dir.join("zookeeper");
        std::fs::create_dir_all(&data).expect("zookeeper dir");
        let cfg = dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=srvr\n",
                data.display()
            ),
        )
        .expect("zoo.cfg");
        let log = std::fs::File::create(dir.join("zookeeper.log")).expect("log");
        let child = Command::new("java")
            .args(["-Xmx256m", "-cp", "/usr/share/java/zookeeper.jar"])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("java and Debian's zookeeper (scripts/services.sh install)");
        wait_port(port, "ZooKeeper");
        // Listening is not serving yet; ClickHouse 18.16 does not survive a session that
        // never opens.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !serving(port) {
            assert!(
                std::time::Instant::now() < deadline,
                "ZooKeeper never served"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ZooKeeper { child, port }
    }
}

/// ZooKeeper's `srvr` four-letter command names the server's mode once it serves requests.
fn serving(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    // A server that accepted but never answers is asked again, within the caller's deadline.
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut answer = String::new();
    conn.write_all(b"srvr").is_ok()
        && conn.read_to_string(&mut answer).is_ok()
        && answer.contains("Mode: standalone")
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server's fixed place, so that it can be stopped and started again as the same replica.
struct Place {
    dir: PathBuf,
    http: u16,
    tcp: u16,
    config_d: Vec<PathBuf>,
}

pub struct Cluster {
    places: Vec<Place>,
    servers: Vec<Option<ClickHouseServer>>,
    // Dropped after the servers (fields drop in order).
    _zookeeper: ZooKeeper,
}

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
        let zookeeper = ZooKeeper::start(dir);
        let ports: Vec<(u16, u16)> = (0..SHARD_OF.len())
            .map(|_| (free_port(), free_port()))
            .collect();
        let mut shards = String::new();
        for shard in [1, 2] {
            shards.push_str("<shard><internal_replication>true</internal_replication>");
            for (i, (_, tcp)) in ports.iter().enumerate() {
                if SHARD_OF[i] == shard {
                    shards.push_str(&format!(
                        "<replica><host>127.0.0.1</host><port>{tcp}</port></replica>"
                    ));
                }
            }
            shards.push_str("</shard>");
        }
        let one_shard = format!(
            "<shard><internal_replication>true</internal_replication>\
             <replica><host>127.0.0.1</host><port>{}</port></replica>\
             <replica><host>127.0.0.1</host><port>{}</port></replica></shard>",
            ports[0].1, ports[1].1
        );
        let common = dir.join("cluster.xml");
        std::fs::write(
            &common,
            format!(
                "<yandex><zookeeper><node><host>127.0.0.1</host><port>{}</port></node>\
                 </zookeeper><distributed_ddl><path>/clickhouse/task_queue/ddl</path>\
                 </distributed_ddl><remote_servers><{CLUSTER}>{shards}</{CLUSTER}>\
                 <{ONE_SHARD}>{one_shard}</{ONE_SHARD}></remote_servers></yandex>\n",
                zookeeper.port
            ),
        )
        .expect("cluster.xml");
        let mut places = Vec::new();
        for (i, (http, tcp)) in ports.into_iter().enumerate() {
            let server_dir = dir.join(format!("server{i}"));
            std::fs::create_dir_all(&server_dir).expect("server dir");
            let macros = server_dir.join("macros.xml");
            std::fs::write(
                &macros,
                format!(
                    "<yandex><macros><shard>{}</shard><replica>server{i}</replica></macros>\
                     </yandex>\n",
                    SHARD_OF[i]
                ),
            )
            .expect("macros.xml");
            places.push(Place {
                dir: server_dir,
                http,
                tcp,
                config_d: vec![common.clone(), macros],
            });
        }
        let servers = places.iter().map(|p| Some(launch(p))).collect();
        for p in &places {
            wait_zookeeper_session(p.http);
        }
        Cluster {
            places,
            servers,
            _zookeeper: zookeeper,
        }
    }

    /// HTTP URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.places[i].http)
    }

    /// `host:port` (native protocol) of server `i`.
    pub fn tcp(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.places[i].tcp)
    }

    /// PIDs of the servers running now.
    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().flatten().map(|s| s.pid()).collect()
    }

    /// SIGKILLs server `i`: a replica lost mid-stream.
    pub fn kill(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            s.kill();
        }
    }

    /// Starts server `i` again on its own data.
    pub fn restart(&mut self, i: usize) {
        if self.servers[i].is_none() {
            self.servers[i] = Some(launch(&self.places[i]));
        }
    }
}

/// Waits until the server on `http` reads ZooKeeper (its session is open).
fn wait_zookeeper_session(http: u16) {
    let query = "/?query=SELECT%20count()%20FROM%20system.zookeeper%20WHERE%20path%3D'/'";
    let never = format!("ClickHouse on {http} never reached ZooKeeper");
    wait_http_200(http, query, &never, std::time::Duration::from_secs(60));
}

fn launch(p: &Place) -> ClickHouseServer {
    ClickHouseServer::start_with(
        &p.dir,
        p.http,
        p.tcp,
        ClickHouseExtras {
            config_d: p.config_d.clone(),
            ..Default::default()
        },
    )
}
