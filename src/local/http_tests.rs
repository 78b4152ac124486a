//! The local HTTP server seen from independent clients: hyper-util's client for ordinary
//! exchanges, raw bytes on a `TcpStream` for the protocol's edge cases.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A server whose handler echoes the request as JSON and counts its calls.
struct Echo {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start(limits: Limits) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let task = serve_with(listener, limits, move |req: Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let echo = serde_json::json!({
                    "method": req.method,
                    "path": req.path(),
                    "query": req.query(),
                    "x-test": req.header("X-Test"),
                    "body": String::from_utf8_lossy(&req.body),
                });
                Response::json(201, &echo)
                    .header("x-multi", "a")
                    .header("x-multi", "b")
                    .header("x-broken", "a\r\nx-injected: yes")
                    .header("content-length", "9999")
            }
        });
        Echo { addr, calls, task }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until the connection ends (bounded); everything read, as text.
async fn read_all(conn: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    // A reset after the answer (unread bytes of ours on a closed socket) ends it too.
    let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut raw))
        .await
        .expect("the server neither answered nor closed the connection");
    String::from_utf8_lossy(&raw).into_owned()
}

/// Reads one response head (up to the empty line), bounded.
async fn read_head(conn: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut byte))
            .await
            .expect("no response head")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed mid-head after {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.push(byte[0]);
    }
    String::from_utf8_lossy(&raw).into_owned()
}

fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn small(max_body: usize) -> Limits {
    Limits {
        max_body,
        ..Limits::default()
    }
}

#[tokio::test]
async fn requests_round_trip_over_one_kept_alive_connection() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let server = Echo::start(Limits::default()).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    for n in 0..2 {
        let req = hyper::Request::post(format!("http://{}/pay/{n}?a=1&b=2", server.addr))
            .header("X-Test", "yes")
            .body(Full::new(Bytes::from(format!("body {n}"))))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 201);
        let multi: Vec<_> = resp.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert!(resp.headers().get("x-broken").is_none());
        assert!(resp.headers().get("x-injected").is_none());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            echo,
            serde_json::json!({"method": "POST", "path": format!("/pay/{n}"), "query": "a=1&b=2",
                               "x-test": "yes", "body": format!("body {n}")})
        );
    }
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn a_chunked_body_is_decoded() {
    let server = Echo::start(Limits::default()).await;
    let mut conn = server.connect().await;
    conn.write_all(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut conn).await;
    assert_eq!(status_of(&text), 201, "{text}");
    assert!(text.contains(r#""body":"hello world""#), "{text}");
}

#[tokio::test]
async fn expect_100_continue_gets_100_then_the_response() {
    let server = Echo::start(Limits::default()).await;
    let mut conn = server.connect().await;
    conn.write_all(
        b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let interim = read_head(&mut conn).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    conn.write_all(b"hello").await.unwrap();
    let head = read_head(&mut conn).await;
    assert_eq!(status_of(&head), 201, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: "),
        "{head}"
    );
    assert!(
        !head.contains("9999"),
        "the handler's content-length is not used: {head}"
    );
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn a_too_large_body_announced_with_expect_gets_413_and_no_100() {
    let server = Echo::start(small(1024)).await;
    let mut conn = server.connect().await;
    conn.write_all(
        b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut conn).await;
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains(r#"{"message":"Request Too Long"}"#), "{text}");
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn an_unknown_expectation_gets_417() {
    let server = Echo::start(Limits::default()).await;
    let mut conn = server.connect().await;
    conn.write_all(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(&mut conn).await;
    assert_eq!(status_of(&text), 417, "{text}");
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn a_content_length_over_the_cap_gets_413_without_sending_the_body() {
    let server = Echo::start(Limits::default()).await;
    let mut conn = server.connect().await;
    // Only the head: the answer must not wait for 10 MB that never come.
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let text = read_all(&mut conn).await;
    assert_eq!(status_of(&text), 413, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_gets_413() {
    let server = Echo::start(small(1024)).await;
    let mut conn = server.connect().await;
    let chunk = format!("258\r\n{}\r\n", "x".repeat(0x258));
    let req = format!(
        "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let text = read_all(&mut conn).await;
    assert_eq!(status_of(&text), 413, "{text}");
    assert_eq!(server.calls(), 0);
    // At the cap exactly, it passes.
    let mut conn = server.connect().await;
    let req = format!(
        "POST /fits HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n400\r\n{}\r\n0\r\n\r\n",
        "y".repeat(1024)
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let text = read_all(&mut conn).await;
    assert_eq!(status_of(&text), 201, "{text}");
}

#[tokio::test]
async fn over_long_chunk_size_lines_are_refused() {
    let server = Echo::start(Limits::default()).await;
    // A size that does not fit in 64 bits, and a 20 KB extension: both end the request.
    for line in [
        format!("{}\r\n", "f".repeat(17)),
        format!("1;{}\r\n", "e".repeat(20 * 1024)),
    ] {
        let mut conn = server.connect().await;
        let req = format!(
            "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{line}x\r\n0\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let text = read_all(&mut conn).await;
        assert_eq!(status_of(&text), 400, "{text}");
        assert!(text.contains("Malformed request body"), "{text}");
    }
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn headers_over_the_limits_get_431() {
    let server = Echo::start(Limits::default()).await;
    // Exactly the limit and not finished yet: the server reads all of it (so its close
    // is clean) and refuses.
    let start = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ";
    let big = format!("{start}{}", "b".repeat(MAX_HEADER_BYTES - start.len()));
    let many: String = (0..=MAX_HEADERS)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect::<String>();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for req in [big, many] {
        let mut conn = server.connect().await;
        conn.write_all(req.as_bytes()).await.unwrap();
        let text = read_all(&mut conn).await;
        assert_eq!(status_of(&text), 431, "{text}");
    }
    assert_eq!(server.calls(), 0);
    // Just under the count limit passes.
    let mut conn = server.connect().await;
    let fine: String = (0..MAX_HEADERS - 2)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{fine}\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_all(&mut conn).await), 201);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_timeout() {
    let idle = Duration::from_millis(300);
    let server = Echo::start(Limits {
        idle_timeout: idle,
        ..Limits::default()
    })
    .await;
    // A connection that never sends anything.
    let started = std::time::Instant::now();
    let mut conn = server.connect().await;
    let text = read_all(&mut conn).await;
    assert_eq!(text, "", "nothing is answered to silence");
    assert!(
        started.elapsed() >= idle,
        "closed too early: {:?}",
        started.elapsed()
    );
    // A kept-alive connection that goes quiet after one request.
    let mut conn = server.connect().await;
    conn.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut conn).await;
    assert_eq!(status_of(&head), 201, "{head}");
    let after = std::time::Instant::now();
    let rest = read_all(&mut conn).await;
    assert!(rest.ends_with('}'), "the body, then the end: {rest}");
    assert!(
        after.elapsed() >= idle / 2,
        "closed too early: {:?}",
        after.elapsed()
    );
    // A head sent too slowly.
    let mut conn = server.connect().await;
    conn.write_all(b"GET /slow HTTP/1.1\r\n").await.unwrap();
    assert_eq!(read_all(&mut conn).await, "");
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let server = Echo::start(Limits {
        body_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut conn = server.connect().await;
    conn.write_all(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let text = read_all(&mut conn).await;
    assert_eq!(status_of(&text), 408, "{text}");
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn dropping_the_server_ends_open_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A handler that never answers: a long poll.
    let task = serve(listener, |_req| std::future::pending::<Response>());
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut byte)).await;
    assert!(early.is_err(), "the long poll answered: {early:?}");
    task.abort();
    let read = tokio::time::timeout(WAIT, conn.read(&mut byte))
        .await
        .expect("the connection outlived the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
