//! A background writer for tests that need writes to keep coming while something runs.

use super::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Runs `step(client, i)` for i = 0, 1, 2… on its own connection, pausing `pause` between
/// steps, until [`Load::stop`] (or drop).
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Load {
    /// Starts writing to 127.0.0.1:`port`.
    pub fn start(
        port: u16,
        pause: Duration,
        mut step: impl FnMut(&mut Client, u64) + Send + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut c = Client::connect(port).expect("load: cannot connect");
            let mut i = 0u64;
            while !flag.load(Ordering::Relaxed) {
                step(&mut c, i);
                i += 1;
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            i
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns how many steps ran.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("load thread panicked"))
            .unwrap_or(0)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
