//! The floor over tokio's epoll reactor: one current-thread runtime, as rustfpm's default
//! front end; a task per nginx connection; a free child taken in FIFO order.

use std::io;
use std::rc::Rc;

use floor_relays::{answer_end, fail, keep_conn, request_end, Children};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

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
            .collect::<io::Result<Vec<_>>>()
            .unwrap_or_else(|e| fail(&e.to_string()));
        let children = Rc::new(Children::new(free));
        listener.set_nonblocking(true).unwrap_or_else(|e| fail(&e.to_string()));
        let listener = UnixListener::from_std(listener).unwrap_or_else(|e| fail(&e.to_string()));
        floor_relays::ready(&settings);
        let stopped = floor_relays::stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((nginx, _)) => {
                        let children = children.clone();
                        tokio::task::spawn_local(async move { serve(nginx, &children).await });
                    }
                    Err(e) => eprintln!("relay: accept: {e}"),
                },
                () = &mut stopped => break,
            }
        }
    });
}

/// Relays the requests of one nginx connection, one at a time, until nginx closes it or
/// fails (a child that fails ends the relay).
async fn serve(mut nginx: UnixStream, children: &Children<UnixStream>) {
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
            answer.reserve(4096);
        }
        children.give_back(child);
        if nginx.write_all(&answer).await.is_err() || !keep {
            return;
        }
    }
}
