//! The floor over tokio's epoll reactor: one current-thread runtime, as rustfpm's default
//! front end; a task per nginx connection; a free child taken in FIFO order.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use floor_relays::{answer_end, fail, request_end, FLAGS_AT, KEEP_CONN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// The children's connections that are free, and a permit for each.
struct Children {
    free: RefCell<VecDeque<UnixStream>>,
    permits: Semaphore,
}

fn main() {
    let settings = floor_relays::settings();
    floor_relays::sched_batch();
    let (_php, conns) = floor_relays::Php::start(&settings);
    let listener = floor_relays::bind(&settings.listen);
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap_or_else(|e| fail(&e.to_string()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let free = conns
            .into_iter()
            .map(|c| {
                c.set_nonblocking(true)?;
                UnixStream::from_std(c)
            })
            .collect::<io::Result<VecDeque<_>>>()
            .unwrap_or_else(|e| fail(&e.to_string()));
        let children = Rc::new(Children { permits: Semaphore::new(free.len()), free: RefCell::new(free) });
        listener.set_nonblocking(true).unwrap_or_else(|e| fail(&e.to_string()));
        let listener = UnixListener::from_std(listener).unwrap_or_else(|e| fail(&e.to_string()));
        floor_relays::ready(&settings);
        // SIGTERM or SIGINT (callgrind.sh's), as rustfpm.
        let signal = |kind| tokio::signal::unix::signal(kind).unwrap_or_else(|e| fail(&e.to_string()));
        let mut term = signal(tokio::signal::unix::SignalKind::terminate());
        let mut int = signal(tokio::signal::unix::SignalKind::interrupt());
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((nginx, _)) => {
                        let children = children.clone();
                        tokio::task::spawn_local(async move { serve(nginx, &children).await });
                    }
                    Err(e) => eprintln!("relay: accept: {e}"),
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
    });
}

/// Relays the requests of one nginx connection, one at a time, until nginx closes it or
/// fails (a child that fails ends the relay).
async fn serve(mut nginx: UnixStream, children: &Children) {
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
            request.reserve(4096);
        };
        let keep = request[FLAGS_AT] & KEEP_CONN != 0;
        request[FLAGS_AT] |= KEEP_CONN;
        let permit = children.permits.acquire().await.expect("never closed");
        let mut child = children.free.borrow_mut().pop_front().expect("a permit per free child");
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
            answer.reserve(4096);
        }
        children.free.borrow_mut().push_back(child);
        drop(permit);
        if nginx.write_all(&answer).await.is_err() || !keep {
            return;
        }
    }
}
