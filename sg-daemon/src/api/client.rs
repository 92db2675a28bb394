//! The client's end of the socket (`sgctl`, tests): one request, one
//! answer.

use std::{
    io::{self, BufRead as _, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Request, RequestLine, Response, ResponseLine, VERSION};

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No daemon listens there, or this user may not connect.
    #[error("cannot reach sgd at {path}: {source}")]
    Unreachable { path: PathBuf, source: io::Error },
    /// The connection broke, or the answer was not one.
    #[error("no answer from sgd at {path}: {message}")]
    NoAnswer { path: PathBuf, message: String },
}

/// Sends one request to the daemon at `socket` and waits up to `timeout`
/// for its answer.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, CallError> {
    let unreachable = |source| CallError::Unreachable {
        path: socket.to_owned(),
        source,
    };
    let no_answer = |message: String| CallError::NoAnswer {
        path: socket.to_owned(),
        message,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| no_answer(e.to_string()))?;
    let mut line = serde_json::to_string(&RequestLine {
        v: VERSION,
        request: request.clone(),
    })
    .map_err(|e| no_answer(e.to_string()))?;
    line.push('\n');
    // A refused peer may be answered and closed before it writes.
    let written = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = io::BufReader::new(&stream).read_line(&mut answer);
    match (read, written) {
        (Ok(n), _) if n > 0 => {}
        (Ok(_), Err(e)) | (Err(e), _) => return Err(no_answer(e.to_string())),
        (Ok(_), Ok(())) => return Err(no_answer("the connection was closed".into())),
    }
    let answer: ResponseLine = serde_json::from_str(&answer)
        .map_err(|e| no_answer(format!("not a response line ({e}): {}", answer.trim())))?;
    Ok(answer.response)
}
