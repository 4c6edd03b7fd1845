//! Listening sockets handed over by systemd's `switchyard.socket` (or any supervisor that
//! speaks the same protocol, sd_listen_fds(3): `LISTEN_PID` = this process, `LISTEN_FDS` =
//! how many, starting at fd 3). The socket outlives the process: during a restart (a binary
//! upgrade) new connections wait in its queue instead of being refused, and the daemon needs
//! no privilege to serve port 80.
//!
//! Each passed socket is matched to `listen` or `admin_listen` by its address; a passed
//! socket that matches neither, or a `listen` address nothing was passed for, is a startup
//! error that names both sides (the socket unit and the TOML file disagree).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};

use thiserror::Error;

/// The first passed descriptor (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;

#[derive(Debug, Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a number of sockets")]
    BadCount(String),
    #[error("passed descriptor {fd} is not a listening TCP socket ({reason})")]
    NotListening { fd: RawFd, reason: String },
    #[error(
        "listen address {addr} has no passed socket (passed: {passed}); make the socket \
         unit's ListenStream= and server.listen agree"
    )]
    Missing { addr: SocketAddr, passed: String },
    #[error(
        "a passed socket listens on {addr}, which is neither server.listen nor \
         server.admin_listen; make the socket unit's ListenStream= and the file agree"
    )]
    Unexpected { addr: SocketAddr },
}

/// The sockets passed to this process, not yet matched to a listener.
pub struct Passed {
    sockets: Vec<(SocketAddr, TcpListener)>,
}

impl Passed {
    /// The sockets passed to this process, or `None` when it was not socket-activated
    /// (no `LISTEN_FDS`, or one meant for another process). Call once, at startup.
    pub fn from_env() -> Result<Option<Passed>, ActivationError> {
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| pid == std::process::id());
        let Some(count) = std::env::var("LISTEN_FDS").ok().filter(|_| for_us) else {
            return Ok(None);
        };
        let count: RawFd = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (0..=1024).contains(n))
            .ok_or_else(|| ActivationError::BadCount(count.clone()))?;
        let sockets = (FIRST_FD..FIRST_FD + count)
            .map(adopt)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Passed { sockets }))
    }

    /// The passed sockets for `addrs`, in their order.
    pub fn take_listen(
        &mut self,
        addrs: &[SocketAddr],
    ) -> Result<Vec<TcpListener>, ActivationError> {
        addrs
            .iter()
            .map(|addr| {
                self.take(*addr).ok_or_else(|| ActivationError::Missing {
                    addr: *addr,
                    passed: self.describe(),
                })
            })
            .collect()
    }

    /// The passed socket for the admin address, if one was passed (else the daemon binds
    /// it itself: it is not a privileged port).
    pub fn take(&mut self, addr: SocketAddr) -> Option<TcpListener> {
        let at = self.sockets.iter().position(|(a, _)| *a == addr)?;
        Some(self.sockets.remove(at).1)
    }

    /// Every passed socket must have found its listener.
    pub fn finish(self) -> Result<(), ActivationError> {
        match self.sockets.first() {
            Some((addr, _)) => Err(ActivationError::Unexpected { addr: *addr }),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        let addrs: Vec<String> = self.sockets.iter().map(|(a, _)| a.to_string()).collect();
        match addrs.is_empty() {
            true => "none left".into(),
            false => addrs.join(", "),
        }
    }
}

/// Takes ownership of passed descriptor `fd`, which must be a listening TCP socket.
fn adopt(fd: RawFd) -> Result<(SocketAddr, TcpListener), ActivationError> {
    let not_listening = |reason: String| ActivationError::NotListening { fd, reason };
    if !is_listening_stream(fd) {
        return Err(not_listening("not a listening stream socket".into()));
    }
    // SAFETY: the activation protocol hands descriptors FIRST_FD.. to this process; each is
    // adopted exactly once, here, and checked above to be a listening stream socket.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    set_cloexec(fd);
    let addr = listener
        .local_addr()
        .map_err(|e| not_listening(e.to_string()))?;
    Ok((addr, listener))
}

fn is_listening_stream(fd: RawFd) -> bool {
    let get = |option| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, which is that large.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        } == 0;
        ok.then_some(value)
    };
    get(libc::SO_TYPE) == Some(libc::SOCK_STREAM) && get(libc::SO_ACCEPTCONN) == Some(1)
}

/// Passed descriptors arrive without close-on-exec; nothing this process starts should
/// inherit the listening socket.
fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this process owns; no memory is involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}
