//! Standard output that ends the process quietly when the reader goes away
//! (`kpki plan | head -1`), as ripgrep and git do: exit status 0, no panic,
//! no message. Every command prints through [`print()`] or the `out!` and
//! `outln!` macros instead of `print!`, which panics on a closed pipe.

use std::io::{ErrorKind, Write};

/// Writes `s` to standard output; a closed pipe ends the process with status 0.
pub fn print(s: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        closed(&e);
    }
}

/// What to do with an error writing standard output: a closed pipe exits 0;
/// anything else (a full disk behind a redirection) exits 1 with a message.
pub fn closed(e: &std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// A writer over standard output with the same closed-pipe rule, for code
/// that renders into an `io::Write` (the man page, shell completions).
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::io::stdout().lock().write(buf) {
            Ok(n) => Ok(n),
            Err(e) => closed(&e),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match std::io::stdout().lock().flush() {
            Ok(()) => Ok(()),
            Err(e) => closed(&e),
        }
    }
}

/// `print!` that survives a closed pipe.
macro_rules! out {
    ($($t:tt)*) => { $crate::out::print(&format!($($t)*)) };
}

/// `println!` that survives a closed pipe.
macro_rules! outln {
    () => { $crate::out::print("\n") };
    ($($t:tt)*) => { $crate::out::print(&format!("{}\n", format_args!($($t)*))) };
}

pub(crate) use {out, outln};
