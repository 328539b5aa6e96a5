//! The moto AWS emulator as a child process on 127.0.0.1.
//!
//! It lives exactly as long as its owner: the child reads its standard input
//! until end-of-file, which comes when the owner drops [`Emulator`] or exits,
//! crashed or not.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("{0} is missing: run `make setup` to install the AWS emulator into .venv")]
    NotInstalled(String),
    #[error("could not start the AWS emulator")]
    Spawn(#[source] std::io::Error),
    #[error("the AWS emulator did not start (is port {0} free?)")]
    NoPort(u16),
}

#[derive(Debug)]
pub struct Emulator {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Emulator {
    /// Starts the emulator of the project at `root` on `port` (0: any free one).
    pub fn start(root: &Path, port: u16) -> Result<Self, EmulatorError> {
        let python = root.join(".venv/bin/python");
        if !python.exists() {
            return Err(EmulatorError::NotInstalled(python.display().to_string()));
        }
        let mut child = Command::new(&python)
            .arg(root.join("scripts/moto_server.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(EmulatorError::Spawn)?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(EmulatorError::NoPort(port));
        };
        Ok(Self { port, child, stdin })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the emulator and waits for it to exit.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
