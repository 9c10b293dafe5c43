//! The application's side: [`Client`] hands encoded commands to the runner
//! and waits for their replies; [`Status`] mirrors the core's phase and
//! outage, for health reports. [`Shared`] is the mailbox between the two, in
//! caller memory (a `static`); it also tells the runner which call still has
//! a caller, so a command whose caller left is withdrawn, not written.

use core::cell::Cell;

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Instant, with_deadline};
use heapless::Vec;
use resilis_core::command::Class;
use resilis_core::resp::encode::EncodeError;
use resilis_core::resp::{Decoded, Frame, Limits, MAX_DEPTH_CAP, decode};
use resilis_core::{DisconnectReason, Outcome, PhaseKind, SubmitError};

/// One command on its way to the runner: its encoded bytes and how the core
/// should treat it.
#[derive(Debug)]
pub struct Request<const CMD: usize> {
    pub(crate) seq: u32,
    pub(crate) bytes: Vec<u8, CMD>,
    pub(crate) class: Class,
    pub(crate) timeout: Duration,
    /// Not a command: close the connection for good (`handle_shutdown`).
    pub(crate) shutdown: bool,
}

/// How to submit a command: what it is (the core decides from the class
/// whether it may be resent, answered by the fallback cache, or must fail
/// during an outage) and how long its caller waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CallOptions {
    /// Resolved without a reply after this (how depends on the class and on
    /// whether it was written: see [`Outcome`]).
    pub timeout: Duration,
    pub class: Class,
}

impl CallOptions {
    /// Any class, e.g. from `resilis_core::command::classify`.
    pub const fn new(class: Class, timeout: Duration) -> Self {
        CallOptions { timeout, class }
    }

    /// A read that changes nothing (PING, HGET...).
    pub const fn read(timeout: Duration) -> Self {
        Self::new(Class::READ, timeout)
    }

    /// GET: during an outage the core answers it with
    /// [`Outcome::Fallback`], for the application's cache to serve.
    pub const fn cached_read(timeout: Duration) -> Self {
        Self::new(Class::CACHED_READ, timeout)
    }

    /// A write that may safely be applied twice (plain SET).
    pub const fn idempotent_write(timeout: Duration) -> Self {
        Self::new(Class::IDEMPOTENT_WRITE, timeout)
    }

    /// A write that must not be applied twice (INCR, LPUSH...).
    pub const fn write(timeout: Duration) -> Self {
        Self::new(Class::WRITE, timeout)
    }
}

/// A reply: the RESP bytes as received, decoded on demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<const REPLY: usize> {
    pub(crate) bytes: Vec<u8, REPLY>,
}

/// Limits that accept anything the core's decoder accepted (a reply of at
/// most `REPLY` bytes holds far fewer elements than Redis's own limits).
const ANY: Limits = Limits {
    max_depth: MAX_DEPTH_CAP,
    max_bulk_len: usize::MAX,
    max_aggregate_len: usize::MAX,
    ..Limits::REDIS
};

impl<const REPLY: usize> Reply<REPLY> {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The reply as a frame borrowed from `self`.
    pub fn frame(&self) -> Frame<'_> {
        match decode(&self.bytes, &ANY) {
            Ok(Decoded::Frame { frame, .. }) => frame,
            // The core validated these exact bytes as one whole frame under
            // limits no looser than `ANY`; this arm cannot be reached.
            _ => Frame::Null,
        }
    }

    /// The server's error text when the reply is an error (`-ERR ...`).
    pub fn error_text(&self) -> Option<&[u8]> {
        self.frame().error_text()
    }
}

/// Why a call has no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The command does not fit the `CMD` capacity.
    Encode(EncodeError),
    /// The core refused it at once, not applied: Redis is unavailable
    /// (`NotReady`/`Down`, with the reason), backpressure, too large,
    /// shut down.
    Submit(SubmitError),
    /// The core resolved it without a reply: timed out or not applied
    /// (never written), indeterminate (written, no reply), or `Fallback`:
    /// a cached read during an outage, for the application's cache to answer.
    Outcome(Outcome),
    /// The reply was longer than the `REPLY` capacity.
    ReplyTooLarge { len: usize },
    /// The runner did not answer in time (it is not running, or stuck).
    NoResponse,
}

/// The core's state as last seen by the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    pub phase: PhaseKind,
    /// Redis is unavailable (the core answers cached reads with
    /// [`Outcome::Fallback`] until it is back).
    pub fallback_active: bool,
    pub last_reason: Option<DisconnectReason>,
    /// How many times the connection became ready.
    pub ready_count: u64,
}

impl Status {
    const INITIAL: Status = Status {
        phase: PhaseKind::Idle,
        fallback_active: false,
        last_reason: None,
        ready_count: 0,
    };
}

/// The mailbox between a [`Client`] and its runner. Put it in a `static`
/// (it has a `const` constructor). `CMD`: largest encoded command; `REPLY`:
/// largest reply handed to the client.
pub struct Shared<M: RawMutex, const CMD: usize = 256, const REPLY: usize = 512> {
    pub(crate) requests: Channel<M, Request<CMD>, 1>,
    pub(crate) replies: Channel<M, (u32, Result<Reply<REPLY>, Error>), 1>,
    status: Mutex<M, Cell<Status>>,
    changed: Signal<M, ()>,
    /// The call whose caller still waits for its reply (its `seq`).
    waiting: Mutex<M, Cell<Option<u32>>>,
}

impl<M: RawMutex, const CMD: usize, const REPLY: usize> Shared<M, CMD, REPLY> {
    pub const fn new() -> Self {
        Shared {
            requests: Channel::new(),
            replies: Channel::new(),
            status: Mutex::new(Cell::new(Status::INITIAL)),
            changed: Signal::new(),
            waiting: Mutex::new(Cell::new(None)),
        }
    }

    /// Whether the caller of call `seq` still waits for it.
    pub(crate) fn waiting_for(&self, seq: u32) -> bool {
        self.waiting.lock(Cell::get) == Some(seq)
    }

    pub(crate) fn set_status(&self, status: Status) {
        let old = self.status.lock(|s| s.replace(status));
        if old != status {
            self.changed.signal(());
        }
    }

    pub(crate) fn respond(&self, seq: u32, result: Result<Reply<REPLY>, Error>) {
        // Only the newest call waits; a reply its abandoned predecessor never
        // took must not block it.
        self.replies.clear();
        let _ = self.replies.try_send((seq, result));
    }
}

impl<M: RawMutex, const CMD: usize, const REPLY: usize> Default for Shared<M, CMD, REPLY> {
    fn default() -> Self {
        Self::new()
    }
}

/// The application's handle: one call at a time.
pub struct Client<'a, M: RawMutex, const CMD: usize = 256, const REPLY: usize = 512> {
    shared: &'a Shared<M, CMD, REPLY>,
    seq: u32,
}

/// How long past its own timeout a call waits for the runner to resolve it.
const RUNNER_GRACE: Duration = Duration::from_secs(2);

impl<'a, M: RawMutex, const CMD: usize, const REPLY: usize> Client<'a, M, CMD, REPLY> {
    pub(crate) fn new(shared: &'a Shared<M, CMD, REPLY>) -> Self {
        Client { shared, seq: 0 }
    }

    pub fn status(&self) -> Status {
        self.shared.status.lock(Cell::get)
    }

    /// Waits until the connection is ready, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.phase == PhaseKind::Ready)
            .await
            .is_some()
    }

    /// Waits until `condition` holds for the status, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Status) -> bool,
    ) -> Option<Status> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if condition(&status) {
                return Some(status);
            }
            with_deadline(deadline, self.shared.changed.wait())
                .await
                .ok()?;
        }
    }

    /// Closes the connection for good (TLS close_notify and TCP FIN, when
    /// open): a command in flight is resolved as indeterminate, later calls
    /// fail with `SubmitError::Shutdown`, nothing reconnects. Waits at most
    /// `timeout` for the runner to get there.
    pub async fn shutdown(&mut self, timeout: Duration) -> bool {
        self.seq = self.seq.wrapping_add(1);
        let request = Request {
            seq: self.seq,
            bytes: Vec::new(),
            class: Class::UNKNOWN,
            timeout,
            shutdown: true,
        };
        let deadline = Instant::now() + timeout;
        if with_deadline(deadline, self.shared.requests.send(request))
            .await
            .is_err()
        {
            return false;
        }
        self.wait_for(deadline.saturating_duration_since(Instant::now()), |s| {
            s.phase == PhaseKind::Shutdown
        })
        .await
        .is_some()
    }

    /// Encodes a command with `encode` (any `resp::encode` helper) and runs
    /// it: the reply, or why there is none.
    ///
    /// Dropping the returned future withdraws the command: the runner never
    /// writes it if it was not written yet (the core's `handle_cancel`), and
    /// discards its reply if it was.
    pub async fn call(
        &mut self,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
        options: CallOptions,
    ) -> Result<Reply<REPLY>, Error> {
        let mut bytes: Vec<u8, CMD> = Vec::new();
        // Growing to capacity cannot fail.
        let _ = bytes.resize(CMD, 0);
        let len = encode(&mut bytes).map_err(Error::Encode)?;
        bytes.truncate(len);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = Request {
            seq,
            bytes,
            class: options.class,
            timeout: options.timeout,
            shutdown: false,
        };
        let _waiting = Waiting::new(self.shared, seq);
        let deadline = Instant::now() + options.timeout + RUNNER_GRACE;
        with_deadline(deadline, async {
            self.shared.requests.send(request).await;
            loop {
                let (answered, result) = self.shared.replies.receive().await;
                if answered == seq {
                    return result;
                }
            }
        })
        .await
        .unwrap_or(Err(Error::NoResponse))
    }
}

/// Marks call `seq` as waited for, until dropped (answered, timed out, or its
/// future dropped by the caller).
struct Waiting<'a, M: RawMutex, const CMD: usize, const REPLY: usize> {
    shared: &'a Shared<M, CMD, REPLY>,
    seq: u32,
}

impl<'a, M: RawMutex, const CMD: usize, const REPLY: usize> Waiting<'a, M, CMD, REPLY> {
    fn new(shared: &'a Shared<M, CMD, REPLY>, seq: u32) -> Self {
        shared.waiting.lock(|w| w.set(Some(seq)));
        Waiting { shared, seq }
    }
}

impl<M: RawMutex, const CMD: usize, const REPLY: usize> Drop for Waiting<'_, M, CMD, REPLY> {
    fn drop(&mut self) {
        self.shared.waiting.lock(|w| {
            if w.get() == Some(self.seq) {
                w.set(None);
            }
        });
    }
}
