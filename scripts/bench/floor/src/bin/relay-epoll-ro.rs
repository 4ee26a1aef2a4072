//! relay-epoll with every socket registered for reading only: tokio's streams register
//! each socket for both directions, so that every time a peer reads what the relay wrote,
//! the relay's epoll gets an `EPOLLOUT` event (and a wake-up, if it was asleep). Here a
//! write is tried at once; only one that would block registers the socket for writing too.
//! Otherwise as relay-epoll: what the difference is worth.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use floor_relays::{fail, serve, Children};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Registers `inner` with the runtime for `interest`.
fn register<T: std::os::fd::AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its descriptor (a std socket), which stays open and the same until
    // the `AsyncFd` is dropped or gives `inner` back.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(io::Error::from)
}

/// A socket registered for reading, and for writing only once a write would block.
struct Socket {
    fd: Option<AsyncFd<UnixStream>>,
    writable: bool,
}

impl Socket {
    fn new(s: UnixStream) -> io::Result<Socket> {
        s.set_nonblocking(true)?;
        Ok(Socket { fd: Some(register(s, Interest::READABLE)?), writable: false })
    }

    fn fd(&self) -> &AsyncFd<UnixStream> {
        self.fd.as_ref().expect("registered")
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd().poll_read_ready(cx))?;
            match guard.try_io(|s| s.get_ref().read(buf.initialize_unfilled())) {
                Ok(read) => {
                    buf.advance(read?);
                    return Poll::Ready(Ok(()));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Socket {
    /// Writes at once; a write that would block registers the socket for writing too
    /// (once) and waits until it can.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.fd().get_ref().write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                written => return Poll::Ready(written),
            }
            if !this.writable {
                let s = this.fd.take().expect("registered").into_inner();
                this.fd = Some(register(s, Interest::READABLE | Interest::WRITABLE)?);
                this.writable = true;
            }
            ready!(this.fd().poll_write_ready(cx))?.clear_ready();
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd().get_ref().shutdown(std::net::Shutdown::Write))
    }
}

fn main() {
    let (settings, _php, conns, listener) = floor_relays::start();
    let rt = floor_relays::runtime();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let free =
            conns.into_iter().map(Socket::new).collect::<io::Result<Vec<_>>>().unwrap_or_else(|e| fail(&e.to_string()));
        let children = Rc::new(Children::new(free));
        let listener = floor_relays::register_listener(listener);
        floor_relays::accept_until_stopped(&settings, &listener, |nginx| {
            let nginx = Socket::new(nginx).unwrap_or_else(|e| fail(&e.to_string()));
            let children = children.clone();
            tokio::task::spawn_local(async move { serve(nginx, &children).await });
        })
        .await;
    });
}
