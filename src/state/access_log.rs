//! The access log: one line per request, in nginx's `combined` format (so goaccess and
//! friends parse it) or as JSON, written by a dedicated thread so that no request ever
//! waits on disk I/O: lines are buffered in memory and written out every 100 ms. If the
//! writer falls more than 8 MiB behind, further lines are dropped and counted rather than
//! letting memory grow or requests block. SIGUSR1 reopens the file (logrotate's
//! `postrotate`).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri, Version};

use crate::config::{AccessLog, AccessLogFormat};

/// Lines buffered per shard before new ones are dropped (a disk that stalls for long).
const MAX_BUFFERED: usize = 8 << 20;
/// Lines reach the file at most this long after their request ended.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

enum LogCommand {
    /// Write to this destination from now on (startup, or a reload that changed it).
    Open(AccessLog),
    /// Reopen the current file (after logrotate moved it).
    Reopen,
}

/// The handle the request path logs through.
///
/// A request appends its line to one of a few buffers picked by thread (so each worker
/// has its own in practice, and its lock is uncontended) and wakes nobody; the writer
/// thread collects the buffers every `FLUSH_EVERY`. Waking a writer per line (a channel
/// send to a blocked receiver) cost more CPU than the request itself.
pub struct AccessLogger {
    shards: Vec<Mutex<String>>,
    control: Mutex<Option<SyncSender<LogCommand>>>,
    current: Mutex<AccessLog>,
    pub dropped: AtomicU64,
}

impl AccessLogger {
    /// Starts the writer thread for `dest`.
    pub fn start(dest: &AccessLog) -> io::Result<Arc<Self>> {
        let shards = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let (tx, rx) = sync_channel(16);
        let logger = Arc::new(AccessLogger {
            shards: (0..shards).map(|_| Mutex::new(String::new())).collect(),
            control: Mutex::new(Some(tx)),
            current: Mutex::new(AccessLog::Off),
            dropped: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&logger);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(weak, rx))?;
        logger.configure(dest);
        Ok(logger)
    }

    /// Switches destination if a reload changed it.
    pub fn configure(&self, dest: &AccessLog) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if *current != *dest {
            *current = dest.clone();
            self.control(LogCommand::Open(dest.clone()));
        }
    }

    pub fn reopen(&self) {
        self.control(LogCommand::Reopen);
    }

    fn control(&self, msg: LogCommand) {
        if let Ok(tx) = self.control.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(msg);
            }
        }
    }

    pub fn log(&self, line: &str) {
        let shard = shard_of_this_thread(self.shards.len());
        let Some(Ok(mut buf)) = self.shards.get(shard).map(|m| m.lock()) else {
            return;
        };
        if buf.len() + line.len() > MAX_BUFFERED {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        buf.push_str(line);
    }

    /// Takes everything buffered so far, shard by shard.
    fn drain(&self, out: &mut Vec<u8>) {
        for shard in &self.shards {
            if let Ok(mut buf) = shard.lock() {
                out.extend_from_slice(buf.as_bytes());
                buf.clear();
            }
        }
    }
}

fn shard_of_this_thread(shards: usize) -> usize {
    thread_local! {
        // A thread's id never changes: hash it once per thread, not once per log line.
        static THREAD_HASH: u64 = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::thread::current().id().hash(&mut h);
            h.finish()
        };
    }
    THREAD_HASH.with(|h| (*h as usize) % shards.max(1))
}

fn open(dest: &AccessLog) -> Option<Box<dyn Write + Send>> {
    match dest {
        AccessLog::Off => None,
        AccessLog::Stdout => Some(Box::new(io::stdout())),
        AccessLog::File(path) => match open_file(path) {
            Ok(f) => Some(Box::new(f)),
            Err(e) => {
                tracing::error!(
                    "cannot open access log {}: {e}; access logging is off until it can",
                    path.display()
                );
                None
            }
        },
    }
}

fn open_file(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Every `FLUSH_EVERY`: apply control messages, then write out what the shards hold.
/// Ends when the logger is gone.
fn writer(logger: Weak<AccessLogger>, control: Receiver<LogCommand>) {
    let mut dest = AccessLog::Off;
    let mut out: Option<Box<dyn Write + Send>> = None;
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        match control.recv_timeout(FLUSH_EVERY) {
            Ok(LogCommand::Open(next)) => {
                write_batch(&logger, &mut out, &mut batch);
                dest = next;
                out = open(&dest);
            }
            Ok(LogCommand::Reopen) => {
                write_batch(&logger, &mut out, &mut batch);
                out = open(&dest);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if !write_batch(&logger, &mut out, &mut batch) {
            return;
        }
    }
}

/// Returns false once the logger has been dropped.
fn write_batch(
    logger: &Weak<AccessLogger>,
    out: &mut Option<Box<dyn Write + Send>>,
    batch: &mut Vec<u8>,
) -> bool {
    let Some(logger) = logger.upgrade() else {
        return false;
    };
    batch.clear();
    logger.drain(batch);
    if let (Some(w), false) = (out.as_mut(), batch.is_empty()) {
        let _ = w.write_all(batch);
        let _ = w.flush();
    }
    true
}

/// Everything one access log line says.
pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a HeaderValue>,
    pub user_agent: Option<&'a HeaderValue>,
    pub duration: Duration,
    pub upstream: Option<&'a str>,
    pub kind: &'a str,
}

impl Entry<'_> {
    pub fn render(&self, format: AccessLogFormat) -> String {
        match format {
            AccessLogFormat::Combined => self.combined(),
            AccessLogFormat::Json => self.json(),
        }
    }

    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    /// "$http_referer" "$http_user_agent"`, exactly as nginx writes it.
    fn combined(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = writeln!(
            s,
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
            self.client,
            clf_time(self.time),
            self.method,
            escape(self.uri.path_and_query().map_or("/", |p| p.as_str())),
            version(self.version),
            self.status,
            self.bytes,
            header_or_dash(self.referer),
            header_or_dash(self.user_agent),
        );
        s
    }

    fn json(&self) -> String {
        let secs = self
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line = serde_json::json!({
            "time": secs,
            "client": self.client.to_string(),
            "method": self.method.as_str(),
            "path": self.uri.path_and_query().map_or("/", |p| p.as_str()),
            "protocol": version(self.version),
            "status": self.status,
            "bytes": self.bytes,
            "duration_ms": self.duration.as_secs_f64() * 1000.0,
            "upstream": self.upstream,
            "route": self.kind,
            "referer": self.referer.and_then(|v| v.to_str().ok()),
            "user_agent": self.user_agent.and_then(|v| v.to_str().ok()),
        })
        .to_string();
        line.push('\n');
        line
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn header_or_dash(v: Option<&HeaderValue>) -> String {
    match v {
        Some(v) => escape(&String::from_utf8_lossy(v.as_bytes())),
        None => "-".to_owned(),
    }
}

/// nginx escapes `"`, `\` and bytes outside printable ASCII as `\xHH` in log variables.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => {
                let _ = write!(out, "\\x{b:02X}");
            }
            _ => out.push(b as char),
        }
    }
    out
}

/// `25/Nov/2026:13:15:25 +0000` (UTC).
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + Duration::from_secs(1_764_076_525);
        assert_eq!(clf_time(t), "25/Nov/2025:13:15:25 +0000");
    }

    #[test]
    fn combined_line() {
        let uri: Uri = "/a?b=\"c\""
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/a"));
        let ua = HeaderValue::from_static("curl/8.0");
        let e = Entry {
            time: UNIX_EPOCH + Duration::from_secs(1_764_076_525),
            client: "203.0.113.9".parse().unwrap(),
            method: &Method::GET,
            uri: &uri,
            version: Version::HTTP_11,
            status: 200,
            bytes: 512,
            referer: None,
            user_agent: Some(&ua),
            duration: Duration::from_millis(3),
            upstream: Some("blue"),
            kind: "proxy",
        };
        let line = e.render(AccessLogFormat::Combined);
        assert!(
            line.starts_with("203.0.113.9 - - [25/Nov/2025:13:15:25 +0000] \"GET /a"),
            "{line}"
        );
        assert!(
            line.ends_with(" HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"\n"),
            "{line}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&e.render(AccessLogFormat::Json)).unwrap();
        assert_eq!(json["upstream"], "blue");
        assert_eq!(json["status"], 200);
    }
}
