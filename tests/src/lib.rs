//! Cross-crate integration tests live in `tests/tests/`; this library holds what they share.
//!
//! It also compiles and runs the code blocks of the top-level README as doctests, so the README
//! cannot drift from the API.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Real-process crash tests: run a child (an ignored test of the same binary), read what it
/// acknowledges, kill it with SIGKILL at a chosen moment.
pub mod crash {
    use std::ffi::OsStr;
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// Longest wait for a child's first acknowledgement (it starts a process and opens a
    /// file or store first).
    const FIRST_ACK_WITHIN: Duration = Duration::from_secs(60);
    /// The end of a child's stderr kept for the failure message.
    const STDERR_KEPT: usize = 16 << 10;
    /// The signal `Child::kill` sends on Unix.
    const SIGKILL: i32 = 9;

    /// Runs the ignored test `child_test` of the current test binary with `env_name` set to
    /// `env_value`, kills it with SIGKILL `kill_after` after its first acknowledgement, and
    /// returns the words of every stdout line that starts with `ack` (without the `ack`).
    ///
    /// Panics, with the end of the child's stderr, if the child acknowledges nothing within a
    /// minute, ends on its own or panics on any thread (children write until killed: an exit
    /// is a failure, such as a panic on an I/O error), so no round passes without checking
    /// something and no child failure goes unseen.
    pub fn run_and_kill(
        child_test: &str,
        env_name: &str,
        env_value: impl AsRef<OsStr>,
        kill_after: Duration,
    ) -> Vec<Vec<String>> {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                child_test,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env_name, env_value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        let (first_ack, first_ack_seen) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                if words.next() == Some("ack") {
                    if acks.is_empty() {
                        let _ = first_ack.send(());
                    }
                    acks.push(words.map(str::to_owned).collect());
                }
            }
            acks
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buffer = [0u8; 4096];
            let mut stderr = stderr;
            while let Ok(read) = stderr.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                kept.extend_from_slice(&buffer[..read]);
                if kept.len() > 2 * STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        match first_ack_seen.recv_timeout(FIRST_ACK_WITHIN) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => fail(
                &mut child,
                stderr_reader,
                format!("no acknowledgement within {FIRST_ACK_WITHIN:?}"),
            ),
            Err(RecvTimeoutError::Disconnected) => fail(
                &mut child,
                stderr_reader,
                "the child closed its output before acknowledging anything".into(),
            ),
        }
        // The moment only needs to vary from round to round, not to be exact.
        let started = Instant::now();
        while started.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A child that ended on its own (a panic, say) shows an exit code, not SIGKILL.
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            _ => {
                child.kill().expect("SIGKILL the child");
                child.wait().expect("reap the child")
            }
        };
        if status.signal() != Some(SIGKILL) {
            fail(
                &mut child,
                stderr_reader,
                format!("the child ended before it was killed ({status})"),
            );
        }
        let stderr = stderr_reader.join().unwrap_or_default();
        // A panic on one of its threads may not end the child before the kill.
        assert!(
            !stderr.contains("panicked at"),
            "the child panicked before it was killed; its stderr ends with:\n{stderr}"
        );
        reader.join().expect("stdout reader")
    }

    /// Kills and reaps the child, then panics with `why` and the end of its stderr.
    fn fail(child: &mut Child, stderr_reader: JoinHandle<String>, why: String) -> ! {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = stderr_reader.join().unwrap_or_default();
        panic!("{why}; the child's stderr ends with:\n{stderr}");
    }

    /// Pseudo-random kill moments (xorshift), reproducible from run to run.
    #[derive(Debug)]
    pub struct KillClock(u64);

    impl KillClock {
        /// A clock seeded with `seed` (nonzero).
        pub fn new(seed: u64) -> KillClock {
            KillClock(seed | 1)
        }

        /// A delay in `min_ms .. min_ms + span_ms` milliseconds.
        pub fn next(&mut self, min_ms: u64, span_ms: u64) -> Duration {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            Duration::from_millis(min_ms + self.0 % span_ms.max(1))
        }
    }
}

/// The checks every crash test makes after reopening a store.
pub mod invariants {
    use std::collections::HashMap;

    use eventstore::{Event, Expected, Store};

    /// The streams `bank/account/<instance>` of `instances` must have contiguous versions and
    /// every event in them `payload(instance, version)` (acknowledged or not: a torn event
    /// taken for a whole one shows here); every `(instance, version, position)` in `acked`
    /// must be there with its position; the streams of `pair` (written together by two-stream
    /// appends) must have the same length; global positions must be gap-free; and the store
    /// must take a new append (to `probe/p/<round>`). Panics naming `round` otherwise.
    pub fn check_after_crash(
        store: &Store,
        instances: &[u128],
        acked: &[(u128, u64, u64)],
        pair: (u128, u128),
        payload: impl Fn(u128, u64) -> Vec<u8>,
        round: u64,
    ) {
        let accounts = store.domain("bank").unwrap().aggregate("account").unwrap();
        let mut streams = HashMap::new();
        for &instance in instances {
            let events = accounts.instance(instance).read_from(0).unwrap();
            let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
            let contiguous: Vec<u64> = (0..versions.len() as u64).collect();
            assert_eq!(
                versions, contiguous,
                "round {round}: versions of {instance}"
            );
            for event in &events {
                assert_eq!(
                    event.payload,
                    payload(instance, event.version),
                    "round {round}: payload of {instance}@{}",
                    event.version
                );
            }
            streams.insert(instance, events);
        }
        for &(instance, version, position) in acked {
            let event = streams[&instance]
                .get(version as usize)
                .unwrap_or_else(|| panic!("round {round}: acknowledged {instance}@{version} lost"));
            assert_eq!(
                (event.version, event.position),
                (version, position),
                "round {round}"
            );
        }
        assert_eq!(
            streams[&pair.0].len(),
            streams[&pair.1].len(),
            "round {round}: a two-stream append is partial"
        );
        let positions: Vec<u64> = store
            .read_all(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        let gap_free: Vec<u64> = (0..store.len()).collect();
        assert_eq!(positions, gap_free, "round {round}: gap in positions");
        let probe = store
            .domain("probe")
            .unwrap()
            .aggregate("p")
            .unwrap()
            .instance(round as u128);
        probe
            .append(Expected::NoStream, &[Event::new("alive", Vec::new())])
            .unwrap();
    }
}
