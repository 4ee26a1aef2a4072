//! The floor over tokio-uring: io_uring operations on owned buffers, driven from a tokio
//! current-thread runtime (the ring's completions wake tokio's epoll through an eventfd).
//! The same relay as relay-epoll otherwise: a task per nginx connection, FIFO children;
//! connections accepted as there (readiness, `accept4`), their I/O through the ring.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use floor_relays::{answer_end, fail, request_end, FLAGS_AT, KEEP_CONN};
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::UnixStream;

/// The children's connections that are free, and a permit for each.
struct Children {
    free: RefCell<VecDeque<UnixStream>>,
    permits: Semaphore,
}

fn main() {
    let settings = floor_relays::settings();
    floor_relays::sched_batch();
    let (_php, conns) = floor_relays::Php::start(&settings);
    let _ = std::fs::remove_file(&settings.listen);
    tokio_uring::start(async move {
        // tokio-uring's own bind sets SO_REUSEPORT, which unix sockets refuse; accepting is
        // tokio's readiness and std's accept (no registration per connection).
        let listener = floor_relays::bind(&settings.listen);
        listener.set_nonblocking(true).unwrap_or_else(|e| fail(&e.to_string()));
        // SAFETY: the AsyncFd owns the listener, whose descriptor stays open while registered.
        let listener = unsafe { AsyncFd::register(listener) }.unwrap_or_else(|e| fail(&e.to_string()));
        let free: VecDeque<_> = conns.into_iter().map(UnixStream::from_std).collect();
        let children = Rc::new(Children { permits: Semaphore::new(free.len()), free: RefCell::new(free) });
        floor_relays::ready(&settings);
        // SIGTERM or SIGINT (callgrind.sh's), as rustfpm.
        let signal = |kind| tokio::signal::unix::signal(kind).unwrap_or_else(|e| fail(&e.to_string()));
        let mut term = signal(tokio::signal::unix::SignalKind::terminate());
        let mut int = signal(tokio::signal::unix::SignalKind::interrupt());
        loop {
            tokio::select! {
                ready = listener.readable() => {
                    let mut ready = ready.unwrap_or_else(|e| fail(&e.to_string()));
                    match listener.get_ref().accept() {
                        Ok((nginx, _)) => {
                            let nginx = UnixStream::from_std(nginx);
                            let children = children.clone();
                            tokio_uring::spawn(async move { serve(nginx, &children).await });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                        Err(e) => eprintln!("relay: accept: {e}"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
    });
}

/// Reads once into `buf`'s spare capacity (grown if short); `Ok(0)` at the end.
async fn read_more(stream: &UnixStream, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    let len = buf.len();
    let (result, slice) = stream.read(buf.slice(len..)).await;
    (result, slice.into_inner())
}

/// Relays the requests of one nginx connection, one at a time, until nginx closes it or
/// fails (a child that fails ends the relay).
async fn serve(nginx: UnixStream, children: &Children) {
    let child_failed = |e: io::Error| -> ! { fail(&format!("a child's connection: {e}")) };
    let mut request = Vec::with_capacity(4096);
    let mut answer = Vec::with_capacity(4096);
    loop {
        request.clear();
        let mut at = 0;
        let end = loop {
            let (result, buf) = read_more(&nginx, request).await;
            request = buf;
            if !matches!(result, Ok(1..)) {
                return; // nginx closed or failed (between requests, or gave up on one)
            }
            if let Some(end) = request_end(&request, &mut at) {
                break end;
            }
        };
        let keep = request[FLAGS_AT] & KEEP_CONN != 0;
        request[FLAGS_AT] |= KEEP_CONN;
        let permit = children.permits.acquire().await.expect("never closed");
        let child = children.free.borrow_mut().pop_front().expect("a permit per free child");
        let (result, slice) = child.write_all(request.slice(..end)).await;
        request = slice.into_inner();
        result.unwrap_or_else(|e| child_failed(e));
        answer.clear();
        let mut at = 0;
        loop {
            let (result, buf) = read_more(&child, answer).await;
            answer = buf;
            match result {
                Ok(0) => child_failed(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => child_failed(e),
            }
            if answer_end(&answer, &mut at).is_some() {
                break;
            }
        }
        children.free.borrow_mut().push_back(child);
        drop(permit);
        let (result, buf) = nginx.write_all(answer).await;
        answer = buf;
        if result.is_err() || !keep {
            return;
        }
    }
}
