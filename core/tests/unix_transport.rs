//! The echo application over the Unix domain socket example transport.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use tern_core::{ClientRequest, EventLoop, LoopConfig, Message};

#[allow(dead_code)]
#[path = "../examples/unix_transport.rs"]
mod unix;

use unix::{Recorder, Server, UnixError, UnixTransport};

/// Every test gives up after this long instead of hanging.
const LIMIT: Duration = Duration::from_secs(30);

/// A server on a fresh socket path; the directory goes when it is dropped.
struct Fixture {
    dir: PathBuf,
    path: PathBuf,
    server: Option<Server>,
}

impl Fixture {
    fn start(tag: &str) -> Fixture {
        let dir = unix::temp_dir(tag).unwrap();
        let path = dir.join("echo.sock");
        let server = Some(Server::start(&path).unwrap());
        Fixture { dir, path, server }
    }

    fn stop(mut self) -> tern_core::LoopStats {
        self.server.take().unwrap().stop().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn echo_round_trip() {
    let fixture = Fixture::start("echo");
    let messages = [Message::Text("one".into()), Message::Text("two ü".into())];
    let echoes = unix::run_clients(&fixture.path, 1, &messages, LIMIT).unwrap();
    assert_eq!(echoes, vec![messages.to_vec()]);

    let stats = fixture.stop();
    assert_eq!((stats.accepted, stats.opened, stats.ended), (1, 1, 1));
}

#[test]
fn large_messages_survive_partial_writes() {
    let fixture = Fixture::start("large");
    // 200 KB as in the example, then twice 4 MiB, far beyond a socket
    // buffer and the loop's 1 MiB queue mark: both ends write in parts, and
    // the server pauses reading while an echo is queued, then resumes for
    // the next message and the text behind it.
    let mut messages = unix::sample_messages();
    let huge: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 253) as u8).collect();
    messages.push(Message::Binary(huge.clone().into()));
    messages.push(Message::Binary(huge.into()));
    messages.push(Message::Text("after the flood".into()));
    let echoes = unix::run_clients(&fixture.path, 1, &messages, LIMIT).unwrap();
    assert_eq!(echoes.len(), 1);
    assert!(echoes[0] == messages, "echoes differ from what was sent");
}

#[test]
fn fifty_clients_at_once() {
    let fixture = Fixture::start("many");
    let messages = [
        Message::Text("ping".into()),
        Message::Binary(vec![7; 3000].into()),
    ];
    let echoes = unix::run_clients(&fixture.path, 50, &messages, LIMIT).unwrap();
    assert_eq!(echoes.len(), 50);
    assert!(echoes.iter().all(|e| e == &messages));

    let stats = fixture.stop();
    assert_eq!((stats.accepted, stats.opened, stats.ended), (50, 50, 50));
}

#[test]
fn missing_server_path_is_a_clear_error() {
    let dir = unix::temp_dir("missing").unwrap();
    let path = dir.join("nobody.sock");
    let (transport, _waker) = UnixTransport::new().unwrap();
    let mut client = EventLoop::new(transport, Recorder::default(), LoopConfig::default());
    let request = ClientRequest {
        host: "localhost",
        path: "/",
        protocols: &[],
    };

    let err = client.connect(&path, &request, 1).unwrap_err();
    assert!(matches!(&err, UnixError::Connect(p, e)
        if p == &path && e.kind() == std::io::ErrorKind::NotFound));
    let text = err.to_string();
    assert!(text.starts_with("cannot connect to "), "{text}");
    assert!(text.contains("nobody.sock"), "{text}");
    assert!(client.is_empty());

    // run_clients reports the same error instead of waiting.
    let result = unix::run_clients(&path, 1, &[], LIMIT);
    assert_eq!(result.unwrap_err(), text);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn binding_an_existing_path_is_a_clear_error() {
    let fixture = Fixture::start("bound");
    let err = UnixTransport::bind(&fixture.path).unwrap_err();
    assert!(matches!(&err, UnixError::Bind(p, _) if p == &fixture.path));
    assert!(err.to_string().starts_with("cannot listen on "), "{err}");
}

#[test]
fn bad_peers_do_not_hurt_the_server() {
    let fixture = Fixture::start("bad");

    // A peer that hangs up at once (EOF before any byte).
    drop(UnixStream::connect(&fixture.path).unwrap());

    // A peer that sends something that is not an HTTP request gets an HTTP
    // error answer, then the end of the stream.
    let mut raw = UnixStream::connect(&fixture.path).unwrap();
    raw.set_read_timeout(Some(LIMIT)).unwrap();
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 4"), "{answer:?}");

    // A proper client still gets its echo afterwards.
    let messages = [Message::Text("still here".into())];
    let echoes = unix::run_clients(&fixture.path, 1, &messages, LIMIT).unwrap();
    assert_eq!(echoes, vec![messages.to_vec()]);

    let stats = fixture.stop();
    assert_eq!((stats.accepted, stats.opened, stats.ended), (3, 1, 3));
}
