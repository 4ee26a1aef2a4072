//! The floor over tokio's epoll reactor: one current-thread runtime, as rustfpm's default
//! front end; a task per nginx connection; a free child taken in FIFO order.

use std::io;
use std::rc::Rc;

use floor_relays::{fail, serve, Children};
use tokio::net::{UnixListener, UnixStream};

fn main() {
    let (settings, _php, conns, listener) = floor_relays::start();
    let rt = floor_relays::runtime();
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
