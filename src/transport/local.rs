//! `ansible_connection=local` hosts: commands run as `sh -s` child processes (the script on stdin) of lsbackup, become
//! through `sudo -n` exactly as on remote hosts. Each command gets its own process group, so a
//! timeout or an abort stops the whole pipeline it started.

use std::ffi::CStr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::pipe::{PipeWriter, Tail};
use super::{ExitInfo, TransportError};

/// Read size for local stdout.
const CHUNK: usize = 64 * 1024;
/// Between SIGTERM and SIGKILL when stopping a command.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Name of the effective user of this process (`$USER` if the passwd lookup fails).
pub(crate) fn current_user() -> String {
    // SAFETY: getpwuid_r writes only into the buffers given; the result pointer is checked.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "root".to_string())
}

/// Signal name without `SIG`, as SSH reports it.
pub(super) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGUSR1 => "USR1",
        libc::SIGSEGV => "SEGV",
        libc::SIGUSR2 => "USR2",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        other => return format!("SIG{other}"),
    };
    name.to_string()
}

fn kill_group(pgid: Option<u32>, sig: i32) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: plain syscall; a negative pid addresses the process group we created.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

async fn pump_stdout<R: AsyncRead + Unpin>(
    mut out: R,
    writer: &mut PipeWriter,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        if out.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        writer.send(buf.split().freeze()).await;
    }
}

async fn pump_stderr<R: AsyncRead + Unpin>(mut err: R, tail: &mut Tail) {
    let mut buf = vec![0u8; 8 * 1024];
    while let Ok(n) = err.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
}

/// Start `command` locally; the returned task feeds `writer` and reports the exit.
pub(super) fn exec(
    host: &str,
    stdin: super::Stdin,
    become_user: Option<&str>,
    timeout: Option<Duration>,
    mut writer: PipeWriter,
    mut keep: oneshot::Receiver<()>,
) -> Result<JoinHandle<Result<ExitInfo, TransportError>>, TransportError> {
    let mut cmd = match become_user {
        Some(user) => {
            let mut c = Command::new("sudo");
            c.arg("-n").arg("-H");
            if user != "root" {
                c.arg("-u").arg(user);
            }
            c.arg("--").arg("sh");
            c
        }
        None => Command::new("sh"),
    };
    if stdin.input.is_some() {
        cmd.arg("-c").arg(super::INPUT_COMMAND);
    } else {
        cmd.arg("-s");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let program = if become_user.is_some() { "sudo" } else { "sh" };
    let mut child = cmd.spawn().map_err(|e| TransportError::Other {
        host: host.to_string(),
        cause: format!("cannot start {program}: {e}"),
    })?;
    let host = host.to_string();
    // The script on stdin (written by its own task: a script larger than the pipe buffer must
    // not block the reader of stdout), then EOF.
    let has_input = stdin.input.is_some();
    let super::Stdin { script, input } = stdin;
    let mut feed = None;
    if let Some(mut pipe) = child.stdin.take() {
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            pipe.write_all(&script).await?;
            let n = match input {
                Some(mut input) => tokio::io::copy(&mut input, &mut pipe).await?,
                None => 0,
            };
            pipe.shutdown().await?;
            Ok::<u64, std::io::Error>(n)
        });
        // Without input, a script the shell did not read to its end is the shell's business
        // (its exit says what happened).
        if has_input {
            feed = Some(task);
        }
    }
    let pgid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    Ok(tokio::spawn(async move {
        let mut tail = Tail::default();
        enum End {
            Done(
                std::io::Result<std::process::ExitStatus>,
                std::io::Result<()>,
            ),
            Timeout,
            Abort,
        }
        let end = {
            let work = async {
                let out = async {
                    match stdout {
                        Some(o) => pump_stdout(o, &mut writer).await,
                        None => Ok(()),
                    }
                };
                let err = async {
                    if let Some(e) = stderr {
                        pump_stderr(e, &mut tail).await;
                    }
                };
                let (read, (), status) = tokio::join!(out, err, child.wait());
                End::Done(status, read)
            };
            let deadline = async {
                match timeout {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                end = work => end,
                _ = deadline => End::Timeout,
                _ = &mut keep => End::Abort,
            }
        };
        match end {
            End::Done(status, read) => {
                let status = status.map_err(|e| TransportError::Other {
                    host: host.clone(),
                    cause: format!("waiting for local command: {e}"),
                })?;
                if let Some(cause) = super::feed_result(feed.take(), status.success()).await {
                    let cause = format!("sending data to the command: {cause}");
                    writer.fail(std::io::ErrorKind::BrokenPipe, format!("{host}: {cause}"));
                    return Err(TransportError::Other { host, cause });
                }
                if let Err(e) = read {
                    writer.fail(
                        e.kind(),
                        format!("{host}: reading local command output: {e}"),
                    );
                    return Err(TransportError::Other {
                        host,
                        cause: format!("reading command output: {e}"),
                    });
                }
                writer.finish();
                Ok(ExitInfo {
                    code: status.code().map(|c| c as u32),
                    signal: status.signal().map(signal_name),
                    stderr_tail: tail.text(),
                })
            }
            End::Timeout | End::Abort => {
                if let Some(f) = feed.take() {
                    f.abort();
                }
                kill_group(pgid, libc::SIGTERM);
                if tokio::time::timeout(KILL_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    kill_group(pgid, libc::SIGKILL);
                    let _ = child.kill().await;
                }
                if matches!(end, End::Timeout) {
                    let secs = timeout
                        .map(|d| d.as_secs_f64().ceil() as u64)
                        .unwrap_or_default();
                    writer.fail(
                        std::io::ErrorKind::TimedOut,
                        format!("{host}: command timed out after {secs}s"),
                    );
                    Err(TransportError::CommandTimeout { host, secs })
                } else {
                    writer.fail(
                        std::io::ErrorKind::Interrupted,
                        format!("{host}: command stopped"),
                    );
                    Err(TransportError::Other {
                        host,
                        cause: "command stopped".into(),
                    })
                }
            }
        }
    }))
}
