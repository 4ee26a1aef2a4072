//! relay-epoll with every socket registered for reading only: tokio's streams register
//! each socket for both directions, so that every time a peer reads what the relay wrote,
//! the relay's epoll gets an `EPOLLOUT` event (and a wake-up, if it was asleep). Here a
//! write is tried at once; only one that would block registers the socket for writing too.
//! Otherwise as relay-epoll: what the difference is worth.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;

use floor_relays::{answer_end, fail, keep_conn, request_end, Children};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

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

    /// Appends what one read gives (waiting for it); 0 at EOF.
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(4096);
        }
        loop {
            let mut guard = self.fd().readable().await?;
            let start = buf.len();
            buf.resize(buf.capacity(), 0);
            let read = guard.try_io(|s| s.get_ref().read(&mut buf[start..]));
            match read {
                Ok(Ok(n)) => {
                    buf.truncate(start + n);
                    return Ok(n);
                }
                Ok(Err(e)) => {
                    buf.truncate(start);
                    return Err(e);
                }
                Err(_would_block) => buf.truncate(start),
            }
        }
    }

    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.fd().get_ref().write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.writable {
                        let s = self.fd.take().expect("registered").into_inner();
                        self.fd = Some(register(s, Interest::READABLE | Interest::WRITABLE)?);
                        self.writable = true;
                    }
                    let mut guard = self.fd().writable().await?;
                    guard.clear_ready();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn main() {
    let settings = floor_relays::settings();
    floor_relays::sched_batch();
    let (_php, conns) = floor_relays::Php::start(&settings);
    let listener = floor_relays::bind(&settings.listen);
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap_or_else(|e| fail(&e.to_string()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let free =
            conns.into_iter().map(Socket::new).collect::<io::Result<Vec<_>>>().unwrap_or_else(|e| fail(&e.to_string()));
        let children = Rc::new(Children::new(free));
        listener.set_nonblocking(true).unwrap_or_else(|e| fail(&e.to_string()));
        let listener: AsyncFd<UnixListener> =
            register(listener, Interest::READABLE).unwrap_or_else(|e| fail(&e.to_string()));
        floor_relays::ready(&settings);
        let stopped = floor_relays::stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                guard = listener.readable() => {
                    let mut guard = guard.unwrap_or_else(|e| fail(&e.to_string()));
                    loop {
                        match guard.get_inner().accept() {
                            Ok((nginx, _)) => {
                                let children = children.clone();
                                let nginx = Socket::new(nginx).unwrap_or_else(|e| fail(&e.to_string()));
                                tokio::task::spawn_local(async move { serve(nginx, &children).await });
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                guard.clear_ready();
                                break;
                            }
                            Err(e) => {
                                eprintln!("relay: accept: {e}");
                                break;
                            }
                        }
                    }
                }
                () = &mut stopped => break,
            }
        }
    });
}

/// Relays the requests of one nginx connection, one at a time, until nginx closes it or
/// fails (a child that fails ends the relay).
async fn serve(mut nginx: Socket, children: &Children<Socket>) {
    let child_failed = |e: io::Error| -> ! { fail(&format!("a child's connection: {e}")) };
    let mut request = Vec::with_capacity(4096);
    let mut answer = Vec::with_capacity(4096);
    loop {
        request.clear();
        let mut at = 0;
        let end = loop {
            if !matches!(nginx.read_buf(&mut request).await, Ok(1..)) {
                return; // nginx closed or failed (between requests, or gave up on one)
            }
            if let Some(end) = request_end(&request, &mut at) {
                break end;
            }
        };
        floor_relays::spin();
        let keep = keep_conn(&mut request);
        let mut child = children.take().await;
        child.write_all(&request[..end]).await.unwrap_or_else(|e| child_failed(e));
        answer.clear();
        let mut at = 0;
        loop {
            match child.read_buf(&mut answer).await {
                Ok(0) => child_failed(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => child_failed(e),
            }
            if answer_end(&answer, &mut at).is_some() {
                break;
            }
        }
        children.give_back(child);
        if nginx.write_all(&answer).await.is_err() || !keep {
            return;
        }
    }
}
