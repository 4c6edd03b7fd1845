//! The switchyard binary under test.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
}

/// A scratch directory holding a config file (and whatever else the test puts there).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("switchyard-test-")
        .tempdir()
        .expect("tempdir")
}

impl Daemon {
    /// Writes `config` to a fresh directory and starts the daemon on it.
    pub fn start(config: &str) -> Daemon {
        let dir = scratch();
        Daemon::start_in(dir, config)
    }

    /// Starts the daemon with `config` written as `switchyard.toml` inside `dir`.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Daemon {
        Daemon::start_with_env(dir, config, &[])
    }

    /// Like `start_in`, with extra environment variables.
    pub fn start_with_env(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Daemon {
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(BIN);
        command.arg("--config").arg(&path).envs(env.iter().copied());
        Daemon::spawn(command, dir, path)
    }

    /// Starts the daemon the way systemd's socket activation does (`activated`). `config`
    /// is written as `switchyard.toml` in `dir` unless it is empty (the file is there).
    pub fn start_activated(
        dir: tempfile::TempDir,
        config: &str,
        listener: &std::net::TcpListener,
    ) -> Daemon {
        let path = dir.path().join("switchyard.toml");
        if !config.is_empty() {
            std::fs::write(&path, config).expect("write config");
        }
        let command = activated(&path, listener);
        Daemon::spawn(command, dir, path)
    }

    fn spawn(mut command: Command, dir: tempfile::TempDir, path: PathBuf) -> Daemon {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut daemon = Daemon {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            config: path,
            dir,
            logs,
        };
        let line = daemon.wait_for_log("listening on ", Duration::from_secs(10));
        let addr = line.rsplit("listening on ").next().unwrap().trim();
        daemon.addr = addr.parse().expect("listening address");
        daemon
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` and returns it; panics with the log on timeout.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_after(0, needle, timeout)
    }

    /// Like `wait_for_log`, looking only at lines after the first `skip`.
    pub fn wait_for_log_after(&mut self, skip: usize, needle: &str, timeout: Duration) -> String {
        blocking(|| self.poll_log(skip, needle, timeout))
    }

    fn poll_log(&mut self, skip: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .logs()
                .into_iter()
                .skip(skip)
                .find(|l| l.contains(needle))
            {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "switchyard exited ({status}) before logging {needle:?}:\n{}",
                    self.logs().join("\n")
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line {needle:?} within {timeout:?}:\n{}",
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_count(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the pid of a child this handle owns and has not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Rewrites the config file and sends SIGHUP; waits for the reload's log line and
    /// returns it.
    pub fn reload_with(&mut self, config: &str) -> String {
        std::fs::write(&self.config, config).expect("write config");
        self.reload()
    }

    pub fn reload(&mut self) -> String {
        let before = self.log_count();
        self.signal(libc::SIGHUP);
        self.wait_for_log_after(before, "reload ", Duration::from_secs(10))
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        blocking(|| self.poll_exit(timeout))
    }

    fn poll_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "switchyard did not exit within {timeout:?}:\n{}",
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a blocking wait without starving the test's own runtime: in a multi-thread
/// runtime the worker hands its queued tasks (the test's upstreams) to another thread
/// first, so an upstream task parked on this worker can still answer.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `switchyard --config PATH` as systemd's socket activation starts it: `listener` as fd
/// 3, `LISTEN_FDS=1`, and `LISTEN_PID` its own pid (`sh` sets it to `$$`, then execs the
/// daemon, which keeps the pid).
pub fn activated(path: &Path, listener: &std::net::TcpListener) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\"")
        .arg(BIN)
        .arg(path);
    // SAFETY: dup2 is async-signal-safe; it runs in the forked child before exec and
    // clears close-on-exec on fd 3, which the daemon then adopts.
    unsafe {
        command.pre_exec(move || match libc::dup2(fd, 3) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    command
}

/// Runs `switchyard ARGS...` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    outcome(Command::new(BIN).args(args))
}

/// `run_cli` for commands that wait on the daemon (`canary` follows a plan): killed after
/// 30 s, so a plan that never ends fails the test instead of hanging it.
pub fn run_cli_bounded(args: &[&str]) -> (i32, String, String) {
    outcome(Command::new("timeout").arg("30").arg(BIN).args(args))
}

fn outcome(command: &mut Command) -> (i32, String, String) {
    let out = command.output().expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds a config file: `Conf::new("blue").upstream("blue", addr).server("k = v").extra(..)`.
#[derive(Default, Clone)]
pub struct Conf {
    active: String,
    listen: Option<String>,
    server: Vec<String>,
    upstreams: Vec<String>,
    extra: Vec<String>,
}

impl Conf {
    pub fn new(active: &str) -> Conf {
        Conf {
            active: active.to_owned(),
            ..Conf::default()
        }
    }

    pub fn upstream(mut self, name: &str, addr: SocketAddr) -> Conf {
        self.upstreams.push(format!("{name} = \"{addr}\""));
        self
    }

    /// A line for the `[server]` table.
    pub fn server(mut self, line: &str) -> Conf {
        self.server.push(line.to_owned());
        self
    }

    /// Tables after `[upstreams]` (`[static]`, `[proxy]`, `[[routes]]`...).
    pub fn extra(mut self, text: &str) -> Conf {
        self.extra.push(text.to_owned());
        self
    }

    /// Listen somewhere else than 127.0.0.1:0 (say "[::1]:0").
    pub fn listen(mut self, addr: &str) -> Conf {
        self.listen = Some(addr.to_owned());
        self
    }

    pub fn active(mut self, name: &str) -> Conf {
        self.active = name.to_owned();
        self
    }

    pub fn build(&self) -> String {
        format!(
            "active = \"{}\"\n[server]\nlisten = \"{}\"\n{}\n\n[upstreams]\n{}\n\n{}\n",
            self.active,
            self.listen.as_deref().unwrap_or("127.0.0.1:0"),
            self.server.join("\n"),
            self.upstreams.join("\n"),
            self.extra.join("\n")
        )
    }
}

/// A loopback port that nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
