//! Readiness for server threads that block in the kernel instead of on tokio: an `epoll`
//! instance over a thread's sockets plus an `eventfd` that wakes it at once (for shutdown).
//! Linux only, like [`crate::mmsg`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The token [`Poller::wait`] reserves for its waker.
const WAKE: u64 = u64::MAX;

/// Most events taken per `epoll_wait`.
const EVENTS: usize = 64;

/// An epoll set with a waker.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
}

/// Wakes a [`Poller`] from another thread.
#[derive(Debug)]
pub struct Waker(OwnedFd);

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Poller {
    /// A new epoll set holding only its waker.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscalls; each returned descriptor is checked and owned once.
        let epoll =
            unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let wake = unsafe {
            OwnedFd::from_raw_fd(check(libc::eventfd(
                0,
                libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
            ))?)
        };
        let p = Self { epoll, wake };
        p.register(p.wake.as_raw_fd(), WAKE)?;
        Ok(p)
    }

    fn register(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: a valid epoll descriptor, a live event struct.
        check(unsafe {
            libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev)
        })?;
        Ok(())
    }

    /// Watch `fd` for readability (level-triggered); [`Poller::wait`] reports it as `token`
    /// (any value but `u64::MAX`). The descriptor must stay open while it is watched.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        if token == WAKE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token u64::MAX is the waker's",
            ));
        }
        self.register(fd, token)
    }

    /// A waker for this poller (a duplicate of its eventfd, usable from any thread).
    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker(self.wake.try_clone()?))
    }

    /// Block until a watched descriptor is readable, the waker fired, or `timeout` passed
    /// (`None`: no timeout). The readable tokens are appended to `ready`; returns whether the
    /// waker fired. A signal arriving during the wait returns with nothing ready.
    pub fn wait(&self, ready: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<bool> {
        // SAFETY: all-zero is a valid epoll_event.
        let mut events: [libc::epoll_event; EVENTS] = unsafe { std::mem::zeroed() };
        let ms = timeout.map_or(-1, |t| {
            libc::c_int::try_from(t.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
        });
        // SAFETY: a valid epoll descriptor and an events array of the length given.
        let r = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as libc::c_int,
                ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        let mut woke = false;
        for ev in events.iter().take(r as usize) {
            let token = ev.u64;
            if token == WAKE {
                woke = true;
            } else {
                ready.push(token);
            }
        }
        Ok(woke)
    }
}

impl Waker {
    /// Make the poller's current or next [`Poller::wait`] return with the waker fired (and
    /// every later one: a woken poller stays woken).
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd. A full counter (EAGAIN)
        // means it is already signalled.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_readable_sockets_and_the_waker() {
        let p = Poller::new().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        p.add(a.as_raw_fd(), 1).unwrap();
        p.add(b.as_raw_fd(), 2).unwrap();
        assert!(p.add(b.as_raw_fd(), WAKE).is_err());
        let mut ready = Vec::new();
        assert!(!p.wait(&mut ready, Some(Duration::from_millis(1))).unwrap());
        assert!(ready.is_empty());
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        assert!(!p.wait(&mut ready, Some(Duration::from_secs(5))).unwrap());
        assert_eq!(ready, vec![2]);
        let w = p.waker().unwrap();
        std::thread::spawn(move || w.wake()).join().unwrap();
        ready.clear();
        assert!(p.wait(&mut ready, None).unwrap());
        // Still woken (the counter is never read), still reporting b.
        ready.clear();
        assert!(p.wait(&mut ready, None).unwrap());
        assert_eq!(ready, vec![2]);
    }
}
