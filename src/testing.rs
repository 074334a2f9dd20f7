//! Test support shared by the unit and integration tests: a throwaway
//! PostgreSQL cluster (Debian's `postgresql` package, installed by the
//! set-up command), started by the tests themselves with `initdb` and
//! `pg_ctl` in a temporary directory, on a loopback port, as an
//! unprivileged user when the tests run as root (PostgreSQL refuses root).
//! Not part of the firewall.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running cluster; stopped (and its files removed) on drop.
pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    _dir: tempfile::TempDir,
}

/// Where `initdb` and `pg_ctl` are: on `PATH`, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
pub fn pg_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // A symlink on PATH (as `/usr/local/bin/initdb` may be) leads to
            // the directory with the other tools (`createdb`).
            if let Ok(initdb) = dir.join("initdb").canonicalize()
                && let Some(bin) = initdb.parent()
                && bin.join("pg_ctl").is_file()
                && bin.join("createdb").is_file()
            {
                return Some(bin.to_path_buf());
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// uid/gid of the `postgres` user, else `nobody`.
fn unprivileged() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|name| {
        let line = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
        let fields: Vec<&str> = line.split(':').collect();
        Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
    })
}

impl PgCluster {
    /// `initdb` + `pg_ctl start`; panics with what went wrong.
    pub fn start() -> PgCluster {
        let bin = pg_bin().expect("PostgreSQL's initdb not found: run the set-up command");
        let dir = tempfile::Builder::new()
            .prefix("mcp-firewall-pg")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = root.then(unprivileged).flatten();
        if let Some((uid, gid)) = user {
            for path in [dir.path(), data.as_path()] {
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid C string path we just created.
                unsafe {
                    libc::chown(c.as_ptr(), uid, gid);
                }
            }
        }
        let port = free_port();
        let mut cluster = PgCluster {
            bin,
            data,
            port,
            user,
            _dir: dir,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.pg_ctl_start();
        cluster
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The same database reached through the cluster's socket directory.
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@/{db}?host={}&port={}",
            self.data.display(),
            self.port
        )
    }

    /// A new empty database; returns its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ],
        );
        self.url(&name)
    }

    /// Stop the server (as a crash would: immediate).
    pub fn stop(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.pg_ctl_start();
    }

    fn pg_ctl_start(&mut self) {
        let data = self.data.display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off",
            self.port, data
        );
        let log = self.data.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    fn run(&self, tool: &str, args: &[&str]) {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args).current_dir(std::env::temp_dir());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(["-D", &data, "-m", "immediate", "stop"]);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.output();
    }
}

/// A loopback port free now, for a listener that a process started next
/// binds itself (it must be named before that process starts).
///
/// Taken below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), where nothing that binds
/// port 0 or connects out gets its port: a port found free by binding port
/// 0 and letting it go could be handed to another test's server, or to a
/// connection's source, before the process meant for it bound it, and
/// that process then failed with "Address already in use" (seen in CI:
/// the console tests' approval listener). Successive calls in one process
/// take successive ports, so concurrent tests never pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    // Below the range: from 10000 (or 1024 if the range starts lower).
    let base = if low > 12_000 { 10_000 } else { 1024 };
    let span = low.saturating_sub(base).max(1);
    // Test binaries run one after another; each starts where its pid says.
    let start = std::process::id() % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(base + offset) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::free_port;

    /// Ports for listeners named before their process starts are distinct,
    /// free, and below the kernel's ephemeral range, where no port-0 bind or
    /// outgoing connection of another test can take them meanwhile.
    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!(port < low, "{port} is in the ephemeral range from {low}");
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("free");
        }
    }
}
