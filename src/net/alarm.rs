//! The loop's wake-up for deadlines: on Linux a timerfd in the poll, so the
//! poll itself sleeps without a timeout.
//!
//! Why: `epoll_wait` with a timeout arms and cancels a kernel hrtimer on
//! every sleep, and a server at partial load sleeps tens of thousands of
//! times a second. The timerfd is set only when the earliest deadline
//! changes (with heartbeats, as often as entries pop: about 33 times a second
//! per thousand connections at the default 30 s interval). Measured with the
//! echo server at a fixed rate (open loop, 8 pairs of runs in each order)
//! against the timed poll: 3.9% and 4.6% less CPU per echo at 100 × 20 B and
//! 80k msg/s, 4.3% and 3.1% at 200 × 16 KiB and 40k msg/s. A saturated
//! server seldom sleeps: in the closed loop msg/s did not change.
//!
//! Elsewhere, or if the kernel refuses a timerfd, the loop keeps the poll
//! timeout.

use std::io;

use mio::{Registry, Token};

use super::timer::Tick;

pub(crate) use imp::Alarm;

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::io::{self, Read};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};

    use super::Tick;

    /// A timerfd and the deadline it is set for.
    #[derive(Debug)]
    pub(crate) struct Alarm {
        fd: File,
        armed: Option<Tick>,
        /// `timerfd_settime` calls, for the tests.
        #[cfg(test)]
        pub(super) sets: u32,
    }

    impl Alarm {
        pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
            let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
            #[allow(unsafe_code)]
            // SAFETY: a plain system call with constant arguments; it touches
            // no memory of ours.
            let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            #[allow(unsafe_code)]
            // SAFETY: `raw` is a descriptor just returned to us and owned by
            // nothing else; the `OwnedFd` closes it once.
            let fd = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
            registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
            Ok(Self {
                fd,
                armed: None,
                #[cfg(test)]
                sets: 0,
            })
        }

        /// Fire at `when` (never if `None`); `now` is the loop's clock, no
        /// later than the real time, so the alarm is never early. A system
        /// call only when `when` changed.
        pub(crate) fn set(&mut self, when: Option<Tick>, now: Tick) -> io::Result<()> {
            if when == self.armed {
                return Ok(());
            }
            // Zero disarms; a deadline already due is the caller's to handle
            // (it polls without sleeping), so it arms for the shortest time.
            let after = when.map_or(std::time::Duration::ZERO, |w| {
                w.since(now).max(std::time::Duration::from_millis(1))
            });
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: after.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                    // Below 10^9: fits a 32-bit `c_long` too.
                    tv_nsec: after.subsec_nanos() as libc::c_long,
                },
            };
            #[allow(unsafe_code)]
            // SAFETY: `fd` is our open timerfd; `spec` is a valid
            // `itimerspec` for the duration of the call, and a null old-value
            // pointer is allowed.
            let r = unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            if r < 0 {
                // Unknown now: the next call sets it again.
                self.armed = None;
                return Err(io::Error::last_os_error());
            }
            self.armed = when;
            #[cfg(test)]
            {
                self.sets += 1;
            }
            Ok(())
        }

        /// The alarm's event arrived: it is spent. Reading resets the
        /// expiration count (nothing to read if it was set again since).
        pub(crate) fn fired(&mut self) {
            let mut count = [0u8; 8];
            let _ = (&self.fd).read(&mut count);
            self.armed = None;
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    use mio::{Registry, Token};

    use super::Tick;

    /// No timerfd here: the loop keeps the poll timeout.
    #[derive(Debug)]
    pub(crate) struct Alarm;

    impl Alarm {
        pub(crate) fn new(_registry: &Registry, _token: Token) -> io::Result<Self> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub(crate) fn set(&mut self, _when: Option<Tick>, _now: Tick) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub(crate) fn fired(&mut self) {}
    }
}

/// An alarm if the platform has one; the loop falls back to the poll
/// timeout otherwise.
pub(crate) fn alarm(registry: &Registry, token: Token) -> Option<Alarm> {
    match Alarm::new(registry, token) {
        Ok(a) => Some(a),
        Err(e) => {
            if e.kind() != io::ErrorKind::Unsupported {
                log::debug!("no timerfd ({e}): the poll times out instead");
            }
            None
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{Duration, Instant};

    use mio::{Events, Poll, Token};

    use super::*;

    const T: Token = Token(7);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Wait up to `limit` for the alarm's event; how long it took.
    fn wait(poll: &mut Poll, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut events = Events::with_capacity(4);
        while start.elapsed() < limit {
            poll.poll(&mut events, Some(limit - start.elapsed()))
                .unwrap();
            if events.iter().any(|e| e.token() == T) {
                return Some(start.elapsed());
            }
        }
        None
    }

    #[test]
    fn fires_at_the_deadline_never_before() {
        let mut poll = Poll::new().unwrap();
        let mut a = Alarm::new(poll.registry(), T).unwrap();
        let now = Tick::now();
        let start = Instant::now();
        a.set(Some(now + ms(20)), now).unwrap();
        let took = wait(&mut poll, ms(2000)).expect("the alarm fired");
        assert!(took >= ms(19), "fired after {took:?}");
        assert!(Tick::now() >= now + ms(20), "early: {:?}", start.elapsed());
        a.fired();
        // Spent: nothing more comes.
        assert_eq!(wait(&mut poll, ms(60)), None);
    }

    #[test]
    fn sets_only_when_the_deadline_changes() {
        let poll = Poll::new().unwrap();
        let mut a = Alarm::new(poll.registry(), T).unwrap();
        let now = Tick::now();
        let later = now + ms(5000);
        a.set(Some(later), now).unwrap();
        a.set(Some(later), now).unwrap();
        assert_eq!(a.sets, 1);
        a.set(Some(now + ms(4000)), now).unwrap();
        a.set(None, now).unwrap();
        a.set(None, now).unwrap();
        assert_eq!(a.sets, 3);
        // After it fired, the same deadline is set again.
        a.set(Some(later), now).unwrap();
        a.fired();
        a.set(Some(later), now).unwrap();
        assert_eq!(a.sets, 5);
    }

    #[test]
    fn disarmed_or_moved_later_it_does_not_fire_early() {
        let mut poll = Poll::new().unwrap();
        let mut a = Alarm::new(poll.registry(), T).unwrap();
        let now = Tick::now();
        a.set(Some(now + ms(10)), now).unwrap();
        a.set(None, now).unwrap();
        assert_eq!(wait(&mut poll, ms(60)), None, "fired while disarmed");
        let now = Tick::now();
        a.set(Some(now + ms(10)), now).unwrap();
        a.set(Some(now + ms(80)), now).unwrap();
        let took = wait(&mut poll, ms(2000)).expect("the alarm fired");
        assert!(took >= ms(79), "fired after {took:?}, set for 80 ms");
    }

    #[test]
    fn a_deadline_already_due_still_fires() {
        let mut poll = Poll::new().unwrap();
        let mut a = Alarm::new(poll.registry(), T).unwrap();
        let now = Tick::now();
        a.set(Some(now), now + ms(5)).unwrap();
        assert!(wait(&mut poll, ms(2000)).is_some());
    }
}
