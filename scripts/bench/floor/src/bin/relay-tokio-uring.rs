//! The floor over tokio-uring: io_uring operations on owned buffers, driven from a tokio
//! current-thread runtime (the ring's completions wake tokio's epoll through an eventfd).
//! The same relay as relay-epoll otherwise: a task per nginx connection, FIFO children;
//! connections accepted as there (readiness, `accept4`), their I/O through the ring.

use std::io;
use std::rc::Rc;

use floor_relays::{answer_end, fail, keep_conn, request_end, Children};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::UnixStream;

fn main() {
    let (settings, _php, conns, listener) = floor_relays::start();
    // tokio-uring's own bind sets SO_REUSEPORT, which unix sockets refuse: std's listener,
    // accepted on tokio's readiness (no registration per connection), I/O through the ring.
    tokio_uring::start(async move {
        let listener = floor_relays::register_listener(listener);
        let free = conns.into_iter().map(UnixStream::from_std);
        let children = Rc::new(Children::new(free));
        floor_relays::accept_until_stopped(&settings, &listener, |nginx| {
            let nginx = UnixStream::from_std(nginx);
            let children = children.clone();
            tokio_uring::spawn(async move { serve(nginx, &children).await });
        })
        .await;
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
async fn serve(nginx: UnixStream, children: &Children<UnixStream>) {
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
        let keep = keep_conn(&mut request);
        let child = children.take().await;
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
        children.give_back(child);
        let (result, buf) = nginx.write_all(answer).await;
        answer = buf;
        if result.is_err() || !keep {
            return;
        }
    }
}
